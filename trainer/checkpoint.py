"""Training checkpoints: written atomically, rotated, and loaded with errors that name the file.

A checkpoint holds everything needed to continue a run bit for bit: the trainable weights
(projector, LoRA, CTC head), optimizer and scheduler state, RNG states and the data position. It
contains only tensors and plain Python values, so it loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import random
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from loguru import logger

from pipecat_tiny_audio import CheckpointError, TinyAudioModel
from trainer.config import Config, load_config

FORMAT = "pipecat-tiny-audio-trainer/1"
NAME = re.compile(r"^ckpt-(\d{8})\.pt$")


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (half-written temp files are not listed)."""
    folder = checkpoint_dir(run_dir)
    found = [p for p in folder.glob("ckpt-*.pt") if NAME.match(p.name)] if folder.is_dir() else []
    return sorted(found, key=lambda p: int(NAME.match(p.name).group(1)))


def save_checkpoint(state: dict[str, Any], run_dir: Path, step: int, keep: int) -> Path:
    """Write ``ckpt-<step>.pt`` via a temp file + fsync + rename, then delete all but the newest ``keep``."""
    folder = checkpoint_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(".ckpt-*"):  # left behind by a process killed mid-write
        stale.unlink(missing_ok=True)
    path = folder / f"ckpt-{step:08d}.pt"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's contents, or a :class:`CheckpointError` saying which file is bad and what to do."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, bad pickle, disk error: all mean the file is unusable
        older = [p for p in list_checkpoints(path.parent.parent) if p != path]
        hint = f"; delete it to resume from {older[-1].name}" if older else ""
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(e).__name__}: {e}){hint}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a pipecat-tiny-audio trainer checkpoint")
    return state


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states as tensors and plain values (safe for ``weights_only``)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def restore_trainables(model: TinyAudioModel, state: dict[str, Any], partial_encoder: bool = False) -> None:
    """Load a checkpoint's projector (with any fine-tuned encoder layers) and LoRA weights into
    ``model``; ``partial_encoder``: see :meth:`TinyAudioModel.load_trainable_state_dict`."""
    model.load_trainable_state_dict(state["projector"], "the checkpoint", partial_encoder)
    if state.get("lora"):
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(model.llm, state["lora"])
        if getattr(result, "unexpected_keys", None):
            raise CheckpointError(f"LoRA weights do not match the model: unexpected {result.unexpected_keys[:5]}")


def resolve_checkpoint(source: str | Path) -> Path:
    """A checkpoint file from a file path or a run directory (its newest checkpoint)."""
    path = Path(source)
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise CheckpointError(f"{path} has no checkpoints (expected {checkpoint_dir(path)}/ckpt-*.pt)")
        return found
    return path


def trained_stages(config: Config, progress: dict[str, Any]) -> set[str]:
    """Names of the stages a run had trained by ``progress`` (at least one step)."""
    return {
        stage.name
        for index, stage in enumerate(config.stages[: progress["stage_index"] + 1])
        if index < progress["stage_index"] or progress["stage_step"] > 0
    }


def serves_by_rescoring(model: TinyAudioModel, trained: set[str]) -> bool:
    """A recogniser whose LLM never learnt to read audio tokens (no ``lm``/``lora`` stage in ``trained``):
    its LLM can only pick among the recogniser's own hypotheses (``reading="rescore"``)."""
    return model.projector.vocabulary is not None and not trained & {"lm", "lora"}


def load_model(source: str | Path, device: str | torch.device | None = None) -> tuple[TinyAudioModel, dict[str, Any]]:
    """A model from a model folder (``save_pretrained``), a run directory or a checkpoint file.

    Returns the model in eval mode and the checkpoint's info (config, progress), empty for a folder.
    A checkpoint taken before any ``lora`` stage ran loads without LoRA: its adapter is still the
    identity it was initialised as. A recogniser's checkpoint taken before any ``lm`` or ``lora``
    stage loads with ``reading="rescore"``: its LLM cannot read audio tokens yet, but can rescore.
    """
    path = Path(source)
    if path.is_dir() and (path / "config.json").is_file():
        return TinyAudioModel.from_pretrained(path, device=device), {}
    checkpoint = resolve_checkpoint(path)
    state = load_checkpoint(checkpoint)
    config: Config = load_config(None, base=state["config"])
    trained = trained_stages(config, state["progress"])
    if "lora" not in trained:  # e.g. a recogniser run: no adapter of zeros to ship
        config.model["lora_rank"] = 0
        state = {**state, "lora": {}}
    model = TinyAudioModel(config.tiny_audio_config())
    if serves_by_rescoring(model, trained):
        model.config.reading = "rescore"
    restore_trainables(model, state)
    logger.info(f"loaded {checkpoint} (step {state['progress']['global_step']})")
    info = {"config": config, "progress": state["progress"], "checkpoint": str(checkpoint)}
    model.eval()
    return (model.to(device) if device is not None else model), info
