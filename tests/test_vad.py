"""The built-in VAD (real Silero): segmentation, pre-roll, and skipping Silero under an upstream VAD."""

from __future__ import annotations

import numpy as np
import pytest

from pipecat_tiny_audio.audio import SAMPLE_RATE
from pipecat_tiny_audio.vad import VadBuffer, VadEvent

BLOCK = 320  # 20 ms, as a transport sends it


def pcm_blocks(samples: np.ndarray) -> list[bytes]:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    return [pcm[i : i + 2 * BLOCK] for i in range(0, len(pcm), 2 * BLOCK)]


@pytest.fixture(scope="module")
def turn(say) -> np.ndarray:
    """One second of silence, a sentence, one second of silence."""
    silence = np.zeros(SAMPLE_RATE, dtype=np.float32)
    return np.concatenate([silence, say("set a timer for ten minutes"), silence])


async def test_vad_hears_a_turn_start_and_stop(turn):
    vad = VadBuffer()
    events = [(i, event) for i, block in enumerate(pcm_blocks(turn)) if (event := await vad.process(block))]
    await vad.cleanup()

    assert [event for _, event in events] == [VadEvent.STARTED, VadEvent.STOPPED]
    started_at = events[0][0] * BLOCK / SAMPLE_RATE
    assert 1.0 < started_at < 1.6  # speech begins at 1 s; confirming it takes start_secs


async def test_a_vad_that_skipped_the_start_knows_speech_is_going_on_after_one_block(turn):
    """Under an upstream VAD, Silero is skipped between utterances: the first analysed block catches up."""
    blocks = pcm_blocks(turn)
    onset = round(1.8 * SAMPLE_RATE / BLOCK)  # 0.8 s into the speech
    vad = VadBuffer()
    for block in blocks[:onset]:
        vad.skip(block)
    assert not vad.is_speech  # nothing analysed yet
    pre_roll = vad.pre_roll()

    event = await vad.process(blocks[onset])
    await vad.cleanup()

    assert event is VadEvent.STARTED
    assert vad.is_speech
    assert pre_roll == b"".join(blocks[:onset])[-len(pre_roll) :]  # skipped audio still makes the pre-roll
    assert len(pre_roll) == round((vad.params.start_secs + 0.6) * SAMPLE_RATE) * 2


async def test_a_pre_roll_never_reaches_back_into_what_the_last_utterance_transcribed(turn):
    """A VAD that splits a turn at a short pause starts again moments later: the words before are sent,
    but not the closing pause the decoder never got (a soft word the VAD took for silence may be in it)."""
    blocks = pcm_blocks(turn)
    vad = VadBuffer(pre_roll_secs=1.0)
    for block in blocks[:100]:
        vad.skip(block)
    vad.utterance_ended(unused_samples=5 * BLOCK)  # its last 0.1 s was the held closing pause
    for block in blocks[100:110]:  # 0.2 s after the end
        vad.skip(block)

    assert vad.pre_roll() == b"".join(blocks[95:110])
    vad.utterance_ended()
    assert vad.pre_roll() == b""
    await vad.cleanup()
