"""Soak test: N sessions × M minutes of speech and silence, in real time, in one process.

Each session is its own pipeline, ``VADProcessor(Silero, stop_secs=0.2) → TinyAudioSTT``, and all
sessions share one model (as every ``TinyAudioSTT`` in a process does). Each is fed 20 ms frames
paced by the clock: a clip of speech, then 1.5–4 s of silence, over and over. What it watches:

- RSS every 10 s (memory must level off, not grow with time);
- drift: how far the feeders fell behind the clock, in % of the audio streamed (event-loop lag);
- finals delivered vs utterances sent (nothing lost), and final latency p50/p90 (VAD stop → final);
- the largest backlog: audio queued for a session's decoder and not yet fed (``backlog_seconds``).

    python benchmarks/soak.py --sessions 3 --minutes 10
    python benchmarks/soak.py --sessions 2 --minutes 2 --model tiny   # a tiny random model: the harness alone

Speech comes from ``shared/eval/dev`` when it is there, else from espeak-ng. With no trained model
shipped, ``--model default`` is the untrained stand-in (Whisper base + SmolLM2-135M): right in cost,
nonsense in words.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

DEV_SET = Path(__file__).resolve().parents[2] / "shared" / "eval" / "dev"
FRAME = 0.02
SAMPLE_RATE = 16000
GAP_SECONDS = (1.5, 4.0)
REPORT_EVERY = 10.0
SENTENCES = [
    "could you tell me what time it is right now",
    "please book a table for two people tonight",
    "what is the weather like in paris this weekend",
    "turn off the lights in the kitchen",
]


def load_speech(limit: int = 30) -> list[np.ndarray]:
    """16 kHz mono float32 clips: the dev set's first ``limit``, else espeak-ng sentences."""
    import soundfile as sf

    from pipecat_tiny_audio.audio import to_model_audio

    if (DEV_SET / "manifest.jsonl").is_file():
        rows = [json.loads(line) for line in (DEV_SET / "manifest.jsonl").read_text().splitlines() if line.strip()]
        return [to_model_audio(*sf.read(DEV_SET / row["audio"], dtype="float32")) for row in rows[:limit]]
    if shutil.which("espeak-ng") is None:
        raise SystemExit("no speech: neither shared/eval/dev nor espeak-ng is available")
    clips = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, text in enumerate(SENTENCES):
            wav = Path(tmp) / f"{i}.wav"
            subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), text], check=True)
            clips.append(to_model_audio(*sf.read(wav, dtype="float32")))
    return clips


def tiny_model():
    """The test suite's tiny random-weight model, made to write text: exercises the harness, not the model."""
    import sys

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import tiny_sources
    from streaming_helpers import make_chatty

    from pipecat_tiny_audio import TinyAudioConfig, TinyAudioModel

    encoder, llm = tiny_sources(Path(tempfile.mkdtemp(prefix="soak-tiny-")))
    torch.manual_seed(0)
    config = TinyAudioConfig(
        encoder_source=encoder,
        llm_source=llm,
        projector_hidden_dim=32,
        lora_rank=4,
        chunk_seconds=0.48,
        left_context_seconds=1.0,
    )
    return make_chatty(TinyAudioModel(config).eval())


def percentile_ms(seconds: list[float], q: float) -> float:
    return float(np.percentile(seconds, q) * 1000) if seconds else float("nan")


