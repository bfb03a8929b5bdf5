"""The LLM choosing among the recogniser's hypotheses: CTC prefix beam search + LLM rescoring.

A recogniser (a projector with its own CTC head) spells what it hears, often phonetically ("se a
timer"). Its N best transcripts differ exactly where the audio is ambiguous, and the LLM, reading
each one as text, knows which of them is English ("set a timer"). The pick maximises
``ctc + lm_weight * llm + word_bonus * words``; the LLM cannot write anything the audio does not
support, which is how the trained LLM readings of issue 12 failed (they paraphrase).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable

import torch
from transformers import DynamicCache

from pipecat_tiny_audio.characters import CharacterVocabulary
from pipecat_tiny_audio.decoding import Forward, Steps, run_steps, tree_visibility

SCORING_CONTEXT = "Someone said:\n"


def _logaddexp(a: float, b: float) -> float:
    if a < b:
        a, b = b, a
    return a if b == -math.inf else a + math.log1p(math.exp(b - a))


def prefix_beam_search(
    log_probs: torch.Tensor,
    vocabulary: CharacterVocabulary,
    beam: int,
    per_frame: int = 8,
    bonus: Callable[[list[tuple[int, ...]]], list[float]] | None = None,
) -> list[tuple[str, float]]:
    """Up to ``beam`` (text, CTC log-probability) of one utterance's [frames, classes] log-posteriors, best first.

    Label sequences (blank = 0) are the beam's prefixes; ``per_frame`` most likely classes of each
    frame extend them; prefixes that spell the same text are merged at the end. ``bonus`` adds a
    score of each candidate prefix (say, a language model's opinion of its finished words) when
    the beam is pruned; the scores returned are CTC's alone.
    """
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, -math.inf)}  # prefix -> (blank, label)
    for frame in log_probs.float():
        top = frame.topk(min(per_frame, frame.numel()))
        candidates = list(zip(top.indices.tolist(), top.values.tolist(), strict=True))
        grown: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [-math.inf, -math.inf])
        for prefix, (blank, label) in beams.items():
            total = _logaddexp(blank, label)
            for c, p in candidates:
                if c == 0:
                    grown[prefix][0] = _logaddexp(grown[prefix][0], total + p)
                elif prefix and prefix[-1] == c:
                    grown[prefix][1] = _logaddexp(grown[prefix][1], label + p)  # the same label goes on
                    longer = grown[(*prefix, c)]
                    longer[1] = _logaddexp(longer[1], blank + p)  # a new one after a blank
                else:
                    longer = grown[(*prefix, c)]
                    longer[1] = _logaddexp(longer[1], total + p)
        extra = dict(zip(grown, bonus(list(grown)), strict=True)) if bonus is not None else defaultdict(float)
        best = sorted(grown.items(), key=lambda item: -_logaddexp(*item[1]) - extra[item[0]])[:beam]
        beams = {prefix: (b, lab) for prefix, (b, lab) in best}
    texts: dict[str, float] = {}
    for prefix, (blank, label) in beams.items():
        text = vocabulary.decode(prefix)
        texts[text] = _logaddexp(texts.get(text, -math.inf), _logaddexp(blank, label))
    return sorted(texts.items(), key=lambda item: -item[1])


def text_log_prob_steps(
    embed: Callable[[torch.Tensor], torch.Tensor],
    tokenizer,
    texts: list[str],
    context: str = SCORING_CONTEXT,
    finished: bool = True,
) -> Steps[list[float]]:
    """:func:`text_log_probs` as steps: one LLM pass over the texts' token trie.

    The N best share most of their tokens ("set a timer" / "set a time her"), so each prefix they
    share is one token of the pass, attending only to its own ancestors (tree attention). On the
    committed recogniser's 8 best of the dev clips that is 45 % of the lines' tokens, in a single
    pass that a scheduler can batch with other sessions' passes (``docs/probes/llm_rescoring.py``).
    """
    context = tokenizer(context, add_special_tokens=False).input_ids
    newline = "\n" if finished else ""  # a line's beginning has no newline yet
    lines = [t[:1].upper() + t[1:] + newline for t in texts]
    rows = [tuple(context + tokenizer(line, add_special_tokens=False).input_ids) for line in lines]
    nodes: dict[tuple[int, ...], int] = {}  # a prefix of some row -> its last token's index in the pass
    parents: list[int] = []
    for row in rows:
        for end in range(1, len(row) + 1):
            if row[:end] not in nodes:
                nodes[row[:end]] = len(parents)
                parents.append(nodes[row[: end - 1]] if end > 1 else -1)
    tokens = torch.tensor([[prefix[-1] for prefix in nodes]])
    logits = yield Forward(embed(tokens), DynamicCache(), len(parents), tree_visibility(parents))
    log_probs = logits.float().log_softmax(-1)  # the row of a prefix predicts the token after it
    return [sum(log_probs[nodes[row[:end]], row[end]].item() for end in range(len(context), len(row))) for row in rows]


def text_log_probs(
    llm, tokenizer, texts: list[str], context: str = SCORING_CONTEXT, finished: bool = True
) -> list[float]:
    """Each text's log-probability under the LLM as the line after ``context`` (its newline included
    when ``finished``, else as the beginning of that line)."""
    table = llm.get_input_embeddings()

    def embed(ids: torch.Tensor) -> torch.Tensor:
        return table(ids.to(table.weight.device))

    return run_steps(llm, text_log_prob_steps(embed, tokenizer, texts, context, finished))


def best_hypothesis(
    hypotheses: list[tuple[str, float]], lm_scores: list[float], lm_weight: float, word_bonus: float
) -> str:
    """The hypothesis with the best ``ctc + lm_weight * llm + word_bonus * words`` ("" for none)."""
    scored = [
        (ctc + lm_weight * lm + word_bonus * len(text.split()), text)
        for (text, ctc), lm in zip(hypotheses, lm_scores, strict=True)
    ]
    return max(scored)[1] if scored else ""
