"""Issue 12: what a recogniser's final costs, in time and LLM passes, and what it scores.

This probe streams each clip in 20 ms blocks through a ``StreamingDecoder``, times ``finalize()`` alone
(what the user waits for after the VAD stop, less the head start the speculative final gets at the
pause), counts its LLM passes and their tokens, and scores the finals:

    PYTHONPATH=. python docs/probes/final_passes.py --model checkpoints/recogniser --sets dev unseen

Run it on a quiet machine, one thread, as served (fp16 weights). To compare with an earlier version of
the serving code, run the same file with that version's ``src`` first on ``PYTHONPATH`` (a git worktree).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from tqdm import tqdm

from pipecat_tiny_audio.decoding import Forward
from pipecat_tiny_audio.streaming import StreamingDecoder
from trainer.checkpoint import load_model
from trainer.data import decode_utterance, load_source
from trainer.metrics import cer, wer

SETS = {
    "dev": "../shared/eval/dev/manifest.jsonl",
    "unseen": "data/synth8k/heldout/manifest.jsonl",
    "tune": "data/tune-llm/manifest.jsonl",
}


class PassCounter:
    """Counts the LLM passes and their tokens (patched over Forward.run)."""

    def __init__(self):
        self.passes = self.tokens = 0
        self._run = Forward.run

    def __enter__(self):
        counter = self

        def run(forward: Forward, llm):
            counter.passes += 1
            counter.tokens += forward.inputs_embeds.shape[1]
            return counter._run(forward, llm)

        Forward.run = run
        return self

    def __exit__(self, *exc):
        Forward.run = self._run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="checkpoints/recogniser")
    parser.add_argument("--sets", nargs="+", choices=sorted(SETS), default=["dev"])
    parser.add_argument("--limit", type=int, help="first N clips of each set")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, _ = load_model(args.model)
    model.optimize_for_inference()
    decoder = StreamingDecoder(model)
    for name in args.sets:
        utterances = load_source(SETS[name])[: args.limit]
        clips = [decode_utterance(u, 30.0) for u in utterances]
        refs = [u.text for u in utterances]
        hyps, seconds, passes, tokens = [], [], [], []
        for clip in tqdm(clips, desc=name):
            decoder.reset()
            for start in range(0, len(clip), 320):
                decoder.feed(clip[start : start + 320])
            with PassCounter() as counter:
                started = time.perf_counter()
                hyps.append(decoder.finalize())
                seconds.append(time.perf_counter() - started)
            passes.append(counter.passes)
            tokens.append(counter.tokens)
        p50, p90 = np.percentile(seconds, [50, 90])
        print(
            f"{name}: WER {100 * wer(refs, hyps):.2f} % (CER {100 * cer(refs, hyps):.2f} %), final p50 "
            f"{1000 * p50:.0f} ms, p90 {1000 * p90:.0f} ms, LLM passes {np.mean(passes):.1f} "
            f"({np.mean(tokens):.0f} tokens) per final",
            flush=True,
        )


if __name__ == "__main__":
    main()
