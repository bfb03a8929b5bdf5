"""ModelProcess: a shared model in a child process of its own, for many live sessions.

Pipecat serves every session from one event loop (frames, Silero VAD, resampling), and a Python
process runs one thread's bytecode at a time. With eight sessions on one model in the same process,
the scheduler's two threads were busy 90-94 % of the time but on the CPU only half of it
(``benchmarks/concurrency.py``): they waited for the interpreter lock the pipelines held. In a child
process the model has an interpreter of its own.

The child loads the model once and runs every session's :class:`~pipecat_tiny_audio.streaming.StreamingDecoder`
on its :class:`~pipecat_tiny_audio.batch_scheduler.BatchScheduler`, exactly as in-process (the same
steps, priorities and batching, so the same transcripts). The parent sends each call over a pipe and
awaits the answer; a :class:`ProcessDecoder` answers the calls a
:class:`~pipecat_tiny_audio.shared_model.ScheduledDecoder` does. The child ends when the parent's end
of the pipe closes (the parent exited) and ignores Ctrl-C, which the parent handles. It is started as
``python -m pipecat_tiny_audio.model_process`` rather than by ``multiprocessing``, so a script that builds its
services at import time (no ``if __name__ == "__main__"``) is not run again in the child.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import itertools
import json
import pickle
import signal
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
from loguru import logger

from pipecat_tiny_audio.audio import SAMPLE_RATE
from pipecat_tiny_audio.batch_scheduler import Priority, SchedulerStats, settle_from_thread
from pipecat_tiny_audio.commands import Interrupt
from pipecat_tiny_audio.streaming import Hypothesis


class ModelProcess:
    """A model loaded in a child process, decoding every session that opens a decoder on it.

    Construction blocks until the model is loaded (as an in-process load does) and raises
    ``RuntimeError`` with the child's reason when it cannot be.

    Args:
        source: a checkpoint folder, hub id or ``"default"``.
        device: ``"cpu"`` or ``"cuda"``.
        fp16: as :func:`~pipecat_tiny_audio.shared_model.load_model`.
        num_threads: torch threads of each of the scheduler's two threads in the child.
    """

    def __init__(self, source: str, device: str, fp16: bool, num_threads: int | None):
        self.name, self.num_threads = source, num_threads
        ours, theirs = socket.socketpair()
        settings = {"source": source, "device": device, "fp16": fp16, "num_threads": num_threads}
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__, str(theirs.fileno()), json.dumps(settings)], pass_fds=[theirs.fileno()]
        )
        theirs.close()
        self._conn = Connection(ours.detach())
        try:
            status, detail = self._conn.recv()
        except EOFError:
            status, detail = "failed", f"the process exited (exit code {self._process.wait()})"
        if status != "ready":
            self._conn.close()
            raise RuntimeError(f"could not load Tiny Audio model {source!r} in a process of its own: {detail}")
        self._lock = threading.Lock()  # the pending table and the pipe's sending end
        self._pending: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future]] = {}
        self._requests = itertools.count()
        self._sessions = itertools.count()
        self._exited: str | None = None  # why no more answers will come
        self._reader = threading.Thread(target=self._read_answers, name="tiny-audio-model-answers", daemon=True)
        self._reader.start()
        atexit.register(self.close)

    @property
    def alive(self) -> bool:
        return self._exited is None

    async def open_decoder(self, **options: Any) -> ProcessDecoder:
        """A new session's decoder in the child (``options``: :class:`StreamingDecoder`'s keyword arguments)."""
        session = next(self._sessions)
        await self.request("open", session, options)
        return ProcessDecoder(self, session)

    async def stats(self) -> SchedulerStats:
        """What the child's scheduler has run so far."""
        return await self.request("stats")

    async def request(self, op: str, *args: Any, interrupt: Interrupt | None = None) -> Any:
        """Send one call to the child and await its answer (its exception re-raised here).

        ``interrupt`` set or this coroutine cancelled: the child gives the call up before its next LLM
        pass, as the in-process scheduler does.
        """
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._lock:
            if self._exited is not None:
                raise RuntimeError(self._exited)
            request = next(self._requests)
            self._pending[request] = (loop, future)
            try:
                self._conn.send((request, op, args))
            except OSError:
                del self._pending[request]
                raise RuntimeError(self._child_exited()) from None
        if interrupt is None:
            return await future
        give_up = functools.partial(self._post, "interrupt", request)
        interrupt.call_on_set(give_up)
        try:
            return await future
        except asyncio.CancelledError:
            if not interrupt.is_set():
                give_up()
            raise
        finally:
            interrupt.forget(give_up)

    def close(self) -> None:
        """End the child: it exits when it reads the exit call (or the pipe's end, should this process die)."""
        with self._lock:
            if self._exited is None:
                self._exited = "the Tiny Audio model process was closed"
                with contextlib.suppress(OSError):
                    self._conn.send((None, "exit", ()))
        try:
            self._process.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            self._process.terminate()

    def _post(self, op: str, *args: Any) -> bool:
        """Send a call nobody awaits an answer to; False when the child is gone."""
        with self._lock:
            if self._exited is not None:
                return False
            try:
                self._conn.send((None, op, args))
            except OSError:
                self._child_exited()
                return False
            return True

    def _child_exited(self) -> str:
        """Why no more answers will come, once the child is gone (the pipe may break before the reader sees
        its end); logged once. Called with the lock held."""
        if self._exited is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=5.0)
            self._exited = f"the Tiny Audio model process exited (exit code {self._process.returncode})"
            logger.error(f"{self._exited}: nothing more can be transcribed with {self.name!r}")
        return self._exited

    def _read_answers(self) -> None:
        while True:
            try:
                request, error, result = self._conn.recv()
            except (EOFError, OSError):
                break
            with self._lock:
                loop, future = self._pending.pop(request)
            settle_from_thread(loop, future, result, error)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=5.0)
        with self._lock:
            self._child_exited()
            pending, self._pending = self._pending, {}
        for loop, future in pending.values():
            settle_from_thread(loop, future, None, RuntimeError(self._exited))


