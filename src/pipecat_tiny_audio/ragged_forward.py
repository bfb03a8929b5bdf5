"""One LLM forward over the passes of several decodes, each with its own KV cache: a ragged batch.

Decoding on a CPU is bound by reading the LLM's weights, and a batch reads them once for all its
rows. The sessions' KV caches have different lengths, though, so the batch has to be laid out one
of two ways:

- *padded*: each session's cache copied into a ``(sessions, heads, longest, dim)`` tensor behind
  padding, one attention mask, the model's own forward, and every session's new keys and values
  copied back out;
- *ragged* (this module): the new tokens of all sessions concatenated into one sequence for the
  linear layers (where the weights are read), and attention computed per session against its own
  cache, with no copies beyond the ones the cache makes anyway.

Measured with ``python -m benchmarks.batching --threads 1 --repeats 3`` (SmolLM2-135M as served:
fp16 weights, 1 thread, caches of 60-250 tokens, median ms, one pass at a time / padded / ragged;
other jobs kept the 2 cores busy, load average ~3.4): 8 single-token steps 154 / 79 / 38 ms;
8 draft checks of 25 tokens 494 / 431 / 390 ms; 4 of each kind 323 / 429 / 209 ms. Padding also
changes the logits (by up to 6e-5), while ragged gives exactly the logits of one pass at a time,
so batching cannot change a transcript. (With fp32 weights, ``--fp32``, a batch's single-token rows
use another matmul kernel than one row alone, so their logits may differ by ~5e-5; on an AMD EPYC with MKL
that happens at ~1e-6 even in the tests' small fp32 model.)

The ragged layout re-implements the decoder layer of Llama-family models (SmolLM2 is one) with
the model's own modules and SDPA attention; any other LLM runs its passes one at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from pipecat_tiny_audio.decoding import Forward


def _causal_lm(llm: Any) -> Any:
    """The transformers causal LM inside ``llm`` (a peft wrapper's base model, or ``llm`` itself)."""
    return llm.get_base_model() if hasattr(llm, "get_base_model") else llm


def supports_ragged(llm: Any) -> bool:
    """Whether ``llm``'s passes can be batched here: a Llama-family model with SDPA attention."""
    config = _causal_lm(llm).config
    return config.model_type == "llama" and config._attn_implementation == "sdpa"


@torch.no_grad()
def ragged_forward(llm: Any, passes: Sequence[Forward]) -> list[torch.Tensor]:
    """The logits of each pass (as :meth:`Forward.run` returns them), computed in one forward.

    Each pass's cache is extended in place, as if it had run alone.
    """
    if len(passes) == 1 or not supports_ragged(llm):
        return [p.run(llm) for p in passes]
    lm = _causal_lm(llm)
    body = lm.model
    lengths = [p.inputs_embeds.shape[1] for p in passes]
    starts = [sum(lengths[:i]) for i in range(len(passes))]
    hidden = torch.cat([p.inputs_embeds for p in passes], dim=1)
    positions = torch.cat([p.positions() for p in passes])
    masks = [p.attention_mask() for p in passes]  # before the caches grow
    masks = [None if mask is None else mask[None, None].to(hidden.device) for mask in masks]  # (1, 1, n, past + n)
    cos, sin = body.rotary_emb(hidden, position_ids=positions[None].to(hidden.device))
    for index, layer in enumerate(body.layers):
        attention = layer.self_attn
        normed = layer.input_layernorm(hidden)
        shape = (1, hidden.shape[1], -1, attention.head_dim)
        query = attention.q_proj(normed).view(shape).transpose(1, 2)
        key = attention.k_proj(normed).view(shape).transpose(1, 2)
        value = attention.v_proj(normed).view(shape).transpose(1, 2)
        query, key = apply_rotary_pos_emb(query, key, cos, sin)
        outputs = []
        for p, start, n, mask in zip(passes, starts, lengths, masks, strict=True):
            rows = slice(start, start + n)
            keys, values = p.cache.update(key[:, :, rows], value[:, :, rows], index)
            out, _ = sdpa_attention_forward(
                attention, query[:, :, rows], keys, values, mask, dropout=0.0, scaling=attention.scaling
            )
            outputs.append(out)
        hidden = hidden + attention.o_proj(torch.cat(outputs, dim=1).reshape(1, hidden.shape[1], -1))
        hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
    ends = [start + n for start, n in zip(starts, lengths, strict=True)]
    kept = torch.cat([torch.arange(end - p.logits_to_keep, end) for p, end in zip(passes, ends, strict=True)])
    logits = lm.lm_head(body.norm(hidden[:, kept.to(hidden.device)]))[0]
    return list(logits.split([p.logits_to_keep for p in passes]))
