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
MIN_SAMPLES = SAMPLE_RATE // 50  # one 20 ms encoder frame: anything shorter has nothing to transcribe
# Float audio is full scale at 1.0. Resampling and mixing may overshoot a little; a peak beyond this
# is not audio in [-1, 1] (usually int16 values handed over as floats).
MAX_FLOAT_PEAK = 2.0


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


def as_float_samples(audio: np.ndarray) -> np.ndarray:
    """``audio`` as float32 in [-1, 1]: int16 is scaled by 1/32768, float is checked, the rest refused.

    Raises :class:`AudioInputError` for other dtypes, NaN/Inf, or float samples far outside [-1, 1].
    """
    if audio.dtype == np.int16:
        return audio.astype(np.float32) / 32768.0
    if audio.dtype.kind != "f":
        raise AudioInputError(f"unsupported audio dtype {audio.dtype}; use int16 PCM or float samples in [-1, 1]")
    data = audio.astype(np.float32, copy=False)
    if not np.isfinite(data).all():
        raise AudioInputError("audio contains NaN or Inf samples")
    peak = float(np.abs(data).max()) if data.size else 0.0
    if peak > MAX_FLOAT_PEAK:
        raise AudioInputError(
            f"float audio must be in [-1, 1], got a peak of {peak:g}; int16 values stored as floats "
            "need dividing by 32768 (or pass the int16 array itself)"
        )
    return data


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
    :class:`AudioInputError` for NaN/Inf samples, float samples far outside [-1, 1], unsupported
    dtypes, channels-first arrays (more channels than samples) or nonsense rates; empty audio is
    returned as an empty array (the model transcribes it as "").
    """
    if not isinstance(sample_rate, int | np.integer) or not 1000 <= sample_rate <= 384_000:
        raise AudioInputError(f"sample_rate must be an integer in Hz (1000..384000), got {sample_rate!r}")
    if isinstance(audio, bytes | bytearray | memoryview):
        data = pcm16_to_float(bytes(audio), num_channels or 1)
    else:
        if isinstance(audio, torch.Tensor):
            audio = audio.detach().cpu().numpy()
        data = as_float_samples(np.asarray(audio))
        if data.ndim == 1:
            data = data.reshape(-1, 1)
        elif data.ndim != 2:
            raise AudioInputError(f"audio must be 1-D or (samples, channels), got shape {data.shape}")
        elif 0 < data.shape[0] < data.shape[1]:
            raise AudioInputError(
                f"audio shaped {data.shape} has more channels than samples: arrays are (samples, channels); "
                "for (channels, samples) pass audio.T"
            )
        if num_channels is not None and data.shape[1] != num_channels:
            raise AudioInputError(f"expected {num_channels} channel(s), got array shaped {data.shape}")
    if not np.isfinite(data).all():
        raise AudioInputError("audio contains NaN or Inf samples")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    mono = resample(mono, int(sample_rate))
    return np.clip(mono, -1.0, 1.0).astype(np.float32, copy=False)
