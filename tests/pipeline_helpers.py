"""Shared by the tests that run TinyAudioSTT in real Pipecat pipelines: paced frames and checks."""

from __future__ import annotations

import numpy as np
import soxr
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.frames.frames import (
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    TranscriptionFrame,
    UserAudioRawFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.tests.utils import SleepFrame
from pipecat.transcriptions.language import Language

from pipecat_tiny_audio import TinyAudioSTT

FRAME_SECONDS = 0.02
PACE = 0.01  # seconds of wall time per 20 ms frame: twice real time, still streaming
# A transport's pace. Interims are best effort: at twice real time a busy CPU may rightly spend all its
# time keeping up with the audio, so tests that expect an interim during speech stream in real time.
REAL_TIME = FRAME_SECONDS
EVENTS = (VADUserStartedSpeakingFrame, VADUserStoppedSpeakingFrame, InterimTranscriptionFrame, TranscriptionFrame)


def utterance(audio: np.ndarray, lead: float = 0.5, tail: float = 1.0) -> np.ndarray:
    return np.concatenate([np.zeros(round(lead * 16000), np.float32), audio, np.zeros(round(tail * 16000), np.float32)])


def audio_frames(
    audio: np.ndarray, *, rate: int = 16000, channels: int = 1, user_id: str | None = None, pace: float = PACE
) -> list:
    """20 ms frames of 16 kHz mono float ``audio``, resampled/duplicated to ``rate``/``channels``, one every
    ``pace`` seconds of wall time."""
    if rate != 16000:
        audio = soxr.resample(audio, 16000, rate)
    pcm = np.repeat((np.clip(audio, -1, 1) * 32767).astype("<i2"), channels).tobytes()
    step = round(FRAME_SECONDS * rate) * 2 * channels
    frames = []
    for start in range(0, len(pcm), step):
        chunk = pcm[start : start + step]
        if user_id is None:
            frames.append(InputAudioRawFrame(audio=chunk, sample_rate=rate, num_channels=channels))
        else:
            frames.append(UserAudioRawFrame(audio=chunk, sample_rate=rate, num_channels=channels, user_id=user_id))
        frames.append(SleepFrame(sleep=pace))
    return frames


def with_vad(stt: TinyAudioSTT) -> Pipeline:
    return Pipeline([VADProcessor(vad_analyzer=SileroVADAnalyzer(params=VADParams(stop_secs=0.2))), stt])


def events(frames) -> list:
    return [f for f in frames if isinstance(f, EVENTS)]


def finals(frames) -> list[TranscriptionFrame]:
    return [f for f in frames if isinstance(f, TranscriptionFrame)]


def assert_well_formed(frames, user_id: str = "") -> None:
    """Every final is finalized, non-empty and follows a stop; interims change text; no duplicates."""
    stops_pending, last_interim = 0, None
    for frame in events(frames):
        if isinstance(frame, VADUserStoppedSpeakingFrame):
            stops_pending += 1
        elif isinstance(frame, InterimTranscriptionFrame):
            assert frame.text and frame.text != last_interim and frame.user_id == user_id
            last_interim = frame.text
        elif isinstance(frame, TranscriptionFrame):
            assert frame.finalized and frame.text.strip() and frame.user_id == user_id
            assert frame.language == Language.EN
            if any(isinstance(f, VADUserStoppedSpeakingFrame) for f in frames):
                assert stops_pending > 0, "a final before its VAD stop"
                stops_pending -= 1
            last_interim = None
