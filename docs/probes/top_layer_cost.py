"""Issue 12, Step 1: what training with Whisper's top encoder layer unfrozen would cost here.

The recogniser trains on cached encoder output. Unfreezing the top layer means caching the layer
below instead and running the top layer forward and backward in every step, over every chunk's whole
window (1.0 s left context + 0.48 s chunk + 0.48 s look-ahead = 98 frames, of which the chunk keeps
24), since the served features are computed per window. This times one training step's encoder side
against the recogniser's own forward and backward, on one thread, for the same 16 clips of 3.5 s,
twice: the whole layer over the whole window, and the layer computed only where the chunk's frames need
it (keys and values over the window, queries, attention output and MLP over the chunk's 24 frames: the
same outputs there, which it checks; the trainer's :func:`~trainer.top_layers.top_layer_features`):

    PYTHONPATH=. python docs/probes/top_layer_cost.py --model checkpoints/recogniser
"""

from __future__ import annotations

import argparse
import time

import torch

from trainer.checkpoint import load_model
from trainer.ctc import character_ctc_loss
from trainer.top_layers import EncoderWindows, top_layer_features


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
    encoder = model.encoder
    top = encoder.layers[-1]
    for p in [*top.parameters(), *encoder.layer_norm.parameters()]:
        p.requires_grad_(True)
    below = torch.randn(args.batch_size * chunks, window_frames, d)
    first = mode.context_samples // 320
    spans = torch.tensor([[window_frames, first, chunk_frames]] * chunks)
    clips = [EncoderWindows(x.reshape(-1, d), spans) for x in below.split(chunks)]

    def whole_layer() -> torch.Tensor:
        out = top(below, None)
        return encoder.layer_norm(out[0] if isinstance(out, tuple) else out)

    def top_layer_step() -> None:
        whole_layer().square().mean().backward()

    def chunk_queries_step() -> None:
        torch.cat(top_layer_features(encoder, clips, 1)).square().mean().backward()

    with torch.no_grad():  # Whisper base has no dropout: the two ways must agree
        whole = whole_layer()[:, first : first + chunk_frames].reshape(-1, d)
        gap = (whole - torch.cat(top_layer_features(encoder, clips, 1))).abs().max().item()

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


if __name__ == "__main__":
    main()
