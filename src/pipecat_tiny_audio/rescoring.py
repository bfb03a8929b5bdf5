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
from pipecat_tiny_audio.decoding import Forward, Steps, run_steps
from pipecat_tiny_audio.lexicon import Lexicon

SCORING_CONTEXT = "Someone said:\n"
PRECEDING_WORDS = 24  # at most this many words said just before are read as the start of the line
# Until the LLM reads them, a candidate's words after its scored ones count as the lexicon's frequency guess
# less this margin: a little below what the LLM gives most words, so a candidate it has not read rarely
# outranks one it has (docs/ablations.md, "Which words the final's LLM reads").
UNSCORED_WORD_MARGIN = 2.0


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


class TextScorer:
    """The LLM's log-probabilities of texts as the line after a context, all calls growing one token tree.

    Texts are scored as a tree of tokens (tree attention): each prefix they share is one token of the
    pass, attending only to its ancestors, so the N best ("set a timer" / "set a time her") cost little
    more than one of them. The tree and its keys and values stay in :attr:`cache` between calls: a
    beam's texts grow by a word a chunk, so a later call computes only the new words' tokens, attached
    to the end of a text scored before, whose next-token log-probabilities are kept (the texts of
    :meth:`keep_ends`; any other text's tokens are computed again from the nearest kept end). One
    pass per call, which a scheduler can batch with other sessions' passes.

    ``preceding``: words said just before (a turn the VAD split at a short pause): the texts are scored
    as their continuation on the same line, so "change the address" after "I want to" reads as English.
    """

    def __init__(
        self,
        embed: Callable[[torch.Tensor], torch.Tensor],
        tokenizer,
        context: str = SCORING_CONTEXT,
        preceding: str = "",
    ):
        self.embed, self.tokenizer = embed, tokenizer
        preceding = " ".join(preceding.split()[-PRECEDING_WORDS:])
        self._continues = bool(preceding)
        self.context = tuple(tokenizer(context + _capitalized(preceding), add_special_tokens=False).input_ids)
        self.cache = DynamicCache()
        self._nodes: dict[tuple[int, ...], int] = {}  # a token path (context first) -> its last token's cache index
        self._lineage: list[list[int]] = []  # per cached token: the cache indices of its ancestors and itself
        self._total: list[float] = []  # per cached token: the log-probability of its path after the context
        self._next: dict[int, torch.Tensor] = {}  # cache index -> log-probabilities of the token after it
        self._paths: dict[tuple[str, bool], tuple[int, ...]] = {}  # tokenized texts, shared with forks

    def fork(self) -> TextScorer:
        """A scorer that starts from this one's tree; its passes append to the same :attr:`cache`, so
        whoever forks truncates the cache back when done with the fork."""
        other = copy.copy(self)
        other._nodes, other._lineage, other._total = dict(self._nodes), list(self._lineage), list(self._total)
        other._next = dict(self._next)
        return other

    def score_steps(self, texts: list[str], finished: bool = True) -> Steps[list[float]]:
        """Each text's log-probability as the line after the context (its newline included when
        ``finished``, else as the beginning of that line); at most one pass, for the tokens not in the tree.

        A finished line's last token is scored from the row of the token before it and gets no row of its
        own: nothing ever follows it, so the pass computes one token less per line (a final's N best)."""
        paths = [self._path(text, finished) for text in texts]
        past = self.cache.get_seq_length()
        new: dict[tuple[int, ...], int] = {}  # a path prefix -> its token's index in this pass
        parents: list[int] = []  # per token of the pass: its parent's cache index after the pass (-1: none)
        for path in paths:
            body = path[:-1] if finished else path  # the tokens that need rows
            if path in self._nodes or body in new or (finished and self._nodes.get(body) in self._next):
                continue
            start = next(
                (k for k in range(len(body) - 1, 0, -1) if body[:k] in new or self._nodes.get(body[:k]) in self._next),
                0,
            )
            for end in range(start + 1, len(body) + 1):
                if body[:end] not in new:
                    parent = body[: end - 1]
                    parents.append(past + new[parent] if parent in new else self._nodes.get(parent, -1))
                    new[body[:end]] = len(parents) - 1
        log_probs = None
        if new:
            visible = torch.zeros(len(new), past + len(new), dtype=torch.bool)
            lineage = []
            for i, parent in enumerate(parents):
                above = [] if parent < 0 else self._lineage[parent] if parent < past else lineage[parent - past]
                lineage.append([*above, past + i])
                visible[i, lineage[-1]] = True
            tokens = torch.tensor([[prefix[-1] for prefix in new]])
            logits = yield Forward(self.embed(tokens), self.cache, len(new), visible)
            log_probs = logits.float().log_softmax(-1)  # the row of a token predicts the token after it
            for (prefix, i), parent, line in zip(new.items(), parents, lineage, strict=True):
                self._nodes[prefix] = past + i
                self._lineage.append(line)
                self._total.append(self._after(prefix, parent, log_probs, past))
            for path in [*paths, self.context]:
                if path in new:
                    self._next[past + new[path]] = log_probs[new[path]]
        if not finished:
            return [self._total[self._nodes[path]] for path in paths]
        return [
            self._total[self._nodes[path]]
            if path in self._nodes
            else self._after(path, self._nodes[path[:-1]], log_probs, past)
            for path in paths
        ]

    def _after(self, path: tuple[int, ...], parent: int, log_probs: torch.Tensor | None, past: int) -> float:
        """The log-probability of ``path`` after the context, from its parent's (cache index ``parent``)
        total and next-token row (this pass's ``log_probs`` from ``past`` on, or a kept one)."""
        if len(path) <= len(self.context):
            return 0.0
        after = log_probs[parent - past] if parent >= past else self._next[parent]
        return self._total[parent] + after[path[-1]].item()

    def keep_ends(self, texts: list[str]) -> None:
        """Keep the next-token log-probabilities of these unfinished texts' ends only (and the context's)."""
        keep = {self._nodes.get(self._path(text, finished=False)) for text in texts}
        keep.add(self._nodes.get(self.context))
        self._next = {index: row for index, row in self._next.items() if index in keep}

    def _path(self, text: str, finished: bool) -> tuple[int, ...]:
        path = self._paths.get((text, finished))
        if path is None:
            line = " " + text if self._continues else _capitalized(text)
            line += "\n" if finished else ""  # a line's beginning has no newline yet
            path = self._paths[text, finished] = self.context + tuple(
                self.tokenizer(line, add_special_tokens=False).input_ids
            )
        return path


