"""StreamResampler: a transport's int16 PCM frames, at any rate and channel count, as one 16 kHz mono stream."""

from __future__ import annotations

import numpy as np
import soxr

from pipecat_tiny_audio.audio import SAMPLE_RATE, AudioInputError


class StreamResampler:
    """Pipecat int16 PCM at any rate/channel count → 16 kHz mono int16 (stream-resampled, no clicks).

    A stream resampler holds back the last few milliseconds of its input (its filter's delay: 37.5 ms
    at 48 kHz); :meth:`flush` returns them, so the end of an utterance is not left behind.
    """

    def __init__(self) -> None:
        self._stream: soxr.ResampleStream | None = None
        self._rate = 0

    def __call__(self, audio: bytes, sample_rate: int, num_channels: int) -> bytes:
        if num_channels < 1 or len(audio) % (2 * num_channels):
            raise AudioInputError(f"{len(audio)} bytes is not a whole number of {num_channels}-channel int16 frames")
        if not 1000 <= sample_rate <= 384_000:
            raise AudioInputError(f"unsupported sample rate {sample_rate}")
        samples = np.frombuffer(audio, "<i2")
        if num_channels > 1:
            samples = np.round(samples.reshape(-1, num_channels).mean(axis=1)).astype("<i2")
        tail = b""
        if sample_rate != self._rate:  # a new stream; what the old one held back comes first
            tail = self.flush()
            self._rate = sample_rate
            self._stream = None
            if sample_rate != SAMPLE_RATE:
                self._stream = soxr.ResampleStream(sample_rate, SAMPLE_RATE, 1, dtype="int16", quality="VHQ")
        if self._stream is None:
            return tail + samples.tobytes()
        return tail + self._stream.resample_chunk(samples).tobytes()

    def flush(self) -> bytes:
        """The audio the resampler still holds; the next frame starts a fresh stream."""
        if self._stream is None:
            return b""
        held = self._stream.resample_chunk(np.zeros(0, np.int16), last=True).tobytes()
        self._stream.clear()
        return held
