"""BatchScheduler: the model work of every live session, on two threads, LLM passes batched.

Every call into a shared model (encoding a session's new audio, a partial, a final) arrives as
*steps* (see :mod:`~pipecat_tiny_audio.decoding`): a generator that computes until it needs an
LLM pass and then yields it. The scheduler's thread advances the most urgent job (the encoder lane helps, below),
and when the most urgent jobs all wait for LLM passes it runs those passes as one ragged batch
(:func:`~pipecat_tiny_audio.ragged_forward.ragged_forward`), so N sessions' decoding steps read
the LLM's weights once instead of N times. A recogniser's LLM passes are such passes too: each
chunk's scoring of its beam's new words, and the final's of its N best hypotheses, both token trees
(:mod:`~pipecat_tiny_audio.rescoring`).

Urgency, in this order:

- ``FINAL``: a final transcript (or the speculative final computed when a pause begins). A waiting
  final is never queued behind partials: it is advanced before anything else, and its passes are
  batched only with other finals'. At most the unit of work already running delays it.
- ``AUDIO``: encoding a session's new audio (and other bookkeeping), which keeps every session
  real-time.
- ``PARTIAL``: interim transcripts, best effort; they run only when nothing more urgent can, so
  they are the first to thin out when the CPU is short. A partial that other jobs have kept
  waiting for :data:`PARTIAL_PATIENCE` is skipped (it ends with ``None``): its session's audio
  queues up behind it, and a late interim is worth less than keeping up.

Whoever submits a job may give up on it (its ``interrupt`` event): a job given up on, or a skipped
partial, gets :class:`~pipecat_tiny_audio.decoding.Interrupted` thrown in at once instead of its
next LLM pass (or before it starts), so it never holds its session up waiting for its turn.

A batch of passes is capped at :data:`BATCH_TOKENS` new tokens (but always takes the most urgent
pass): past that a pass is compute-bound, so a bigger batch saves little time and would only
keep a final that arrives meanwhile waiting longer.

Work that is not an LLM pass (encoding a chunk of audio) arrives as a
:class:`~pipecat_tiny_audio.decoding.Compute`. It runs on a second thread, the *encoder lane*, while
the scheduler's thread runs LLM passes, so both cores work; a session's steps still run in order,
since its job waits for its compute. When the LLM has nothing to do, the scheduler's thread encodes
too; when no encoding waits and the scheduler's thread is inside a pass or an encoding, the lane
takes the most urgent final or audio work itself (advancing a job, or a batch of passes), so a
second session's chunk or final does not wait for the first's pass (four sessions,
``benchmarks/concurrency.py --sessions 4``, four interleaved runs each: final p90 682-824 ms against
864-1161 ms with the lane encoding only). Partials never take the lane: best effort stays on one
core. A job is *held* by one thread at a time, so its steps still run in order. When only finals
wait (the lane idle, no other session's work queued), their LLM passes borrow the lane's threads
(:attr:`BatchScheduler.wide_threads`, twice ``num_threads`` when the cores allow), and the lane starts
nothing until the pass ends. Under load
they do not: the borrowed thread's spinning cost the lane more than the pass gained (N=4: final p90
813 → 1004 ms when any final's pass borrowed it whenever the lane was idle). On
this 2-core CPU the LLM gives the same logits on one thread or two (a check in
``tests/test_recogniser.py``), so a transcript does not depend on it.
Encoder work is not batched: each session's chunks are encoded one at a time. Measured with
``python -m benchmarks.batching``, eight 1.96 s windows took 392 ms one at a time and 330 ms as
one batch, but the batch changes the encoder's output (by up to 3e-4: other matmul blocking),
which would make a transcript depend on how many other people are talking.

The scheduler knows nothing of Pipecat; its threads start with the first job and end after
:data:`IDLE_SECONDS` without work.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, TypeVar

import torch
from loguru import logger

from pipecat_tiny_audio.decoding import Compute, Forward, Interrupted, Steps
from pipecat_tiny_audio.ragged_forward import ragged_forward

T = TypeVar("T")
# `python -m benchmarks.batching`: a pass over 25 new tokens took 56 ms alone and 47 ms each in a
# batch of four (49 ms in eights), while single-token steps cost 4x less batched: little is gained
# past ~50 tokens.
BATCH_TOKENS = 64
PARTIAL_PATIENCE = 0.5  # seconds a partial may wait while other jobs run before it is skipped
IDLE_SECONDS = 2.0
_SCHEDULERS: weakref.WeakSet[BatchScheduler] = weakref.WeakSet()  # whose threads to end at exit


@dataclass
class SchedulerStats:
    """What the scheduler has run: ``passes / batches`` is the mean number of LLM passes per batch.

    The busy and CPU seconds of its two threads say which of them limits how many sessions keep up:
    a thread busy nearly all the time is the bottleneck, and CPU well below busy time means it waits
    for the GIL (other Python of the process) or for cores.
    """

    batches: int = 0  # batches of LLM passes (one forward each, for a Llama-family LLM)
    passes: int = 0  # LLM passes of decodes
    wide_batches: int = 0  # of those, finals' batches run on the lane's threads too
    lane_computes: int = 0  # computes (chunk encodings) run on the encoder lane
    lane_batches: int = 0  # batches of LLM passes run on the encoder lane (finals' or audio's)
    busy_seconds: float = 0.0  # wall time the scheduler's thread spent on work
    cpu_seconds: float = 0.0  # its CPU time meanwhile
    lane_busy_seconds: float = 0.0  # the same for the encoder lane
    lane_cpu_seconds: float = 0.0


class Priority(IntEnum):
    """How urgent a job is; lower runs first."""

    FINAL = 0
    AUDIO = 1
    PARTIAL = 2


@dataclass(eq=False)
class _Job:
    steps: Steps
    priority: Priority
    order: int  # submission order: first come, first served within a priority
    interrupt: threading.Event | None
    deliver: Callable[[Any, BaseException | None], None]
    forward: Forward | None = None  # the LLM pass it waits for
    compute: Compute | None = None  # the other work it waits for
    held: bool = False  # a thread works on it now (its compute, its pass or its next steps)
    reply: Any = field(default=None)  # what to send into its steps next: logits, a result, None or an exception
    finished: bool = False
    moved_at: float = field(default_factory=time.perf_counter)  # when it was submitted or last ran

    @property
    def urgency(self) -> tuple[int, int]:
        return self.priority, self.order

    @property
    def ready(self) -> bool:
        """It can be advanced now: it waits for neither an LLM pass nor a compute."""
        return self.forward is None and self.compute is None

    @property
    def given_up(self) -> bool:
        """Abandon it now: its caller gave up on it, or it is a partial that waited too long."""
        if self.interrupt is not None and self.interrupt.is_set():
            return True
        return self.priority is Priority.PARTIAL and time.perf_counter() - self.moved_at > PARTIAL_PATIENCE


def _call_steps(fn: Callable[..., T], args: tuple) -> Steps[T]:
    """A plain call as steps: no LLM pass to share, it just runs in its turn."""
    yield from ()
    return fn(*args)


class BatchScheduler:
    """Runs jobs of many sessions on one model, most urgent first, LLM passes batched.

    Args:
        model: a :class:`~pipecat_tiny_audio.modeling.TinyAudioModel` (its ``llm`` runs the passes).
        num_threads: torch intra-op threads set on each of its two threads (``None``: torch's default).
    """

    def __init__(self, model: Any, num_threads: int | None = None):
        self.model = model
        self.num_threads = num_threads
        # Threads for a final's pass while the lane is idle: the lane's too, if there are cores for both.
        both = 2 * num_threads if num_threads is not None else None
        self.wide_threads = both if both is not None and both <= (os.cpu_count() or 1) else None
        self._wide = False  # a pass runs on the lane's threads: the lane starts nothing
        self._busy = False  # the scheduler's thread is running a unit of work
        self._jobs: list[_Job] = []
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._lane: threading.Thread | None = None
        self._order = itertools.count()
        self._exiting = False
        self.stats = SchedulerStats()
        _SCHEDULERS.add(self)

    async def run(self, steps: Steps[T], priority: Priority, interrupt: threading.Event | None = None) -> T:
        """Run ``steps`` on the scheduler's thread and return their result.

        ``interrupt`` set: the steps get :class:`~pipecat_tiny_audio.decoding.Interrupted` instead of
        their next LLM pass (and a job that lets it escape returns ``None``).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()

        def deliver(result: Any, error: BaseException | None) -> None:
            settle_from_thread(loop, future, result, error)

        with self._changed:
            self._jobs.append(_Job(steps, priority, next(self._order), interrupt, deliver))
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="tiny-audio-scheduler", daemon=True)
                self._thread.start()
            if self._lane is None:
                self._lane = threading.Thread(target=self._serve_lane, name="tiny-audio-encoder-lane", daemon=True)
                self._lane.start()
            self._changed.notify_all()
        return await future

    async def call(self, fn: Callable[..., T], *args: Any, priority: Priority = Priority.AUDIO) -> T:
        """Run ``fn(*args)`` on the scheduler's thread in its turn (every call into a model goes there)."""
        return await self.run(_call_steps(fn, args), priority)

    def _end_threads(self) -> None:
        """End the threads after their current unit of work (the interpreter is exiting)."""
        with self._changed:
            self._exiting = True
            self._changed.notify_all()
            threads = [t for t in (self._thread, self._lane) if t is not None]
        for thread in threads:
            thread.join(timeout=10.0)

    # -- the two threads ---------------------------------------------------------------------

    def _serve(self) -> None:
        """The scheduler's thread: the most urgent unit of work, LLM passes batched."""
        if self.num_threads is not None:
            torch.set_num_threads(self.num_threads)
        with torch.no_grad():
            while True:
                with self._changed:
                    if not self._jobs and not self._exiting:
                        self._changed.wait(IDLE_SECONDS)
                    if not self._jobs or self._exiting:
                        self._thread = None
                        self._changed.notify_all()  # the lane ends too
                        return
                    unit = self._claim(lane=False)
                    if unit is None:  # every job waits for work the lane holds
                        self._changed.wait(IDLE_SECONDS)
                        continue
                    if unit[0] != "advance":  # a long unit: the lane may help with finals and audio meanwhile
                        self._busy = True
                        self._changed.notify_all()
                started, cpu = time.perf_counter(), time.thread_time()
                self._run(unit, lane=False)
                with self._changed:
                    self._busy = False
                self.stats.busy_seconds += time.perf_counter() - started
                self.stats.cpu_seconds += time.thread_time() - cpu

    def _serve_lane(self) -> None:
        """The encoder lane: the most urgent waiting compute, or a final's or audio's work while the
        scheduler's thread is busy with something else."""
        if self.num_threads is not None:
            torch.set_num_threads(self.num_threads)
        with torch.no_grad():
            while True:
                with self._changed:
                    unit = None
                    while not self._exiting and self._thread is not None:
                        if not self._wide and (unit := self._claim(lane=True)) is not None:
                            break
                        self._changed.wait(IDLE_SECONDS)
                    if unit is None:
                        self._lane = None
                        return
                started, cpu = time.perf_counter(), time.thread_time()
                self._run(unit, lane=True)
                self.stats.lane_busy_seconds += time.perf_counter() - started
                self.stats.lane_cpu_seconds += time.thread_time() - cpu

    def _claim(self, lane: bool) -> tuple[str, list[_Job]] | None:
        """The next unit of work for a thread, its jobs marked held; call with the lock held.

        Units: ``("compute", [job])``, ``("advance", [job])`` or ``("forward", batch)``. The scheduler's
        thread computes only what is more urgent than any job it could advance or pass; the lane
        computes first, and otherwise takes final or audio work only while the scheduler's thread is
        busy (a partial never takes both cores).
        """
        free = [j for j in self._jobs if not j.held]
        for job in free:
            if job.given_up:  # ending it costs next to nothing: no need to wait for its turn
                job.forward, job.compute, job.reply = None, None, Interrupted()
                return self._hold("advance", [job])
        computes = [j for j in free if j.compute is not None]
        if lane:
            if computes:
                return self._hold("compute", [min(computes, key=lambda j: j.urgency)])
            if not self._busy:
                return None
            free = [j for j in free if j.priority is not Priority.PARTIAL]
        ready = min((j for j in free if j.ready), key=lambda j: j.urgency, default=None)
        waiting = sorted((j for j in free if j.forward is not None), key=lambda j: j.urgency)
        others = min([j.priority for j in [ready, *waiting[:1]] if j is not None], default=None)
        compute = min(computes, key=lambda j: j.urgency, default=None)
        if compute is not None and (others is None or compute.priority < others):
            return self._hold("compute", [compute])
        if ready is not None and (not waiting or ready.priority <= waiting[0].priority):
            return self._hold("advance", [ready])
        if not waiting:
            return None
        batch, tokens = [], 0
        for job in waiting:
            size = job.forward.inputs_embeds.shape[1]
            if job.priority != waiting[0].priority or (batch and tokens + size > BATCH_TOKENS):
                break
            batch.append(job)
            tokens += size
        if not lane:  # only finals waiting, and the lane idle: the pass borrows the lane's threads
            self._wide = self.wide_threads is not None and all(
                j.priority is Priority.FINAL and (j in batch or not j.held) for j in self._jobs
            )
        return self._hold("forward", batch)

    @staticmethod
    def _hold(kind: str, jobs: list[_Job]) -> tuple[str, list[_Job]]:
        for job in jobs:
            job.held = True
        return kind, jobs

    def _run(self, unit: tuple[str, list[_Job]], lane: bool) -> None:
        kind, jobs = unit
        try:
            if kind == "compute":
                self._compute(jobs[0], lane)
            elif kind == "advance":
                self._advance(jobs[0], lane)
            else:
                self._forward(jobs, lane)
        except Exception as error:  # a fault of the scheduler's own: fail its jobs, never leave them waiting
            logger.exception(f"Tiny Audio scheduler failed: {error}")
            for job in jobs:
                if not job.finished:
                    job.steps.close()
                    self._finish(job, None, error)

    def _release(self, jobs: list[_Job], replies: list[Any], lane: bool) -> None:
        """A unit is done: each reply goes into its job's steps next, and either thread may take them.

        The scheduler's thread is no longer busy from here, so the lane does not grab the work it is
        about to take itself (a lone final's next pass runs wide instead).
        """
        with self._changed:
            if not lane:
                self._busy = False
            for job, reply in zip(jobs, replies, strict=True):
                job.reply, job.held, job.moved_at = reply, False, time.perf_counter()
            self._changed.notify_all()

    def _compute(self, job: _Job, lane: bool) -> None:
        try:
            reply = job.compute.fn()
        except Exception as error:  # thrown into its steps, which may handle it
            reply = error
        job.compute = None
        with self._changed:
            self.stats.lane_computes += lane
        self._release([job], [reply], lane)

    def _advance(self, job: _Job, lane: bool) -> None:
        reply, job.reply = job.reply, None
        try:
            request = job.steps.throw(reply) if isinstance(reply, BaseException) else job.steps.send(reply)
        except StopIteration as done:
            self._finish(job, done.value, None)
        except Interrupted:  # given up before it could catch it
            self._finish(job, None, None)
        except Exception as error:
            self._finish(job, None, error)
        else:
            job.forward = request if isinstance(request, Forward) else None
            job.compute = request if isinstance(request, Compute) else None
            self._release([job], [None], lane)

    def _forward(self, batch: list[_Job], lane: bool) -> None:
        wide = not lane and self._wide
        try:
            if wide:
                torch.set_num_threads(self.wide_threads)
            logits = ragged_forward(self.model.llm, [job.forward for job in batch])
        except Exception as error:
            for job in batch:
                job.steps.close()
                self._finish(job, None, error)
            return
        finally:
            if wide:
                torch.set_num_threads(self.num_threads)
                with self._changed:
                    self._wide = False
                    self.stats.wide_batches += 1
                    self._changed.notify_all()  # the lane may start again
        with self._changed:
            self.stats.batches += 1
            self.stats.passes += len(batch)
            self.stats.lane_batches += lane
        for job in batch:
            job.forward = None
        self._release(batch, logits, lane)

    def _finish(self, job: _Job, result: Any, error: BaseException | None) -> None:
        job.finished = True
        with self._changed:
            self._jobs.remove(job)
        job.deliver(result, error)


def settle_from_thread(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future, result: Any, error: BaseException | None
) -> None:
    """Give ``future`` (of ``loop``) its result or ``error`` from any thread; nothing if its caller was
    cancelled or its loop is closed (nobody is waiting)."""

    def settle() -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(settle)


@atexit.register
def _end_all_threads() -> None:
    """A daemon thread still inside a torch call when Python finalizes aborts the process
    ("terminate called without an active exception"), so the threads end first."""
    for scheduler in list(_SCHEDULERS):
        scheduler._end_threads()
