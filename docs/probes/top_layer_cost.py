"""Issue 12, Step 1: what training with Whisper's top encoder layer unfrozen would cost here.

The recogniser trains on cached encoder output. Unfreezing the top layer means caching the layer
below instead and running the top layer forward and backward in every step, over every chunk's whole
window (1.0 s left context + 0.48 s chunk + 0.48 s look-ahead = 98 frames, of which the chunk keeps
24), since the served features are computed per window. This times one training step's encoder side
against the recogniser's own forward and backward, on one thread, for the same 16 clips of 3.5 s,
twice: the whole layer over the whole window, and the layer computed only where the chunk's frames need
it (keys and values over the window, queries, attention output and MLP over the chunk's 24 frames: the
same outputs there, which it checks):

    PYTHONPATH=. python docs/probes/top_layer_cost.py --model checkpoints/recogniser
"""

from __future__ import annotations

import argparse
import time

import torch

from trainer.checkpoint import load_model
from trainer.ctc import character_ctc_loss


def seconds_per_call(fn, repeats: int = 3) -> float:
    fn()  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="checkpoints/recogniser")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--clip-seconds", type=float, default=3.5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, _ = load_model(args.model)
    mode = model.feature_mode
    chunk_frames = mode.chunk_samples // 320
    window_frames = (mode.context_samples + mode.chunk_samples + mode.lookahead_samples) // 320
    chunks = round(args.clip_seconds / (chunk_frames * 0.02))
    d = model.encoder.config.d_model
    top = model.encoder.layers[-1].train()
    for p in top.parameters():
        p.requires_grad_(True)
    below = torch.randn(args.batch_size * chunks, window_frames, d)

    def top_layer_step() -> None:
        out = top(below, None)
        (out[0] if isinstance(out, tuple) else out).square().mean().backward()

    first = mode.context_samples // 320

    def chunk_queries_step() -> None:
        chunk_queries(top, below, first, chunk_frames).square().mean().backward()

    top.eval()  # no dropout, to compare the two ways
    with torch.no_grad():
        whole = top(below, None)
        whole = (whole[0] if isinstance(whole, tuple) else whole)[:, first : first + chunk_frames]
        gap = (whole - chunk_queries(top, below, first, chunk_frames)).abs().max().item()
    top.train()

    projector = model.projector.train()
    features = [torch.randn(chunks * chunk_frames, d) for _ in range(args.batch_size)]
    texts = ["please call me back tomorrow morning"] * args.batch_size

    def recogniser_step() -> None:
        character_ctc_loss(projector, features, texts).backward()

    layer_s, body_s = seconds_per_call(top_layer_step), seconds_per_call(recogniser_step)
    chunk_s = seconds_per_call(chunk_queries_step)
    print(
        f"{args.batch_size} clips of {args.clip_seconds} s ({chunks} windows of {window_frames} frames each): "
        f"top Whisper layer forward+backward {layer_s:.2f} s, the recogniser's {body_s:.2f} s "
        f"-> a step costs {(layer_s + body_s) / body_s:.1f}x; the cache holds {window_frames / chunk_frames:.1f}x "
        "the frames"
    )
    print(
        f"the layer at the chunk's {chunk_frames} frames only: {chunk_s:.2f} s -> a step costs "
        f"{(chunk_s + body_s) / body_s:.1f}x; its outputs differ from the whole layer's by at most {gap:.1e}"
    )


def chunk_queries(layer, window: torch.Tensor, first: int, frames: int) -> torch.Tensor:
    """A Whisper encoder layer's output at ``window[:, first:first + frames]`` only: keys and values
    need every frame of the window, the rest of the layer only those frames."""
    attention = layer.self_attn
    batch, heads, head_dim = window.shape[0], attention.num_heads, attention.head_dim
    normed = layer.self_attn_layer_norm(window)

    def split(x: torch.Tensor) -> torch.Tensor:
        return x.view(batch, -1, heads, head_dim).transpose(1, 2)

    query = split(attention.q_proj(normed[:, first : first + frames]) * attention.scaling)
    attended = torch.nn.functional.scaled_dot_product_attention(
        query, split(attention.k_proj(normed)), split(attention.v_proj(normed)), scale=1.0
    )
    hidden = window[:, first : first + frames] + attention.out_proj(attended.transpose(1, 2).reshape(batch, frames, -1))
    return hidden + layer.fc2(layer.activation_fn(layer.fc1(layer.final_layer_norm(hidden))))


if __name__ == "__main__":
    main()
