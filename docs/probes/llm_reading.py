"""Issue 12, Step 2 (b) and (c): can the LLM correct the recogniser's transcript, read as text or as soft text?

SmolLM2-135M-Instruct with a fresh LoRA (r=8, the model's default targets) is trained to turn the
recogniser's reading of a training clip into its reference; dev and unseen-voice WER of its greedy
output is compared with the recogniser's own greedy CTC transcript. Two readings (``--reading``):

- ``text`` (c): the greedy CTC transcript as text in the prompt ("i want to change th dlivery addes
  on my lastorder"), no audio at all.
- ``soft`` (b), LegoSLM's reading: in place of the text, one input vector per non-blank CTC segment
  (consecutive frames with the same best non-blank class), the posterior-weighted sum of the LLM
  embeddings of the head's classes, blank left out. A class's embedding is the mean of the LLM
  embeddings of its string's tokens (" th" is one SmolLM2 token), so the head's doubts (" hear" 0.5,
  " her" 0.3) reach the LLM instead of its argmax alone.

docs/ablations.md has the rows this produced:

    git worktree add /tmp/r 5d771bb   # the character recogniser the first row used
    PYTHONPATH=. python docs/probes/llm_reading.py --model /tmp/r/checkpoints/recogniser --steps 600
    PYTHONPATH=. python docs/probes/llm_reading.py --model checkpoints/recogniser --reading soft

The training drafts come from the recogniser's own training clips, so they carry its errors.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model

from trainer.checkpoint import load_model
from trainer.data import load_source
from trainer.feature_cache import FeatureCache
from trainer.metrics import cer, wer

SETS = {
    "train": ("data/synth8k/manifest.jsonl", slice(0, 6000)),
    "dev": ("../shared/eval/dev/manifest.jsonl", slice(None)),
    "unseen": ("data/synth8k/heldout/manifest.jsonl", slice(None, None, 5)),
}


@torch.no_grad()
def drafts(model, cache: FeatureCache, manifest: str, rows: slice) -> list[tuple[str, torch.Tensor, str]]:
    """(greedy CTC transcript, posteriors of its non-blank segments [S, classes - 1], reference) per utterance."""
    examples = cache.prepare(load_source(manifest)[rows], max_seconds=20.0)
    projector, out = model.projector, []
    for start in range(0, len(examples), 32):
        batch = examples[start : start + 32]
        features = [cache.load(e.key) for e in batch]
        padded = torch.nn.utils.rnn.pad_sequence(features, batch_first=True)
        frames = torch.tensor([f.shape[0] for f in features])
        probs = projector.ctc_logits(projector.encode(padded, frames)).float().softmax(-1)
        for row, n, example in zip(probs, projector.body_lengths(frames).tolist(), batch, strict=True):
            path = row[:n].argmax(-1)
            starts = [t for t in range(n) if path[t] != 0 and (t == 0 or path[t - 1] != path[t])]
            segments = []
            for t in starts:  # each segment spans its label's repeated frames
                end = t + 1
                while end < n and path[end] == path[t]:
                    end += 1
                segments.append(row[t:end].mean(0, keepdim=True))
            posteriors = torch.cat(segments)[:, 1:] if segments else row[:0, 1:]
            posteriors = posteriors / posteriors.sum(-1, keepdim=True).clamp_min(1e-6)
            text = projector.vocabulary.best_path(path.tolist())
            out.append((text, posteriors.half(), example.text))
    return out


def class_embeddings(vocabulary, tokenizer, embedding: torch.nn.Embedding) -> torch.Tensor:
    """[classes - 1, llm_dim]: each non-blank class's string as the mean of its LLM token embeddings."""
    rows = []
    for symbol in vocabulary.symbols:
        ids = tokenizer(symbol, add_special_tokens=False).input_ids
        rows.append(embedding.weight[ids].mean(0))
    return torch.stack(rows).detach()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="checkpoints/recogniser")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--eval-every", type=int, default=200)
    parser.add_argument("--reading", choices=("text", "soft"), default="text")
    parser.add_argument("--out", default=None, help="default runs/llm-reading-READING")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out or f"runs/llm-reading-{args.reading}")
    out.mkdir(parents=True, exist_ok=True)

    model, _ = load_model(args.model)
    model.eval()
    cache = FeatureCache.for_model(model)
    pairs = {name: drafts(model, cache, path, rows) for name, (path, rows) in SETS.items()}
    tokenizer = model.tokenizer
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    llm = get_peft_model(model.llm, LoraConfig(r=8, lora_alpha=32, target_modules=targets, task_type="CAUSAL_LM"))

    embed = llm.get_input_embeddings()
    classes = class_embeddings(model.projector.vocabulary, tokenizer, embed)
    messages = [{"role": "user", "content": "Correct the speech recognition draft: @@"}]
    before, after = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True).split("@@")

    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False).input_ids

    def prompt(row: tuple[str, torch.Tensor, str]) -> torch.Tensor:
        """[positions, llm_dim] prompt embeddings with the draft as text or as soft text."""
        draft, posteriors, _ = row
        if args.reading == "text":
            return embed(torch.tensor(ids(before + draft + after)))
        middle = posteriors.float() @ classes
        return torch.cat([embed(torch.tensor(ids(before))), middle, embed(torch.tensor(ids(after)))])

    def batch(rows: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        inputs, labels = [], []
        for row in rows:
            p, y = prompt(row), ids(row[2]) + [end]
            inputs.append(torch.cat([p, embed(torch.tensor(y))]))
            labels.append(torch.tensor([-100] * len(p) + y))
        lengths = [len(x) for x in inputs]
        mask = torch.tensor([[1] * n + [0] * (max(lengths) - n) for n in lengths])
        return (
            torch.nn.utils.rnn.pad_sequence(inputs, batch_first=True),
            mask,
            torch.nn.utils.rnn.pad_sequence(labels, batch_first=True, padding_value=-100),
        )

    @torch.no_grad()
    def evaluate(step: int) -> None:
        llm.eval()
        for name in ("dev", "unseen"):
            rows, hyps = pairs[name], []
            for row in rows:
                p = prompt(row)[None]
                generated = llm.generate(
                    inputs_embeds=p,
                    attention_mask=torch.ones(p.shape[:2], dtype=torch.long),
                    max_new_tokens=48,
                    do_sample=False,
                    eos_token_id=end,
                )
                hyps.append(tokenizer.decode(generated[0], skip_special_tokens=True).strip())
            refs, given = [r[2] for r in rows], [r[0] for r in rows]
            print(
                f"step {step} {name}: LLM WER {wer(refs, hyps):.3f} (CER {cer(refs, hyps):.3f}); "
                f"the recogniser {wer(refs, given):.3f} ({cer(refs, given):.3f})",
                flush=True,
            )
            (out / f"{name}-{step}.json").write_text(json.dumps(list(zip(given, hyps, refs, strict=True)), indent=1))
        llm.train()

    params = [p for p in llm.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    warmup = 50
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1, (s + 1) / warmup) * max(0.1, 0.5 * (1 + math.cos(math.pi * s / args.steps)))
    )
    rng, started = random.Random(0), time.time()
    llm.train()
    for step in range(1, args.steps + 1):
        inputs, mask, labels = batch(rng.sample(pairs["train"], args.batch_size))
        loss = llm(inputs_embeds=inputs, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        if step % 20 == 0:
            rate = step * args.batch_size / (time.time() - started)
            print(f"step {step} loss {loss.item():.3f} {rate:.2f} samples/s", flush=True)
        if step % args.eval_every == 0 or step == args.steps:
            evaluate(step)


if __name__ == "__main__":
    main()
