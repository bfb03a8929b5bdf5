"""Tiny datasets and configs for the trainer tests (tones with random transcripts: weights don't matter)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

from trainer.config import Config, load_config

WORDS = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
]


def write_tone_manifest(folder: Path, name: str, n: int, seed: int) -> Path:
    """``n`` 0.5–1.5 s tones at 16 kHz with 3-word transcripts, as a JSONL manifest."""
    rng = np.random.default_rng(seed)
    (folder / name).mkdir(parents=True, exist_ok=True)
    manifest = folder / f"{name}.jsonl"
    with manifest.open("w") as f:
        for i in range(n):
            t = np.arange(int(rng.uniform(0.5, 1.5) * 16000)) / 16000
            audio = (0.3 * np.sin(2 * np.pi * rng.uniform(150, 900) * t)).astype(np.float32)
            sf.write(folder / name / f"{i:03d}.wav", audio, 16000)
            text = " ".join(rng.choice(WORDS, 3))
            f.write(json.dumps({"audio": f"{name}/{i:03d}.wav", "text": text, "voice": f"tone-{i % 2}"}) + "\n")
    return manifest


def tiny_train_config(
    source_dirs: tuple[str, str], data: dict[str, Path], run_dir: Path, overrides: list[str] = ()
) -> Config:
    """A config training the tiny random model on the tiny tone data, fast and deterministic."""
    encoder, llm = source_dirs
    return load_config(
        None,
        [
            f"model.encoder_source={encoder}",
            f"model.llm_source={llm}",
            "model.projector_hidden_dim=32",
            "model.lora_rank=4",
            f"data.train=[{{path: {data['train']}}}]",
            f"data.dev=[{{path: {data['dev']}}}]",
            "data.forbidden_sentences=[]",
            "stages=[{name: ctc, steps: 8, lr: 0.01, warmup_steps: 2, batch_size: 4},"
            " {name: lm, steps: 6, lr: 0.01, warmup_steps: 2, batch_size: 2},"
            " {name: lora, steps: 2, lr: 0.01, warmup_steps: 1, batch_size: 2, grad_accum: 2}]",
            f"run_dir={run_dir}",
            f"feature_cache={data['cache']}",
            "num_threads=1",
            "log_every=1",
            "eval_every=0",
            "eval_max_utterances=2",
            "checkpoint_every=3",
            "keep_checkpoints=2",
            *overrides,
        ],
    )
