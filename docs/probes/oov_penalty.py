"""Issue 12: a penalty for words the English lexicon does not know, in the served beam and final pick.

Most of the recogniser's misheard words are no words at all ("pppers", "closees", "sundaye"): in the
served transcripts of the committed recogniser, ~50 of dev's 177 word errors and ~220 of the unseen
voices' 883 are spellings outside wordfreq's 100,000 most frequent English words. The model's
``oov_penalty`` (:mod:`pipecat_tiny_audio.lexicon`) is taken off a candidate per such word. It is
chosen on the tuning clips (``llm_rescoring.py`` says how they are built), then applied unchanged to
dev and the unseen voices, transcribed as served (``model.transcribe``):

    PYTHONPATH=. python docs/probes/oov_penalty.py --model checkpoints/recogniser --penalties 0 1 2 3 5 8
"""

from __future__ import annotations

import argparse

import torch
from tqdm import tqdm

from trainer.checkpoint import load_model
from trainer.data import decode_utterance, load_source
from trainer.metrics import cer, wer

SETS = {
    "tune": "data/tune-llm/manifest.jsonl",
    "dev": "../shared/eval/dev/manifest.jsonl",
    "unseen": "data/synth8k/heldout/manifest.jsonl",
}


def transcribe_set(model, name: str, penalty: float) -> tuple[float, float]:
    """(WER, CER) of one set transcribed as served with ``oov_penalty = penalty``."""
    model.config.oov_penalty = penalty
    utterances = load_source(SETS[name])
    hyps = [model.transcribe(decode_utterance(u, 30.0)) for u in tqdm(utterances, desc=f"{name} {penalty:g}")]
    refs = [u.text for u in utterances]
    return wer(refs, hyps), cer(refs, hyps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="checkpoints/recogniser")
    parser.add_argument("--penalties", type=float, nargs="+", default=[0.0, 1.0, 2.0, 3.0, 5.0, 8.0])
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, _ = load_model(args.model)
    model.optimize_for_inference()

    tuned = []
    for penalty in args.penalties:
        score, chars = transcribe_set(model, "tune", penalty)
        print(f"tune: oov_penalty {penalty:g}: WER {100 * score:.2f} % (CER {100 * chars:.2f} %)", flush=True)
        tuned.append((score, penalty))
    best = min(tuned)[1]
    for name in ("dev", "unseen"):
        for penalty in dict.fromkeys([0.0, best]):
            score, chars = transcribe_set(model, name, penalty)
            print(f"{name}: oov_penalty {penalty:g}: WER {100 * score:.2f} % (CER {100 * chars:.2f} %)", flush=True)


if __name__ == "__main__":
    main()
