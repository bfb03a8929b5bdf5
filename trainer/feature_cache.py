"""On-disk cache of Whisper encoder features, so only the first pass over the data runs the encoder.

The encoder is frozen, so its output for a file never changes; on 2 CPU cores it costs ~0.04 s per
second of audio, i.e. hours for a large corpus and far more than the CTC stage itself. Features are
computed only by the library's :func:`~pipecat_tiny_audio.features.encode_audio` (what
``TinyAudioModel.encode`` and the streaming decoder use), stored as fp16 ``.npy`` files, one per
utterance, each written atomically, so an interrupted caching pass simply resumes.

The cache folder is keyed by the encoder (source name and a digest of its weights) and the feature
mode (chunking and left context); a file inside it by the audio's identity (path, size and mtime,
or a digest of in-memory audio). Changing any of these can never serve stale features.

A run that fine-tunes the encoder's top layers caches instead what the layers below compute for
each window (``.npz`` files of :class:`~trainer.top_layers.EncoderWindows`, ~4× the frames in
chunked mode), and finishes the features in each step (:mod:`trainer.top_layers`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from loguru import logger
from torch import nn
from tqdm import tqdm

from pipecat_tiny_audio.audio import SAMPLE_RATE
from pipecat_tiny_audio.features import FeatureMode, encode_audio, encode_windows
from pipecat_tiny_audio.sources import cache_dir
from trainer.data import SkipCounter, SkipReason, SkipUtterance, Utterance, decode_utterance
from trainer.top_layers import EncoderWindows

FRAME_SECONDS = 0.02  # one encoder frame
CACHE_VERSION = 1


@dataclass(frozen=True)
class Example:
    """A usable training/eval row: its transcript and where its cached features are."""

    text: str
    key: str
    frames: int
    source: str
    name: str  # the utterance's key in logs and error files

    @property
    def seconds(self) -> float:
        return self.frames * FRAME_SECONDS


def default_root() -> Path:
    return cache_dir() / "features"


def _weights_digest(encoder: nn.Module) -> str:
    h = hashlib.blake2b(digest_size=8)
    for name, tensor in sorted(encoder.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class FeatureCache:
    """Encoder features for utterances, computed once per (encoder, feature mode, audio file).

    With ``trained_layers`` > 0 it holds the windows below the encoder's top ``trained_layers``
    layers instead (:meth:`load` returns :class:`EncoderWindows`).
    """

    def __init__(
        self,
        encoder: nn.Module,
        encoder_source: str,
        mode: FeatureMode,
        root: str | Path | None = None,
        trained_layers: int = 0,
    ):
        if not 0 <= trained_layers <= len(encoder.layers):
            raise ValueError(f"trained_layers must be in [0, {len(encoder.layers)}], got {trained_layers}")
        self.encoder = encoder
        self.mode = mode
        self.trained_layers = trained_layers
        identity = {
            "version": CACHE_VERSION,
            "encoder_source": encoder_source,
            "encoder_weights": _weights_digest(encoder),
            "feature_mode": mode.to_dict(),
        }
        if trained_layers:  # absent otherwise, so the frozen encoder's caches keep their folders
            identity["below_trained_layers"] = trained_layers
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
        slug = re.sub(r"[^A-Za-z0-9]+", "-", Path(encoder_source).name or encoder_source).strip("-")[:40]
        self.dir = Path(root or default_root()).expanduser() / f"{slug}-{digest}"
        self.dir.mkdir(parents=True, exist_ok=True)
        info = self.dir / "cache.json"
        if not info.exists():
            info.write_text(json.dumps(identity, indent=2))

    @classmethod
    def for_model(cls, model, root: str | Path | None = None) -> FeatureCache:
        """The cache of a :class:`~pipecat_tiny_audio.TinyAudioModel`'s encoder and feature mode."""
        return cls(model.encoder, model.config.encoder_source, model.feature_mode, root)

    @staticmethod
    def key(utt: Utterance) -> str:
        """Identity of an utterance's audio: the file's path, size and mtime, or a digest of its bytes."""
        h = hashlib.sha256()
        if utt.audio is not None:
            h.update(f"array|{utt.sample_rate}|{np.asarray(utt.audio).dtype}|".encode())
            h.update(np.ascontiguousarray(utt.audio).tobytes())
        elif utt.audio_bytes is not None:
            h.update(b"bytes|" + utt.audio_bytes)
        elif utt.audio_path is not None:
            path = utt.audio_path.expanduser().resolve()
            try:
                st = path.stat()
                h.update(f"file|{path}|{st.st_size}|{st.st_mtime_ns}".encode())
            except OSError:
                h.update(f"missing|{path}".encode())
        else:
            h.update(f"none|{utt.key}".encode())
        return h.hexdigest()[:32]

    def path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.{'npz' if self.trained_layers else 'npy'}"

    def load(self, key: str) -> torch.Tensor | EncoderWindows:
        """Cached features (frames, d) as float32, or the windows below the trained layers."""
        if self.trained_layers:
            with np.load(self.path(key)) as stored:
                hidden = torch.from_numpy(stored["hidden"].astype(np.float32))
                return EncoderWindows(hidden, torch.from_numpy(stored["spans"].astype(np.int64)))
        return torch.from_numpy(np.load(self.path(key)).astype(np.float32))

    def frames(self, key: str) -> int | None:
        """Number of cached feature frames (without reading the frames), or None if not cached."""
        try:
            if self.trained_layers:
                with np.load(self.path(key)) as stored:
                    return int(stored["spans"][:, 2].sum())
            return int(np.load(self.path(key), mmap_mode="r").shape[0])
        except (OSError, ValueError, KeyError):
            return None

    def _encode(self, samples: np.ndarray) -> tuple[int, dict[str, np.ndarray]]:
        """(feature frames, arrays to store) of one utterance's audio."""
        if self.trained_layers:
            below = len(self.encoder.layers) - self.trained_layers
            windows = EncoderWindows(*encode_windows(self.encoder, samples, self.mode, below))
            arrays = {
                "hidden": windows.hidden.numpy().astype(np.float16),
                "spans": windows.spans.numpy().astype(np.int32),
            }
            return windows.frames, arrays
        features = encode_audio(self.encoder, samples, self.mode)
        return features.shape[0], {"features": features.numpy().astype(np.float16)}

    def _store(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        path = self.path(key)
        path.parent.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key}.", suffix=path.suffix)
        try:
            with os.fdopen(fd, "wb") as f:
                if self.trained_layers:
                    np.savez(f, **arrays)
                else:
                    np.save(f, arrays["features"])
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def prepare(
        self,
        utterances: Iterable[Utterance],
        max_seconds: float,
        skips: SkipCounter | None = None,
        desc: str = "features",
        shard: tuple[int, int] | None = None,
    ) -> list[Example]:
        """Usable rows as :class:`Example`, encoding the ones not cached yet (with a progress bar).

        Bad rows are skipped and counted in ``skips`` per reason. Interrupting loses at most the
        utterance being encoded; the next call continues where this one stopped. ``shard = (k, n)``
        keeps only the rows of shard k (1-based) of n, by cache key, so n processes can share the work.
        """
        if shard is not None and not 1 <= shard[0] <= shard[1]:
            raise ValueError(f"shard must be k of n with 1 <= k <= n, got {shard[0]} of {shard[1]}")
        skips = skips if skips is not None else SkipCounter()
        examples: list[Example | None] = []
        missing: list[tuple[int, Utterance, str]] = []
        for utt in utterances:
            key = self.key(utt)
            if shard is not None and int(key, 16) % shard[1] != shard[0] - 1:
                continue
            frames = self.frames(key)
            if frames is None:
                missing.append((len(examples), utt, key))
                examples.append(None)
            elif utt.lacks_transcript:
                skips.record(SkipReason.EMPTY_TEXT, utt.key)
            elif frames * FRAME_SECONDS > max_seconds + FRAME_SECONDS:
                skips.record(SkipReason.TOO_LONG, utt.key, f"{frames * FRAME_SECONDS:.1f} s > {max_seconds:g} s")
            else:
                examples.append(Example(utt.text.strip(), key, frames, utt.source, utt.key))
        logger.info(f"{desc}: {len(examples) - len(missing)} cached, {len(missing)} to encode ({self.dir})")
        if missing:
            audio_seconds, started = 0.0, time.perf_counter()
            bar = tqdm(missing, desc=desc, unit="utt", dynamic_ncols=True)
            for index, utt, key in bar:
                try:
                    samples = decode_utterance(utt, max_seconds)
                except SkipUtterance as skip:
                    skips.record(skip.reason, utt.key, skip.detail)
                    continue
                frames, arrays = self._encode(samples)
                self._store(key, arrays)
                examples[index] = Example(utt.text.strip(), key, frames, utt.source, utt.key)
                audio_seconds += samples.size / SAMPLE_RATE
                bar.set_postfix(audio_s_per_s=f"{audio_seconds / (time.perf_counter() - started):.0f}")
        skips.log_summary(desc)
        return [e for e in examples if e is not None]
