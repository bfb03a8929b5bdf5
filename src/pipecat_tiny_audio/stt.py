"""TinyAudioSTT: a streaming, local Pipecat STT service on a Tiny Audio model.

Thin glue between Pipecat frames and the pieces that do the work, none of which knows Pipecat:

- the input path (``run_stt``, Pipecat's event loop) converts each frame to 16 kHz mono
  (:class:`~pipecat_tiny_audio.resampling.StreamResampler`) and hands it to a
  :class:`~pipecat_tiny_audio.vad_router.VadRouter`, which decides what reaches the decoder and
  when an utterance begins, pauses and ends, as commands on a
  :class:`~pipecat_tiny_audio.commands.CommandQueue`;
- a per-service decode task takes the commands in order and runs them on the session's
  :class:`~pipecat_tiny_audio.streaming.StreamingDecoder` through the model's
  :class:`~pipecat_tiny_audio.batch_scheduler.BatchScheduler`, pacing partials by its
  :class:`~pipecat_tiny_audio.turn_state.TurnState`, and pushes interim and final transcripts.

Every service that loads the same model shares it (:mod:`~pipecat_tiny_audio.shared_model`), and
its scheduler runs all their work: finals first, LLM passes of several sessions batched into one
forward, interims thinned out first when the CPU is short. With ``model_process=True`` the model
and its scheduler run in a child process (:mod:`~pipecat_tiny_audio.model_process`), so the
sessions' pipelines and the model do not take turns on one interpreter. Inference never blocks the
event loop.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from loguru import logger
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    SpeechControlParamsFrame,
    StartFrame,
    STTMuteFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.settings import STTSettings
from pipecat.services.stt_service import STTService
from pipecat.transcriptions.language import Language
from pipecat.utils.time import time_now_iso8601
from pipecat.utils.tracing.service_decorators import traced_stt

from pipecat_tiny_audio.audio import SAMPLE_RATE, AudioInputError
from pipecat_tiny_audio.batch_scheduler import Priority, SchedulerStats
from pipecat_tiny_audio.commands import CATCH_UP_SECONDS, Audio, CommandQueue, Interrupt, Preview, Start, Stop, Switch
from pipecat_tiny_audio.model_process import ModelProcess, ProcessDecoder
from pipecat_tiny_audio.modeling import TinyAudioModel
from pipecat_tiny_audio.resampling import StreamResampler
from pipecat_tiny_audio.shared_model import DEFAULT_MODEL, ScheduledDecoder, SharedModel, resolve_device, shared_model
from pipecat_tiny_audio.streaming import MAX_SEGMENT_RANGE
from pipecat_tiny_audio.turn_state import TurnState
from pipecat_tiny_audio.vad_router import VadRouter

# VAD stop → final transcript, for turn strategies (VADParams.stop_secs=0.2). benchmarks/streaming.py
# --breakdown measured a final whose draft is already right (a converged hypothesis) at 0.48 s p50 on a
# loaded 2-core CPU, and the pause preview starts ~0.2 s before the stop. Re-measure for the trained
# default model: the untrained stand-in rewrites its whole (nonsense) hypothesis at every step.
TINY_AUDIO_TTFS_P99 = 0.5
MAX_PRE_ROLL_SECS = 5.0
T = TypeVar("T")


def _is_english(language: Language | str | None) -> bool:
    return language is not None and str(language).lower().replace("_", "-").split("-")[0] == "en"


def _check_seconds(name: str, value: Any, low: float, high: float = math.inf) -> None:
    """``value`` must be a real number of seconds in [low, high]; else a ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        limits = f"between {low:g} and {high:g} s" if high < math.inf else f">= {low:g} s"
        raise ValueError(f"TinyAudioSTT: {name} must be a number of seconds {limits}, got {value!r}")


def _check_vad_params(params: VADParams | None) -> None:
    if params is None:
        return
    if not isinstance(params, VADParams):
        raise ValueError(f"TinyAudioSTT: vad_params must be a pipecat VADParams, got {type(params).__name__}")
    for name in ("confidence", "min_volume"):
        value = getattr(params, name)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"TinyAudioSTT: vad_params.{name} must be between 0 and 1, got {value!r}")
    for name in ("start_secs", "stop_secs"):
        _check_seconds(f"vad_params.{name}", getattr(params, name), 0.0)


