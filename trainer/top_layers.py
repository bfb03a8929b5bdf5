"""Fine-tuning Whisper's top encoder layers on cached features (issue 12, Step 1).

The recogniser alone learns on frozen encoder output. To train the encoder's top ``n`` layers too,
the cache holds instead what the layers below compute for every window the served features run
(:func:`~pipecat_tiny_audio.features.encode_windows`), and each training step runs the top layers on
them. The served features keep a chunk's frames only, so the last layer runs its queries, attention
output and MLP on those frames alone (keys and values still see the whole window): the same
features for ~3× less than the whole layer (``docs/probes/top_layer_cost.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class EncoderWindows:
    """One utterance's windows below the trained layers: frames (sum of lengths, d), and per window
    (length, first, count): its length and where its chunk's own frames are."""

    hidden: torch.Tensor
    spans: torch.Tensor

    @property
    def frames(self) -> int:
        """How many feature frames the utterance has (its chunks' frames)."""
        return int(self.spans[:, 2].sum())


def top_layer_features(encoder: nn.Module, utterances: list[EncoderWindows], layers: int) -> list[torch.Tensor]:
    """Each utterance's encoder features (frames, d), from its windows through the top ``layers``
    layers and the final layer norm: what ``encode_audio`` computes, differentiable in those layers."""
    spans = torch.cat([u.spans for u in utterances])
    if spans.numel() == 0:
        return [torch.zeros(0, encoder.config.d_model) for _ in utterances]
    lengths, firsts, counts = spans.unbind(1)
    hidden = nn.utils.rnn.pad_sequence(
        list(torch.cat([u.hidden for u in utterances]).split(lengths.tolist())), batch_first=True
    )
    positions = torch.arange(hidden.shape[1])
    keys = positions < lengths[:, None]
    for layer in encoder.layers[len(encoder.layers) - layers : -1]:
        hidden = _layer_at(layer, hidden, keys, positions.expand(len(spans), -1))
    queries = (firsts[:, None] + torch.arange(int(counts.max()))).clamp(max=hidden.shape[1] - 1)
    chunks = encoder.layer_norm(_layer_at(encoder.layers[-1], hidden, keys, queries))
    kept = torch.arange(chunks.shape[1]) < counts[:, None]
    features, start = [], 0
    for utterance in utterances:
        end = start + len(utterance.spans)
        features.append(chunks[start:end][kept[start:end]])
        start = end
    return features


def _layer_at(layer: nn.Module, hidden: torch.Tensor, keys: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """A Whisper encoder layer's output at the ``queries`` positions (windows, q) of ``hidden``
    (windows, frames, d), attending to the ``keys`` (windows, frames) that are real frames.

    The layer's own modules in its own order (pre-norm attention, then pre-norm MLP); Whisper base
    has no dropout, so this is its forward pass restricted to those positions.
    """
    attention = layer.self_attn
    windows, heads, head_dim = hidden.shape[0], attention.num_heads, attention.head_dim
    normed = layer.self_attn_layer_norm(hidden)
    index = queries[..., None].expand(-1, -1, hidden.shape[2])

    def split(x: torch.Tensor) -> torch.Tensor:
        return x.view(windows, -1, heads, head_dim).transpose(1, 2)

    query = split(attention.q_proj(normed.gather(1, index)) * attention.scaling)
    key, value = split(attention.k_proj(normed)), split(attention.v_proj(normed))
    attended = nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=keys[:, None, None], scale=1.0)
    out = hidden.gather(1, index) + attention.out_proj(attended.transpose(1, 2).reshape(windows, queries.shape[1], -1))
    return out + layer.fc2(layer.activation_fn(layer.fc1(layer.final_layer_norm(out))))
