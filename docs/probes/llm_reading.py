"""Issue 12, Step 2 (c): can the LLM correct the recogniser's greedy transcript from text alone?

SmolLM2-135M-Instruct with a fresh LoRA (r=8, the model's default targets) is trained to turn the
recogniser's greedy CTC transcript of a training clip ("i want to change th dlivery addes on my
lastorder") into its reference, with no audio tokens at all; dev and unseen-voice WER of its greedy
output is compared with the transcripts it was given. docs/ablations.md has the row this produced:

    git worktree add /tmp/r 5d771bb   # the character recogniser the row used
    PYTHONPATH=. python docs/probes/draft_correction.py --model /tmp/r/checkpoints/recogniser --steps 600

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
from trainer.ctc import character_greedy_decode
from trainer.data import load_source
from trainer.feature_cache import FeatureCache
from trainer.metrics import cer, wer

SETS = {
    "train": ("data/synth8k/manifest.jsonl", slice(0, 6000)),
    "dev": ("../shared/eval/dev/manifest.jsonl", slice(None)),
    "unseen": ("data/synth8k/heldout/manifest.jsonl", slice(None, None, 5)),
}


def drafts(model, cache: FeatureCache, manifest: str, rows: slice) -> list[tuple[str, str]]:
    """(greedy CTC transcript, reference) per utterance."""
    examples = cache.prepare(load_source(manifest)[rows], max_seconds=20.0)
    features = [cache.load(e.key) for e in examples]
    hyps = []
    for start in range(0, len(features), 32):
        hyps += character_greedy_decode(model.projector, features[start : start + 32])
    return [(h, e.text) for h, e in zip(hyps, examples, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="checkpoints/recogniser")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--eval-every", type=int, default=200)
    parser.add_argument("--out", default="runs/draft-correction")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    model, _ = load_model(args.model)
    model.eval()
    cache = FeatureCache.for_model(model)
    pairs = {name: drafts(model, cache, path, rows) for name, (path, rows) in SETS.items()}
    tokenizer = model.tokenizer
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    llm = get_peft_model(model.llm, LoraConfig(r=8, lora_alpha=32, target_modules=targets, task_type="CAUSAL_LM"))

    def prompt(draft: str) -> list[int]:
        messages = [{"role": "user", "content": f"Correct the speech recognition draft: {draft}"}]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return tokenizer(text, add_special_tokens=False).input_ids

    def batch(rows: list[tuple[str, str]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ids, labels = [], []
        for draft, text in rows:
            p, y = prompt(draft), tokenizer(text, add_special_tokens=False).input_ids + [end]
            ids.append(p + y)
            labels.append([-100] * len(p) + y)
        n = max(map(len, ids))
        return (
            torch.tensor([r + [0] * (n - len(r)) for r in ids]),
            torch.tensor([[1] * len(r) + [0] * (n - len(r)) for r in ids]),
            torch.tensor([r + [-100] * (n - len(r)) for r in labels]),
        )

    @torch.no_grad()
    def evaluate(step: int) -> None:
        llm.eval()
        for name in ("dev", "unseen"):
            rows, hyps = pairs[name], []
            for draft, _ in rows:
                p = torch.tensor([prompt(draft)])
                generated = llm.generate(
                    input_ids=p, attention_mask=torch.ones_like(p), max_new_tokens=48, do_sample=False, eos_token_id=end
                )
                hyps.append(tokenizer.decode(generated[0, p.shape[1] :], skip_special_tokens=True).strip())
            refs, given = [t for _, t in rows], [d for d, _ in rows]
            print(
                f"step {step} {name}: LLM WER {wer(refs, hyps):.3f} (CER {cer(refs, hyps):.3f}); "
                f"the drafts {wer(refs, given):.3f} ({cer(refs, given):.3f})",
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
        ids, mask, labels = batch(rng.sample(pairs["train"], args.batch_size))
        loss = llm(input_ids=ids, attention_mask=mask, labels=labels).loss
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
