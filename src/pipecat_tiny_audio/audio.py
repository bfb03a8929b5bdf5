"""Audio input normalisation: everything the model sees is 16 kHz mono float32 in [-1, 1].

Users hand us int16 PCM bytes from a transport, numpy arrays from a file reader, stereo
captures at 48 kHz... Converting in one place means the encoder never sees a surprise, and
bad input fails here with a message that says what was wrong.
"""

from __future__ import annotations

import numpy as np
import soxr
import torch

SAMPLE_RATE = 16_000


class AudioInputError(ValueError):
    """Raised for audio that cannot be turned into 16 kHz mono samples."""


def pcm16_to_float(pcm: bytes, num_channels: int = 1) -> np.ndarray:
    """Decode little-endian int16 PCM into float32 samples shaped (frames, channels)."""
    bytes_per_frame = 2 * num_channels
    if len(pcm) % bytes_per_frame:
        raise AudioInputError(
            f"PCM buffer of {len(pcm)} bytes is not a whole number of {num_channels}-channel int16 frames"
        )
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    return samples.reshape(-1, num_channels)


def resample(audio: np.ndarray, orig_rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """High-quality resampling of a whole 1-D float signal (soxr, already a Pipecat dependency)."""
    if orig_rate == target_rate or audio.size == 0:
        return audio.astype(np.float32, copy=False)
    return soxr.resample(audio.astype(np.float32, copy=False), orig_rate, target_rate, quality="HQ")


def to_model_audio(
    audio: bytes | np.ndarray | torch.Tensor,
    sample_rate: int = SAMPLE_RATE,
    num_channels: int | None = None,
) -> np.ndarray:
    """Convert any supported audio to 16 kHz mono float32.

    Accepts int16 PCM ``bytes`` (interleaved when ``num_channels`` > 1), int16 arrays and float
    arrays shaped ``(samples,)`` or ``(samples, channels)``. Channels are averaged. Raises
    :class:`AudioInputError` for NaN/Inf samples, unsupported dtypes or nonsense rates; empty
    audio is returned as an empty array (the model transcribes it as "").
    """
    if not isinstance(sample_rate, int | np.integer) or not 1000 <= sample_rate <= 384_000:
        raise AudioInputError(f"sample_rate must be an integer in Hz (1000..384000), got {sample_rate!r}")
    if isinstance(audio, bytes | bytearray | memoryview):
        data = pcm16_to_float(bytes(audio), num_channels or 1)
    else:
        if isinstance(audio, torch.Tensor):
            audio = audio.detach().cpu().numpy()
        data = np.asarray(audio)
        if data.dtype == np.int16:
            data = data.astype(np.float32) / 32768.0
        elif data.dtype.kind == "f":
            data = data.astype(np.float32, copy=False)
        else:
            raise AudioInputError(f"unsupported audio dtype {data.dtype}; use int16 PCM or float samples")
        if data.ndim == 1:
            data = data.reshape(-1, 1)
        elif data.ndim != 2:
            raise AudioInputError(f"audio must be 1-D or (samples, channels), got shape {data.shape}")
        if num_channels is not None and data.shape[1] != num_channels:
            raise AudioInputError(f"expected {num_channels} channel(s), got array shaped {data.shape}")
    if not np.isfinite(data).all():
        raise AudioInputError("audio contains NaN or Inf samples")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    mono = resample(mono, int(sample_rate))
    return np.clip(mono, -1.0, 1.0).astype(np.float32, copy=False)
