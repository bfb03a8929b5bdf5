"""Issue 12, Step 2: the LLM choosing among the recogniser's hypotheses instead of rewriting them.

The LLM readings trained so far (docs/ablations.md, Step 2) paraphrase what they cannot read. Here the
frozen SmolLM2 only *scores* (``pipecat_tiny_audio.rescoring``, served as ``reading="rescore"``):
a CTC prefix beam search over the recogniser's posteriors gives its N best transcripts with their
acoustic log-probabilities, the LLM gives each one's log-probability as text, and the pick maximises
``ctc + alpha * llm + beta * words``. Nothing is trained, and the LLM can only choose spellings the
audio supports ("se a timer" vs "set a timer").

``alpha`` and ``beta`` are chosen on a tuning set that is neither dev nor the unseen-voice test (150
clips of sentences no corpus here trains on: the last 150 of the LLM-sampled file, which the 4,000-clip
``data/synth-llm`` never reaches), then applied unchanged to both:

    tail -150 data/llm-sentences.txt > data/tune-llm.txt
    python -m trainer synth --out data/tune-llm --text data/tune-llm.txt --n 150 --heldout-n 0 --seed 9
    PYTHONPATH=. python docs/probes/llm_rescoring.py --model checkpoints/recogniser --tune data/tune-llm/manifest.jsonl
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch

from pipecat_tiny_audio.decoding import run_steps
from pipecat_tiny_audio.rescoring import SCORING_CONTEXT, FusedBeamSearch, TextScorer, best_hypothesis, text_log_probs
from trainer.checkpoint import load_model
from trainer.data import load_source
from trainer.feature_cache import FeatureCache
from trainer.metrics import wer

SETS = {"dev": "../shared/eval/dev/manifest.jsonl", "unseen": "data/synth8k/heldout/manifest.jsonl"}
ALPHAS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
BETAS = (0.0, 0.5, 1.0, 2.0, 3.0)


def n_best_lists(
    model,
    cache: FeatureCache,
    manifest: str,
    rows: slice,
    beam: int,
    context: str = SCORING_CONTEXT,
    fusion: tuple[float, float] = (0.0, 0.0),
    every: int = 12,
) -> list[dict]:
    """Per utterance: reference, greedy text, and the N best with CTC and LLM scores.

    ``fusion``: the LLM's weight and the word bonus in the beam, scored every ``every`` frames
    (``llm_fusion.py``; none by default).
    """
    examples = cache.prepare(load_source(manifest)[rows], max_seconds=20.0)
    projector, out = model.projector, []
    for example in examples:
        log_probs = model.recogniser_log_probs(cache.load(example.key))
        greedy = projector.vocabulary.best_path(log_probs.argmax(-1).tolist())
        scorer = TextScorer(model.embed_tokens, model.tokenizer, context)
        search = FusedBeamSearch(projector.vocabulary, beam, *fusion, every, scorer)
        run_steps(model.llm, search.advance_steps(log_probs))
        hyps = search.hypotheses()
        texts = [t for t, _ in hyps]
        llm = run_steps(model.llm, scorer.score_steps(texts)) if any(texts) else [0.0] * len(texts)  # as served
        out.append(
            {"ref": example.text, "greedy": greedy, "hyps": [(t, c, g) for (t, c), g in zip(hyps, llm, strict=True)]}
        )
    return out


@torch.no_grad()
def row_log_probs(llm, tokenizer, texts: list[str], context: str) -> list[float]:
    """The peer of the token tree: each line its own row of one padded batch, as rescoring first scored them."""
    prefix = tokenizer(context, add_special_tokens=False).input_ids
    rows = [tokenizer(t[:1].upper() + t[1:] + "\n", add_special_tokens=False).input_ids for t in texts]
    width = max(map(len, rows))
    ids = torch.tensor([prefix + r + [0] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * (len(prefix) + len(r)) + [0] * (width - len(r)) for r in rows])
    log_probs = llm(input_ids=ids, attention_mask=mask).logits[:, :-1].float().log_softmax(-1)
    picked = log_probs.gather(-1, ids[:, 1:, None])[..., 0]
    return [picked[i, len(prefix) - 1 : len(prefix) - 1 + len(r)].sum().item() for i, r in enumerate(rows)]


def scoring_costs(model, lists: list[dict], n: int, context: str) -> str:
    """What scoring each utterance's ``n`` best costs: the token tree (served) against a padded row per line."""
    tokenizer, tree_ms, rows_ms, shared, total = model.tokenizer, 0.0, 0.0, 0, 0
    for u in lists:
        texts = [t for t, *_ in u["hyps"][:n]]
        if not any(texts):
            continue
        started = time.perf_counter()
        tree = text_log_probs(model.llm, tokenizer, texts, context)
        tree_ms += (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        rows = row_log_probs(model.llm, tokenizer, texts, context)
        rows_ms += (time.perf_counter() - started) * 1000
        assert max(abs(a - b) for a, b in zip(tree, rows, strict=True)) < 1e-2, (tree, rows)
        lines = [tuple(tokenizer(context + t[:1].upper() + t[1:] + "\n").input_ids) for t in texts]
        shared += len({line[:k] for line in lines for k in range(1, len(line) + 1)})
        total += sum(map(len, lines))
    return (
        f"{tree_ms / len(lists):.0f} ms/dev clip as a token tree ({100 * shared / total:.0f} % of the lines' tokens), "
        f"{rows_ms / len(lists):.0f} ms as padded rows"
    )


def pick(lists: list[dict], alpha: float, beta: float, n: int) -> list[str]:
    """Each utterance's rescored transcript among its ``n`` acoustically best hypotheses."""
    return [
        best_hypothesis([(t, c) for t, c, _ in u["hyps"][:n]], [g for *_, g in u["hyps"][:n]], alpha, beta)
        for u in lists
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="checkpoints/recogniser")
    parser.add_argument("--tune", required=True, help="manifest of clips neither dev nor unseen, never trained on")
    parser.add_argument("--tune-n", type=int, default=150)
    parser.add_argument("--beam", type=int, default=16)
    parser.add_argument("--context", default=SCORING_CONTEXT, help="the text each hypothesis is scored after")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, _ = load_model(args.model)
    cache = FeatureCache.for_model(model)
    model.optimize_for_inference()  # scored, and timed, as served
    started = time.time()
    lists = {"tune": n_best_lists(model, cache, args.tune, slice(0, args.tune_n), args.beam, args.context)}
    for name, manifest in SETS.items():
        lists[name] = n_best_lists(model, cache, manifest, slice(None), args.beam, args.context)
    n = sum(map(len, lists.values()))
    print(f"{n} utterances, {(time.time() - started) / n:.2f} s each (beam search + LLM scoring)")

    def score(name: str, alpha: float, beta: float, n: int) -> float:
        return wer([u["ref"] for u in lists[name]], pick(lists[name], alpha, beta, n))

    for name, rows in lists.items():
        refs = [u["ref"] for u in rows]
        oracle = [min((h[0] for h in u["hyps"]), key=lambda t: wer([u["ref"]], [t]), default="") for u in rows]
        print(
            f"{name}: greedy {wer(refs, [u['greedy'] for u in rows]):.3f}, "
            f"beam {score(name, 0.0, 0.0, args.beam):.3f}, "
            f"oracle of the {args.beam}-best {wer(refs, oracle):.3f} ({len(rows)} utterances)"
        )
    # The LLM's cost grows with the hypotheses it scores: how much of the gain do fewer keep?
    for n in sorted({n for n in (4, 8, 16, 32) if n < args.beam} | {args.beam}):
        alpha, beta = min(itertools.product(ALPHAS, BETAS), key=lambda ab: score("tune", *ab, n))
        rescored = ", ".join(f"{name} {score(name, alpha, beta, n):.3f}" for name in lists)
        cost = scoring_costs(model, lists["dev"], n, args.context)
        print(f"LLM-rescored {n}-best (alpha={alpha}, beta={beta}, chosen on tune): {rescored}; {cost}")


if __name__ == "__main__":
    main()
