"""Greedy decoding over a KV cache, with draft verification and a repetition cut.

Offline transcription and the streaming decoder share this loop, which is why a streaming final
equals the offline transcript of the same audio. A *draft* (the previous partial hypothesis)
is checked in a single forward pass: every draft token that greedy decoding would have produced
anyway is accepted at once, so an unchanged hypothesis costs one pass instead of one per token.

The loop is written as *steps*: a generator that yields each LLM pass it needs as a
:class:`Forward` and is sent that pass's logits. :func:`run_steps` runs the passes one at a time;
a scheduler serving many sessions (:class:`~pipecat_tiny_audio.batch_scheduler.BatchScheduler`)
runs the passes of several decodes as one batch instead. The decoding logic is the same either way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

T = TypeVar("T")


@dataclass(frozen=True)
class Forward:
    """One LLM pass a decode needs: ``inputs_embeds`` (1, n, d) appended to ``cache`` in place.

    Its answer is the logits (``logits_to_keep``, vocab) of the last ``logits_to_keep`` positions.
    ``visible`` (bool) says which tokens each new token attends to: ``None``, the whole cache and the
    new tokens before it; (n, n), the whole cache and those new tokens; (n, past + n), those cached
    and new tokens. Each token's position is the number of tokens it sees before itself, so one pass
    can hold a tree of token sequences, and a cache can hold a tree of earlier passes.
    """

    inputs_embeds: torch.Tensor
    cache: Any  # a transformers DynamicCache
    logits_to_keep: int
    visible: torch.Tensor | None = None

    def positions(self) -> torch.Tensor:
        """Each new token's position."""
        if self.visible is None:
            return torch.arange(self.inputs_embeds.shape[1]) + self.cache.get_seq_length()
        return self.attention_mask().sum(-1) - 1

    def attention_mask(self) -> torch.Tensor | None:
        """(n, past + n) bool: which cached and new tokens each new token attends to, as the model's
        own mask for one sequence would be (``None`` for a single causal token)."""
        n, past = self.inputs_embeds.shape[1], self.cache.get_seq_length()
        if self.visible is None:
            return None if n == 1 else torch.ones(n, past + n, dtype=torch.bool).tril(past)
        if self.visible.shape[1] == past + n:
            return self.visible
        return torch.cat([torch.ones(n, past, dtype=torch.bool), self.visible], dim=1)

    def run(self, llm: Callable[..., Any]) -> torch.Tensor:
        """This pass alone, as a plain call of the LLM."""
        extra = {}
        if self.visible is not None:
            device = self.inputs_embeds.device
            extra = {
                "position_ids": self.positions()[None].to(device),
                "attention_mask": self.attention_mask()[None, None].to(device),
            }
        out = llm(
            inputs_embeds=self.inputs_embeds,
            past_key_values=self.cache,
            use_cache=True,
            logits_to_keep=self.logits_to_keep,
            **extra,
        )
        return out.logits[0]


@dataclass(frozen=True)
class Compute:
    """Work a decode needs that is not an LLM pass (encoding a chunk of audio): its answer is ``fn()``.

    A scheduler may run it on another thread while the LLM runs other sessions' passes.
    """

    fn: Callable[[], Any]


# Yields a Forward (an LLM pass, answered with its logits), a Compute (answered with its result) or None
# (a point where other work may go first, answered with None); returns the result.
Steps = Generator[Forward | Compute | None, Any, T]


class Interrupted(Exception):
    """Thrown into a decode's steps when its caller no longer wants the result."""


@torch.no_grad()
def run_steps(llm: Callable[..., Any], steps: Steps[T], interrupt: threading.Event | None = None) -> T:
    """Run ``steps`` to the end, one plain LLM call per pass, computes in turn.

    If ``interrupt`` is set (from another thread), the next pass or compute is not run:
    :class:`Interrupted` is thrown into the steps instead, which may catch it and return early.
    """
    reply: torch.Tensor | Interrupted | None = None
    while True:
        try:
            request = steps.throw(reply) if isinstance(reply, Interrupted) else steps.send(reply)
        except StopIteration as done:
            return done.value
        if request is None:
            reply = None
        elif interrupt is not None and interrupt.is_set():
            reply = Interrupted()
        elif isinstance(request, Compute):
            reply = request.fn()
        else:
            reply = request.run(llm)


def truncate_cache(cache, length: int) -> None:
    """Drop cached positions beyond ``length`` (a transformers ``DynamicCache``)."""
    excess = cache.get_seq_length() - length
    if excess > 0:
        cache.crop(-excess)


def repetition_cut(tokens: list[int], max_repeats: int = 4, max_span: int = 8) -> int | None:
    """Length to keep if ``tokens`` ends in a span repeated ``max_repeats`` times, else ``None``.

    Small LLMs sometimes loop ("the the the ..."); a loop is cut back to its first occurrence.
    """
    n = len(tokens)
    for span in range(1, max_span + 1):
        if n < span * max_repeats:
            break
        tail = tokens[n - span :]
        if all(tokens[n - span * (r + 1) : n - span * r] == tail for r in range(1, max_repeats)):
            return n - span * (max_repeats - 1)
    return None


def greedy_steps(
    embed: Callable[[torch.Tensor], torch.Tensor],
    cache,
    prompt_embeds: torch.Tensor,
    *,
    stop_id: int,
    max_new_tokens: int,
    draft: Sequence[int] = (),
) -> Steps[list[int]]:
    """Greedy continuation of ``prompt_embeds`` (1, L, d) appended to ``cache``, as steps.

    The cache is extended in place; callers that want to reuse a prefix truncate it afterwards.
    Returns generated token ids without the stop token.
    """
    draft = list(draft[:max_new_tokens])
    inputs = prompt_embeds
    if draft:
        inputs = torch.cat([prompt_embeds, embed(torch.tensor([draft]))], dim=1)
    # Only the last prompt position and the draft positions predict anything we read.
    logits = yield Forward(inputs, cache, len(draft) + 1)
    predicted = logits.argmax(-1).tolist()  # predicted[i] follows the prompt and draft[:i]
    tokens: list[int] = []
    for i, token in enumerate(predicted):
        if token == stop_id or len(tokens) >= max_new_tokens:
            return tokens
        tokens.append(token)
        cut = repetition_cut(tokens)
        if cut is not None:
            return tokens[:cut]
        if i >= len(draft) or draft[i] != token:
            break
    # Drop the cached positions of rejected draft tokens, then continue one token at a time.
    truncate_cache(cache, cache.get_seq_length() - (len(draft) - len(tokens) + 1))
    while len(tokens) < max_new_tokens:
        logits = yield Forward(embed(torch.tensor([[tokens[-1]]])), cache, 1)
        token = int(logits[-1].argmax())
        if token == stop_id:
            break
        tokens.append(token)
        cut = repetition_cut(tokens)
        if cut is not None:
            return tokens[:cut]
    return tokens


def greedy_decode(
    llm,
    embed: Callable[[torch.Tensor], torch.Tensor],
    cache,
    prompt_embeds: torch.Tensor,
    *,
    stop_id: int,
    max_new_tokens: int,
    draft: Sequence[int] = (),
) -> list[int]:
    """:func:`greedy_steps` run with one plain ``llm`` call per pass."""
    steps = greedy_steps(embed, cache, prompt_embeds, stop_id=stop_id, max_new_tokens=max_new_tokens, draft=draft)
    return run_steps(llm, steps)