class FusedBeamSearch:
    """A :class:`PrefixBeam` that the LLM steers while it prunes (shallow fusion).

    A candidate ranks by ``ctc + lm_weight * llm(finished words) + word_bonus * words - oov_penalty *
    unknown words``: the LLM's log-probability of its words up to the last space, as the beginning of a
    line, and how many of those words ``lexicon`` does not know. Rescoring only
    picks among the N best the acoustics keep, and the recogniser's misspellings ("hul loww can you
    har mey") often push the right words out before the LLM sees them; fused, it keeps them in.

    The LLM (``scorer``) scores the new word sequences of the candidates that can stay in the beam once
    every ``every`` frames (a chunk of audio: one pass; 0: never); until it reads a word, the word counts as the
    lexicon's frequency guess (:meth:`Lexicon.log_frequency`, less ``UNSCORED_WORD_MARGIN``).
    With ``lm_weight = word_bonus = oov_penalty = 0`` it is a plain beam search and needs no scorer.
    """

    def __init__(
        self,
        vocabulary: CharacterVocabulary,
        beam: int,
        lm_weight: float,
        word_bonus: float,
        every: int,
        scorer: TextScorer | None = None,
        oov_penalty: float = 0.0,
        lexicon: Lexicon | None = None,
    ):
        if lm_weight and scorer is None:
            raise ValueError("an LLM weight needs a scorer")
        if oov_penalty and lexicon is None:
            raise ValueError("an out-of-lexicon penalty needs a lexicon")
        self.beam = PrefixBeam(vocabulary, beam)
        self.lm_weight, self.word_bonus, self.every = lm_weight, word_bonus, every
        self.oov_penalty, self.lexicon = oov_penalty, lexicon
        self.scorer = scorer
        self.scores: dict[str, float] = {"": 0.0}  # the LLM's log-probability of each word sequence scored
        self.frames = 0
        self._spelled: dict[tuple[int, ...], str] = {(): ""}  # the text of each prefix in the beam
        self._judged: dict[str, tuple[str, float]] = {}  # see _judge; shared with copies

    def copy(self) -> FusedBeamSearch:
        """An independent copy (a final that must not change the stream it finishes); its scorer is a
        :meth:`TextScorer.fork`."""
        other = copy.copy(self)
        other.beam = copy.copy(self.beam)
        other.scores = dict(self.scores)
        other.scorer = self.scorer.fork() if self.scorer is not None else None
        return other

    def restarted(self, ask_llm: bool = True) -> FusedBeamSearch:
        """A search from the start of the audio that keeps this one's LLM scores: posteriors of the same
        speech computed another way rescore mostly the same words, and those cost no LLM pass. Its scorer
        is a :meth:`TextScorer.fork`. Without ``ask_llm`` it never passes the LLM new words: they count as
        the lexicon's guesses, so the search costs no LLM pass at all."""
        other = self.copy()
        other.every = self.every if ask_llm else 0
        other.beam = PrefixBeam(self.beam.vocabulary, self.beam.beam, self.beam.per_frame)
        other.frames = 0
        other._spelled = {(): ""}
        return other

    def advance_steps(self, log_probs: torch.Tensor) -> Steps[None]:
        """Take in more [frames, classes] log-posteriors; yields the LLM's scoring passes."""
        fused = bool(self.lm_weight or self.word_bonus or self.oov_penalty)
        symbols = self.beam.vocabulary.symbols
        for frame in log_probs.float():
            grown = self.beam.grow(frame)
            self.frames += 1
            if not fused:
                self.beam.keep(grown)
                continue
            # A candidate is a beam prefix or one label longer: its text grows from its parent's.
            spelled = {
                p: self._spelled[p] if p in self._spelled else self._spelled[p[:-1]] + symbols[p[-1] - 1] for p in grown
            }
            judged = [self._judge(text) for text in spelled.values()]
            texts = [finished for finished, _ in judged]
            if self.lm_weight and self.every and self.frames % self.every == 0:
                new = [t for t in self._contenders(grown, judged) if t not in self.scores]
                if new:
                    scores = yield from self.scorer.score_steps(new, finished=False)
                    self.scores.update(zip(new, scores, strict=True))
                self.scorer.keep_ends(list(dict.fromkeys(texts)))
            llm = {t: self.lm_weight * self._known(t) for t in set(texts)} if self.lm_weight else {}
            self.beam.keep(grown, [llm.get(finished, 0.0) + words for finished, words in judged])
            self._spelled = {p: spelled[p] for p in self.beam.prefixes}

    def best(self) -> str:
        """The text of the beam's best candidate (what a partial shows)."""
        return self.beam.vocabulary.decode(next(iter(self.beam.prefixes)))

    def hypotheses(self) -> list[tuple[str, float]]:
        """(text, CTC log-probability) of the beam, best first by CTC alone."""
        return self.beam.hypotheses()

    def _contenders(self, grown: dict[tuple[int, ...], list[float]], judged: list[tuple[str, float]]) -> list[str]:
        """The finished texts of the candidates that rank within the beam on the LLM's scores so far and
        guesses for the rest: the only ones worth the LLM's reading (dev finals read 56 instead of 79
        tokens, at the same WER: docs/probes/final_passes.py)."""
        guess = {finished: self.lm_weight * self._known(finished) for finished, _ in judged}
        ranked = sorted(
            zip(grown.values(), judged, strict=True), key=lambda c: -_logaddexp(*c[0]) - guess[c[1][0]] - c[1][1]
        )
        return list(dict.fromkeys(finished for _, (finished, _) in ranked[: self.beam.beam]))

    def _judge(self, spelled: str) -> tuple[str, float]:
        """A candidate's finished words, and what its words add to its CTC score besides the LLM: the word
        bonus and ``oov_penalty`` per unknown finished word and per unfinished one that no known word
        begins with (a beam that waited for the word's end to judge it would have pruned the real word's
        spelling by then). Candidates keep their text for many frames, so each text is judged once."""
        judged = self._judged.get(spelled)
        if judged is None:
            finished = _finished_words(spelled)
            words = len(finished.split())
            unknown = 0
            if self.oov_penalty:
                pending = spelled.split()[words:]
                unknown = self.lexicon.unknown(finished) + sum(not self.lexicon.can_begin(word) for word in pending)
            judged = self._judged[spelled] = (finished, self.word_bonus * words - self.oov_penalty * unknown)
        return judged

    def _known(self, text: str) -> float:
        """The LLM's score of the longest scored beginning of ``text``, plus a guess for each word after it."""
        words = text.split()
        for k in range(len(words), -1, -1):
            if (scored := " ".join(words[:k])) in self.scores:
                return self.scores[scored] + sum(self._guess(word) for word in words[k:])
        raise AssertionError("the empty text is always scored")

    def _guess(self, word: str) -> float:
        """A stand-in for the LLM's score of a word it has not read yet (0 without a lexicon)."""
        return self.lexicon.log_frequency(word) - UNSCORED_WORD_MARGIN if self.lexicon is not None else 0.0


