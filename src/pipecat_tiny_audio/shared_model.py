"""One model per process: every TinyAudioSTT that names the same model shares one load of it.

A model is keyed by its source and device (a local folder by its resolved path, however it is
spelled) and comes with the :class:`~pipecat_tiny_audio.batch_scheduler.BatchScheduler` that runs
every session's work on it. A session decodes through a :class:`ScheduledDecoder`; with
``process=True`` the model lives in a child process instead
(:class:`~pipecat_tiny_audio.model_process.ModelProcess`), whose decoders answer the same calls.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from pathlib import Path

import numpy as np
import torch
from loguru import logger

from pipecat_tiny_audio.batch_scheduler import BatchScheduler, Priority, SchedulerStats
from pipecat_tiny_audio.configuration import TinyAudioConfig
from pipecat_tiny_audio.model_process import ModelProcess
from pipecat_tiny_audio.modeling import TinyAudioModel, check_device
from pipecat_tiny_audio.streaming import Hypothesis, StreamingDecoder

DEFAULT_MODEL = "default"
DEFAULT_MODEL_DIR = Path(__file__).parent / "default_model"


class SharedModel:
    """A loaded model and the scheduler every call into it goes through."""

    def __init__(self, model: TinyAudioModel, name: str, num_threads: int | None = None):
        self.model = model
        self.name = name
        self.num_threads = num_threads
        self.scheduler = BatchScheduler(model, num_threads)

    async def open_decoder(self, **options) -> ScheduledDecoder:
        """A new session's decoder (``options``: :class:`StreamingDecoder`'s keyword arguments)."""
        decoder = await self.scheduler.call(lambda: StreamingDecoder(self.model, **options))
        return ScheduledDecoder(decoder, self.scheduler)

    async def stats(self) -> SchedulerStats:
        """What the scheduler has run so far."""
        return self.scheduler.stats


class ScheduledDecoder:
    """One session's :class:`StreamingDecoder`, every call run by the model's scheduler.

    ``interrupt`` (set from any thread) gives a partial or final up before its next LLM pass: it
    then returns ``None``. Priorities are the scheduler's (:class:`Priority`).
    """

    def __init__(self, decoder: StreamingDecoder, scheduler: BatchScheduler):
        self._decoder = decoder
        self._scheduler = scheduler

    @property
    def audio_seconds(self) -> float:
        """Seconds of audio fed since the last reset."""
        return self._decoder.audio_seconds

    async def feed(self, samples: np.ndarray, priority: Priority = Priority.AUDIO, follow: bool = True) -> None:
        await self._scheduler.run(self._decoder.feed_steps(samples, follow), priority)

    async def reset(self, priority: Priority = Priority.AUDIO, context: str = "") -> None:
        await self._scheduler.call(self._decoder.reset, context, priority=priority)

    async def partial(self, interrupt: threading.Event | None = None) -> Hypothesis | None:
        return await self._scheduler.run(self._decoder.partial_steps(), Priority.PARTIAL, interrupt)

    async def finalize(self, interrupt: threading.Event | None = None) -> str | None:
        return await self._scheduler.run(self._decoder.finalize_steps(), Priority.FINAL, interrupt)

    def close(self) -> None:
        """Nothing to free in this process (the decoder goes with its last reference)."""


_lock = threading.Lock()
_loaded: dict[tuple[str, str, bool], SharedModel] = {}
_processes: dict[tuple[str, str, bool], ModelProcess] = {}
_wrapped: weakref.WeakKeyDictionary[TinyAudioModel, SharedModel] = weakref.WeakKeyDictionary()


def resolve_device(device: str) -> str:
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


def _check_threads(shared: SharedModel | ModelProcess, num_threads: int | None) -> None:
    if num_threads != shared.num_threads:
        logger.warning(
            f"Tiny Audio model {shared.name!r} is already loaded with num_threads={shared.num_threads}; "
            f"num_threads={num_threads} is ignored (every service shares the model's one worker thread)"
        )


def shared_model(
    model: str | os.PathLike | TinyAudioModel,
    device: str = "cpu",
    num_threads: int | None = None,
    fp16: bool = True,
    process: bool = False,
) -> SharedModel | ModelProcess:
    """The process-wide :class:`SharedModel` for a model source (loaded once) or instance.

    ``num_threads`` applies when this call creates it (a later call asking for other threads gets
    a warning); ``fp16`` when it loads a source (an instance is used as it is). ``process``: the
    source's :class:`~pipecat_tiny_audio.model_process.ModelProcess` instead (one child process per
    source, shared like an in-process model; a loaded instance cannot move to another process).
    """
    if process and isinstance(model, TinyAudioModel):
        raise ValueError(
            "a loaded TinyAudioModel cannot run in a process of its own: pass its checkpoint folder or hub id"
        )
    with _lock:
        if isinstance(model, TinyAudioModel):
            if model not in _wrapped:
                _wrapped[model] = SharedModel(model, model.name_or_path or type(model).__name__, num_threads)
            else:
                _check_threads(_wrapped[model], num_threads)
            return _wrapped[model]
        key = (_source_key(model), resolve_device(device), fp16)
        loaded = _processes if process else _loaded
        if key not in loaded or (process and not loaded[key].alive):
            started = time.perf_counter()
            if process:
                loaded[key] = ModelProcess(*key, num_threads)
            else:
                loaded[key] = SharedModel(load_model(*key), key[0], num_threads)
            where = "in a process of its own" if process else "in this process"
            logger.info(
                f"Loaded Tiny Audio model {key[0]!r} on {key[1]} {where} in {time.perf_counter() - started:.1f} s"
            )
        else:
            _check_threads(loaded[key], num_threads)
        return loaded[key]
