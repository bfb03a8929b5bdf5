"""The shipped default model in a real Pipecat pipeline: ``TinyAudioSTT()`` with no arguments."""

from __future__ import annotations

import numpy as np
import pytest
from pipecat.frames.frames import InterimTranscriptionFrame, TranscriptionFrame
from pipecat.tests.utils import run_test
from streaming_helpers import one_torch_thread  # noqa: F401 (an autouse fixture)
from test_stt_service import audio_frames

from pipecat_tiny_audio import TinyAudioSTT
from trainer.synth import colored_noise

RATE = 16000


def breathing(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Soft, low-pitched noise swells, one every 2.5 s: an open microphone near someone's nose."""
    t = np.arange(round(seconds * RATE)) / RATE
    swell = np.clip(np.sin(2 * np.pi * t / 2.5), 0, None) ** 2
    return 0.02 * swell * colored_noise("brown", t.size, rng)


@pytest.fixture(scope="module")
def thirty_seconds_without_speech() -> np.ndarray:
    rng = np.random.default_rng(0)
    hum = 0.003 * np.sin(2 * np.pi * 50 * np.arange(10 * RATE) / RATE)
    parts = [
        np.zeros(10 * RATE),  # digital silence
        0.01 * colored_noise("pink", 10 * RATE, rng) + hum,  # room noise and mains hum at about -40 dBFS
        breathing(10, rng),
    ]
    return np.concatenate(parts).astype(np.float32)


async def test_noise_silence_and_breathing_give_no_transcript(thirty_seconds_without_speech):
    stt = TinyAudioSTT()  # the shipped model, its built-in Silero VAD and fp16-weight LLM
    down, _ = await run_test(stt, frames_to_send=audio_frames(thirty_seconds_without_speech))
    texts = [f.text for f in down if isinstance(f, (TranscriptionFrame, InterimTranscriptionFrame))]
    assert texts == []
