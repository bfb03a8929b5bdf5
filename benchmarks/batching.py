"""What batching several sessions' work saves on this CPU, and whether it changes the numbers.

    python -m benchmarks.batching --threads 1 --repeats 3

LLM passes (SmolLM2-135M as TinyAudioSTT serves it: LoRA merged, fp16 weights), B sessions with KV
caches of 60-250 tokens, each wanting a single-token step, a 25-token draft check, or a mix of both:
one pass at a time (the unbatched path) vs. a *padded* batch (caches copied behind padding into one
tensor, an attention mask, the model's own forward, new keys copied back) vs. the *ragged* batch the
scheduler runs (:func:`pipecat_tiny_audio.ragged_forward.ragged_forward`). Each prints its median time
and the largest logit difference from one pass at a time.

Encoder: B windows of 1.96 s (a 0.48 s chunk with 1.0 s of left context and 0.48 s look-ahead),
encoded one at a time vs. as one batch, and the largest difference of their frames.
"""

from __future__ import annotations

import argparse
import copy
import functools
import statistics
import time

import torch
from torch import nn
from transformers import DynamicCache

from pipecat_tiny_audio.decoding import Forward
from pipecat_tiny_audio.features import _encode_window, log_mel
from pipecat_tiny_audio.ragged_forward import ragged_forward
from pipecat_tiny_audio.shared_model import load_model

WINDOW_SAMPLES = 31_360  # 1.96 s at 16 kHz


def timed(method, make_inputs, repeats: int):
    """(median seconds, last output) of ``method(make_inputs())`` (inputs are built outside the timing)."""
    times, out = [], None
    for _ in range(repeats):
        inputs = make_inputs()
        started = time.perf_counter()
        out = method(inputs)
        times.append(time.perf_counter() - started)
    return statistics.median(times), out


@torch.no_grad()
def padded(llm, passes: list[Forward]) -> list[torch.Tensor]:
    """The peer layout: every cache left-padded to the longest, new tokens right-aligned, one forward."""
    rows, width = len(passes), passes[0].inputs_embeds.shape[-1]
    past = max(p.cache.get_seq_length() for p in passes)
    new = max(p.inputs_embeds.shape[1] for p in passes)
    keep = max(p.logits_to_keep for p in passes)
    embeds = torch.zeros(rows, new, width)
    visible = torch.zeros(rows, past + new, dtype=torch.bool)
    positions = torch.zeros(rows, new, dtype=torch.long)
    for i, p in enumerate(passes):
        cached, n = p.cache.get_seq_length(), p.inputs_embeds.shape[1]
        embeds[i, new - n :] = p.inputs_embeds[0]
        visible[i, past - cached : past] = True
        visible[i, past + new - n :] = True
        positions[i, new - n :] = torch.arange(cached, cached + n)
    mask = visible[:, None, None, :] & torch.ones(new, past + new, dtype=torch.bool).tril(past)
    for i, p in enumerate(passes):  # padding queries see themselves only, so no row of the mask is empty
        for j in range(new - p.inputs_embeds.shape[1]):
            mask[i, 0, j, past + j] = True
    batched = DynamicCache()
    for layer in range(len(passes[0].cache.layers)):
        shape = passes[0].cache.layers[layer].keys.shape
        keys, values = torch.zeros(rows, shape[1], past, shape[3]), torch.zeros(rows, shape[1], past, shape[3])
        for i, p in enumerate(passes):
            cached = p.cache.get_seq_length()
            keys[i, :, past - cached :] = p.cache.layers[layer].keys[0]
            values[i, :, past - cached :] = p.cache.layers[layer].values[0]
        batched.update(keys, values, layer)
    logits = llm(
        inputs_embeds=embeds,
        past_key_values=batched,
        attention_mask=mask,
        position_ids=positions,
        use_cache=True,
        logits_to_keep=keep,
    ).logits
    for i, p in enumerate(passes):
        n = p.inputs_embeds.shape[1]
        for layer in range(len(batched.layers)):
            tail = slice(past + new - n, past + new)
            p.cache.update(
                batched.layers[layer].keys[i : i + 1, :, tail], batched.layers[layer].values[i : i + 1, :, tail], layer
            )
    return [logits[i, keep - p.logits_to_keep :] for i, p in enumerate(passes)]


