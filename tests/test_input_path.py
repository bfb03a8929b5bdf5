"""The service's input path, part by part: the stream resampler and the command queue's backpressure."""

from __future__ import annotations

import time

import numpy as np
from loguru import logger

from pipecat_tiny_audio.commands import MAX_BACKLOG_SECONDS, PARTIAL_BACKLOG_SECONDS, Audio, CommandQueue, Stop
from pipecat_tiny_audio.resampling import StreamResampler


def tone(seconds: float, rate: int) -> bytes:
    t = np.arange(round(seconds * rate)) / rate
    return (0.2 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2").tobytes()


def test_the_resampler_follows_the_rate_down_and_back_to_16k():
    resample = StreamResampler()
    at_48k = resample(tone(0.2, 48000), 48000, 1)
    native = tone(0.1, 16000)
    after = resample(native, 16000, 1)  # what the 48 kHz stream held back comes first, then 16 kHz as is
    assert after.endswith(native)
    assert len(at_48k) + len(after) - len(native) == 2 * 3200  # 0.2 s at 16 kHz: nothing lost or repeated


def test_a_session_far_behind_real_time_warns_and_keeps_its_memory_bounded():
    queue = CommandQueue("TinyAudioSTT#0")
    warnings: list[str] = []
    sink = logger.add(lambda message: warnings.append(str(message)), level="WARNING")
    try:
        for _ in range(round(MAX_BACKLOG_SECONDS) + 5):  # one second of audio at a time, nothing taken
            queue.send(Audio(np.zeros(16000, np.float32)))
    finally:
        logger.remove(sink)
    assert queue.backlog_seconds == MAX_BACKLOG_SECONDS
    assert any("s behind real time" in w and "is dropped" in w for w in warnings)

    queue.send(Stop("alice"))
    audio = queue.take()  # the queued audio comes as one command, and the stop after it
    assert isinstance(audio, Audio) and audio.samples.size == MAX_BACKLOG_SECONDS * 16000
    assert isinstance(queue.take(), Stop) and queue.backlog_seconds == 0 and not queue


def test_how_far_behind_a_session_is_counts_how_long_its_oldest_audio_waited_not_how_much_there_is():
    queue = CommandQueue("TinyAudioSTT#0")
    queue.send(Audio(np.zeros(16000, np.float32)))  # a second of pre-roll at once: not behind
    assert queue.backlog_seconds == 1.0 and queue.lag_seconds < 0.5
    queue.clear()
    first = Audio(np.zeros(320, np.float32), received=time.monotonic() - 2.0)  # queued two seconds ago
    queue.send(first)
    queue.send(Audio(np.zeros(320, np.float32)))
    assert queue.lag_seconds >= 2.0
    taken = queue.take()  # the two as one command that has waited as long as its first part
    assert taken.samples.size == 640 and taken.received == first.received and queue.lag_seconds == 0.0


def test_a_partial_is_given_up_once_its_sessions_audio_piles_up_behind_it():
    queue = CommandQueue("TinyAudioSTT#0")
    frame = Audio(np.zeros(320, np.float32))  # 20 ms
    with queue.inflight_as("partial") as interrupt:
        for _ in range(round(PARTIAL_BACKLOG_SECONDS / 0.02)):
            queue.send(frame)
        assert not interrupt.is_set()  # a little audio may wait for a partial
        queue.send(frame)
        assert interrupt.is_set()  # more may not: the session would fall behind real time
