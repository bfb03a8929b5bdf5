"""SpecAugment-style masking of cached encoder features: the same clip never looks the same twice.

With a few thousand synthetic clips, a projector learns the clips instead of the speech (the CTC
loss falls at each epoch boundary while dev WER stalls). Zeroing random stretches of time and
random bands of encoder channels is the cheapest augmentation on cached features: no re-encoding.
Draws come from torch's global RNG, which checkpoints save, so a resumed run masks identically.
"""

from __future__ import annotations

import torch

TIME_MASK_FRAMES = 10  # at most 0.2 s per mask
TIME_MASKS_PER_SECOND = 0.5
CHANNEL_MASKS = 2
CHANNEL_MASK_FRACTION = 0.1  # at most 10 % of the channels per mask


def mask_features(features: torch.Tensor, scale: float = 1.0, layer_dim: int | None = None) -> torch.Tensor:
    """A copy of (frames, d) ``features`` with random time stretches and channel bands set to zero.

    ``scale`` multiplies the number of time masks per second and the largest time and channel mask.
    ``layer_dim``: the features are several encoder layers side by side, each ``layer_dim`` wide, and
    each gets its own channel bands, so the top layer is masked as it is when read alone.
    """
    frames, channels = features.shape
    masked = features.clone()
    for _ in range(max(1, round(frames * 0.02 * TIME_MASKS_PER_SECOND * scale))):
        width = int(torch.randint(0, round(TIME_MASK_FRAMES * scale) + 1, ()))
        start = int(torch.randint(0, max(1, frames - width), ()))
        masked[start : start + width] = 0
    dim = layer_dim or channels
    for layer in masked.split(dim, dim=1):
        for _ in range(CHANNEL_MASKS):
            band = int(torch.randint(0, int(dim * CHANNEL_MASK_FRACTION * scale) + 1, ()))
            start = int(torch.randint(0, max(1, dim - band), ()))
            layer[:, start : start + band] = 0
    return masked
