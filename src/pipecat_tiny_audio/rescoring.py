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

import torch

from pipecat_tiny_audio.characters import CharacterVocabulary

SCORING_CONTEXT = "Someone said:\n"


def _logaddexp(a: float, b: float) -> float:
    if a < b:
        a, b = b, a
    return a if b == -math.inf else a + math.log1p(math.exp(b - a))


def prefix_beam_search(
    log_probs: torch.Tensor, vocabulary: CharacterVocabulary, beam: int, per_frame: int = 8
) -> list[tuple[str, float]]:
    """Up to ``beam`` (text, CTC log-probability) of one utterance's [frames, classes] log-posteriors, best first.

    Label sequences (blank = 0) are the beam's prefixes; ``per_frame`` most likely classes of each
    frame extend them; prefixes that spell the same text are merged at the end.
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
        best = sorted(grown.items(), key=lambda item: -_logaddexp(*item[1]))[:beam]
        beams = {prefix: (b, lab) for prefix, (b, lab) in best}
    texts: dict[str, float] = {}
    for prefix, (blank, label) in beams.items():
        text = vocabulary.decode(prefix)
        texts[text] = _logaddexp(texts.get(text, -math.inf), _logaddexp(blank, label))
    return sorted(texts.items(), key=lambda item: -item[1])


@torch.no_grad()
def text_log_probs(llm, tokenizer, texts: list[str]) -> list[float]:
    """Each text's log-probability under the LLM as one line someone said (its newline included)."""
    context = tokenizer(SCORING_CONTEXT, add_special_tokens=False).input_ids
    rows = [tokenizer(t[:1].upper() + t[1:] + "\n", add_special_tokens=False).input_ids for t in texts]
    width = max(map(len, rows))
    device = next(llm.parameters()).device
    ids = torch.tensor([context + r + [0] * (width - len(r)) for r in rows], device=device)
    mask = torch.tensor([[1] * (len(context) + len(r)) + [0] * (width - len(r)) for r in rows], device=device)
    log_probs = llm(input_ids=ids, attention_mask=mask).logits[:, :-1].float().log_softmax(-1)
    picked = log_probs.gather(-1, ids[:, 1:, None])[..., 0]
    start = len(context) - 1  # the position that predicts the text's first token
    return [picked[i, start : start + len(r)].sum().item() for i, r in enumerate(rows)]


def best_hypothesis(
    hypotheses: list[tuple[str, float]], lm_scores: list[float], lm_weight: float, word_bonus: float
) -> str:
    """The hypothesis with the best ``ctc + lm_weight * llm + word_bonus * words`` ("" for none)."""
    scored = [
        (ctc + lm_weight * lm + word_bonus * len(text.split()), text)
        for (text, ctc), lm in zip(hypotheses, lm_scores, strict=True)
    ]
    return max(scored)[1] if scored else ""