def _capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


def _finished_words(spelled: str) -> str:
    """The words of a candidate's text that a space has closed (the last one may still grow)."""
    return " ".join(spelled[: spelled.rfind(" ")].split()) if " " in spelled.strip() else ""


def text_log_probs(
    llm, tokenizer, texts: list[str], context: str = SCORING_CONTEXT, finished: bool = True
) -> list[float]:
    """Each text's log-probability under the LLM as the line after ``context`` (its newline included
    when ``finished``, else as the beginning of that line): one tree pass (:class:`TextScorer`)."""
    table = llm.get_input_embeddings()

    def embed(ids: torch.Tensor) -> torch.Tensor:
        return table(ids.to(table.weight.device))

    return run_steps(llm, TextScorer(embed, tokenizer, context).score_steps(texts, finished))


def best_hypothesis(
    hypotheses: list[tuple[str, float]],
    lm_scores: list[float],
    lm_weight: float,
    word_bonus: float,
    oov_penalty: float = 0.0,
    lexicon: Lexicon | None = None,
) -> str:
    """The hypothesis with the best ``ctc + lm_weight * llm + word_bonus * words - oov_penalty * unknown
    words`` ("" for none)."""
    if oov_penalty and lexicon is None:
        raise ValueError("an out-of-lexicon penalty needs a lexicon")

    def score(text: str, ctc: float, lm: float) -> float:
        unknown = lexicon.unknown(text) if oov_penalty else 0
        return ctc + lm_weight * lm + word_bonus * len(text.split()) - oov_penalty * unknown

    scored = [(score(text, ctc, lm), text) for (text, ctc), lm in zip(hypotheses, lm_scores, strict=True)]
    return max(scored)[1] if scored else ""