def fresh_passes(embeds: list[torch.Tensor], caches: list[DynamicCache]) -> list[Forward]:
    """Passes over copies of ``caches`` (a pass extends its cache, and every run must start alike)."""
    return [Forward(e, copy.deepcopy(c), e.shape[1]) for e, c in zip(embeds, caches, strict=True)]


def one_at_a_time(llm, passes: list[Forward]) -> list[torch.Tensor]:
    return [p.run(llm) for p in passes]


def llm_passes(model, repeats: int) -> None:
    llm, width = model.llm, model.config.llm_dim
    print("\nLLM passes, median ms (max |logit difference| from one pass at a time)")
    print(f"{'sessions':>8} {'each wants':>12} {'one at a time':>15} {'padded':>22} {'ragged':>22}")
    for sessions in (1, 2, 4, 8):
        for wants in ("1 token", "25 tokens", "mixed"):
            generator = torch.Generator().manual_seed(sessions)
            caches = []
            for cached in torch.randint(60, 250, (sessions,), generator=generator).tolist():
                cache = DynamicCache()
                with torch.no_grad():
                    llm(inputs_embeds=torch.randn(1, cached, width) * 0.05, past_key_values=cache, use_cache=True)
                caches.append(cache)
            sizes = {"1 token": [1] * sessions, "25 tokens": [25] * sessions}.get(
                wants, [25, 1] * (sessions // 2) or [25]
            )
            embeds = [torch.randn(1, n, width, generator=generator) * 0.05 for n in sizes]

            inputs = functools.partial(fresh_passes, embeds, caches)
            base, reference = timed(lambda p: one_at_a_time(llm, p), inputs, repeats)
            cells = []
            for method in (padded, ragged_forward):
                seconds, out = timed(lambda p, method=method: method(llm, p), inputs, repeats)
                diff = max(float((a - b).abs().max()) for a, b in zip(reference, out, strict=True))
                cells.append(f"{seconds * 1000:7.0f} ({diff:.1e})")
            print(f"{sessions:>8} {wants:>12} {base * 1000:15.0f} {cells[0]:>22} {cells[1]:>22}", flush=True)


@torch.no_grad()
def encode_batch(encoder, windows: list[torch.Tensor]) -> torch.Tensor:
    """The peer: equal-length windows through the encoder as one batch (features.py's steps, batched)."""
    mel = torch.stack([log_mel(w, encoder.config.num_mel_bins) for w in windows])
    hidden = nn.functional.gelu(encoder.conv1(mel))
    hidden = nn.functional.gelu(encoder.conv2(hidden)).permute(0, 2, 1)
    hidden = hidden + encoder.embed_positions.weight[: hidden.shape[1]]
    for layer in encoder.layers:
        out = layer(hidden, None)
        hidden = out[0] if isinstance(out, tuple) else out
    return encoder.layer_norm(hidden).float()


def encoder_windows(model, repeats: int) -> None:
    print("\nencoder, windows of 1.96 s: median ms (max |frame difference| of the batch)")
    print(f"{'windows':>8} {'one at a time':>15} {'one batch':>22}")
    for count in (1, 2, 4, 8):
        windows = [torch.randn(WINDOW_SAMPLES, generator=torch.Generator().manual_seed(i)) * 0.1 for i in range(count)]
        alone_s, alone = timed(
            lambda w: [_encode_window(model.encoder, x) for x in w], functools.partial(list, windows), repeats
        )
        batch_s, batch = timed(lambda w: encode_batch(model.encoder, w), functools.partial(list, windows), repeats)
        diff = max(float((a - b).abs().max()) for a, b in zip(alone, batch, strict=True))
        print(f"{count:>8} {alone_s * 1000:15.0f} {f'{batch_s * 1000:7.0f} ({diff:.1e})':>22}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (TinyAudioSTT's default is 1)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--fp32", action="store_true", help="serve the LLM with fp32 weights (TinyAudioSTT(fp16=False))"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model("default", "cpu", fp16=not args.fp32)
    llm_passes(model, args.repeats)
    encoder_windows(model, args.repeats)


if __name__ == "__main__":
    main()
