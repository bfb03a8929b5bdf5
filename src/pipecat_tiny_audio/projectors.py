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

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.project(stack_frames(features, self.k))

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


def build_projector(name: str, encoder_dim: int, llm_dim: int, stack_factor: int, hidden_dim: int) -> AudioProjector:
    if name not in PROJECTORS:
        raise ValueError(f"unknown projector_type {name!r}; registered: {sorted(PROJECTORS)}")
    return PROJECTORS[name](encoder_dim, llm_dim, stack_factor, hidden_dim)


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
