"""Issue 12: the LLM inside the beam search (shallow fusion) instead of only after it (rescoring).

Rescoring can only pick among the N best the acoustics alone keep, and the recogniser's misspellings
("hul loww can you har mey") often push the right words out of the beam before the LLM sees them.
Here the frozen SmolLM2 scores every beam candidate's *finished words* while the beam is pruned
(``rescoring.FusedBeamSearch``, served): a candidate ranks by ``ctc + alpha * llm(finished words) +
beta * words``. The beam's N best are then rescored as served (``ctc + alpha * llm(line) + beta *
words``). The LLM's scores of word prefixes are cached per text, and the new ones are scored in one
token-tree pass every ``--every`` frames (12: once per 0.48 s chunk, as served).

Weights are chosen on the tuning clips (``llm_rescoring.py`` says how they are built), then applied
unchanged to dev and the unseen voices:

    PYTHONPATH=. python docs/probes/llm_fusion.py --model checkpoints/recogniser --tune data/tune-llm/manifest.jsonl
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch
from llm_rescoring import SETS, n_best_lists, pick  # this folder is on the path of a script run from it

from trainer.checkpoint import load_model
from trainer.feature_cache import FeatureCache
from trainer.metrics import wer

RESCORE_ALPHAS = (0.3, 0.5, 0.7, 1.0)
RESCORE_BETAS = (0.0, 1.0, 2.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="checkpoints/recogniser")
    parser.add_argument("--tune", required=True, help="manifest of clips neither dev nor unseen, never trained on")
    parser.add_argument("--tune-n", type=int, default=60, help="tuning clips (each fusion weight pair decodes them)")
    parser.add_argument("--beam", type=int, default=8)
    parser.add_argument("--every", type=int, default=12, help="frames between LLM passes (12: a chunk, as served)")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.2, 0.3, 0.5], help="fusion LLM weights to try")
    parser.add_argument("--betas", type=float, nargs="+", default=[1.0, 2.0, 3.0], help="fusion word bonuses to try")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, _ = load_model(args.model)
    cache = FeatureCache.for_model(model)
    model.optimize_for_inference()  # scored as served

    def best_rescoring(lists: list[dict]) -> tuple[float, float, float]:
        refs = [u["ref"] for u in lists]
        return min(
            (wer(refs, pick(lists, a, b, args.beam)), a, b) for a, b in itertools.product(RESCORE_ALPHAS, RESCORE_BETAS)
        )

    rows = slice(0, args.tune_n)
    tuned = []
    for alpha, beta in [(0.0, 0.0), *itertools.product(args.alphas, args.betas)]:
        started = time.time()
        lists = n_best_lists(model, cache, args.tune, rows, args.beam, fusion=(alpha, beta), every=args.every)
        score, ra, rb = best_rescoring(lists)
        seconds = (time.time() - started) / len(lists)
        print(
            f"tune: fusion alpha={alpha} beta={beta}, rescored (alpha={ra}, beta={rb}): {score:.3f}; "
            f"{seconds:.2f} s/clip"
        )
        tuned.append((score, alpha, beta, ra, rb))
    _, alpha, beta, ra, rb = min(tuned)
    for name, manifest in SETS.items():
        for fa, fb in ((0.0, 0.0), (alpha, beta)):
            lists = n_best_lists(model, cache, manifest, slice(None), args.beam, fusion=(fa, fb), every=args.every)
            refs = [u["ref"] for u in lists]
            print(
                f"{name}: fusion alpha={fa} beta={fb}, {args.beam} best rescored (alpha={ra}, beta={rb}): "
                f"{wer(refs, pick(lists, ra, rb, args.beam)):.3f} ({len(lists)} clips)",
                flush=True,
            )


if __name__ == "__main__":
    main()
