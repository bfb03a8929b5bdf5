"""The espeak-ng TTS service speaks text as audio frames at the pipeline's output rate."""

from __future__ import annotations

import shutil

import pytest
from pipecat.frames.frames import TTSAudioRawFrame, TTSSpeakFrame, TTSStartedFrame, TTSStoppedFrame
from pipecat.pipeline.worker import PipelineParams
from pipecat.tests.utils import SleepFrame, run_test

from pipecat_tiny_audio.espeak_tts import EspeakTTSService

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


async def test_speaks_at_the_output_rate():
    tts = EspeakTTSService(sample_rate=24000)
    down, _ = await run_test(
        tts,
        frames_to_send=[TTSSpeakFrame("Hello there. It is ten past eleven."), SleepFrame(sleep=4.0)],
        pipeline_params=PipelineParams(audio_out_sample_rate=24000),
    )
    kinds = [type(f) for f in down]
    assert TTSStartedFrame in kinds and TTSStoppedFrame in kinds
    audio = [f for f in down if isinstance(f, TTSAudioRawFrame)]
    assert {f.sample_rate for f in audio} == {24000} and {f.num_channels for f in audio} == {1}
    seconds = sum(len(f.audio) for f in audio) / 2 / 24000
    assert 1.0 < seconds < 6.0, seconds


def test_missing_binary_is_a_clear_error():
    with pytest.raises(RuntimeError, match="apt-get install espeak-ng"):
        EspeakTTSService(executable="no-such-espeak")
