"""Streaming benchmark: TinyAudioSTT vs Pipecat's WhisperSTTService, on audio streamed in real time.

Each system runs in its own subprocess (clean memory figures, no shared CPU), one after the
other in the same invocation. Clips from ``shared/eval/dev`` (or ``--manifest``) are streamed as 20 ms frames paced
by the clock through ``Pipeline([VADProcessor(Silero, stop_secs=0.2), stt])``, with silence
between clips, and every frame the STT emits is timestamped.

Figures: final latency (VAD stop → finalized transcript) p50/p90, first interim after speech
start, interims per utterance, WER (Whisper English normalizer + jiwer), real-time factor (CPU
seconds per streamed second), peak RSS, model load time.

    python benchmarks/streaming.py --limit 10
    python benchmarks/streaming.py --manifest data/synth8k/heldout/manifest.jsonl --limit 60   # unseen voices
    python benchmarks/streaming.py --model path/to/checkpoint --no-peer
    python benchmarks/streaming.py --breakdown   # decoder components, no pipeline
    python benchmarks/streaming.py --timeline    # the final's preview against the VAD stop
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DEV_SET = Path(__file__).resolve().parents[2] / "shared" / "eval" / "dev"
FRAME = 0.02
LEAD_SILENCE = 0.5
MIN_GAP, MAX_WAIT = 1.0, 6.0  # silence after a clip: at least this, and until its final arrives


def load_clips(limit: int | None, manifest: Path = DEV_SET / "manifest.jsonl") -> list[dict]:
    """The first ``limit`` clips of a JSONL manifest (``audio`` relative to its folder, ``text``)."""
    import soundfile as sf

    from pipecat_tiny_audio.audio import to_model_audio

    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    clips = []
    for row in rows[:limit]:
        audio, rate = sf.read(manifest.parent / row["audio"], dtype="float32")
        pcm = (to_model_audio(audio, rate) * 32767).astype("<i2").tobytes()
        clips.append({"text": row["text"], "pcm": pcm})
    return clips


def build_stt(system: str, args):
    if system == "ours":
        from pipecat_tiny_audio import TinyAudioSTT

        threads = {} if args.threads is None else {"num_threads": args.threads}  # else the service default
        pre_roll = {} if args.pre_roll is None else {"pre_roll_secs": args.pre_roll}
        return TinyAudioSTT(
            model=args.model,
            partial_interval=args.partial_interval,
            whole_utterance_final=not args.chunk_finals,
            model_process=args.model_process,
            **threads,
            **pre_roll,
        )
    from pipecat.services.whisper.stt import WhisperSTTService
    from pipecat.transcriptions.language import Language

    from pipecat_tiny_audio.sources import WHISPER_BASE, ct2_whisper_folder

    return WhisperSTTService(
        device="cpu",
        compute_type="int8",
        settings=WhisperSTTService.Settings(model=str(ct2_whisper_folder(WHISPER_BASE)), language=Language.EN),
    )


def recorder(events: list):
    """A pipeline stage that logs VAD starts/stops and transcripts into ``events`` as (time, kind, payload)."""
    from pipecat.frames.frames import (
        InterimTranscriptionFrame,
        TranscriptionFrame,
        VADUserStartedSpeakingFrame,
        VADUserStoppedSpeakingFrame,
    )
    from pipecat.processors.frame_processor import FrameProcessor

    class Recorder(FrameProcessor):
        async def process_frame(self, frame, direction):
            await super().process_frame(frame, direction)
            now = time.time()
            if isinstance(frame, VADUserStartedSpeakingFrame):
                events.append((frame.timestamp - frame.start_secs, "start", None))
            elif isinstance(frame, VADUserStoppedSpeakingFrame):
                events.append((frame.timestamp, "stop", None))
            elif isinstance(frame, InterimTranscriptionFrame):
                events.append((now, "interim", frame.text))
            elif isinstance(frame, TranscriptionFrame):
                events.append((now, "final", frame.text))
            await self.push_frame(frame, direction)

    return Recorder()


def vad_worker(stt, events: list):
    """A pipeline worker for ``VADProcessor(Silero, stop_secs=0.2) → stt``, its output logged into ``events``."""
    from pipecat.audio.vad.silero import SileroVADAnalyzer
    from pipecat.audio.vad.vad_analyzer import VADParams
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineWorker
    from pipecat.processors.audio.vad_processor import VADProcessor

    vad = VADProcessor(vad_analyzer=SileroVADAnalyzer(params=VADParams(stop_secs=0.2)))
    return PipelineWorker(Pipeline([vad, stt, recorder(events)]), cancel_on_idle_timeout=False)


async def feed_clips(worker, clips: list[dict], events: list) -> list[tuple[float, float]]:
    """Stream ``clips`` into ``worker`` as 20 ms frames paced by the clock, each after LEAD_SILENCE and
    followed by silence until its final is in (at least MIN_GAP, at most MAX_WAIT); return each clip's
    (begin, end) window."""
    from pipecat.frames.frames import InputAudioRawFrame

    silence = bytes(int(FRAME * 16000) * 2)
    step = len(silence)
    clock = time.time()
    windows = []

    async def send(pcm: bytes):
        nonlocal clock
        clock += FRAME
        await worker.queue_frame(InputAudioRawFrame(audio=pcm, sample_rate=16000, num_channels=1))
        await asyncio.sleep(max(0.0, clock - time.time()))

    for clip in clips:
        begin = time.time()
        for _ in range(round(LEAD_SILENCE / FRAME)):
            await send(silence)
        pcm = clip["pcm"]
        for i in range(0, len(pcm), step):
            await send(pcm[i : i + step].ljust(step, b"\0"))
        end = time.time()
        while time.time() - end < MAX_WAIT:
            await send(silence)
            stops = [t for t, kind, _ in events if kind == "stop" and t >= begin]
            finals = [t for t, kind, _ in events if kind == "final" and stops and t >= stops[-1]]
            if time.time() - end >= MIN_GAP and stops and finals:
                break
        windows.append((begin, time.time()))
    return windows


def _with_children():
    """This process and its live children (a ``model_process`` model's)."""
    import psutil

    process = psutil.Process()
    return [process, *process.children(recursive=True)]


class PeakRss:
    """Peak resident memory of the process and its children (those alive when :meth:`watch` starts: the
    services are built by then), sampled every 0.1 s while it runs."""

    def __init__(self) -> None:
        self.bytes = 0

    async def watch(self) -> None:
        processes = _with_children()  # once: listing children reads all of /proc, on the event loop
        while True:
            self.bytes = max(self.bytes, sum(p.memory_info().rss for p in processes))
            await asyncio.sleep(0.1)


def cpu_seconds() -> float:
    """CPU seconds of the process and its live children."""
    return sum(sum(p.cpu_times()[:2]) for p in _with_children())


async def stream(system: str, args) -> dict:
    """Stream every clip through VAD → STT in real time and return the raw figures."""
    from pipecat.frames.frames import EndFrame
    from pipecat.workers.runner import WorkerRunner

    clips = load_clips(args.limit, args.manifest)
    started = time.perf_counter()
    stt = build_stt(system, args)
    load_seconds = time.perf_counter() - started
    events: list[tuple[float, str, object]] = []  # (time, kind, payload)
    worker = vad_worker(stt, events)
    rss = PeakRss()
    windows: list[tuple[float, float]] = []
    streamed = cpu = 0.0

    async def feed():
        nonlocal windows, streamed, cpu
        await asyncio.sleep(1.0)  # let StartFrame reach every processor
        cpu0, t0 = cpu_seconds(), time.time()
        windows = await feed_clips(worker, clips, events)
        streamed, cpu = time.time() - t0, cpu_seconds() - cpu0
        await worker.queue_frame(EndFrame())

    sampler = asyncio.create_task(rss.watch())
    runner = WorkerRunner()
    await runner.add_workers(worker)
    await asyncio.gather(runner.run(), feed())
    sampler.cancel()
    return {
        "system": system,
        "clips": [c["text"] for c in clips],
        "windows": windows,
        "events": events,
        "streamed": streamed,
        "cpu": cpu,
        "peak_rss": rss.bytes,
        "load_seconds": load_seconds,
    }


def percentile_ms(seconds: list[float], q: float) -> float:
    """The ``q``-th percentile of ``seconds`` in milliseconds (NaN when there are none)."""
    return float(np.percentile(seconds, q) * 1000) if seconds else float("nan")


def turn_figures(raw: dict) -> dict:
    """Per-clip measurements from the event log: a clip is one user turn, however the VAD splits it.

    Final latency is measured from the clip's last VAD stop to the last transcript after it, the
    moment a voice agent could answer (earlier segments of a clip may legitimately be dropped as
    non-speech by a segmented STT, so stops and transcripts are not paired one to one).
    """
    from whisper_normalizer.english import EnglishTextNormalizer

    events = sorted(raw["events"], key=lambda e: e[0])
    figures = {
        "final_latency": [],
        "first_interim": [],
        "interims": [],
        "segments": 0,
        "refs": [],
        "hyps": [],
        "unanswered": [],
    }
    normalize = EnglishTextNormalizer()
    for text, (begin, end) in zip(raw["clips"], raw["windows"], strict=True):
        window = [(t, kind, p) for t, kind, p in events if begin <= t < end]
        starts = [t for t, kind, _ in window if kind == "start"]
        stops = [t for t, kind, _ in window if kind == "stop"]
        finals = [(t, p) for t, kind, p in window if kind == "final"]
        said = [t for t, kind, _ in window if kind == "interim"]
        figures["segments"] += len(stops)
        figures["interims"].append(len(said))
        if starts and said:
            figures["first_interim"].append(said[0] - starts[0])
        if stops and finals and finals[-1][0] >= stops[-1]:
            figures["final_latency"].append(finals[-1][0] - stops[-1])
        else:  # what the turn looked like, to tell a lost final from a last segment transcribed as nothing
            figures["unanswered"].append(
                {
                    "ref": text,
                    "segments": len(stops),
                    "finals": [str(p) for _, p in finals],
                    "last_interim": next((str(p) for t, kind, p in reversed(window) if kind == "interim"), None),
                    "after_last_final_s": round(stops[-1] - finals[-1][0], 3) if stops and finals else None,
                }
            )
        figures["refs"].append(normalize(text))
        figures["hyps"].append(normalize(" ".join(str(p) for _, p in finals)))
    return figures


def summarize(raw: dict) -> dict:
    """The figures of one run (see :func:`turn_figures` for what a turn's latency is)."""
    from jiwer import wer

    turns = turn_figures(raw)
    final_latency, first_interim, interims = turns["final_latency"], turns["first_interim"], turns["interims"]
    return {
        "clips": len(turns["refs"]),
        "segments": turns["segments"],
        "finals_measured": len(final_latency),
        "final_p50_ms": percentile_ms(final_latency, 50),
        "final_p90_ms": percentile_ms(final_latency, 90),
        "final_max_ms": percentile_ms(final_latency, 100),
        "first_interim_p50_ms": percentile_ms(first_interim, 50),
        "first_interim_p90_ms": percentile_ms(first_interim, 90),
        "interims_per_utterance": float(np.mean(interims)) if interims else 0.0,
        "wer": wer([r or "<empty>" for r in turns["refs"]], turns["hyps"]),
        "rtf": raw["cpu"] / raw["streamed"],
        "peak_rss_mb": raw["peak_rss"] / 2**20,
        "load_seconds": raw["load_seconds"],
        "transcripts": [{"ref": r, "hyp": h} for r, h in zip(turns["refs"], turns["hyps"], strict=True)],
        "unanswered": turns["unanswered"],
    }


def breakdown(args) -> None:
    """Where decoding time goes, per component, on the same clips (no pipeline, no pacing)."""
    import functools

    import torch

    import pipecat_tiny_audio.streaming as streaming
    from pipecat_tiny_audio.shared_model import load_model

    torch.set_num_threads(args.threads or 1)  # TinyAudioSTT's default
    model = load_model(args.model or "default", "cpu")
    times: dict[str, list[float]] = {}

    def timed(name, fn):
        @functools.wraps(fn)
        def wrapper(*a, **kw):
            started = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                times.setdefault(name, []).append(time.perf_counter() - started)

        return wrapper

    streaming.encode_chunk_at = timed("encoder per chunk", streaming.encode_chunk_at)
    streaming.encode_audio = timed("encoder, whole utterance", streaming.encode_audio)
    model.projector.forward = timed("projector", model.projector.forward)
    llm_forward = model.llm.forward

    def llm(*a, **kw):
        positions = kw["inputs_embeds"].shape[1]
        name = "LLM single-token step" if positions == 1 else "LLM audio+suffix+draft pass"
        return timed(name, llm_forward)(*a, **kw)

    model.llm.forward = llm
    finals, converged = [], []
    step = round(args.partial_interval * 16000)
    for clip in load_clips(args.limit, args.manifest):
        audio = np.frombuffer(clip["pcm"], "<i2").astype(np.float32) / 32768
        decoder = streaming.StreamingDecoder(model)
        for start in range(0, audio.size, 320):
            decoder.feed(audio[start : start + 320])
            if (start + 320) % step < 320:
                decoder.partial()
        started = time.perf_counter()
        decoder.finalize()
        finals.append(time.perf_counter() - started)
        decoder._decoded = None  # decode the same audio again: the draft is now the final itself
        started = time.perf_counter()
        decoder.finalize()
        converged.append(time.perf_counter() - started)
    print(f"feature mode {model.feature_mode}, k={model.config.stack_factor}, threads {torch.get_num_threads()}")
    for name, values in times.items():
        print(f"{name:36} {np.mean(values) * 1000:8.1f} ms mean  x{len(values)}")
    print(f"{'final after the last partial':36} {percentile_ms(finals, 50):8.1f} ms p50")
    print(f"{'final, draft already right':36} {percentile_ms(converged, 50):8.1f} ms p50")


def timeline(args) -> None:
    """When the final is computed relative to the VAD stop, inside the real pipeline (ours only).

    The service starts the final (a "preview") when its VAD hears the pause begin, during the
    VAD's ``stop_secs``; if the preview is done by the stop, the final is out at once.
    """
    from loguru import logger

    import pipecat_tiny_audio.streaming as streaming

    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    calls: list[tuple[float, float, bool]] = []  # (start, end, interrupted) of every finalize
    finalize_steps = streaming.StreamingDecoder.finalize_steps

    def timed_finalize_steps(self):  # the service's finals run as steps on the model's scheduler
        started = time.time()  # when the scheduler first runs it
        text = yield from finalize_steps(self)
        calls.append((started, time.time(), text is None))
        return text

    streaming.StreamingDecoder.finalize_steps = timed_finalize_steps
    raw = asyncio.run(stream("ours", args))
    starts, durations, finals = [], [], []
    for begin, end in raw["windows"]:
        stops = [t for t, kind, _ in raw["events"] if kind == "stop" and begin <= t < end]
        done = [t for t, kind, _ in raw["events"] if kind == "final" and begin <= t < end]
        if not stops or not done:
            continue
        stop = stops[-1]
        previews = [(a, b) for a, b, interrupted in calls if begin <= a < stop and not interrupted]
        if not previews:
            continue
        a, b = previews[-1]
        starts.append(a - stop)
        durations.append(b - a)
        finals.append(done[-1] - stop)
    print(f"clips with a preview: {len(starts)} of {len(raw['windows'])}")
    for label, values in (
        ("preview start, ms after the VAD stop", starts),
        ("preview compute, ms", durations),
        ("final, ms after the VAD stop", finals),
    ):
        print(f"{label:38} p50 {percentile_ms(values, 50):6.0f}  p90 {percentile_ms(values, 90):6.0f}")
    print(f"previews done by the stop: {np.mean(np.array(starts) + np.array(durations) <= 0):.0%}")


def add_service_arguments(parser: argparse.ArgumentParser) -> None:
    """The options :func:`build_stt` and :func:`run_in_subprocess` read, shared by both benchmarks."""
    parser.add_argument("--peer", action=argparse.BooleanOptionalAction, default=True, help="also run Whisper")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for TinyAudioSTT (default 1)")
    parser.add_argument("--partial-interval", type=float, default=0.5, help="TinyAudioSTT partial interval (s)")
    parser.add_argument("--pre-roll", type=float, default=None, help="TinyAudioSTT pre_roll_secs (default: its own)")
    parser.add_argument(
        "--chunk-finals", action="store_true", help="TinyAudioSTT(whole_utterance_final=False): finals from the chunks"
    )
    parser.add_argument(
        "--model-process", action="store_true", help="TinyAudioSTT(model_process=True): the model in its own process"
    )


def run_in_subprocess(script: str, system: str, args, options: list[str]) -> dict:
    """The JSON result line of ``script --run system [options]`` in a fresh process (fresh RSS and threads)."""
    cmd = [sys.executable, script, "--run", system, *options, "--partial-interval", str(args.partial_interval)]
    if args.model:
        cmd += ["--model", args.model]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.pre_roll is not None:
        cmd += ["--pre-roll", str(args.pre_roll)]
    if args.chunk_finals:
        cmd += ["--chunk-finals"]
    if args.model_process:
        cmd += ["--model-process"]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, env={**os.environ, "LOGURU_LEVEL": "WARNING"})
    return json.loads(out.stdout.decode().strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=10, help="number of clips (default 10)")
    parser.add_argument(
        "--manifest", type=Path, default=DEV_SET / "manifest.jsonl", help="clips to stream (default: the dev set)"
    )
    parser.add_argument("--model", default=None, help="TinyAudioSTT model (checkpoint folder); default: shipped")
    add_service_arguments(parser)
    parser.add_argument("--breakdown", action="store_true", help="time each decoding component instead")
    parser.add_argument("--timeline", action="store_true", help="time the final against the VAD stop instead")
    parser.add_argument(
        "--transcripts", type=Path, help="write each clip's normalized reference and transcripts here (JSONL)"
    )
    parser.add_argument("--run", choices=["ours", "peer"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.timeline and args.model_process:
        parser.error("--timeline times the decoder in this process: drop --model-process")

    if args.breakdown:
        breakdown(args)
        return
    if args.timeline:
        timeline(args)
        return
    if args.run:
        print(json.dumps(summarize(asyncio.run(stream(args.run, args)))))
        return
    limit = ["--limit", str(args.limit), "--manifest", str(args.manifest)]
    results = {"TinyAudioSTT": run_in_subprocess(__file__, "ours", args, limit)}
    if args.peer:
        results["WhisperSTTService"] = run_in_subprocess(__file__, "peer", args, limit)
    rows = [
        ("clips (user turns)", "clips", "{:.0f}"),
        ("VAD segments", "segments", "{:.0f}"),
        ("turns with a final after the stop", "finals_measured", "{:.0f}"),
        ("final latency p50 (ms)", "final_p50_ms", "{:.0f}"),
        ("final latency p90 (ms)", "final_p90_ms", "{:.0f}"),
        ("final latency max (ms)", "final_max_ms", "{:.0f}"),
        ("first interim p50 (ms after speech start)", "first_interim_p50_ms", "{:.0f}"),
        ("first interim p90 (ms after speech start)", "first_interim_p90_ms", "{:.0f}"),
        ("interims / turn", "interims_per_utterance", "{:.1f}"),
        ("WER", "wer", "{:.1%}"),
        ("real-time factor (CPU s / s)", "rtf", "{:.2f}"),
        ("peak RSS (MB)", "peak_rss_mb", "{:.0f}"),
        ("model load (s)", "load_seconds", "{:.1f}"),
    ]
    names = list(results)
    print(f"{args.limit} clips of {args.manifest}")
    print(f"{'':42}" + "".join(f"{n:>20}" for n in names))
    for label, key, fmt in rows:
        print(f"{label:42}" + "".join(f"{fmt.format(results[n][key]):>20}" for n in names))
    for name in names:
        for turn in results[name]["unanswered"]:  # lost, late, or its last segment transcribed as nothing
            print(f"{name}: no final after the turn's last stop: {json.dumps(turn)}")
    if args.peer:
        ratio = results["WhisperSTTService"]["final_p50_ms"] / results["TinyAudioSTT"]["final_p50_ms"]
        print(f"final latency p50 ratio, WhisperSTTService / TinyAudioSTT: {ratio:.2f}")
    if args.transcripts:
        with args.transcripts.open("w") as f:
            for i, clip in enumerate(results["TinyAudioSTT"]["transcripts"]):
                hyps = {name: result["transcripts"][i]["hyp"] for name, result in results.items()}
                f.write(json.dumps({"ref": clip["ref"], **hyps}) + "\n")


if __name__ == "__main__":
    main()
