"""Training throughput on this machine: samples/s and audio-seconds/s per stage, encoder cached or not.

    python -m benchmarks.train_throughput                      # default config (Whisper base + SmolLM2-135M)
    python -m benchmarks.train_throughput --config base --steps 3 model.stack_factor=8

Speech comes from espeak-ng (sentences from ``trainer.text_corpus``). Each stage runs real optimizer
steps with the trainer's own loss functions and the stage's batch size from the config; "cached"
reads features from a feature cache (what every epoch after the first does), "not cached" decodes
and encodes the audio inside the step (the first epoch without ``python -m trainer features``).
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import soundfile as sf
import torch

from trainer.config import load_config
from trainer.ctc import CTCHead
from trainer.data import Utterance, decode_utterance
from trainer.feature_cache import FeatureCache
from trainer.synth import synthesize
from trainer.text_corpus import build_sentences
from trainer.train import (
    build_model,
    ctc_loss,
    lm_loss,
    make_optimizer,
    make_scheduler,
    stage_parameters,
    thread_count,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="default")
    parser.add_argument("--steps", type=int, default=3, help="timed optimizer steps per measurement (after 1 warmup)")
    parser.add_argument("--stages", nargs="+", default=["ctc", "lm", "lora"])
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args()
    config = load_config(args.config, args.overrides)
    torch.set_num_threads(thread_count(config.num_threads))
    stages = {s.name: s for s in config.stages}
    largest_batch = max(stages[name].batch_size for name in args.stages)
    n = largest_batch * (args.steps + 1)

    model = build_model(config, torch.device("cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        utterances = []
        for i, text in enumerate(build_sentences(n, seed=1, narrative_share=0.5)):
            path = Path(tmp) / f"{i:04d}.wav"
            sf.write(path, synthesize("espeak:en-us", text, rate=170, pitch=50), 16000)
            utterances.append(Utterance(text=text, audio_path=path, source="espeak"))
        cache = FeatureCache.for_model(model, Path(tmp) / "features")
        started = time.perf_counter()
        examples = cache.prepare(utterances, max_seconds=30)
        encode_seconds = time.perf_counter() - started
        audio_seconds = sum(e.seconds for e in examples)
        mean = audio_seconds / len(examples)
        print(
            f"\n{config.model['encoder_source']} + {config.model['llm_source']}, k={config.model['stack_factor']}, "
            f"{torch.get_num_threads()} threads (load average {os.getloadavg()[0]:.1f}), "
            f"{len(examples)} utterances, mean {mean:.2f} s"
        )
        print(
            f"encoder (decode + encode + store): {audio_seconds / encode_seconds:.1f} audio-s/s, "
            f"{encode_seconds / audio_seconds:.3f} s compute per audio second"
        )
        by_key = {e.key: u for e, u in zip(examples, utterances, strict=True)}
        head = CTCHead.for_texts([e.text for e in examples], model.tokenizer, model.llm.get_input_embeddings().weight)

        print(f"\n{'stage':6} {'batch':>5} {'features':>10} {'samples/s':>10} {'audio-s/s':>10}")
        for name in args.stages:
            stage = stages[name]
            params = stage_parameters(model, head, stage)
            optimizer = make_optimizer(params, stage)
            scheduler = make_scheduler(optimizer, stage)
            model.train()
            for cached in (True, False):
                samples = seconds = 0.0
                elapsed = 0.0
                for step in range(args.steps + 1):
                    batch = examples[step * stage.batch_size : (step + 1) * stage.batch_size]
                    t0 = time.perf_counter()
                    if cached:
                        features = [cache.load(e.key) for e in batch]
                    else:
                        features = [model.encode(decode_utterance(by_key[e.key])) for e in batch]
                    texts = [e.text for e in batch]
                    loss = ctc_loss(model, head, features, texts) if name == "ctc" else lm_loss(model, features, texts)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    if step > 0:  # the first step pays one-off allocation costs
                        elapsed += time.perf_counter() - t0
                        samples += len(batch)
                        seconds += sum(e.seconds for e in batch)
                label = "cached" if cached else "encoded"
                print(f"{name:6} {stage.batch_size:5d} {label:>10} {samples / elapsed:10.2f} {seconds / elapsed:10.1f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS: {peak:.0f} MB")


if __name__ == "__main__":
    main()