class ProcessDecoder:
    """One session's decoder in a :class:`ModelProcess`: the calls of a
    :class:`~pipecat_tiny_audio.shared_model.ScheduledDecoder`, answered by the child."""

    def __init__(self, process: ModelProcess, session: int):
        self._process = process
        self._session = session
        self._samples = 0  # fed since the last reset, as the decoder in the child counts them

    @property
    def audio_seconds(self) -> float:
        """Seconds of audio fed since the last reset."""
        return self._samples / SAMPLE_RATE

    async def feed(self, samples: np.ndarray, priority: Priority = Priority.AUDIO, follow: bool = True) -> None:
        await self._process.request("feed", self._session, samples, int(priority), follow)
        self._samples += np.asarray(samples).size

    async def reset(self, priority: Priority = Priority.AUDIO, context: str = "") -> None:
        await self._process.request("reset", self._session, int(priority), context)
        self._samples = 0

    async def partial(self, interrupt: Interrupt | None = None) -> Hypothesis | None:
        return await self._process.request("partial", self._session, interrupt=interrupt)

    async def finalize(self, interrupt: Interrupt | None = None) -> str | None:
        return await self._process.request("finalize", self._session, interrupt=interrupt)

    def close(self) -> None:
        """Free the decoder in the child."""
        self._process._post("close", self._session)


# -- the child --------------------------------------------------------------------------------


def _serve(conn: Connection, source: str, device: str, fp16: bool, num_threads: int | None) -> None:
    """The child process: load the model, then answer calls until the parent's end of the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from pipecat_tiny_audio.shared_model import shared_model

    try:
        shared = shared_model(source, device, num_threads, fp16)
    except Exception as e:
        conn.send(("failed", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", None))
    asyncio.run(_Server(conn, shared).serve())


class _Server:
    """The child's side: the sessions' decoders on the shared model, one task per call."""

    def __init__(self, conn, shared) -> None:
        self._conn = conn
        self._shared = shared
        self._decoders: dict[int, Any] = {}
        self._interrupts: dict[int, threading.Event] = {}
        self._tasks: set[asyncio.Task] = set()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                request, op, args = await loop.run_in_executor(None, self._conn.recv)
            except (EOFError, OSError):
                return
            if op == "exit":
                return
            if op == "interrupt":
                if (event := self._interrupts.get(args[0])) is not None:
                    event.set()
            elif op == "close":
                self._decoders.pop(args[0], None)
            else:
                if op in ("partial", "finalize"):  # registered before the next message can interrupt it
                    self._interrupts[request] = threading.Event()
                task = asyncio.create_task(self._answer(request, op, args))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _answer(self, request: int, op: str, args: tuple) -> None:
        try:
            answer = (request, None, await self._call(request, op, args))
        except Exception as e:
            answer = (request, _picklable(e), None)
        finally:
            self._interrupts.pop(request, None)
        self._conn.send(answer)

    async def _call(self, request: int, op: str, args: tuple) -> Any:
        if op == "stats":
            return await self._shared.stats()
        if op == "open":
            session, options = args
            self._decoders[session] = await self._shared.open_decoder(**options)
            return None
        decoder = self._decoders[args[0]]
        if op == "feed":
            return await decoder.feed(args[1], Priority(args[2]), args[3])
        if op == "reset":
            return await decoder.reset(Priority(args[1]), args[2])
        if op in ("partial", "finalize"):
            return await getattr(decoder, op)(self._interrupts[request])
        raise ValueError(f"unknown model process call {op!r}")


def _picklable(error: Exception) -> Exception:
    """``error`` itself if it crosses the pipe, else a RuntimeError that says what it was."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")


if __name__ == "__main__":  # the child: python -m pipecat_tiny_audio.model_process FD SETTINGS
    _serve(Connection(int(sys.argv[1])), **json.loads(sys.argv[2]))
