"""What the model costs per call on this CPU, and what three shortcuts save, each against its plain peer.

    python -m benchmarks.llm_cost --threads 1 --repeats 3

Decoding (SmolLM2-135M with LoRA, as the streaming decoder calls it): one pass over 23 new tokens on a
60-token cache (a partial or final that re-checks its draft) and one single-token step, with the
float model vs. ``TinyAudioModel.optimize_for_inference()`` (LoRA merged, fp16 LLM weights).

Encoding (Whisper base, as the streaming decoder calls it): one 0.48 s chunk with its 1.0 s of left
context and 0.48 s of look-ahead (a 1.96 s window), float32 vs. the same fp16 weights, and how far
the fp16 weights move its frames.

Training: one LM-loss forward + backward on a batch of 8 (projector trainable), the plain
``model(**batch).loss`` vs. the trainer's ``lm_loss`` (shared prompt prefix, LM head only at targets).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from transformers import DynamicCache

from pipecat_tiny_audio import TinyAudioConfig, TinyAudioModel
from pipecat_tiny_audio.audio import SAMPLE_RATE
from pipecat_tiny_audio.features import FeatureMode, encode_chunk_at
from trainer.train import lm_loss


def timed(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def decoding_costs(llm, repeats: int) -> tuple[float, float]:
    """(verify pass over 23 tokens, single-token step) in seconds, on a 60-token cache."""
    width = llm.config.hidden_size
    prefilled = DynamicCache()
    with torch.no_grad():
        llm(inputs_embeds=torch.randn(1, 60, width) * 0.05, past_key_values=prefilled, use_cache=True)
        # Each pass appends to the cache it gets, so it gets a copy (microseconds beside a pass).
        verify = timed(
            lambda: llm(inputs_embeds=torch.randn(1, 23, width) * 0.05, past_key_values=copy.deepcopy(prefilled)),
            repeats,
        )
        step = timed(
            lambda: llm(inputs_embeds=torch.randn(1, 1, width) * 0.05, past_key_values=copy.deepcopy(prefilled)),
            repeats,
        )
    return verify, step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (TinyAudioSTT's default is 1)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = TinyAudioModel(TinyAudioConfig()).eval()

    served = copy.deepcopy(model).optimize_for_inference()
    print(f"\ndecoding, {args.threads} thread(s): median ms")
    print(f"{'':28} {'verify 23 tokens':>17} {'one token':>10}")
    for name, llm in (("float + LoRA (peer)", model.llm), ("merged, fp16 weights", served.llm)):
        verify, step = decoding_costs(llm, args.repeats)
        print(f"{name:28} {verify * 1000:17.0f} {step * 1000:10.0f}")

    mode = FeatureMode(chunk_seconds=0.48, left_context_seconds=1.0, right_context_seconds=0.48)
    audio = torch.randn(3 * SAMPLE_RATE).numpy() * 0.1
    print(f"\nencoding a 1.96 s chunk window, {args.threads} thread(s): median ms")
    frames = {}
    for name, encoder in (("float32 (peer)", model.encoder), ("fp16 weights", served.encoder)):
        with torch.no_grad():
            seconds = timed(lambda encoder=encoder: encode_chunk_at(encoder, audio, SAMPLE_RATE, mode), args.repeats)
            frames[name] = encode_chunk_at(encoder, audio, SAMPLE_RATE, mode)
        print(f"{name:28} {seconds * 1000:6.0f}")
    peer, fp16 = frames.values()
    print(f"frames differ by up to {(peer - fp16).abs().max():.1e} (mean |frame| {peer.abs().mean():.2f})")

    model.train()
    model.projector.requires_grad_(True)
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(80, 300, (8,), generator=generator).tolist()  # 1.6-6 s of encoder frames
    features = [torch.randn(n, model.config.encoder_dim, generator=generator) for n in lengths]
    texts = ["please book a table for two people tonight at seven thirty"] * 8

    def plain() -> None:
        model(**model.prepare_batch(features, texts)).loss.backward()

    def shared() -> None:
        lm_loss(model, features, texts).backward()

    print(f"\nLM-loss step, batch 8, {args.threads} thread(s): median s")
    print(f"{'model(**batch).loss (peer)':28} {timed(plain, args.repeats):6.2f}")
    print(f"{'trainer lm_loss':28} {timed(shared, args.repeats):6.2f}")


if __name__ == "__main__":
    main()
