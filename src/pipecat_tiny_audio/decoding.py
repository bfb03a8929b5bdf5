"""Greedy decoding over a KV cache, with draft verification and a repetition cut.

Offline transcription and the streaming decoder share this loop, which is why a streaming final
equals the offline transcript of the same audio. A *draft* (the previous partial hypothesis)
is checked in a single forward pass: every draft token that greedy decoding would have produced
anyway is accepted at once, so an unchanged hypothesis costs one pass instead of one per token.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


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


@torch.no_grad()
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
    """Greedy continuation of ``prompt_embeds`` (1, L, d) appended to ``cache``.

    The cache is extended in place; callers that want to reuse a prefix truncate it afterwards.
    Returns generated token ids without the stop token.
    """
    draft = list(draft[:max_new_tokens])
    inputs = prompt_embeds
    if draft:
        inputs = torch.cat([prompt_embeds, embed(torch.tensor([draft]))], dim=1)
    # Only the last prompt position and the draft positions predict anything we read.
    logits = llm(inputs_embeds=inputs, past_key_values=cache, use_cache=True, logits_to_keep=len(draft) + 1).logits
    predicted = logits[0].argmax(-1).tolist()  # predicted[i] follows the prompt and draft[:i]
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
        step = embed(torch.tensor([[tokens[-1]]]))
        logits = llm(inputs_embeds=step, past_key_values=cache, use_cache=True, logits_to_keep=1).logits
        token = int(logits[0, -1].argmax())
        if token == stop_id:
            break
        tokens.append(token)
        cut = repetition_cut(tokens)
        if cut is not None:
            return tokens[:cut]
    return tokens
