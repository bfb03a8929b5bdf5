"""Audio projectors: encoder frames → LLM input embeddings.

Every projector stacks ``k`` consecutive encoder frames (50 Hz → 50/k tokens per second) and
maps them to the LLM's hidden size. A trailing partial group is zero-padded, so a streaming
decoder can project groups as soon as ``k`` frames exist and flush the last one at the end with
the same result as an offline pass. New projectors plug in with :func:`register_projector`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from pipecat_tiny_audio.characters import DEFAULT_CHARACTERS, CharacterVocabulary


class RMSNorm(nn.Module):
    """Llama-style RMSNorm (computed in fp32), parameter ``weight``."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def stack_frames(features: torch.Tensor, k: int) -> torch.Tensor:
    """(B, T, d) → (B, ceil(T/k), d·k), zero-padding the last group."""
    batch, frames, dim = features.shape
    pad = (-frames) % k
    if pad:
        features = nn.functional.pad(features, (0, 0, 0, pad))
    return features.reshape(batch, (frames + pad) // k, dim * k)


class AudioProjector(nn.Module):
    """Base class: subclasses map stacked frames (B, N, d·k) to embeddings (B, N, llm_dim)."""

    # A projector with its own CTC head over characters sets this (and ``encode``/``ctc_logits``):
    # the alignment stage then trains that head instead of one over the LLM's token embeddings.
    vocabulary = None

    def __init__(self, encoder_dim: int, llm_dim: int, stack_factor: int, hidden_dim: int):
        super().__init__()
        self.k = stack_factor
        self.encoder_dim = encoder_dim
        self.llm_dim = llm_dim

    def output_length(self, frames: int) -> int:
        """Number of audio tokens produced from ``frames`` encoder frames."""
        return -(-frames // self.k)

    def project(self, stacked: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, d) encoder frames (right-padded to the longest of ``lengths``) → (B, ceil(T/k), llm_dim)."""
        return self.project(stack_frames(features, self.k))

    def project_from(self, features: torch.Tensor, start_group: int) -> torch.Tensor:
        """Audio tokens ``start_group`` onwards of one utterance's frames (1, T, d), as :meth:`forward`
        would give them: a streaming decoder projects only what is new."""
        return self(features[:, start_group * self.k :])

    def init_output_scale(self, scale: float) -> None:
        """Start the output at the LLM's embedding scale (else audio drowns the text tokens)."""


PROJECTORS: dict[str, type[AudioProjector]] = {}


def register_projector(name: str) -> Callable[[type[AudioProjector]], type[AudioProjector]]:
    """Class decorator: make a projector available as ``TinyAudioConfig(projector_type=name)``."""

    def register(cls: type[AudioProjector]) -> type[AudioProjector]:
        if not issubclass(cls, AudioProjector):
            raise TypeError(f"{cls.__name__} must subclass AudioProjector")
        PROJECTORS[name] = cls
        return cls

    return register


def build_projector(
    name: str, encoder_dim: int, llm_dim: int, stack_factor: int, hidden_dim: int, **options: object
) -> AudioProjector:
    """The registered projector ``name``; ``options`` are its own keyword arguments (``projector_options``)."""
    if name not in PROJECTORS:
        raise ValueError(f"unknown projector_type {name!r}; registered: {sorted(PROJECTORS)}")
    try:
        return PROJECTORS[name](encoder_dim, llm_dim, stack_factor, hidden_dim, **options)
    except TypeError as e:
        raise ValueError(f"projector_options {options} do not fit the {name!r} projector: {e}") from None


@register_projector("mlp")
class MLPProjector(AudioProjector):
    """Linear → RMSNorm → GELU → Linear → RMSNorm (upstream Tiny Audio's ``mlp``; same names)."""

    def __init__(self, encoder_dim: int, llm_dim: int, stack_factor: int, hidden_dim: int):
        super().__init__(encoder_dim, llm_dim, stack_factor, hidden_dim)
        self.linear_1 = nn.Linear(encoder_dim * stack_factor, hidden_dim, bias=False)
        self.norm = RMSNorm(hidden_dim)
        self.act = nn.GELU()
        self.linear_2 = nn.Linear(hidden_dim, llm_dim, bias=False)
        self.norm_2 = RMSNorm(llm_dim)

    def project(self, stacked: torch.Tensor) -> torch.Tensor:
        return self.norm_2(self.linear_2(self.act(self.norm(self.linear_1(stacked)))))

    def init_output_scale(self, scale: float) -> None:
        with torch.no_grad():
            self.norm_2.weight.fill_(scale)


@register_projector("swiglu")
class SwiGLUProjector(AudioProjector):
    """Gated projector: RMSNorm(W3(silu(W1 x) * W2 x)) with an output RMSNorm."""

    def __init__(self, encoder_dim: int, llm_dim: int, stack_factor: int, hidden_dim: int):
        super().__init__(encoder_dim, llm_dim, stack_factor, hidden_dim)
        in_dim = encoder_dim * stack_factor
        self.w1 = nn.Linear(in_dim, hidden_dim, bias=False)
        self.w2 = nn.Linear(in_dim, hidden_dim, bias=False)
        self.w3 = nn.Linear(hidden_dim, llm_dim, bias=False)
        self.norm = RMSNorm(llm_dim)

    def project(self, stacked: torch.Tensor) -> torch.Tensor:
        return self.norm(self.w3(nn.functional.silu(self.w1(stacked)) * self.w2(stacked)))

    def init_output_scale(self, scale: float) -> None:
        with torch.no_grad():
            self.norm.weight.fill_(scale)


def rope_angles(length: int, head_dim: int, device: torch.device, base: float = 10_000.0) -> torch.Tensor:
    """(P, head_dim/2) rotary angles of positions 0..length-1, shared by every layer of a pass."""
    half = head_dim // 2
    freqs = base ** (-torch.arange(half, device=device, dtype=torch.float32) / half)
    return torch.arange(length, device=device, dtype=torch.float32)[:, None] * freqs[None, :]


def rotate_half_rope(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding of (B, H, P, D) queries or keys by :func:`rope_angles`."""
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class ChunkAttentionLayer(nn.Module):
    """Pre-norm Transformer layer (rotary self-attention + GELU MLP) under a given attention mask."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.attn_norm = RMSNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        self.mlp_norm = RMSNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, angles: torch.Tensor, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``context``: (B, C, dim) inputs of earlier positions that ``x`` attends to as well (keys and
        values only); ``mask`` and ``angles`` then cover the C + P positions."""
        batch, length, dim = x.shape
        seen = x if context is None else torch.cat([context, x], dim=1)
        q, k, v = self.qkv(self.attn_norm(seen)).view(batch, seen.shape[1], 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k = rotate_half_rope(q[:, :, -length:], angles[-length:]), rotate_half_rope(k, angles)
        attended = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.dropout(self.out(attended.transpose(1, 2).reshape(batch, length, dim)))
        return x + self.dropout(self.mlp(self.mlp_norm(x)))


@register_projector("chunk_transformer")
class ChunkTransformerProjector(AudioProjector):
    """A streaming CTC recogniser whose hidden states feed the LLM.

    Encoder frames are stacked ``ctc_stride`` at a time (2 → 25 Hz), then a Transformer attends
    chunk-causally: a position sees its own block of ``block_frames`` encoder frames (the streaming
    decoder's chunk, so no look-ahead beyond audio that has arrived) and ``left_blocks`` blocks
    before it. A CTC head over characters reads the top layer (the alignment stage trains it:
    open vocabulary, context across frames); an adapter stacks ``k / ctc_stride`` positions into one
    LLM audio token. ``hidden_dim`` is the Transformer's width. ``units`` adds multi-character CTC
    classes (see :class:`CharacterVocabulary`). ``characters=None`` builds no CTC
    head: the alignment stage then scores the adapter's output against the LLM's token embeddings.

    Because attention is block-causal with a bounded window, the outputs for a block depend on at
    most :attr:`context_frames` earlier frames, which is all :meth:`project_from` recomputes.
    """

    def __init__(
        self,
        encoder_dim: int,
        llm_dim: int,
        stack_factor: int,
        hidden_dim: int,
        *,
        layers: int = 4,
        heads: int = 4,
        ctc_stride: int = 2,
        block_frames: int = 24,
        left_blocks: int = 4,
        dropout: float = 0.1,
        characters: str | None = DEFAULT_CHARACTERS,
        units: list[str] | None = None,
    ):
        super().__init__(encoder_dim, llm_dim, stack_factor, hidden_dim)
        if stack_factor % ctc_stride or block_frames % stack_factor:
            raise ValueError(
                f"stack_factor ({stack_factor}) must be a multiple of ctc_stride ({ctc_stride}) "
                f"and divide block_frames ({block_frames})"
            )
        self.stride, self.block_frames, self.left_blocks = ctc_stride, block_frames, left_blocks
        self.head_dim = hidden_dim // heads
        self.vocabulary = CharacterVocabulary(characters, units or ()) if characters else None
        self.input = nn.Linear(encoder_dim * ctc_stride, hidden_dim)
        self.layers = nn.ModuleList(ChunkAttentionLayer(hidden_dim, heads, dropout) for _ in range(layers))
        self.norm = RMSNorm(hidden_dim)
        self.ctc_head = nn.Linear(hidden_dim, len(self.vocabulary)) if self.vocabulary else None
        group = stack_factor // ctc_stride
        self.adapter_1 = nn.Linear(hidden_dim * group, llm_dim, bias=False)
        self.adapter_act = nn.GELU()
        self.adapter_2 = nn.Linear(llm_dim, llm_dim, bias=False)
        self.adapter_norm = RMSNorm(llm_dim)

    @property
    def context_frames(self) -> int:
        """Encoder frames before a block that its outputs can depend on (the receptive field)."""
        return len(self.layers) * self.left_blocks * self.block_frames

    def attention_mask(self, valid: torch.Tensor) -> torch.Tensor:
        """(B, 1, P, P) boolean from (B, P) ``valid`` positions: own block and ``left_blocks`` before
        it, never padding."""
        positions = valid.shape[1]
        block = torch.arange(positions, device=valid.device) // (self.block_frames // self.stride)
        distance = block[:, None] - block[None, :]
        allowed = (distance >= 0) & (distance <= self.left_blocks)
        itself = torch.eye(positions, dtype=torch.bool, device=valid.device)  # no empty row in padding
        return ((allowed[None] & valid[:, None, :]) | itself).unsqueeze(1)

    def body_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return -(-lengths // self.stride)

    def encode(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states (B, P, hidden_dim) at 50/ctc_stride Hz of right-padded frames (B, T, d)."""
        if lengths is None:
            lengths = torch.full((features.shape[0],), features.shape[1], device=features.device)
        x = self.input(stack_frames(features, self.stride))
        valid = torch.arange(x.shape[1], device=x.device)[None, :] < self.body_lengths(lengths.to(x.device))[:, None]
        mask = self.attention_mask(valid)
        angles = rope_angles(x.shape[1], self.head_dim, x.device)
        for layer in self.layers:
            x = layer(x, mask, angles)
        # Padding reads as zeros, as the zero-padded last group of a lone utterance does.
        return self.norm(x) * valid.unsqueeze(-1)

    def encode_block(
        self, frames: torch.Tensor, past: list[torch.Tensor], start: int
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """:meth:`encode` of one block, for a stream that computes each block once.

        ``frames`` (1, ≤ block_frames, d) are the block's encoder frames, ``start`` its first position
        and ``past`` each layer's inputs at the blocks before it that the layer attends to (``[]`` for
        the first block). Returns the block's hidden states (1, n, hidden_dim), equal to the whole
        sequence's, and the ``past`` of the next block.
        """
        x = self.input(stack_frames(frames, self.stride))
        keep = self.left_blocks * (self.block_frames // self.stride)
        angles = rope_angles(start + x.shape[1], self.head_dim, x.device)
        following = []
        for layer, context in zip(self.layers, past or [x[:, :0]] * len(self.layers), strict=True):
            following.append(torch.cat([context, x], dim=1)[:, -keep:])
            x = layer(x, None, angles[start - context.shape[1] :], context)
        return self.norm(x), following

    def ctc_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, P, len(vocabulary)) CTC logits; index 0 is the blank."""
        return self.ctc_head(hidden)

    def adapt(self, hidden: torch.Tensor) -> torch.Tensor:
        """LLM audio tokens (B, ceil(P·stride/k), llm_dim) from hidden states."""
        stacked = stack_frames(hidden, self.k // self.stride)
        return self.adapter_norm(self.adapter_2(self.adapter_act(self.adapter_1(stacked))))

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.adapt(self.encode(features, lengths))

    def project_from(self, features: torch.Tensor, start_group: int) -> torch.Tensor:
        start = start_group * self.k
        window = max(0, start // self.block_frames * self.block_frames - self.context_frames)
        return self(features[:, window:])[:, (start - window) // self.k :]

    def init_output_scale(self, scale: float) -> None:
        with torch.no_grad():
            self.adapter_norm.weight.fill_(scale)
