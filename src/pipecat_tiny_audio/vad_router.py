"""VadRouter: which audio of a session reaches its decoder, and when an utterance begins and ends.

Speech is segmented by an upstream VAD when one sends its frames (the service calls
:meth:`VadRouter.begin`/:meth:`VadRouter.end` for them), else by the built-in Silero
:class:`~pipecat_tiny_audio.vad.VadBuffer`. Under an upstream VAD the built-in one still listens
within utterances, for the pauses below, but skips Silero between them.

Why the final arrives fast: audio is fed as it arrives, and when the VAD sees a pause begin the
router stops feeding the decoder and asks for a preview, a final computed right away, during the
VAD's ``stop_secs`` of silence. If the stop follows, that final is ready; if speech resumes, the
held audio is fed and decoding goes on. The final therefore covers the utterance up to the start
of its closing pause (the silence after it is dropped).
"""

from __future__ import annotations

import numpy as np
from pipecat.audio.vad.vad_analyzer import VADParams

from pipecat_tiny_audio.audio import SAMPLE_RATE
from pipecat_tiny_audio.commands import Audio, CommandQueue, Preview, Start, Stop
from pipecat_tiny_audio.vad import VadBuffer, VadEvent

HOLD_MARGIN_SECS = 0.5  # a pause held this long past the VAD's stop_secs without a stop is fed after all
CONTINUATION_SECS = 1.0  # speech resuming this soon after an utterance's stop continues the speaker's turn


def _pcm_to_float(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, "<i2").astype(np.float32) / 32768.0


class VadRouter:
    """Turns a session's 16 kHz mono PCM and VAD events into decoder commands.

    Args:
        commands: where the commands go.
        vad_params: the built-in Silero VAD's parameters (``None``: Pipecat's defaults).
        pre_roll_secs: audio kept from before the VAD's speech onset.
        min_speech_secs: an utterance with less voiced audio gets ``Stop(enough_speech=False)``.
    """

    def __init__(
        self, commands: CommandQueue, vad_params: VADParams | None, pre_roll_secs: float, min_speech_secs: float
    ):
        self._commands = commands
        self._vad = VadBuffer(vad_params, pre_roll_secs)
        self._min_speech_samples = round(min_speech_secs * SAMPLE_RATE)
        self.upstream = False  # an upstream VAD segments the speech
        self.in_utterance = False
        self._heard_speech = False  # our VAD heard speech in this utterance, so a pause can be held
        self._voiced = 0  # samples of voiced audio in this utterance
        self._hold_blocked = False
        self._held: list[np.ndarray] = []
        self._since_stop: int | None = None  # samples since the last utterance's stop (None: no utterance yet)

    @property
    def params(self) -> VADParams:
        return self._vad.params

    def follow_upstream(self, params: VADParams | None = None) -> None:
        """An upstream VAD segments the speech from now on (with its ``params``, when it sends them)."""
        self.upstream = True
        if params is not None:
            self._vad.set_params(params)

    async def process(self, pcm: bytes) -> bool:
        """Route one block of PCM; ``True`` when the built-in VAD just heard the utterance end."""
        event = await self._listen(pcm)
        if not self.in_utterance and self._since_stop is not None:
            self._since_stop += len(pcm) // 2
        if event is VadEvent.STARTED and not self.upstream and not self.in_utterance:
            self.begin()  # the pre-roll includes this block
        elif self.in_utterance:
            self._route(_pcm_to_float(pcm))
        return event is VadEvent.STOPPED and not self.upstream and self.in_utterance

    async def flush(self, pcm: bytes) -> None:
        """Route the last audio before a stop (what the resampler held back)."""
        if pcm:
            await self._listen(pcm)  # keeps the VAD's ring and state in step with the audio
            if self.in_utterance:
                self._route(_pcm_to_float(pcm))

    def begin(self, start_secs: float | None = None) -> None:
        """Open an utterance; ``start_secs`` of speech confirmed the VAD's start (default: the built-in
        VAD's), so they count as voiced and come with the pre-roll."""
        start_secs = self._vad.params.start_secs if start_secs is None else start_secs
        pre_roll = self._vad.pre_roll(start_secs)
        quiet = None if self._since_stop is None else self._since_stop - start_secs * SAMPLE_RATE
        continues = quiet is not None and quiet <= CONTINUATION_SECS * SAMPLE_RATE
        self.in_utterance = True
        self._voiced = round(start_secs * SAMPLE_RATE)
        self._heard_speech = self._vad.is_speech
        self._hold_blocked = False
        self._held.clear()
        self._commands.send(Start(continues))
        if pre_roll:
            self._commands.send(Audio(_pcm_to_float(pre_roll)))

    def end(self, user_id: str) -> bool:
        """Close the utterance (audio held in its closing pause is dropped); ``False`` if none was open."""
        if not self.in_utterance:
            return False
        self.in_utterance = False
        self._since_stop = 0
        self._vad.utterance_ended(sum(map(len, self._held)))  # the next pre-roll may take the closing pause
        self._held.clear()
        self._commands.send(Stop(user_id, self._voiced >= self._min_speech_samples))
        return True

    def reset(self) -> None:
        """Forget the utterance in progress without a stop (the decode loop is gone)."""
        self.in_utterance = False
        self._held.clear()

    async def cleanup(self) -> None:
        await self._vad.cleanup()

    async def _listen(self, pcm: bytes) -> VadEvent | None:
        if self.upstream and not self.in_utterance:
            self._vad.skip(pcm)  # the upstream VAD finds the start; ours listens for pauses within utterances
            return None
        return await self._vad.process(pcm)

    def _route(self, samples: np.ndarray) -> None:
        """Feed speech to the decoder; hold back a pause, previewing the final when it begins."""
        if self._vad.is_speech:
            self._heard_speech, self._hold_blocked = True, False
            self._voiced += samples.size
        elif self._heard_speech and not self._hold_blocked:
            self._held.append(samples)
            if len(self._held) == 1:
                self._commands.send(Preview())
            if sum(map(len, self._held)) > (self._vad.params.stop_secs + HOLD_MARGIN_SECS) * SAMPLE_RATE:
                self._hold_blocked = True  # the upstream VAD heard no pause here: feed what was held
                self._release_held()
            return
        self._release_held()
        self._commands.send(Audio(samples))

    def _release_held(self) -> None:
        if self._held:
            self._commands.send(Audio(np.concatenate(self._held)))
            self._held.clear()
