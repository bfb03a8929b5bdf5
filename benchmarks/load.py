"""Model load time and memory: ours (TinyAudioModel on bundled weights) vs. faster-whisper base.

Each measurement runs in a fresh Python process so peak RSS and import costs are honest.
"Cold" uses an empty weight cache (first run on a machine: CT2 → transformers conversion and
GGUF dequantization); "warm" reuses the cache, as every later start does.

    python benchmarks/load.py [--repeats 3] [--model PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

OURS = """
import json, resource, time
t0 = time.perf_counter()
import torch
from pipecat_tiny_audio import TinyAudioConfig, TinyAudioModel
t1 = time.perf_counter()
model = TinyAudioModel.from_pretrained({model!r}) if {model!r} else TinyAudioModel(TinyAudioConfig())
t2 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "load_s": t2 - t1,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""

PEER = """
import json, resource, time
t0 = time.perf_counter()
from faster_whisper import WhisperModel
from pipecat_tiny_audio.sources import WHISPER_BASE, ct2_whisper_folder
t1 = time.perf_counter()
model = WhisperModel(str(ct2_whisper_folder(WHISPER_BASE)), device="cpu", compute_type="int8")
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(code: str, cache: str | None = None) -> dict:
    env = dict(os.environ)
    if cache is not None:
        env["PIPECAT_TINY_AUDIO_CACHE"] = cache
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def summary(name: str, runs: list[dict]) -> str:
    load = statistics.median(r["load_s"] for r in runs)
    imp = statistics.median(r["import_s"] for r in runs)
    rss = max(r["peak_rss_mb"] for r in runs)
    return f"{name:<50} load {load:6.2f} s   import {imp:5.2f} s   peak RSS {rss:7.0f} MB   (n={len(runs)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="", help="checkpoint folder (default: the default architecture)")
    args = parser.parse_args()
    ours = OURS.format(model=args.model)
    with tempfile.TemporaryDirectory() as empty_cache:
        cold = [measure(ours, cache=empty_cache)]
        warm = [measure(ours, cache=empty_cache) for _ in range(args.repeats)]
    peer = [measure(PEER) for _ in range(args.repeats)]
    print(f"CPU threads: {os.cpu_count()}")
    print(summary("ours, cold (empty weight cache)", cold))
    print(summary("ours, warm", warm))
    print(summary("peer: faster-whisper base int8 (Pipecat Whisper)", peer))


if __name__ == "__main__":
    main()
