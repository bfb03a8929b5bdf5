"""Many conversations on one model: N = 1, 2, 4, 8 live sessions in one process, against Whisper.

Each session is its own pipeline, ``VADProcessor(Silero, stop_secs=0.2) → STT``, as Pipecat's runner
serves each connected user, and streams different dev clips in real time (20 ms frames paced by the
clock; after each clip, silence until its final is in). All ``TinyAudioSTT`` sessions share one model
and its scheduler; the peer is Pipecat's ``WhisperSTTService`` (faster-whisper base, int8), one
instance per session as users run it today. Every (system, N) runs in a fresh subprocess, one after
the other, so memory and CPU figures are its own.

Per N: final latency p50/p90 (VAD stop → final), first interim p50 (after speech start), interims per
turn, CPU seconds per second of audio (all sessions' audio), peak RSS, the furthest any session fell
behind real time (how long its oldest queued audio waited; ours), the mean LLM passes per batched forward
(ours) and WER.
Then the issue's targets per N and how the figures change per added session.

    python benchmarks/concurrency.py                                  # N = 1 2 4 8, 10 clips per session
    python benchmarks/concurrency.py --sessions 1 2 --clips 2         # a quick check of the harness
    python benchmarks/concurrency.py --model path/to/checkpoint --no-peer

With no ``--model``, TinyAudioSTT loads what ``TinyAudioSTT()`` loads; with no trained default
shipped, that is the untrained stand-in (Whisper base + SmolLM2-135M, whole-utterance features):
right in cost, nonsense in words. The output says which.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for benchmarks.streaming
from benchmarks.streaming import (  # noqa: E402
    PeakRss,
    add_service_arguments,
    build_stt,
    cpu_seconds,
    feed_clips,
    load_clips,
    percentile_ms,
    run_in_subprocess,
    turn_figures,
    vad_worker,
)

# The targets on a 2-core CPU.
FINAL_P90_TARGET_MS = 300.0
FIRST_INTERIM_TARGET_MS = 1000.0
RSS_GROWTH_TARGET = 0.15  # above one session
BEHIND_TARGET_S = 1.0


def describe_model(model: str | None) -> str:
    if model:
        return model
    from pipecat_tiny_audio.shared_model import DEFAULT_MODEL_DIR

    if (DEFAULT_MODEL_DIR / "config.json").is_file():
        return "TinyAudioSTT() default: the shipped default model"
    return (
        "TinyAudioSTT() default: no trained default ships yet, so the UNTRAINED stand-in "
        "(Whisper base + SmolLM2-135M): words are nonsense, costs are the architecture's"
    )


async def serve(system: str, args) -> dict:
    """Stream ``args.sessions`` sessions at once through their own pipelines; the pooled figures."""
    from jiwer import wer
    from pipecat.frames.frames import EndFrame
    from pipecat.workers.runner import WorkerRunner

    n, per_session = args.run_sessions, args.clips
    clips = load_clips(n * per_session)
    if len(clips) < n * per_session:
        raise SystemExit(f"{n} sessions x {per_session} clips need {n * per_session} dev clips; there are {len(clips)}")
    started = time.perf_counter()
    stts = [build_stt(system, args) for _ in range(n)]
    load_seconds = time.perf_counter() - started
    events: list[list] = [[] for _ in range(n)]
    workers = [vad_worker(stt, log) for stt, log in zip(stts, events, strict=True)]
    windows: list[list[tuple[float, float]]] = [[] for _ in range(n)]
    behind = [0.0] * n
    rss = PeakRss()
    cpu = wall = 0.0

    async def watch_lag() -> None:
        while True:
            for i, stt in enumerate(stts):
                behind[i] = max(behind[i], getattr(stt, "lag_seconds", 0.0))
            await asyncio.sleep(0.1)

    async def feed(i: int) -> None:
        windows[i] = await feed_clips(workers[i], clips[i * per_session : (i + 1) * per_session], events[i])
        await workers[i].queue_frame(EndFrame())

    async def feed_all() -> None:
        nonlocal cpu, wall
        await asyncio.sleep(1.0)  # let StartFrame reach every processor
        cpu0, wall0 = cpu_seconds(), time.perf_counter()
        await asyncio.gather(*(feed(i) for i in range(n)))
        cpu, wall = cpu_seconds() - cpu0, time.perf_counter() - wall0

    watchers = [asyncio.create_task(rss.watch()), asyncio.create_task(watch_lag())]
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(*workers)
    await asyncio.gather(runner.run(), feed_all())
    for watcher in watchers:
        watcher.cancel()

    pooled: dict[str, list] = {
        "final_latency": [],
        "first_interim": [],
        "interims": [],
        "refs": [],
        "hyps": [],
        "unanswered": [],
    }
    for i in range(n):
        raw = {
            "clips": [c["text"] for c in clips[i * per_session : (i + 1) * per_session]],
            "windows": windows[i],
            "events": events[i],
        }
        for key, values in turn_figures(raw).items():
            if key in pooled:
                pooled[key] += values
    audio_seconds = sum(w[-1][1] - w[0][0] for w in windows)
    result = {
        "system": system,
        "sessions": n,
        "turns": len(pooled["refs"]),
        "finals_measured": len(pooled["final_latency"]),
        "final_p50_ms": percentile_ms(pooled["final_latency"], 50),
        "final_p90_ms": percentile_ms(pooled["final_latency"], 90),
        "first_interim_p50_ms": percentile_ms(pooled["first_interim"], 50),
        "interims_per_turn": float(np.mean(pooled["interims"])),
        "cpu_per_audio_second": cpu / audio_seconds,
        "peak_rss_mb": rss.bytes / 2**20,
        "max_behind_s": max(behind) if system == "ours" else float("nan"),  # ours only: oldest queued audio
        "wer": wer([r or "<empty>" for r in pooled["refs"]], pooled["hyps"]),
        "load_seconds": load_seconds,
        "unanswered": pooled["unanswered"],
    }
    if system == "ours":
        stats = await stts[0].scheduler_stats()
        result["passes_per_batch"] = stats.passes / max(1, stats.batches)
        result["scheduler_busy"] = stats.busy_seconds / wall  # of the streaming time: 1.0 = always working
        result["scheduler_cpu"] = stats.cpu_seconds / wall
        result["lane_busy"] = stats.lane_busy_seconds / wall
        result["lane_cpu"] = stats.lane_cpu_seconds / wall
        model = stts[0].model
        result["feature_mode"] = str(model.feature_mode) if model is not None else "(the model process's)"
    return result


COLUMNS = [
    ("final p50", "final_p50_ms", "{:.0f} ms"),
    ("final p90", "final_p90_ms", "{:.0f} ms"),
    ("1st interim p50", "first_interim_p50_ms", "{:.0f} ms"),
    ("interims/turn", "interims_per_turn", "{:.1f}"),
    ("CPU s/audio s", "cpu_per_audio_second", "{:.2f}"),
    ("peak RSS", "peak_rss_mb", "{:.0f} MB"),
    ("most behind", "max_behind_s", "{:.2f} s"),
    ("finals/turns", None, None),
    ("WER", "wer", "{:.1%}"),
]


def print_table(results: list[dict]) -> None:
    print(f"{'N':>2} {'system':18}" + "".join(f"{label:>16}" for label, _, _ in COLUMNS))
    for r in results:
        cells = []
        for _, key, fmt in COLUMNS:
            if key is None:
                cells.append(f"{r['finals_measured']}/{r['turns']}")
            else:
                cells.append("none" if np.isnan(r[key]) else fmt.format(r[key]))
        name = "TinyAudioSTT" if r["system"] == "ours" else "WhisperSTTService"
        print(f"{r['sessions']:>2} {name:18}" + "".join(f"{c:>16}" for c in cells))


def print_targets(ours: list[dict]) -> None:
    """Each N against the issue's targets, and the change per added session (a least-squares slope)."""
    one = next((r for r in ours if r["sessions"] == 1), None)
    print("\nTinyAudioSTT against the targets (final p90 <= 300 ms, first interim <= 1.0 s, RSS <= 1.15 x one")
    print("session; no session more than 1 s behind, every final delivered):")
    for r in ours:
        missed = []
        if not r["final_p90_ms"] <= FINAL_P90_TARGET_MS:
            missed.append(f"final p90 {r['final_p90_ms']:.0f} ms")
        if not r["first_interim_p50_ms"] <= FIRST_INTERIM_TARGET_MS:
            missed.append(f"first interim {r['first_interim_p50_ms']:.0f} ms")
        if one is not None and r["peak_rss_mb"] > (1 + RSS_GROWTH_TARGET) * one["peak_rss_mb"]:
            missed.append(f"RSS +{r['peak_rss_mb'] / one['peak_rss_mb'] - 1:.0%}")
        if r["max_behind_s"] > BEHIND_TARGET_S:
            missed.append(f"{r['max_behind_s']:.1f} s behind")
        if r["finals_measured"] < r["turns"]:
            missed.append(f"{r['turns'] - r['finals_measured']} finals missing")
        print(f"  N={r['sessions']}: " + ("meets them" if not missed else "misses: " + ", ".join(missed)))
        for turn in r["unanswered"]:  # no final after the turn's last stop: lost, late, or nothing heard?
            print(f"    no final after the last stop: {json.dumps(turn)}")
    if len(ours) > 1:
        n = np.array([r["sessions"] for r in ours], float)
        print("per added session (slope over N):")
        for label, key, unit in [
            ("final p90", "final_p90_ms", "ms"),
            ("first interim p50", "first_interim_p50_ms", "ms"),
            ("CPU s per audio s", "cpu_per_audio_second", ""),
            ("peak RSS", "peak_rss_mb", "MB"),
        ]:
            values = np.array([r[key] for r in ours], float)
            if np.isfinite(values).all():
                print(f"  {label:20} {np.polyfit(n, values, 1)[0]:+.2f} {unit}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 2, 4, 8], help="values of N")
    parser.add_argument("--clips", type=int, default=10, help="dev clips per session (default 10)")
    parser.add_argument(
        "--model", default=None, help="TinyAudioSTT model (checkpoint folder); default: TinyAudioSTT()'s"
    )
    add_service_arguments(parser)
    parser.add_argument("--run", choices=["ours", "peer"], help=argparse.SUPPRESS)
    parser.add_argument("--run-sessions", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.run:
        print(json.dumps(asyncio.run(serve(args.run, args))))
        return
    finals = "from the chunks (--chunk-finals)" if args.chunk_finals else "as the model's config says"
    where = "in a process of its own (--model-process)" if args.model_process else "in the sessions' process"
    print(f"TinyAudioSTT model: {describe_model(args.model)}, {where}; finals {finals}", flush=True)
    results = []
    for sessions in args.sessions:
        for system in ["ours", "peer"] if args.peer else ["ours"]:
            options = ["--run-sessions", str(sessions), "--clips", str(args.clips)]
            results.append(run_in_subprocess(__file__, system, args, options))
            print(json.dumps(results[-1]), flush=True)
    ours = [r for r in results if r["system"] == "ours"]
    print(
        f"\nfeature mode {ours[0]['feature_mode']}; {args.clips} clips per session; LLM passes per batch: "
        + ", ".join(f"N={r['sessions']} {r['passes_per_batch']:.2f}" for r in ours)
    )
    print(
        "share of the streaming time the scheduler's thread / the encoder lane worked (and used CPU): "
        + ", ".join(
            f"N={r['sessions']} {r['scheduler_busy']:.0%} ({r['scheduler_cpu']:.0%}) / {r['lane_busy']:.0%} "
            f"({r['lane_cpu']:.0%})"
            for r in ours
        )
    )
    print_table(results)
    print_targets(ours)


if __name__ == "__main__":
    main()
