"""Weight averaging: one model from several fine-tuned from the same start (a "model soup").

Models fine-tuned from one checkpoint on different data mixes stay in one basin of the loss, and the
mean of their weights tends to generalise better than any one of them (Wortsman et al., 2022, "Model
soups"): each mix pulls the recogniser towards its own voices, and the mean keeps what they agree on.
Nothing is selected on the evaluation sets: every model given is averaged with the same weight.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import torch
from loguru import logger
from safetensors.torch import save_file

from pipecat_tiny_audio.modeling import ADAPTER_FILE, PROJECTOR_FILE, CheckpointError, load_safetensors


def _check_alike(states: list[dict[str, torch.Tensor]], names: list[Path]) -> None:
    """Every state must hold the first one's tensors with the same shapes."""
    first = states[0]
    for state, name in zip(states[1:], names[1:], strict=True):
        if state.keys() != first.keys():
            differ = sorted(state.keys() ^ first.keys())[:5]
            raise CheckpointError(f"{name} has other tensors than {names[0]} ({differ}): not the same architecture")
        for key, tensor in state.items():
            if tensor.shape != first[key].shape:
                shapes = f"{tuple(tensor.shape)}, {names[0]} has {tuple(first[key].shape)}"
                raise CheckpointError(f"{name}: {key} is {shapes}")


def _mean(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean, summed in float64 and stored in each tensor's own dtype."""
    return {
        key: (sum(state[key].double() for state in states) / len(states)).to(tensor.dtype).contiguous()
        for key, tensor in states[0].items()
    }


def average(models: Sequence[str | Path], out: str | Path, like: str | Path | None = None) -> Path:
    """Write ``out``: a copy of the model folder ``like`` (default: the first model) whose projector and
    LoRA weights are the mean of ``models``' (model folders such as ``runs/NAME/model``).

    ``like`` supplies the config and tokenizer, so a soup of runs trained on whole-utterance features can
    be served with a streaming model's settings; its weights must have the same tensors, and the result
    has the weight files it has (a template without LoRA weights gets none).
    """
    folders = [Path(m) for m in models]
    if len(folders) < 2:
        raise ValueError("average needs at least two models")
    template, out = Path(like) if like is not None else folders[0], Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists: choose a new folder (nothing is overwritten)")
    for folder in [*folders, template]:
        if not (folder / PROJECTOR_FILE).is_file():
            raise CheckpointError(f"{folder} is not a model folder: it has no {PROJECTOR_FILE}")
    souped = {}
    for name in (PROJECTOR_FILE, ADAPTER_FILE):
        reference = load_safetensors(template / name, required=False)
        if reference is None:  # the result has the weight files its template has
            continue
        states = [load_safetensors(folder / name, required=False) for folder in folders]
        missing = [str(folder) for folder, state in zip(folders, states, strict=True) if state is None]
        if missing:
            raise CheckpointError(f"{', '.join(missing)} lack {name}, which {template} has")
        _check_alike([reference, *states], [template, *folders])
        souped[name] = _mean(states)
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(template, staging)
    for name, state in souped.items():
        save_file(state, staging / name, metadata={"format": "pt"})
    staging.rename(out)
    logger.info(f"averaged {len(folders)} models → {out} (config and tokenizer of {template})")
    return out
