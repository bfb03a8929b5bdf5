"""Stream an audio file through TinyAudioSTT in real time and print the transcripts as they come.

Run it from the repository root:

    python examples/transcribe_file.py audio.wav            # any file soundfile reads: wav, flac, ogg
    python examples/transcribe_file.py audio.wav --model PATH

The file is sent through a Pipecat pipeline in 20 ms frames at real-time pace, as a microphone
would send it: Silero VAD (``VADProcessor``) -> TinyAudioSTT -> a printer. Each line shows when
it happened, counted from the start of the audio, for example:

    [  0.41 s] speech started
    [  0.98 s] interim  hello what
    [  1.63 s] interim  hello what time is
    [  2.02 s] speech stopped
    [  2.05 s] final    hello what time is it?   (30 ms after the VAD stop)

Interim transcripts arrive while the speech is still going on; the final one arrives right after
the VAD reports the end of the utterance.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import numpy as np
import soundfile as sf
from loguru import logger
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import (
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner

from pipecat_tiny_audio import SAMPLE_RATE, TinyAudioSTT, to_model_audio

FRAME_SECS = 0.02
TRAILING_SILENCE_SECS = 1.0  # lets the VAD see the end of the last utterance


class TranscriptPrinter(FrameProcessor):
    """Prints VAD events and transcripts with the time since streaming started."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.start = time.monotonic()
        self.stopped_at: float | None = None  # the VAD stop that the next final belongs to

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.start:7.2f} s] {text}", flush=True)

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, VADUserStartedSpeakingFrame):
            self.stopped_at = None  # a late final can't be matched to its stop any more
            self.say("speech started")
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self.stopped_at = time.monotonic()
            self.say("speech stopped")
        elif isinstance(frame, InterimTranscriptionFrame):
            self.say(f"interim  {frame.text}")
        elif isinstance(frame, TranscriptionFrame):
            note = ""
            if self.stopped_at is not None:
                note = f"   ({(time.monotonic() - self.stopped_at) * 1000:.0f} ms after the VAD stop)"
                self.stopped_at = None
            self.say(f"final    {frame.text}{note}")
        await self.push_frame(frame, direction)


async def stream_file(worker: PipelineWorker, printer: TranscriptPrinter, audio: np.ndarray) -> None:
    """Queue 20 ms frames at real-time pace, then end the pipeline (the STT pushes its last final first)."""
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    pcm += bytes(int(TRAILING_SILENCE_SECS * SAMPLE_RATE) * 2)
    chunk = int(FRAME_SECS * SAMPLE_RATE) * 2
    printer.start = start = time.monotonic()
    for n, offset in enumerate(range(0, len(pcm), chunk)):
        frame = InputAudioRawFrame(audio=pcm[offset : offset + chunk], sample_rate=SAMPLE_RATE, num_channels=1)
        await worker.queue_frame(frame)
        await asyncio.sleep(max(0.0, start + (n + 1) * FRAME_SECS - time.monotonic()))
    await worker.queue_frame(EndFrame())


async def main(path: str, model: str | None) -> None:
    audio, rate = sf.read(path, dtype="float32", always_2d=False)
    audio = to_model_audio(audio, rate)  # 16 kHz mono float32
    print(f"{path}: {len(audio) / SAMPLE_RATE:.1f} s, streaming in real time", flush=True)

    printer = TranscriptPrinter()
    pipeline = Pipeline([VADProcessor(vad_analyzer=SileroVADAnalyzer()), TinyAudioSTT(model=model), printer])
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(audio_in_sample_rate=SAMPLE_RATE),
        enable_rtvi=False,
        idle_timeout_secs=None,
    )

    @worker.event_handler("on_pipeline_started")
    async def on_started(worker, frame):  # the model is loaded: start the clock and the audio
        worker.create_task(stream_file(worker, printer, audio), "stream_file")

    runner = WorkerRunner(handle_sigint=True)
    await runner.add_workers(worker)
    await runner.run()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio", help="audio file (wav, flac, ogg, ...)")
    parser.add_argument("--model", default=None, help="TinyAudio checkpoint folder (default: the bundled model)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show Pipecat's debug log")
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="DEBUG" if args.verbose else "WARNING")
    asyncio.run(main(args.audio, args.model))