async def soak(args: argparse.Namespace) -> dict:
    import psutil
    from pipecat.audio.vad.silero import SileroVADAnalyzer
    from pipecat.audio.vad.vad_analyzer import VADParams
    from pipecat.frames.frames import (
        EndFrame,
        InputAudioRawFrame,
        TranscriptionFrame,
        VADUserStoppedSpeakingFrame,
    )
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineWorker
    from pipecat.processors.audio.vad_processor import VADProcessor
    from pipecat.processors.frame_processor import FrameProcessor
    from pipecat.workers.runner import WorkerRunner

    from pipecat_tiny_audio import TinyAudioSTT

    clips = load_speech()
    model = tiny_model() if args.model == "tiny" else args.model
    started = time.perf_counter()
    stts = [TinyAudioSTT(model=model, num_threads=args.threads) for _ in range(args.sessions)]
    print(f"model {args.model!r} loaded in {time.perf_counter() - started:.1f} s; {len(clips)} clips", flush=True)

    stops: list[list[float]] = [[] for _ in stts]
    finals: list[list[float]] = [[] for _ in stts]

    class Recorder(FrameProcessor):
        def __init__(self, session: int):
            super().__init__()
            self.session = session

        async def process_frame(self, frame, direction):
            await super().process_frame(frame, direction)
            if isinstance(frame, VADUserStoppedSpeakingFrame):
                stops[self.session].append(frame.timestamp)
            elif isinstance(frame, TranscriptionFrame):
                finals[self.session].append(time.time())
            await self.push_frame(frame, direction)

    workers = [
        PipelineWorker(
            Pipeline([VADProcessor(vad_analyzer=SileroVADAnalyzer(params=VADParams(stop_secs=0.2))), stt, Recorder(i)]),
            cancel_on_idle_timeout=False,
        )
        for i, stt in enumerate(stts)
    ]
    utterances = [0] * len(stts)
    drift = [0.0] * len(stts)  # the most a feeder was ever behind its clock, in seconds
    streamed = args.minutes * 60.0
    frame_samples = round(FRAME * SAMPLE_RATE)

    async def feed(session: int) -> None:
        rng = np.random.default_rng(session)
        worker = workers[session]
        await asyncio.sleep(1.0)  # the StartFrame reaches every processor
        clock = start = time.time()
        sent = 0.0

        async def send(samples: np.ndarray) -> None:
            nonlocal clock, sent
            pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
            for i in range(0, pcm.size, frame_samples):
                chunk = pcm[i : i + frame_samples]
                await worker.queue_frame(InputAudioRawFrame(chunk.tobytes(), SAMPLE_RATE, 1))
                clock += chunk.size / SAMPLE_RATE
                drift[session] = max(drift[session], time.time() - clock)
                await asyncio.sleep(max(0.0, clock - time.time()))
            sent = clock - start

        await send(np.zeros(SAMPLE_RATE // 2, np.float32))
        while sent < streamed:
            await send(clips[int(rng.integers(len(clips)))])
            utterances[session] += 1
            await send(np.zeros(round(rng.uniform(*GAP_SECONDS) * SAMPLE_RATE), np.float32))
        await send(np.zeros(3 * SAMPLE_RATE, np.float32))  # time for the last final
        await worker.queue_frame(EndFrame())

    process = psutil.Process()
    rss: list[float] = []
    backlog = [0.0] * len(stts)

    async def watch() -> None:
        t0 = next_report = time.time()
        while True:
            for i, stt in enumerate(stts):
                backlog[i] = max(backlog[i], stt.backlog_seconds)
            if time.time() >= next_report:
                rss.append(process.memory_info().rss / 2**20)
                done = sum(map(len, finals))
                print(
                    f"t={time.time() - t0:5.0f} s  rss {rss[-1]:7.1f} MB  utterances {sum(utterances)}  "
                    f"finals {done}  backlog now {max(s.backlog_seconds for s in stts):.2f} s",
                    flush=True,
                )
                next_report += REPORT_EVERY
            await asyncio.sleep(0.1)

    watcher = asyncio.create_task(watch())
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(*workers)
    await asyncio.gather(runner.run(), *(feed(i) for i in range(len(stts))))
    watcher.cancel()

    latencies = []
    for session_stops, session_finals in zip(stops, finals, strict=True):
        for stop in session_stops:
            after = [t for t in session_finals if t >= stop]
            if after:
                latencies.append(after[0] - stop)
    return {
        "sessions": args.sessions,
        "minutes": args.minutes,
        "model": args.model,
        "utterances": sum(utterances),
        "vad_stops": sum(map(len, stops)),
        "finals": sum(map(len, finals)),
        "final_p50_ms": percentile_ms(latencies, 50),
        "final_p90_ms": percentile_ms(latencies, 90),
        "drift_percent": 100 * max(drift) / streamed,
        "largest_backlog_s": max(backlog),
        "rss_first_mb": rss[0] if rss else float("nan"),
        "rss_last_mb": rss[-1] if rss else float("nan"),
        "rss_peak_mb": max(rss) if rss else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--model", default="default", help="'default', a checkpoint folder, or 'tiny'")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the model's worker")
    args = parser.parse_args()
    result = asyncio.run(soak(args))
    print(
        f"\n{result['sessions']} sessions x {result['minutes']:g} min, model {result['model']!r}:\n"
        f"  utterances sent {result['utterances']}, VAD stops {result['vad_stops']}, finals {result['finals']}\n"
        f"  final latency p50 {result['final_p50_ms']:.0f} ms, p90 {result['final_p90_ms']:.0f} ms\n"
        f"  drift {result['drift_percent']:.2f} % of the streamed time, "
        f"largest backlog {result['largest_backlog_s']:.2f} s\n"
        f"  RSS first {result['rss_first_mb']:.0f} MB, last {result['rss_last_mb']:.0f} MB, "
        f"peak {result['rss_peak_mb']:.0f} MB"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
