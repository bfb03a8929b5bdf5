"""The alignment stage: CTC on the projector, over its own characters or the LLM's token embeddings.

A projector with a CTC head of its own (``projector.vocabulary``, e.g. ``chunk_transformer``) is
trained as a character recogniser: :func:`character_ctc_loss`, :func:`character_greedy_decode`.
Otherwise the alignment is CTC against the LLM's own token embeddings (:class:`CTCHead`):

With a frozen LLM and the LM loss alone, the projector learns too slowly for a CPU budget: the
LLM writes fluent text from its prior and ignores the audio (DESIGN.md, "Training on 2 CPU
cores"). Scoring each projected frame against the LLM's input-embedding rows of the transcript
tokens pulls audio embeddings towards the embeddings of the words being spoken, with no LLM forward
pass, ~6x faster per sample. Logits are ``scale · frame · E[v]`` for every token id ``v`` seen in
training, plus a learned blank vector.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import nn


class CTCHead(nn.Module):
    """Blank vector and logit scale over a fixed vocabulary of LLM token ids (index 0 is blank)."""

    def __init__(self, token_ids: Sequence[int], embeddings: torch.Tensor):
        super().__init__()
        self.register_buffer("token_ids", torch.tensor(sorted(set(token_ids)), dtype=torch.long))
        self.index = {int(t): i + 1 for i, t in enumerate(self.token_ids.tolist())}
        mean_square_norm = float(embeddings.float().pow(2).sum(-1).mean())
        self.blank = nn.Parameter(torch.zeros(embeddings.shape[1]))
        # A frame equal to a token's embedding starts with a logit of ~10 for that token.
        self.log_scale = nn.Parameter(torch.tensor(math.log(10.0 / mean_square_norm)))

    @classmethod
    def for_texts(cls, texts: Iterable[str], tokenizer, embeddings: torch.Tensor) -> CTCHead:
        """A head whose vocabulary is every token of the training transcripts."""
        ids = tokenizer(list(texts), add_special_tokens=False).input_ids
        return cls({t for row in ids for t in row}, embeddings)

    def logits(self, projected: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        """(B, N, d) projected audio → (B, N, 1 + vocab) CTC logits."""
        table = torch.cat([self.blank[None].to(embeddings.dtype), embeddings[self.token_ids]])
        return (projected @ table.T.to(projected.dtype)) * self.log_scale.exp()

    def targets(self, texts: Sequence[str], tokenizer) -> list[list[int]]:
        """Vocabulary indices of each transcript's tokens (tokens never seen in training are dropped)."""
        ids = tokenizer(list(texts), add_special_tokens=False).input_ids
        return [[self.index[t] for t in row if t in self.index] for row in ids]

    def loss(
        self, projected: torch.Tensor, lengths: torch.Tensor, targets: list[list[int]], embeddings: torch.Tensor
    ) -> torch.Tensor:
        """Mean CTC loss per target token; utterances too short for their transcript contribute 0."""
        log_probs = self.logits(projected, embeddings).float().log_softmax(-1).transpose(0, 1)
        device = log_probs.device
        flat = torch.tensor([t for row in targets for t in row], dtype=torch.long, device=device)
        target_lengths = torch.tensor([len(row) for row in targets], dtype=torch.long, device=device)
        return nn.functional.ctc_loss(
            log_probs, flat, lengths.to(device), target_lengths, blank=0, reduction="mean", zero_infinity=True
        )

    @torch.no_grad()
    def greedy_decode(
        self, projected: torch.Tensor, lengths: torch.Tensor, embeddings: torch.Tensor
    ) -> list[list[int]]:
        """LLM token ids per utterance: best path, repeats merged, blanks dropped."""
        best = self.logits(projected, embeddings).argmax(-1).cpu()
        decoded = []
        for row, n in zip(best, lengths.tolist(), strict=True):
            path = torch.unique_consecutive(row[:n])
            decoded.append(self.token_ids.cpu()[path[path > 0] - 1].tolist())
        return decoded


def _pad(features: list[torch.Tensor], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    padded = nn.utils.rnn.pad_sequence(features, batch_first=True).to(device)
    return padded, torch.tensor([f.shape[0] for f in features], device=device)


def character_ctc_loss(projector: nn.Module, features: list[torch.Tensor], texts: Sequence[str]) -> torch.Tensor:
    """Mean CTC loss per target character of the projector's own head."""
    padded, frames = _pad(features, next(projector.parameters()).device)
    log_probs = projector.ctc_logits(projector.encode(padded, frames)).float().log_softmax(-1).transpose(0, 1)
    targets = [projector.vocabulary.encode(t) for t in texts]
    flat = torch.tensor([t for row in targets for t in row], dtype=torch.long, device=padded.device)
    target_lengths = torch.tensor([len(row) for row in targets], dtype=torch.long, device=padded.device)
    return nn.functional.ctc_loss(log_probs, flat, projector.body_lengths(frames), target_lengths, zero_infinity=True)


@torch.no_grad()
def character_greedy_decode(projector: nn.Module, features: list[torch.Tensor]) -> list[str]:
    """Best-path text of the projector's CTC head for each utterance's frames."""
    padded, frames = _pad(features, next(projector.parameters()).device)
    best = projector.ctc_logits(projector.encode(padded, frames)).argmax(-1).cpu()
    lengths = projector.body_lengths(frames).tolist()
    return [projector.vocabulary.best_path(row[:n].tolist()) for row, n in zip(best, lengths, strict=True)]
