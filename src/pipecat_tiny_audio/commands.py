"""What a session's input path tells its decode loop, and the queue that carries it.

The input path (Pipecat's event loop, every 20 ms) must never wait for the model, so it only
queues commands; the decode loop takes them in order. The queue also holds the policy that keeps a
session close to real time: a partial in flight is given up when anything but more audio arrives, or
when the audio waiting behind it passes :data:`PARTIAL_BACKLOG_SECONDS`, and a speculative final when
speech resumes. When the model cannot keep up, the audio waiting here
says how far behind real time the session is: when its oldest audio has waited :data:`CATCH_UP_SECONDS`,
the utterance's decoder stops following it chunk by chunk (a model with whole-utterance finals then skips the work of
partials until the utterance ends), a warning says when it is further behind, and past
:data:`MAX_BACKLOG_SECONDS` new audio is dropped so memory stays bounded.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from loguru import logger

from pipecat_tiny_audio.audio import SAMPLE_RATE

# A session whose audio has waited this long stops following its utterance chunk by chunk. Eight sessions on
# 2 cores (benchmarks/concurrency.py): 0.75 s kept them 1.4 s behind at worst, finals p90 964 ms; 0.25 s 1.1 s,
# 520 ms, and most of their interims.
CATCH_UP_SECONDS = 0.25
BEHIND_WARNING_SECONDS = 1.0  # warn when a session's oldest queued audio has waited this long
PARTIAL_BACKLOG_SECONDS = 0.25  # a partial that keeps this much of its session's audio waiting is given up
WARNING_INTERVAL_SECONDS = 5.0
MAX_BACKLOG_SECONDS = 20.0  # past this, new audio is dropped: a transcript that late is of no use


class Interrupt(threading.Event):
    """Gives up a partial or final in flight. A scheduler's threads check it between LLM passes; a
    :class:`~pipecat_tiny_audio.model_process.ModelProcess` has :meth:`call_on_set` tell its child at once
    (set on the event loop, so the loop need not poll it while the child works)."""

    def __init__(self) -> None:
        super().__init__()
        self._callbacks: list[Callable[[], object]] = []

    def set(self) -> None:
        super().set()
        for callback in list(self._callbacks):
            callback()

    def call_on_set(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` when the event is set (now, if it is), until :meth:`forget`."""
        self._callbacks.append(callback)
        if self.is_set():
            callback()

    def forget(self, callback: Callable[[], object]) -> None:
        if callback in self._callbacks:
            self._callbacks.remove(callback)


@dataclass
class Start:
    """An utterance begins; ``continues``: moments after the last one stopped (a turn split at a pause)."""

    continues: bool = False


@dataclass
class Audio:
    """16 kHz mono float32 samples of the utterance, and when they were queued (``time.monotonic()``)."""

    samples: np.ndarray
    received: float = field(default_factory=time.monotonic)


@dataclass
class Preview:
    """A pause began: compute the final now, in case the stop follows."""


@dataclass
class Stop:
    """The utterance ended; ``enough_speech``: it had at least min_speech_secs of voiced audio."""

    user_id: str
    enough_speech: bool = True


@dataclass
class Switch:
    """Use another model from the next utterance on (a :class:`~pipecat_tiny_audio.shared_model.SharedModel`)."""

    shared: Any


class CommandQueue:
    """The commands of one session, in order, plus what its decode loop is doing right now.

    ``None`` as a command ends the decode loop. Consecutive audio commands are taken as one.

    Args:
        name: the session's name, for log messages.
    """

    def __init__(self, name: str):
        self._name = name
        self._commands: deque = deque()
        self._queued = 0  # samples in the queued audio commands
        self._wake = asyncio.Event()
        self._warned_at: dict[str, float] = {}  # when each kind of warning was last logged
        self.interrupt = Interrupt()  # gives up the in-flight partial or preview (or final, on cancel)
        self.inflight: str | None = None  # "partial", "preview" or "final" while one runs
        self.closed = False  # the decode loop is gone: nothing is queued any more

    def __bool__(self) -> bool:
        return bool(self._commands)

    @property
    def backlog_seconds(self) -> float:
        """Seconds of audio queued for the decoder and not yet fed: how far behind real time it is."""
        return self._queued / SAMPLE_RATE

    @property
    def lag_seconds(self) -> float:
        """How long the oldest queued audio has waited: how far behind real time the session is. (A
        pre-roll queued all at once is not behind, though it is a lot of audio.)"""
        audio = next((c for c in self._commands if isinstance(c, Audio)), None)
        return 0.0 if audio is None else time.monotonic() - audio.received

    def send(self, command: Any) -> None:
        """Queue ``command``, giving up whatever in-flight work it makes pointless."""
        if self.closed:
            return
        audio = isinstance(command, Audio)
        if audio and not self._admit(command.samples.size):
            return
        # A partial is given up for anything but more audio, or when its session's audio piles up behind
        # it (the CPU is short: a late interim is worth less than keeping up); a previewed final when
        # speech resumes (unless the stop already came: then it is the final).
        resumed = audio and not self.has(Stop)
        late = self.backlog_seconds > PARTIAL_BACKLOG_SECONDS
        if (self.inflight == "partial" and (not audio or late)) or (self.inflight == "preview" and resumed):
            self.interrupt.set()
        self._commands.append(command)
        self._wake.set()

    def take(self) -> Any:
        """The next command (the queue must not be empty); audio commands in a row come as one."""
        command = self._commands.popleft()
        if isinstance(command, Audio):
            parts = [command.samples]
            while self._commands and isinstance(self._commands[0], Audio):
                parts.append(self._commands.popleft().samples)
            self._queued -= sum(p.size for p in parts)
            command = Audio(np.concatenate(parts), command.received)
        return command

    def has(self, kind: type) -> bool:
        """Whether a command of type ``kind`` is queued."""
        return any(isinstance(c, kind) for c in self._commands)

    async def wait(self) -> None:
        """Until something is sent."""
        self._wake.clear()
        await self._wake.wait()

    @contextmanager
    def inflight_as(self, kind: str) -> Iterator[Interrupt]:
        """Mark work of ``kind`` as in flight; yields the event that gives it up."""
        self.interrupt.clear()
        self.inflight = kind
        try:
            yield self.interrupt
        finally:
            self.inflight = None

    def clear(self) -> None:
        self._commands.clear()
        self._queued = 0

    def close(self) -> None:
        """Drop everything and refuse what follows: nobody will take it."""
        self.closed = True
        self.clear()

    def _admit(self, samples: int) -> bool:
        """Count ``samples`` into the backlog, or refuse them past the limit; warn when behind."""
        behind = (self._queued + samples) / SAMPLE_RATE
        dropping = behind > MAX_BACKLOG_SECONDS
        if dropping:
            self._warn(
                "dropping", f"{behind:.1f} s behind real time: new audio past {MAX_BACKLOG_SECONDS:g} s is dropped"
            )
            return False
        lag = self.lag_seconds
        if lag > BEHIND_WARNING_SECONDS:
            self._warn("behind", f"{lag:.1f} s behind real time: interim transcripts thin out first")
        self._queued += samples
        return True

    def _warn(self, kind: str, what: str) -> None:
        now = time.monotonic()
        if now - self._warned_at.get(kind, -math.inf) >= WARNING_INTERVAL_SECONDS:
            self._warned_at[kind] = now
            logger.warning(f"{self._name}: {what} (the CPU cannot keep up with the sessions sharing this model)")
