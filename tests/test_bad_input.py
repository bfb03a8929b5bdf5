"""The bad-input and lifecycle sweep, kept: what a new user might send, through a real pipeline.

Every case runs TinyAudioSTT with real Silero VAD on a tiny random-weight model and checks that
nothing crashes, nothing hangs (each pipeline run has a deadline) and the transcripts are right
in structure: one final per utterance of speech, none for silence, noise bursts or blips.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from pipecat.frames.frames import (
    ErrorFrame,
    Frame,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.tests.utils import run_test
from pipeline_helpers import assert_well_formed, audio_frames, finals, utterance, with_vad
from streaming_helpers import make_chatty, one_torch_thread  # noqa: F401 (an autouse fixture)

from pipecat_tiny_audio import AudioInputError, StreamingDecoder, TinyAudioModel, TinyAudioSTT

DEADLINE = 90.0  # seconds for one pipeline run: far beyond what any case needs, so a hang fails


@pytest.fixture
def model(tiny_model) -> TinyAudioModel:
    """A fast chunked-mode model that writes audio-dependent text."""
    tiny_model.config.chunk_seconds, tiny_model.config.left_context_seconds = 0.48, 1.0
    return make_chatty(tiny_model)


@pytest.fixture(scope="module")
def speech(say) -> np.ndarray:
    return say("could you tell me what time it is")


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * 16000), np.float32)


@dataclass
class Case:
    """Frames to send (built from the speech) and how many finals must come out."""

    frames: Callable[[np.ndarray], list[Frame]]
    finals: int
    upstream_vad: bool = False  # put a VADProcessor in front, as a transport's VAD would be


def odd_frames(speech: np.ndarray) -> list[Frame]:
    odd = [b"", b"\x00", b"\x00" * 7]  # 0, 1 and 7 bytes: no whole int16 sample (or stereo frame)
    return [
        *(InputAudioRawFrame(audio=pcm, sample_rate=16000, num_channels=1) for pcm in odd),
        InputAudioRawFrame(audio=b"\x00" * 6, sample_rate=16000, num_channels=2),
        *audio_frames(utterance(speech)),
    ]


def clipped_noise(_: np.ndarray) -> list[Frame]:
    noise = np.clip(np.random.default_rng(0).normal(0, 2.0, 32000), -1, 1).astype(np.float32)  # hard-clipped
    return audio_frames(np.concatenate([silence(0.3), noise, silence(1.0)]))


def blips(speech: np.ndarray) -> list[Frame]:
    blip = speech[8000:8800]  # 50 ms of a word, three times with pauses
    return audio_frames(np.concatenate([silence(0.5), blip, silence(1.0), blip, silence(1.0), blip, silence(1.0)]))


def blip_between_vad_frames(speech: np.ndarray) -> list[Frame]:
    return [VADUserStartedSpeakingFrame(), *audio_frames(speech[8000:8800]), VADUserStoppedSpeakingFrame()]


def stop_without_start(speech: np.ndarray) -> list[Frame]:
    return [VADUserStoppedSpeakingFrame(), *audio_frames(silence(0.3)), VADUserStoppedSpeakingFrame()]


CASES = {
    **{
        f"{rate / 1000:g}kHz": Case(lambda s, rate=rate: audio_frames(utterance(s), rate=rate), 1)
        for rate in (8000, 11025, 16000, 22050, 44100, 48000)
    },
    "upstream-vad": Case(lambda s: audio_frames(utterance(s)), 1, upstream_vad=True),
    "stereo": Case(lambda s: audio_frames(utterance(s), rate=48000, channels=2), 1),
    "6-channels": Case(lambda s: audio_frames(utterance(s), rate=48000, channels=6), 1),
    "0-1-7-byte-frames": Case(odd_frames, 1),
    "silence": Case(lambda _: audio_frames(silence(3.0)), 0),
    "clipped-noise": Case(clipped_noise, 0),
    "blips": Case(blips, 0),
    "blip-between-vad-start-and-stop": Case(blip_between_vad_frames, 0),
    "vad-stop-without-start": Case(stop_without_start, 0),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_bad_input_through_a_real_pipeline(model, speech, case):
    stt = TinyAudioSTT(model=model)
    pipeline = with_vad(stt) if case.upstream_vad else stt
    down, up = await asyncio.wait_for(run_test(pipeline, frames_to_send=case.frames(speech)), DEADLINE)
    assert_well_formed(down)
    assert len(finals(down)) == case.finals
    if case.finals == 0:
        assert not any(isinstance(f, InterimTranscriptionFrame) for f in down)
    assert not any(isinstance(f, ErrorFrame) for f in up)
    assert stt.is_usable


@pytest.mark.parametrize(
    "samples",
    [
        np.array([0.1, np.nan, 0.2], np.float32),
        np.array([0.1, np.inf, 0.2], np.float32),
        np.array([0.1, -np.inf, 0.2], np.float32),
    ],
    ids=["nan", "inf", "-inf"],
)
def test_nan_and_inf_are_refused_and_the_decoder_carries_on(model, speech, samples):
    decoder = StreamingDecoder(model)
    decoder.feed(speech[:8000])
    with pytest.raises(AudioInputError, match="NaN or Inf"):
        decoder.feed(samples)
    with pytest.raises(AudioInputError, match="NaN or Inf"):
        model.transcribe(samples)
    decoder.feed(speech[8000:])
    assert decoder.finalize() == model.transcribe(speech)
