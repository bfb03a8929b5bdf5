"""Issue 12: what a final computed on whole-utterance features would give, and what it would cost.

The ablation protocol's recogniser scores 4.8 points better on dev and 5.2 on the unseen voices when it is
trained and scored on whole-utterance features instead of the served chunks (docs/ablations.md), and a
whole-utterance final would not depend on the chunk grid's phase. This probe scores a recogniser trained
on chunks, unchanged, both ways, transcribed as served (``model.transcribe``), and times each clip:

    PYTHONPATH=. python docs/probes/whole_final.py --model checkpoints/recogniser

Run it on a quiet machine: the seconds per clip are what a whole-utterance final would add after the
speaker stops (less the ~0.2 s between the pause's start and the VAD's stop).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from tqdm import tqdm

from trainer.checkpoint import load_model
from trainer.data import decode_utterance, load_source
from trainer.metrics import cer, wer

SETS = {"dev": "../shared/eval/dev/manifest.jsonl", "unseen": "data/synth8k/heldout/manifest.jsonl"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="checkpoints/recogniser")
    parser.add_argument("--sets", nargs="+", choices=sorted(SETS), default=["dev", "unseen"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, _ = load_model(args.model)
    model.optimize_for_inference()
    config = model.config
    served = (config.chunk_seconds, config.left_context_seconds, config.right_context_seconds)
    for name in args.sets:
        utterances = load_source(SETS[name])
        clips = [decode_utterance(u, 30.0) for u in utterances]
        refs = [u.text for u in utterances]
        for label, mode in (("chunks", served), ("whole", (None, 0.0, 0.0))):
            config.chunk_seconds, config.left_context_seconds, config.right_context_seconds = mode
            hyps, seconds = [], []
            for clip in tqdm(clips, desc=f"{name} {label}"):
                started = time.perf_counter()
                hyps.append(model.transcribe(clip))
                seconds.append(time.perf_counter() - started)
            p50, p90 = np.percentile(seconds, [50, 90])
            print(
                f"{name} {label}: WER {100 * wer(refs, hyps):.2f} % (CER {100 * cer(refs, hyps):.2f} %), "
                f"transcribe p50 {1000 * p50:.0f} ms, p90 {1000 * p90:.0f} ms",
                flush=True,
            )
        config.chunk_seconds, config.left_context_seconds, config.right_context_seconds = served


if __name__ == "__main__":
    main()
