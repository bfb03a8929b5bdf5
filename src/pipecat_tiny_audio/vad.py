"""VadBuffer: Silero voice activity detection plus the audio just before speech was confirmed.

A VAD confirms speech only after ``start_secs`` of it, so the first syllable has already gone
by: a short ring buffer (pre-roll) keeps it. The same VAD also tells the service when a pause
begins, which is when it can start computing a final transcript speculatively.

It wraps Pipecat's ``SileroVADAnalyzer`` (the Silero ONNX model Pipecat ships), so built-in
segmentation behaves exactly like a ``VADProcessor`` with the same ``VADParams``.
"""

from __future__ import annotations

from enum import Enum

from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams, VADState

from pipecat_tiny_audio.audio import SAMPLE_RATE

BYTES_PER_SECOND = 2 * SAMPLE_RATE  # 16 kHz mono int16
MAX_START_SECS = 1.0  # the ring also covers an upstream VAD's start_secs, up to this much


class _InlineSileroVAD(SileroVADAnalyzer):
    """Pipecat's Silero VAD, run on the caller's thread.

    Pipecat hands every block to the analyzer's own thread; for one stream that is harmless, but a
    block costs Silero ~0.1 ms and the hop more: with eight sessions (sixteen VADs counting the
    pipelines' own) the hops' thread switches kept the model's threads waiting for the GIL, and
    running ours inline took the furthest a session fell behind from 1.34-1.60 s (two runs) to
    0.90-1.50 s (six runs) and final p90 from 746-892 ms to 450-645 ms
    (``benchmarks/concurrency.py --sessions 8 --no-peer``). The analysis itself is Pipecat's own.
    """

    async def analyze_audio(self, buffer: bytes) -> VADState:
        return self._run_analyzer(buffer)


class VadEvent(Enum):
    """A confirmed change of the speech state."""

    STARTED = "started"
    STOPPED = "stopped"


class VadBuffer:
    """Speech segmentation of a 16 kHz mono int16 PCM stream with pre-roll.

    Args:
        params: Silero VAD thresholds and start/stop times (Pipecat's defaults if ``None``).
        pre_roll_secs: audio kept from before the detected speech onset.
    """

    def __init__(self, params: VADParams | None = None, pre_roll_secs: float = 0.6):
        if pre_roll_secs < 0:
            raise ValueError("pre_roll_secs must be >= 0")
        self._analyzer = _InlineSileroVAD(sample_rate=SAMPLE_RATE, params=params)
        self._analyzer.set_sample_rate(SAMPLE_RATE)
        self._pre_roll_secs = pre_roll_secs
        self._ring = bytearray()
        self._ring_limit = round((pre_roll_secs + MAX_START_SECS) * SAMPLE_RATE) * 2
        self._skipped = 0  # bytes at the ring's end kept but not analysed yet
        self._unused = 0  # bytes at the ring's end kept since the last utterance ended
        self._state = VADState.QUIET

    @property
    def params(self) -> VADParams:
        return self._analyzer.params

    def set_params(self, params: VADParams) -> None:
        """Adopt another VAD's parameters (an upstream VAD's), so pauses are judged alike."""
        self._analyzer.set_params(params)
        self._state = VADState.QUIET

    @property
    def is_speech(self) -> bool:
        """Whether the latest audio is speech (including unconfirmed onsets); not known, so ``False``,
        while skipped audio awaits analysis."""
        return not self._skipped and self._state in (VADState.STARTING, VADState.SPEAKING)

    async def process(self, pcm: bytes) -> VadEvent | None:
        """Analyse a block of 16 kHz mono int16 PCM; return the speech event it completes, if any.

        Audio :meth:`skip` kept is analysed first, as far as the ring still holds it.
        """
        self._keep(pcm)
        audio = bytes(self._ring[-(self._skipped + len(pcm)) :]) if self._skipped else pcm
        self._skipped = 0
        previous, self._state = self._state, await self._analyzer.analyze_audio(audio)
        if self._state == VADState.SPEAKING and previous in (VADState.QUIET, VADState.STARTING):
            return VadEvent.STARTED
        if self._state == VADState.QUIET and previous in (VADState.SPEAKING, VADState.STOPPING):
            return VadEvent.STOPPED
        return None

    def skip(self, pcm: bytes) -> None:
        """Keep a block for the pre-roll without running Silero on it: while an upstream VAD finds the
        starts of speech, ours is needed only inside utterances. The next :meth:`process` catches up
        on the last :data:`MAX_START_SECS` plus pre-roll, enough to know whether speech is going on."""
        self._keep(pcm)
        self._skipped = min(self._skipped + len(pcm), len(self._ring))

    def _keep(self, pcm: bytes) -> None:
        self._ring += pcm
        del self._ring[: max(0, len(self._ring) - self._ring_limit)]
        self._unused = min(self._unused + len(pcm), len(self._ring))

    def utterance_ended(self, unused_samples: int = 0) -> None:
        """The audio so far belonged to an utterance, except its last ``unused_samples`` (the closing
        pause, which the decoder never got): a later pre-roll starts after the rest.

        A VAD that splits a turn at a short pause starts the next utterance moments after the last
        one ended; a pre-roll reaching back into what that one transcribed would transcribe its last
        words twice, and one stopping at the VAD's stop would lose a soft word the VAD took for the pause.
        """
        self._unused = min(2 * unused_samples, len(self._ring))

    def pre_roll(self, start_secs: float | None = None) -> bytes:
        """The latest audio covering speech confirmed after ``start_secs`` (default: ours) plus pre-roll,
        none of it from before the last utterance's end."""
        start = self.params.start_secs if start_secs is None else min(start_secs, MAX_START_SECS)
        size = min(round((start + self._pre_roll_secs) * SAMPLE_RATE) * 2, self._unused)
        return bytes(self._ring[-size:]) if size else b""

    async def cleanup(self) -> None:
        """Release the analyzer's thread."""
        await self._analyzer.cleanup()