@dataclass
class TinyAudioSTTSettings(STTSettings):
    """Settings for :class:`TinyAudioSTT`.

    Parameters:
        model: checkpoint folder or hub id (``"default"``: the shipped default model).
        language: English only (``"en"``).
    """


class TinyAudioSTT(STTService):
    """Streaming local speech-to-text: interims while the user speaks, the final when they stop.

    Example::

        stt = TinyAudioSTT(model="path/to/checkpoint")
        pipeline = Pipeline([transport.input(), stt, user_aggregator, llm, tts, transport.output()])

    Args:
        model: a checkpoint folder, hub id, ``"default"``/``None`` (the shipped default model) or
            a loaded :class:`TinyAudioModel`. Loaded once per process and device.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        settings: runtime-updatable settings (``model``, ``language``); they win over ``model``.
        language: English only; anything else raises ``ValueError``.
        partial_interval: seconds of new audio between interim transcripts.
        vad_params: built-in Silero VAD parameters, used when no upstream VAD frames arrive (an
            upstream VAD's ``SpeechControlParamsFrame`` replaces them).
        pre_roll_secs: audio kept from before the VAD's speech onset (and its ``start_secs``), never
            reaching back into the previous utterance. 0.6 s: on the dev clips streamed behind
            ``VADProcessor(stop_secs=0.2)`` 0.3 s lost soft first syllables (``docs/probes/stream_segments.py``).
        min_speech_secs: an utterance with less voiced audio than this (what confirmed the VAD's
            start plus what Silero hears as speech after it) gets no final: a click or a 50 ms blip
            between a VAD start and stop would only make the model invent words. 0.2 s, the start_secs
            of Pipecat's VAD, so an utterance a VAD started on is always transcribed: a one-word answer
            ("No.", "Hi.") can end right after the start, and at 0.25 s lost its final at some phases.
        max_segment_seconds: long speech is cut and continued on a fresh KV cache past this.
        whole_utterance_final: ``False`` takes finals from the chunks already decoded even when the model
            re-encodes each utterance whole for its final: finals arrive far sooner after the stop and
            one CPU holds more sessions, for a few points of WER (README, *Many sessions on one model*).
        model_process: run the model in a child process of its own (one per model, shared by every
            service that asks for it) instead of this one: for many sessions per process, whose pipelines
            would otherwise hold the interpreter the model's threads need (README, *Many sessions on one
            model*). ``model`` must then be a folder, hub id or ``"default"``, not a loaded instance.
        num_threads: torch intra-op threads of the model's worker thread (``None``: torch's
            default, one per core). On a 2-core machine shared with other work, 2 threads ran
            3-10x slower than 1 (they spin-wait for each other), hence the default of 1.
        fp16: when loading a model on CPU, merge its LoRA adapter and store the LLM's and the
            encoder's linear weights in fp16, which halves decoding and encoding time with the same
            transcripts
            (:meth:`TinyAudioModel.optimize_for_inference`; a passed instance is used as it is).
        ttfs_p99_latency: P99 seconds from VAD stop to final transcript, for turn strategies.
        **kwargs: passed to :class:`~pipecat.services.stt_service.STTService`.

    Every setting is checked here (an out-of-range one raises ``ValueError``). Should the decode
    task ever stop, the service pushes a permanent ``ErrorFrame`` upstream and stops taking audio,
    rather than run on hearing nothing.
    """

    Settings = TinyAudioSTTSettings
    _settings: Settings

    def __init__(
        self,
        *,
        model: str | os.PathLike | TinyAudioModel | None = None,
        device: str = "cpu",
        settings: Settings | None = None,
        language: Language | str | None = None,
        partial_interval: float = 0.5,
        vad_params: VADParams | None = None,
        pre_roll_secs: float = 0.6,
        min_speech_secs: float = 0.2,
        max_segment_seconds: float = 25.0,
        whole_utterance_final: bool = True,
        model_process: bool = False,
        num_threads: int | None = 1,
        fp16: bool = True,
        ttfs_p99_latency: float | None = TINY_AUDIO_TTFS_P99,
        **kwargs,
    ):
        instance = model if isinstance(model, TinyAudioModel) else None
        default_settings = self.Settings(
            model=(instance.name_or_path or "TinyAudioModel") if instance is not None else str(model or DEFAULT_MODEL),
            language=Language.EN,
        )
        if language is not None:
            default_settings.language = language
        if settings is not None:
            default_settings.apply_update(settings)
        if not _is_english(default_settings.language):
            raise ValueError(
                f"TinyAudioSTT transcribes English only; got language {default_settings.language!r}. "
                "Use Language.EN (or leave language unset)."
            )
        # Every setting is checked here: a bad one found later would only kill the decode task.
        if model is not None and not isinstance(model, str | os.PathLike | TinyAudioModel):
            raise ValueError(f"TinyAudioSTT: model must be a folder, hub id or TinyAudioModel, got {model!r}")
        _check_seconds("partial_interval", partial_interval, 0.01)
        _check_seconds("pre_roll_secs", pre_roll_secs, 0.0, MAX_PRE_ROLL_SECS)
        _check_seconds("min_speech_secs", min_speech_secs, 0.0, MAX_SEGMENT_RANGE[1])
        _check_seconds("max_segment_seconds", max_segment_seconds, *MAX_SEGMENT_RANGE)
        if ttfs_p99_latency is not None:
            _check_seconds("ttfs_p99_latency", ttfs_p99_latency, 0.0)
        if num_threads is not None and (isinstance(num_threads, bool) or not isinstance(num_threads, int)):
            raise ValueError(f"TinyAudioSTT: num_threads must be a positive int or None, got {num_threads!r}")
        if num_threads is not None and num_threads < 1:
            raise ValueError(f"TinyAudioSTT: num_threads must be a positive int or None, got {num_threads!r}")
        _check_vad_params(vad_params)
        super().__init__(settings=default_settings, ttfs_p99_latency=ttfs_p99_latency, **kwargs)
        self._device = resolve_device(device)
        self._num_threads = num_threads
        self._fp16 = fp16
        self._model_process = bool(model_process)
        self._shared = shared_model(
            instance if instance is not None else self._settings.model, self._device, num_threads, fp16, model_process
        )
        self._partial_interval = partial_interval
        self._max_segment_seconds = max_segment_seconds
        self._whole_utterance_final = bool(whole_utterance_final)
        self._resample = StreamResampler()
        self._frame_format = (SAMPLE_RATE, 1)
        self._commands = CommandQueue(str(self))
        self._router = VadRouter(self._commands, vad_params, pre_roll_secs, min_speech_secs)
        self._decode_task: asyncio.Task | None = None

    @property
    def model(self) -> TinyAudioModel | None:
        """The model this service transcribes with (shared by every service that loaded the same one);
        ``None`` when it runs in a process of its own."""
        return None if isinstance(self._shared, ModelProcess) else self._shared.model

    async def scheduler_stats(self) -> SchedulerStats:
        """What the model's scheduler has run so far (for every service on the same model)."""
        return await self._shared.stats()

    @property
    def backlog_seconds(self) -> float:
        """Seconds of audio queued for the decoder and not yet fed: near 0 while it keeps up."""
        return self._commands.backlog_seconds

    @property
    def lag_seconds(self) -> float:
        """How long the oldest audio queued for the decoder has waited: how far behind real time it is."""
        return self._commands.lag_seconds

    def can_generate_metrics(self) -> bool:
        return True

    def language_to_service_language(self, language: Language) -> str | None:
        return "en" if _is_english(language) else None

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self, frame: StartFrame):
        await super().start(frame)
        if self._decode_task is None:
            self._decode_task = self.create_task(self._decode_loop(), name="tiny_audio_decode")

    async def stop(self, frame: EndFrame):
        """Finish the utterance in progress (its final is pushed), then stop."""
        if self._decode_task is not None:
            await self._end_utterance()
            self._commands.send(None)
            await self._decode_task
            self._decode_task = None
        await super().stop(frame)

    async def cancel(self, frame: CancelFrame):
        await self._cancel_decode_task()
        await super().cancel(frame)

    async def cleanup(self):
        await super().cleanup()
        await self._cancel_decode_task()
        await self._router.cleanup()

    async def _cancel_decode_task(self) -> None:
        self._commands.interrupt.set()
        if self._decode_task is not None:
            await self.cancel_task(self._decode_task)
            self._decode_task = None
        self._commands.clear()
        self._router.reset()

    async def _update_settings(self, delta: STTSettings) -> dict[str, Any]:
        changed = await super()._update_settings(delta)
        if "language" in changed and not _is_english(self._settings.language):
            await self.push_error(
                f"TinyAudioSTT transcribes English only; ignored language {self._settings.language!r}"
            )
            self._settings.language = "en"
        if "model" in changed:
            self.create_task(self._switch_model(self._settings.model, changed["model"]), name="tiny_audio_load")
        return changed

    async def _switch_model(self, source: str, previous: str) -> None:
        try:
            shared = await asyncio.to_thread(
                shared_model, source, self._device, self._num_threads, self._fp16, self._model_process
            )
        except Exception as e:
            self._settings.model = previous
            self._sync_model_name_to_metrics()
            await self.push_error(f"{self}: could not load model {source!r}: {e}", exception=e)
            return
        self._commands.send(Switch(shared))

    # -- input path -------------------------------------------------------------------------

    async def process_audio_frame(self, frame: InputAudioRawFrame, direction: FrameDirection):
        self._frame_format = (frame.sample_rate, frame.num_channels)
        await super().process_audio_frame(frame, direction)

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, SpeechControlParamsFrame) and frame.vad_params is not None:
            self._router.follow_upstream(frame.vad_params)
        elif isinstance(frame, VADUserStartedSpeakingFrame):
            self._router.follow_upstream()
            if not self._router.in_utterance and not self.is_muted:
                self._router.begin(frame.start_secs)
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self._router.follow_upstream()
            await self._end_utterance()
        elif isinstance(frame, STTMuteFrame) and frame.mute and not self._router.upstream:
            await self._end_utterance()  # no audio will reach the built-in VAD to end it

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame | None, None]:
        """Convert and route one audio frame; transcripts come from the decode task."""
        try:
            pcm = self._resample(audio, *self._frame_format)
        except (AudioInputError, ValueError) as e:
            logger.warning(f"{self}: skipping unusable audio frame: {e}")
            yield None
            return
        if pcm and await self._router.process(pcm):
            await self.start_ttfb_metrics(start_time=time.time() - self._router.params.stop_secs)
            await self._end_utterance()
        yield None

    async def _end_utterance(self) -> None:
        """Route what the resampler still holds (the utterance's last milliseconds), then close the utterance."""
        await self._router.flush(self._resample.flush())
        if self._router.end(self._user_id):
            self.request_finalize()

    # -- decode task ------------------------------------------------------------------------

    async def _decode_loop(self) -> None:
        try:
            turn = TurnState(self._shared, await self._new_decoder(self._shared), self._partial_interval)
        except Exception as e:
            await self._decode_task_died(e)
            return
        try:
            while True:
                try:
                    if self._commands:
                        command = self._commands.take()
                        if command is None:
                            return
                        await self._handle(turn, command)
                    elif turn.partial_due:
                        await self._partial(turn)
                    else:
                        await self._commands.wait()
                except Exception as e:
                    if isinstance(turn.shared, ModelProcess) and not turn.shared.alive:
                        await self._decode_task_died(e)  # its model is gone: nothing more will work
                        return
                    # A failed step costs one transcript, never the pipeline.
                    await self.push_error(f"{self}: transcription failed: {e}", exception=e)
        finally:
            turn.decoder.close()

    async def _decode_task_died(self, error: Exception) -> None:
        """Nothing can be transcribed any more: say so upstream (fatal) and stop queueing audio."""
        self._commands.close()
        self._router.reset()
        logger.error(f"{self}: the decode task stopped, nothing will be transcribed: {error}")
        # Pipecat 1.14's form of a fatal error: the processor becomes unusable (no more audio reaches
        # run_stt) and the pipeline worker applies its ProcessorUnusablePolicy.
        await self.push_error(
            f"{self}: speech-to-text stopped: {error}", exception=error, force_treat_as_permanent=True
        )

    async def _handle(self, turn: TurnState, command: Any) -> None:
        if isinstance(command, Audio):
            turn.holding = False
            # Audio that a queued preview or stop waits for is as urgent as the final it leads to.
            final_waits = self._commands.has(Preview) or self._commands.has(Stop)
            lag = time.monotonic() - command.received
            priority = Priority.FINAL if final_waits else Priority.AUDIO
            await turn.decoder.feed(command.samples, priority, follow=lag <= CATCH_UP_SECONDS)
        elif isinstance(command, Start):
            if turn.pending_switch is not None:
                await self._switch(turn, turn.pending_switch)
            turn.start(command.continues)
            await turn.decoder.reset(context=turn.said)  # the LLM reads a split turn's words as one line
        elif isinstance(command, Preview):
            if self._commands.has(Audio):
                return  # speech resumed before the preview could start
            turn.holding = True
            text = await self._interruptible("preview", turn.decoder.finalize)
            stopping = self._commands.has(Stop)  # then the final follows at once
            if not stopping and turn.is_news(text):
                await self._push_interim(text)
        elif isinstance(command, Stop):
            turn.active = False
            await self._finalize(turn, command.user_id, command.enough_speech)
        elif isinstance(command, Switch):
            if turn.active:
                turn.pending_switch = command.shared
            else:
                await self._switch(turn, command.shared)

    async def _partial(self, turn: TurnState) -> None:
        started = time.perf_counter()
        hypothesis = await self._interruptible("partial", turn.decoder.partial)
        turn.partial_done(time.perf_counter() - started)
        if hypothesis is not None and turn.is_news(hypothesis.text):
            await self._push_interim(hypothesis.text, hypothesis)

    async def _switch(self, turn: TurnState, shared: SharedModel | ModelProcess) -> None:
        turn.decoder.close()
        turn.shared = self._shared = shared
        turn.decoder = await self._new_decoder(shared)
        turn.pending_switch = None

    async def _new_decoder(self, shared: SharedModel | ModelProcess) -> ScheduledDecoder | ProcessDecoder:
        return await shared.open_decoder(
            max_segment_seconds=self._max_segment_seconds, whole_utterance_final=self._whole_utterance_final
        )

    async def _interruptible(self, kind: str, work: Callable[[Interrupt], Awaitable[T]]) -> T:
        """Run ``work`` so that the commands that make it pointless give it up (see CommandQueue)."""
        with self._commands.inflight_as(kind) as interrupt:
            return await work(interrupt)

    async def _finalize(self, turn: TurnState, user_id: str, enough_speech: bool = True) -> None:
        text = ""
        if not enough_speech:
            logger.debug(f"{self}: less than min_speech_secs of voiced audio: no final")
        else:
            await self.start_processing_metrics()
            try:
                # Interruptible like a partial, so cancel() need not wait for the whole decode.
                text = await self._interruptible("final", turn.decoder.finalize)
            finally:
                await self.stop_processing_metrics()
        if not text:  # nothing said: no transcript, and no latency to report
            self.confirm_finalize()  # the finalize request is answered, with nothing to transcribe
            await self._cancel_ttfb_timeout()
            await self.cancel_ttfb_metrics()
        else:
            await self.emit_stt_usage_metrics()
            self.confirm_finalize()
            await self.push_frame(
                TranscriptionFrame(text, user_id, time_now_iso8601(), Language.EN, finalized=True),
            )
            await self._handle_transcription(text, True, Language.EN)
            turn.heard(text)
            logger.debug(f"{self}: final transcript [{text}]")
        # After the transcript is out: the next utterance's Start would reset the decoder anyway.
        await turn.decoder.reset(Priority.FINAL)

    async def _push_interim(self, text: str, result: Any = None) -> None:
        await self.push_frame(InterimTranscriptionFrame(text, self._user_id, time_now_iso8601(), Language.EN, result))

    @traced_stt
    async def _handle_transcription(self, transcript: str, is_final: bool, language: Language | None = None):
        """Tracing hook for a final transcript."""
