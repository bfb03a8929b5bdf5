"""TinyAudioSTT: a streaming, local Pipecat STT service on a Tiny Audio model.

Thin glue between Pipecat frames and :class:`~pipecat_tiny_audio.streaming.StreamingDecoder`.
The input path (``run_stt``) only converts audio and runs the VAD; a per-service task feeds the
decoder on the model's own worker thread, so inference never blocks the event loop. Speech is
segmented by upstream ``VADUserStartedSpeakingFrame``/``VADUserStoppedSpeakingFrame`` when a
VAD sends them, else by a built-in Silero :class:`~pipecat_tiny_audio.vad.VadBuffer`.

Why the final arrives fast: audio is encoded as it arrives, and when the VAD sees a pause begin
the service stops feeding the decoder and computes the final right away, during the VAD's
``stop_secs`` of silence. If the stop follows, that final is ready; if speech resumes, the held
audio is fed and decoding goes on. The final therefore covers the utterance up to the start of
its closing pause (the silence after it is dropped).

One model load is shared by every service in the process (keyed by source and device; a local folder
by its resolved path, however it is spelled), with a
single worker thread per model: sessions interleave their calls and keep their own decoders.
"""

from __future__ import annotations

import asyncio
import functools
import math
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soxr
import torch
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
from pipecat_tiny_audio.configuration import TinyAudioConfig
from pipecat_tiny_audio.modeling import TinyAudioModel, check_device
from pipecat_tiny_audio.streaming import MAX_SEGMENT_RANGE, StreamingDecoder
from pipecat_tiny_audio.vad import VadBuffer, VadEvent

DEFAULT_MODEL = "default"
DEFAULT_MODEL_DIR = Path(__file__).parent / "default_model"
# VAD stop → final transcript, for turn strategies (VADParams.stop_secs=0.2). benchmarks/streaming.py
# --breakdown measured a final whose draft is already right (a converged hypothesis) at 0.48 s p50 on a
# loaded 2-core CPU, and the pause preview starts ~0.2 s before the stop. Re-measure for the trained
# default model: the untrained stand-in rewrites its whole (nonsense) hypothesis at every step.
TINY_AUDIO_TTFS_P99 = 0.5
HOLD_MARGIN_SECS = 0.5  # a pause held this long past the VAD's stop_secs without a stop is fed after all
PARTIAL_DUTY = 3.0  # partials take at most about a third of real time
MAX_PRE_ROLL_SECS = 5.0


# -- one model per process ------------------------------------------------------------------


class SharedModel:
    """A loaded model and the single thread every call into it runs on.

    ``num_threads`` sets torch's intra-op threads on that thread (PyTorch also makes it the
    default for threads started later).
    """

    def __init__(self, model: TinyAudioModel, name: str, num_threads: int | None = None):
        self.model = model
        self.name = name
        self.num_threads = num_threads
        self._executor = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="tiny-audio",
            initializer=None if num_threads is None else torch.set_num_threads,
            initargs=() if num_threads is None else (num_threads,),
        )

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the model's thread without blocking the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(fn, *args))


_lock = threading.Lock()
_loaded: dict[tuple[str, str, bool], SharedModel] = {}
_wrapped: weakref.WeakKeyDictionary[TinyAudioModel, SharedModel] = weakref.WeakKeyDictionary()


