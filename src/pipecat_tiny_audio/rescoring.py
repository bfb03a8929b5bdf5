"""The LLM choosing among the recogniser's hypotheses: CTC prefix beam search, LLM fusion and rescoring.

A recogniser (a projector with its own CTC head) spells what it hears, often phonetically ("se a
timer"). Its N best transcripts differ exactly where the audio is ambiguous, and the LLM, reading
each one as text, knows which of them is English ("set a timer"). The LLM steers the beam while it
is pruned (:class:`FusedBeamSearch`), then picks among its N best by ``ctc + lm_weight * llm +
word_bonus * words`` (:func:`best_hypothesis`); it cannot write anything the audio does not
support, which is how the trained LLM readings of issue 12 failed (they paraphrase).
"""

from __future__ import annotations

import copy
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


class PrefixBeam:
    """A CTC prefix beam search advanced a frame at a time, so it can follow audio as it arrives.

    Label sequences (blank = 0) are the beam's prefixes; the ``per_frame`` most likely classes of
    each frame extend them, and the ``beam`` best survive. Prefixes that spell the same text are
    merged only in :meth:`hypotheses`.
    """

    def __init__(self, vocabulary: CharacterVocabulary, beam: int, per_frame: int = 8):
        self.vocabulary, self.beam, self.per_frame = vocabulary, beam, per_frame
        self.prefixes: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, -math.inf)}  # -> (blank, label)

    def grow(self, frame: torch.Tensor) -> dict[tuple[int, ...], list[float]]:
        """The candidates one more frame of log-posteriors (classes,) makes of the beam."""
        top = frame.topk(min(self.per_frame, frame.numel()))
        candidates = list(zip(top.indices.tolist(), top.values.tolist(), strict=True))
        grown: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [-math.inf, -math.inf])
        for prefix, (blank, label) in self.prefixes.items():
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
        return grown

    def keep(self, grown: dict[tuple[int, ...], list[float]], bonus: list[float] | None = None) -> None:
        """Keep the ``beam`` best candidates by CTC score plus ``bonus`` (one per candidate), best first."""
        extra = dict(zip(grown, bonus, strict=True)) if bonus is not None else defaultdict(float)
        best = sorted(grown.items(), key=lambda item: -_logaddexp(*item[1]) - extra[item[0]])[: self.beam]
        self.prefixes = {prefix: (b, lab) for prefix, (b, lab) in best}

    def hypotheses(self) -> list[tuple[str, float]]:
        """(text, CTC log-probability) of the beam, best first."""
        texts: dict[str, float] = {}
        for prefix, (blank, label) in self.prefixes.items():
            text = self.vocabulary.decode(prefix)
            texts[text] = _logaddexp(texts.get(text, -math.inf), _logaddexp(blank, label))
        return sorted(texts.items(), key=lambda item: -item[1])


def prefix_beam_search(
    log_probs: torch.Tensor, vocabulary: CharacterVocabulary, beam: int, per_frame: int = 8
) -> list[tuple[str, float]]:
    """Up to ``beam`` (text, CTC log-probability) of one utterance's [frames, classes] log-posteriors, best first."""
    search = PrefixBeam(vocabulary, beam, per_frame)
    for frame in log_probs.float():
        search.keep(search.grow(frame))
    return search.hypotheses()


class FusedBeamSearch:
    """A :class:`PrefixBeam` that the LLM steers while it prunes (shallow fusion).

    A candidate ranks by ``ctc + lm_weight * llm(finished words) + word_bonus * words``: the LLM's
    log-probability of its words up to the last space, as the beginning of a line. Rescoring only
    picks among the N best the acoustics keep, and the recogniser's misspellings ("hul loww can you
    har mey") often push the right words out before the LLM sees them; fused, it keeps them in.

    The LLM scores the candidates' new word sequences once every ``every`` frames (a chunk of audio:
    one tree pass, see :func:`text_log_prob_steps`); in between, a candidate's words count as far as
    they were scored. With ``lm_weight = word_bonus = 0`` it is a plain beam search.
    """

    def __init__(self, vocabulary: CharacterVocabulary, beam: int, lm_weight: float, word_bonus: float, every: int):
        self.beam = PrefixBeam(vocabulary, beam)
        self.lm_weight, self.word_bonus, self.every = lm_weight, word_bonus, every
        self.scores: dict[str, float] = {"": 0.0}  # the LLM's log-probability of each word sequence scored
        self.frames = 0

    def copy(self) -> FusedBeamSearch:
        """An independent copy (a final that must not change the stream it finishes)."""
        other = copy.copy(self)
        other.beam = copy.copy(self.beam)
        other.scores = dict(self.scores)
        return other

    def advance_steps(
        self, log_probs: torch.Tensor, embed: Callable[[torch.Tensor], torch.Tensor], tokenizer
    ) -> Steps[None]:
        """Take in more [frames, classes] log-posteriors; yields the LLM's scoring passes."""
        fused = bool(self.lm_weight or self.word_bonus)
        for frame in log_probs.float():
            grown = self.beam.grow(frame)
            self.frames += 1
            if not fused:
                self.beam.keep(grown)
                continue
            texts = [self._finished_words(prefix) for prefix in grown]
            new = [t for t in dict.fromkeys(texts) if t not in self.scores]
            if new and self.lm_weight and self.frames % self.every == 0:
                scores = yield from text_log_prob_steps(embed, tokenizer, new, finished=False)
                self.scores.update(zip(new, scores, strict=True))
            self.beam.keep(grown, [self.lm_weight * self._known(t) + self.word_bonus * len(t.split()) for t in texts])

    def best(self) -> str:
        """The text of the beam's best candidate (what a partial shows)."""
        return self.beam.vocabulary.decode(next(iter(self.beam.prefixes)))

    def hypotheses(self) -> list[tuple[str, float]]:
        """(text, CTC log-probability) of the beam, best first by CTC alone."""
        return self.beam.hypotheses()

    def _finished_words(self, prefix: tuple[int, ...]) -> str:
        spelled = "".join(self.beam.vocabulary.symbols[i - 1] for i in prefix)
        return " ".join(spelled[: spelled.rfind(" ")].split()) if " " in spelled.strip() else ""

    def _known(self, text: str) -> float:
        """The LLM's score of the longest scored beginning of ``text``."""
        words = text.split()
        return next(self.scores[t] for k in range(len(words), -1, -1) if (t := " ".join(words[:k])) in self.scores)


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
