"""Issue 12: the LLM inside the beam search (shallow fusion) instead of only after it (rescoring).

Rescoring can only pick among the N best the acoustics alone keep, and the recogniser's misspellings
("hul loww can you har mey") often push the right words out of the beam before the LLM sees them.
Here the frozen SmolLM2 scores every beam candidate's *finished words* while the beam is pruned
(``prefix_beam_search(bonus=...)``): a candidate ranks by ``ctc + alpha * llm(finished words) + beta *
words``. The beam's N best are then rescored as served (``ctc + alpha * llm(line) + beta * words``).
The LLM's scores of word prefixes are cached per text, and each frame's new ones are scored in one
token-tree pass.

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

from pipecat_tiny_audio.rescoring import text_log_probs
from trainer.checkpoint import load_model
from trainer.feature_cache import FeatureCache
from trainer.metrics import wer

RESCORE_ALPHAS = (0.3, 0.5, 0.7, 1.0)
RESCORE_BETAS = (0.0, 1.0, 2.0)


class FinishedWords:
    """The beam's ``bonus``: alpha * the LLM's log-probability of a prefix's finished words + beta * their count.

    With ``every`` > 1 the LLM runs only on every ``every``-th frame (12 = once per 0.48 s chunk, as a
    streaming decoder would); in between, words it has not scored yet count as free.
    """

    def __init__(self, model, alpha: float, beta: float, every: int = 1):
        self.model, self.alpha, self.beta, self.every = model, alpha, beta, every
        self.symbols = model.projector.vocabulary.symbols
        self.scores: dict[str, float] = {"": 0.0}
        self.frames = 0

    def finished(self, prefix: tuple[int, ...]) -> str:
        spelled = "".join(self.symbols[i - 1] for i in prefix)
        return " ".join(spelled[: spelled.rfind(" ")].split()) if " " in spelled.strip() else ""

    def known(self, text: str) -> float:
        """The LLM's score of the longest scored beginning of ``text``."""
        words = text.split()
        return next(self.scores[t] for k in range(len(words), -1, -1) if (t := " ".join(words[:k])) in self.scores)

    def __call__(self, prefixes: list[tuple[int, ...]]) -> list[float]:
        self.frames += 1
        texts = [self.finished(p) for p in prefixes]
        new = [t for t in dict.fromkeys(texts) if t not in self.scores]
        if new and self.frames % self.every == 0:
            llm = text_log_probs(self.model.llm, self.model.tokenizer, new, finished=False)
            self.scores.update(zip(new, llm, strict=True))
        return [self.alpha * self.known(t) + self.beta * len(t.split()) for t in texts]


def fused_lists(
    model, cache, manifest: str, rows: slice, beam: int, alpha: float, beta: float, every: int
) -> list[dict]:
    """Per utterance: reference and the N best of a beam the LLM ranks (none when alpha = beta = 0)."""
    bonus = (lambda: FinishedWords(model, alpha, beta, every)) if alpha or beta else None
    return n_best_lists(model, cache, manifest, rows, beam, bonus=bonus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="checkpoints/recogniser")
    parser.add_argument("--tune", required=True, help="manifest of clips neither dev nor unseen, never trained on")
    parser.add_argument("--tune-n", type=int, default=60, help="tuning clips (each fusion weight pair decodes them)")
    parser.add_argument("--beam", type=int, default=8)
    parser.add_argument("--every", type=int, default=1, help="frames between LLM passes (12: once per chunk)")
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
        lists = fused_lists(model, cache, args.tune, rows, args.beam, alpha, beta, args.every)
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
            lists = fused_lists(model, cache, manifest, slice(None), args.beam, fa, fb, args.every)
            refs = [u["ref"] for u in lists]
            print(
                f"{name}: fusion alpha={fa} beta={fb}, {args.beam} best rescored (alpha={ra}, beta={rb}): "
                f"{wer(refs, pick(lists, ra, rb, args.beam)):.3f} ({len(lists)} clips)",
                flush=True,
            )


if __name__ == "__main__":
    main()