def _resolve_device(device: str) -> str:
    """``"auto"`` → ``"cuda"`` when available, else ``"cpu"``; a device that is not here raises ``ValueError``."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return check_device(device)


def load_model(source: str, device: str, fp16: bool = True) -> TinyAudioModel:
    """Load ``source`` (``"default"``, a checkpoint folder or a hub id) for inference on ``device``.

    ``fp16``: store the LLM's weights in fp16 on CPU (see :meth:`TinyAudioModel.optimize_for_inference`).
    """
    if source != DEFAULT_MODEL:
        model = TinyAudioModel.from_pretrained(source, device=device)
    elif (DEFAULT_MODEL_DIR / "config.json").is_file():
        model = TinyAudioModel.from_pretrained(DEFAULT_MODEL_DIR, device=device)
    else:
        logger.warning(
            "pipecat-tiny-audio ships no trained default weights yet: loading the default architecture "
            "(Whisper base + SmolLM2-135M) with an UNTRAINED projector, so transcripts are nonsense. "
            "Pass TinyAudioSTT(model=<checkpoint folder>) to use a trained model."
        )
        with torch.random.fork_rng():
            torch.manual_seed(0)  # the same stand-in in every process, so runs compare
            model = TinyAudioModel(TinyAudioConfig()).eval().to(device)
    return model.optimize_for_inference(fp16=fp16)


def _source_key(source: str | os.PathLike) -> str:
    """A local folder as its resolved absolute path ("ckpt", "ckpt/", "./ckpt" and "/abs/ckpt" are one
    model); ``"default"`` and hub ids as given."""
    text = str(source)
    path = Path(text).expanduser()
    return str(path.resolve()) if text != DEFAULT_MODEL and path.is_dir() else text


def _check_threads(shared: SharedModel, num_threads: int | None) -> None:
    if num_threads != shared.num_threads:
        logger.warning(
            f"Tiny Audio model {shared.name!r} is already loaded with num_threads={shared.num_threads}; "
            f"num_threads={num_threads} is ignored (every service shares the model's one worker thread)"
        )


def shared_model(
    model: str | os.PathLike | TinyAudioModel, device: str = "cpu", num_threads: int | None = None, fp16: bool = True
) -> SharedModel:
    """The process-wide :class:`SharedModel` for a model source (loaded once) or instance.

    ``num_threads`` applies when this call creates it (a later call asking for other threads gets
    a warning); ``fp16`` when it loads a source (an instance is used as it is).
    """
    with _lock:
        if isinstance(model, TinyAudioModel):
            if model not in _wrapped:
                _wrapped[model] = SharedModel(model, model.name_or_path or type(model).__name__, num_threads)
            else:
                _check_threads(_wrapped[model], num_threads)
            return _wrapped[model]
        key = (_source_key(model), _resolve_device(device), fp16)
        if key not in _loaded:
            started = time.perf_counter()
            _loaded[key] = SharedModel(load_model(*key), key[0], num_threads)
            logger.info(f"Loaded Tiny Audio model {key[0]!r} on {key[1]} in {time.perf_counter() - started:.1f} s")
        else:
            _check_threads(_loaded[key], num_threads)
        return _loaded[key]


# -- audio conversion -----------------------------------------------------------------------


def _is_english(language: Language | str | None) -> bool:
    return language is not None and str(language).lower().replace("_", "-").split("-")[0] == "en"


class _AudioConverter:
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


def _pcm_to_float(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, "<i2").astype(np.float32) / 32768.0


# -- commands from the input path to the decode task ----------------------------------------


@dataclass
class _Start:
    pass


@dataclass
class _Audio:
    samples: np.ndarray


@dataclass
class _Preview:
    """A pause began: compute the final now, in case the stop follows."""


@dataclass
class _Stop:
    user_id: str
    enough_speech: bool = True  # at least min_speech_secs of voiced audio: worth a final


@dataclass
class _Switch:
    shared: SharedModel


@dataclass
class _Session:
    """What the decode task knows: the model, the decoder and where the utterance stands."""

    shared: SharedModel
    decoder: StreamingDecoder
    active: bool = False  # between _Start and _Stop
    holding: bool = False  # a pause is held back: its preview is the latest hypothesis
    last_text: str = ""  # the last interim pushed
    next_partial_at: float = 0.0  # decoder.audio_seconds at which a partial is due
    pending_switch: SharedModel | None = None  # a new model, taken at the next utterance

    @property
    def partial_due(self) -> bool:
        return self.active and not self.holding and self.decoder.audio_seconds >= self.next_partial_at


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
        pre_roll_secs: audio kept from before the VAD's speech onset.
        min_speech_secs: an utterance with less voiced audio than this (what confirmed the VAD's
            start plus what Silero hears as speech after it) gets no final: a cough, a click or a
            50 ms blip between a VAD start and stop would only make the model invent words.
        max_segment_seconds: long speech is cut and continued on a fresh KV cache past this.
        num_threads: torch intra-op threads of the model's worker thread (``None``: torch's
            default, one per core). On a 2-core machine shared with other work, 2 threads ran
            3-10x slower than 1 (they spin-wait for each other), hence the default of 1.
        fp16: when loading a model on CPU, merge its LoRA adapter and store the LLM's linear
            weights in fp16, which cuts decoding time by a third to a half with the same transcripts
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
        pre_roll_secs: float = 0.3,
        min_speech_secs: float = 0.25,
        max_segment_seconds: float = 25.0,
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
        self._device = _resolve_device(device)
        self._num_threads = num_threads
        self._fp16 = fp16
        self._shared = shared_model(
            instance if instance is not None else self._settings.model, self._device, num_threads, fp16
        )
        self._partial_interval = partial_interval
        self._max_segment_seconds = max_segment_seconds
        self._vad = VadBuffer(vad_params, pre_roll_secs)
        self._min_speech_samples = round(min_speech_secs * SAMPLE_RATE)
        self._convert = _AudioConverter()
        self._frame_format = (SAMPLE_RATE, 1)

        # Input-path state (event loop only).
        self._upstream_vad = False
        self._in_utterance = False
        self._heard_speech = False  # our VAD heard speech in this utterance, so a pause can be held
        self._voiced = 0  # samples of voiced audio in this utterance
        self._hold_blocked = False
        self._held: list[np.ndarray] = []
        # Decode task state.
        self._commands: deque = deque()
        self._wake = asyncio.Event()
        self._interrupt = threading.Event()  # abandons the in-flight partial or preview (or final, on cancel)
        self._inflight: str | None = None  # "partial", "preview" or "final" while one runs
        self._decode_task: asyncio.Task | None = None
        self._decode_failed = False  # the decode task died: nothing is queued until it is restarted

    @property
    def model(self) -> TinyAudioModel:
        """The model this service transcribes with (shared by every service that loaded the same one)."""
        return self._shared.model

    @property
    def backlog_seconds(self) -> float:
        """Seconds of audio queued for the decoder and not yet fed: near 0 while it keeps up."""
        return sum(c.samples.size for c in self._commands if isinstance(c, _Audio)) / SAMPLE_RATE

    def can_generate_metrics(self) -> bool:
        return True

    def language_to_service_language(self, language: Language) -> str | None:
        return "en" if _is_english(language) else None

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self, frame: StartFrame):
        await super().start(frame)
        if self._decode_task is None:
            self._start_decode_task()

    def _start_decode_task(self) -> None:
        self._decode_failed = False
        self._decode_task = self.create_task(self._decode_loop(), name="tiny_audio_decode")

    async def stop(self, frame: EndFrame):
        """Finish the utterance in progress (its final is pushed), then stop."""
        if self._decode_task is not None:
            await self._flush_audio()
            self._end_utterance()
            self._send(None)
            await self._decode_task
            self._decode_task = None
        await super().stop(frame)

    async def cancel(self, frame: CancelFrame):
        await self._cancel_decode_task()
        await super().cancel(frame)

    async def cleanup(self):
        await super().cleanup()
        await self._cancel_decode_task()
        await self._vad.cleanup()

    async def _cancel_decode_task(self) -> None:
        self._interrupt.set()
        if self._decode_task is not None:
            await self.cancel_task(self._decode_task)
            self._decode_task = None
        self._commands.clear()
        self._in_utterance = False
        self._held.clear()

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
            shared = await asyncio.to_thread(shared_model, source, self._device, self._num_threads, self._fp16)
        except Exception as e:
            self._settings.model = previous
            self._sync_model_name_to_metrics()
            await self.push_error(f"{self}: could not load model {source!r}: {e}", exception=e)
            return
        self._send(_Switch(shared))

    # -- input path -------------------------------------------------------------------------

    async def process_audio_frame(self, frame: InputAudioRawFrame, direction: FrameDirection):
        self._frame_format = (frame.sample_rate, frame.num_channels)
        await super().process_audio_frame(frame, direction)

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, SpeechControlParamsFrame) and frame.vad_params is not None:
            self._upstream_vad = True
            self._vad.set_params(frame.vad_params)
        elif isinstance(frame, VADUserStartedSpeakingFrame):
            self._upstream_vad = True
            if not self._in_utterance and not self.is_muted:
                self._begin_utterance(self._vad.pre_roll(frame.start_secs), frame.start_secs)
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self._upstream_vad = True
            await self._flush_audio()
            self._end_utterance()
        elif isinstance(frame, STTMuteFrame) and frame.mute and not self._upstream_vad:
            await self._flush_audio()
            self._end_utterance()  # no audio will reach the built-in VAD to end it

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame | None, None]:
        """Convert and route one audio frame; transcripts come from the decode task."""
        try:
            pcm = self._convert(audio, *self._frame_format)
        except (AudioInputError, ValueError) as e:
            logger.warning(f"{self}: skipping unusable audio frame: {e}")
            yield None
            return
        if pcm:
            event = await self._vad.process(pcm)
            if event is VadEvent.STARTED and not self._upstream_vad and not self._in_utterance:
                # The pre-roll includes this frame.
                self._begin_utterance(self._vad.pre_roll(), self._vad.params.start_secs)
            elif self._in_utterance:
                self._route(_pcm_to_float(pcm))
            if event is VadEvent.STOPPED and not self._upstream_vad and self._in_utterance:
                await self.start_ttfb_metrics(start_time=time.time() - self._vad.params.stop_secs)
                await self._flush_audio()
                self._end_utterance()
        yield None

    async def _flush_audio(self) -> None:
        """Route the audio the resampler still holds (the utterance's last milliseconds) before a stop."""
        pcm = self._convert.flush()
        if pcm:
            await self._vad.process(pcm)  # keeps the VAD's ring and state in step with the audio
            if self._in_utterance:
                self._route(_pcm_to_float(pcm))

    def _begin_utterance(self, pre_roll: bytes, start_secs: float) -> None:
        """Open an utterance; ``start_secs`` of speech confirmed the VAD's start, so they count as voiced."""
        self._in_utterance = True
        self._voiced = round(start_secs * SAMPLE_RATE)
        self._heard_speech = self._vad.is_speech
        self._hold_blocked = False
        self._held.clear()
        self._send(_Start())
        if pre_roll:
            self._send(_Audio(_pcm_to_float(pre_roll)))

    def _route(self, samples: np.ndarray) -> None:
        """Feed speech to the decoder; hold back a pause, previewing the final when it begins."""
        if self._vad.is_speech:
            self._heard_speech, self._hold_blocked = True, False
            self._voiced += samples.size
        elif self._heard_speech and not self._hold_blocked:
            self._held.append(samples)
            if len(self._held) == 1:
                self._send(_Preview())
            if sum(map(len, self._held)) > (self._vad.params.stop_secs + HOLD_MARGIN_SECS) * SAMPLE_RATE:
                self._hold_blocked = True  # the upstream VAD heard no pause here: feed what was held
                self._release_held()
            return
        self._release_held()
        self._send(_Audio(samples))

    def _release_held(self) -> None:
        if self._held:
            self._send(_Audio(np.concatenate(self._held)))
            self._held.clear()

    def _end_utterance(self) -> None:
        """Close the utterance; audio held in its closing pause is dropped."""
        if not self._in_utterance:
            return
        self._in_utterance = False
        self._held.clear()
        self.request_finalize()
        self._send(_Stop(self._user_id, self._voiced >= self._min_speech_samples))

    def _send(self, command: Any) -> None:
        if self._decode_failed:
            return  # nothing would ever take it off the queue
        # A partial is dropped for anything but more audio; a previewed final when speech resumes
        # (unless the stop already came: then it is the final).
        audio = isinstance(command, _Audio)
        resumed = audio and not any(isinstance(c, _Stop) for c in self._commands)
        if (self._inflight == "partial" and not audio) or (self._inflight == "preview" and resumed):
            self._interrupt.set()
        self._commands.append(command)
        self._wake.set()

    # -- decode task ------------------------------------------------------------------------

    async def _decode_loop(self) -> None:
        try:
            session = _Session(self._shared, await self._new_decoder(self._shared))
        except Exception as e:
            await self._decode_task_died(e)
            return
        while True:
            try:
                if self._commands:
                    command = self._commands.popleft()
                    if command is None:
                        return
                    await self._handle(session, command)
                elif session.partial_due:
                    await self._partial(session)
                else:
                    self._wake.clear()
                    await self._wake.wait()
            except Exception as e:  # a failed step costs one transcript, never the pipeline
                await self.push_error(f"{self}: transcription failed: {e}", exception=e)

    async def _decode_task_died(self, error: Exception) -> None:
        """Nothing can be transcribed any more: say so upstream (fatal) and stop queueing audio."""
        self._decode_failed = True
        self._commands.clear()
        self._held.clear()
        self._in_utterance = False
        logger.error(f"{self}: the decode task stopped, nothing will be transcribed: {error}")
        # Pipecat 1.14's form of a fatal error: the processor becomes unusable (no more audio reaches
        # run_stt) and the pipeline worker applies its ProcessorUnusablePolicy.
        await self.push_error(
            f"{self}: speech-to-text stopped: {error}", exception=error, force_treat_as_permanent=True
        )

    async def _handle(self, session: _Session, command: Any) -> None:
        decoder, run = session.decoder, session.shared.run
        if isinstance(command, _Audio):
            parts = [command.samples]
            while self._commands and isinstance(self._commands[0], _Audio):
                parts.append(self._commands.popleft().samples)
            session.holding = False
            await run(decoder.feed, np.concatenate(parts))
        elif isinstance(command, _Start):
            if session.pending_switch is not None:
                await self._switch(session, session.pending_switch)
            await session.shared.run(session.decoder.reset)
            session.active, session.holding, session.last_text = True, False, ""
            session.next_partial_at = self._partial_interval
        elif isinstance(command, _Preview):
            if any(isinstance(c, _Audio) for c in self._commands):
                return  # speech resumed before the preview could start
            session.holding = True
            text = await self._interruptible("preview", run, decoder.finalize)
            stopping = any(isinstance(c, _Stop) for c in self._commands)  # then the final follows at once
            if text and text != session.last_text and not stopping:
                session.last_text = text
                await self._push_interim(text)
        elif isinstance(command, _Stop):
            session.active = False
            await self._finalize(session, command.user_id, command.enough_speech)
        elif isinstance(command, _Switch):
            if session.active:
                session.pending_switch = command.shared
            else:
                await self._switch(session, command.shared)

    async def _partial(self, session: _Session) -> None:
        started = time.perf_counter()
        hypothesis = await self._interruptible("partial", session.shared.run, session.decoder.partial)
        # Partials are best effort: the next waits for at least PARTIAL_DUTY times this one's cost in
        # new audio, so on a slow machine they thin out instead of falling behind the speaker.
        gap = max(self._partial_interval, PARTIAL_DUTY * (time.perf_counter() - started))
        session.next_partial_at = session.decoder.audio_seconds + gap
        if hypothesis is not None and hypothesis.text and hypothesis.text != session.last_text:
            session.last_text = hypothesis.text
            await self._push_interim(hypothesis.text, hypothesis)

    async def _switch(self, session: _Session, shared: SharedModel) -> None:
        session.shared = self._shared = shared
        session.decoder = await self._new_decoder(shared)
        session.pending_switch = None

    async def _new_decoder(self, shared: SharedModel) -> StreamingDecoder:
        return await shared.run(
            functools.partial(StreamingDecoder, shared.model, max_segment_seconds=self._max_segment_seconds)
        )

    async def _interruptible(self, kind: str, run: Callable, method: Callable) -> Any:
        self._interrupt.clear()
        self._inflight = kind
        try:
            return await run(method, self._interrupt)
        finally:
            self._inflight = None

    async def _finalize(self, session: _Session, user_id: str, enough_speech: bool = True) -> None:
        if not enough_speech:
            logger.debug(f"{self}: less than min_speech_secs of voiced audio: no final")
            text = ""
            await session.shared.run(session.decoder.reset)
        else:
            await self.start_processing_metrics()
            try:
                # Interruptible like a partial, so cancel() need not wait for the whole decode.
                text = await self._interruptible("final", session.shared.run, session.decoder.finalize)
            finally:
                await session.shared.run(session.decoder.reset)
                await self.stop_processing_metrics()
        if not text:  # nothing said: no transcript, and no latency to report
            self.confirm_finalize()  # the finalize request is answered, with nothing to transcribe
            await self._cancel_ttfb_timeout()
            await self.cancel_ttfb_metrics()
            return
        await self.emit_stt_usage_metrics()
        self.confirm_finalize()
        await self.push_frame(
            TranscriptionFrame(text, user_id, time_now_iso8601(), Language.EN, finalized=True),
        )
        await self._handle_transcription(text, True, Language.EN)
        logger.debug(f"{self}: final transcript [{text}]")

    async def _push_interim(self, text: str, result: Any = None) -> None:
        await self.push_frame(InterimTranscriptionFrame(text, self._user_id, time_now_iso8601(), Language.EN, result))

    @traced_stt
    async def _handle_transcription(self, transcript: str, is_final: bool, language: Language | None = None):
        """Tracing hook for a final transcript."""
