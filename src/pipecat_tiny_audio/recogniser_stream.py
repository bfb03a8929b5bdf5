"""RecogniserStream: a recogniser's transcript of one segment, worked out block by block as audio arrives.

A recogniser (``reading="rescore"``: a ``chunk_transformer`` projector with its own CTC head)
attends block-causally, so the CTC posteriors of a block of encoder frames never change once the
block is complete. The stream computes each block's posteriors once
(:meth:`~pipecat_tiny_audio.projectors.ChunkTransformerProjector.encode_block`) and advances the
LLM-fused beam search over them (:class:`~pipecat_tiny_audio.rescoring.FusedBeamSearch`: one LLM
pass per block). A partial is the beam's best candidate, for free; the final takes in the frames
that are not final yet (the unfinished chunk, chunks still waiting for their look-ahead) on a copy
of the beam, and the LLM rescores its N best in one more pass. With the model's ``whole_utterance_final``
the final instead runs a fresh beam over the segment's whole-utterance features, keeping the LLM's scores
of the words the stream has scored.

Offline transcription runs the same stream over all of an utterance's frames at once, so a
streamed final equals the offline transcript exactly. Like the decoder, it yields its LLM passes
as steps (see :mod:`~pipecat_tiny_audio.decoding`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from pipecat_tiny_audio.decoding import Compute, Steps, truncate_cache
from pipecat_tiny_audio.lexicon import Lexicon
from pipecat_tiny_audio.rescoring import FusedBeamSearch, TextScorer, best_hypothesis

if TYPE_CHECKING:
    from pipecat_tiny_audio.modeling import TinyAudioModel


class RecogniserStream:
    """The recogniser's side of one segment: feed encoder frames, read a partial, take the final.

    Args:
        model: a :class:`~pipecat_tiny_audio.modeling.TinyAudioModel` whose projector has a CTC head;
            its config gives the beam size and the LLM's fusion and rescoring weights.
        preceding: words said just before the segment, which the LLM reads it as continuing.
    """

    def __init__(self, model: TinyAudioModel, preceding: str = ""):
        self.model = model
        projector, config = model.projector, model.config
        self._block = projector.block_frames
        self._pending = torch.zeros(0, config.encoder_dim)  # frames of the block not yet complete
        self._past: list[torch.Tensor] = []  # each projector layer's inputs at the blocks it still attends to
        self._positions = 0  # CTC positions of the complete blocks
        self._lexicon = Lexicon.default() if config.oov_penalty else None
        self._search = FusedBeamSearch(
            projector.vocabulary,
            config.rescore_beam,
            config.fusion_lm_weight,
            config.fusion_word_bonus,
            every=self._block // projector.stride,
            scorer=TextScorer(model.embed_tokens, model.tokenizer, preceding=preceding),
            oov_penalty=config.oov_penalty,
            lexicon=self._lexicon,
        )

    def feed_steps(self, frames: torch.Tensor) -> Steps[None]:
        """Take in encoder frames (frames, d) that will not change; each block they complete advances the beam."""
        self._pending = torch.cat([self._pending, frames.to(self._pending)])
        while self._pending.shape[0] >= self._block:
            block, self._pending = self._pending[: self._block], self._pending[self._block :]
            (log_probs,), self._past, self._positions = yield self._log_probs(block, self._past, self._positions)
            yield from self._search.advance_steps(log_probs)

    def partial(self) -> str:
        """The beam's best text for the complete blocks fed so far."""
        return _capitalized(self._search.best())

    def final_steps(self, tail: torch.Tensor) -> Steps[str]:
        """Transcript of the frames fed plus ``tail`` (frames, d) that may still change; the stream
        itself is left as it was, so more frames may follow."""
        rest = torch.cat([self._pending, tail.to(self._pending)])
        return (yield from self._finish(self._search.copy(), rest, self._past, self._positions))

    def read_ahead_steps(self, tail: torch.Tensor) -> Steps[str]:
        """The beam's best text for the frames fed plus ``tail`` (frames, d) that may still change, without the
        LLM: new words count as the lexicon's guesses and nothing is rescored, so it costs only the tail's
        posteriors (a partial that reads ahead of the complete chunks). The stream itself is left as it was."""
        search = self._search.copy()
        search.every = 0
        rest = torch.cat([self._pending, tail.to(self._pending)])
        for log_probs in (yield from self._tail_log_probs(rest, self._past, self._positions)):
            yield from search.advance_steps(log_probs)
        return _capitalized(search.best())

    def whole_final_steps(self, whole: torch.Tensor) -> Steps[str]:
        """Transcript of the segment's whole-utterance features ``whole`` (frames, d) instead of its chunks':
        the beam starts over on them, keeping the LLM's scores of the stream's words, so it passes the LLM
        only the words the stream did not have (none with the model's ``whole_final_fusion`` off: then
        the LLM reads only the N best, in the rescoring pass). The stream itself is left as it was."""
        search = self._search.restarted(ask_llm=self.model.config.whole_final_fusion)
        return (yield from self._finish(search, whole.to(self._pending), [], 0))

    def _finish(
        self, search: FusedBeamSearch, rest: torch.Tensor, past: list[torch.Tensor], positions: int
    ) -> Steps[str]:
        """Advance ``search`` (a copy: the stream's own is not touched) over ``rest``, then let the LLM pick."""
        scored = search.scorer.cache.get_seq_length()
        try:
            for log_probs in (yield from self._tail_log_probs(rest, past, positions)):
                yield from search.advance_steps(log_probs)
            hypotheses = search.hypotheses()
            texts = [text for text, _ in hypotheses]
            lm_scores = [0.0] * len(texts)
            if any(texts):
                lm_scores = yield from search.scorer.score_steps(texts)
        finally:
            truncate_cache(search.scorer.cache, scored)  # the final's tokens are not the stream's
        config = self.model.config
        text = best_hypothesis(
            hypotheses,
            lm_scores,
            config.rescore_lm_weight,
            config.rescore_word_bonus,
            config.oov_penalty,
            self._lexicon,
        )
        return _capitalized(text)

    def _tail_log_probs(self, frames: torch.Tensor, past: list[torch.Tensor], positions: int) -> Steps[list]:
        """Each block's log-posteriors of frames the stream keeps no state for (none: no unit of work)."""
        return (yield self._log_probs(frames, past, positions))[0] if frames.shape[0] else []

    def _log_probs(self, frames: torch.Tensor, past: list[torch.Tensor], positions: int) -> Compute:
        """Computing the CPU float [positions, classes] CTC log-posteriors of each block of ``frames`` in turn,
        with the ``past`` and first position of the block after them: a unit of work a scheduler may run beside
        LLM passes, as it does the chunk's encoding. All the blocks of a final are one unit, so it does not
        wait its turn again for each of them."""

        @torch.no_grad()
        def compute() -> tuple[list[torch.Tensor], list[torch.Tensor], int]:
            projector = self.model.projector
            weights = next(projector.parameters())
            blocks, at, following = [], positions, past
            for start in range(0, frames.shape[0], self._block):
                block = frames[None, start : start + self._block].to(weights)
                hidden, following = projector.encode_block(block, following, at)
                blocks.append(projector.ctc_logits(hidden)[0].float().log_softmax(-1).cpu())
                at += hidden.shape[1]
            return blocks, following, at

        return Compute(compute)


def _capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]  # the recogniser spells in lower case
