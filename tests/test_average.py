"""`python -m trainer average`: a model whose weights are the mean of several runs'."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from pipecat_tiny_audio import CheckpointError, TinyAudioModel
from pipecat_tiny_audio.modeling import ADAPTER_FILE, PROJECTOR_FILE
from trainer.__main__ import main
from trainer.average import average


def _runs(model: TinyAudioModel, root, n: int) -> list:
    """``n`` model folders of the same architecture with different weights, as after different runs."""
    folders = []
    for i in range(n):
        with torch.no_grad():
            lora = (p for name, p in model.llm.named_parameters() if "lora_" in name)
            for param in [*model.projector.parameters(), *lora]:
                param.add_(torch.randn_like(param) * 0.1)
        model.save_pretrained(root / f"run{i}")
        folders.append(root / f"run{i}")
    return folders


def test_the_soup_loads_with_the_mean_of_every_runs_weights(adapted_tiny_model, tmp_path):
    runs = _runs(adapted_tiny_model, tmp_path, 3)
    main(["average", *map(str, runs), "--out", str(tmp_path / "soup")])

    for name in (PROJECTOR_FILE, ADAPTER_FILE):
        states = [load_file(run / name) for run in runs]
        soup = load_file(tmp_path / "soup" / name)
        assert soup.keys() == states[0].keys()
        for key, tensor in soup.items():
            torch.testing.assert_close(tensor, sum(s[key] for s in states) / 3, rtol=1e-5, atol=1e-6)
    loaded = TinyAudioModel.from_pretrained(tmp_path / "soup")
    assert loaded.config.to_dict() == TinyAudioModel.from_pretrained(runs[0]).config.to_dict()


def test_the_soup_takes_the_config_of_the_model_it_is_like(adapted_tiny_model, tmp_path):
    runs = _runs(adapted_tiny_model, tmp_path, 2)
    served = tmp_path / "served"
    adapted_tiny_model.config.chunk_seconds = 0.96  # e.g. a streaming setting the runs trained without
    adapted_tiny_model.save_pretrained(served)
    (served / ADAPTER_FILE).unlink()  # as a recogniser's folder: no LoRA weights to serve
    average(runs, tmp_path / "soup", like=served)
    assert not (tmp_path / "soup" / ADAPTER_FILE).exists()
    assert TinyAudioModel.from_pretrained(tmp_path / "soup").config.chunk_seconds == 0.96
    soup, states = load_file(tmp_path / "soup" / PROJECTOR_FILE), [load_file(r / PROJECTOR_FILE) for r in runs]
    for key, tensor in soup.items():  # the weights are the runs', not the template's
        torch.testing.assert_close(tensor, (states[0][key] + states[1][key]) / 2, rtol=1e-5, atol=1e-6)


def test_models_of_another_architecture_or_an_existing_folder_are_refused(tiny_model, tiny_config, tmp_path):
    runs = _runs(tiny_model, tmp_path, 2)
    other = TinyAudioModel(type(tiny_config).from_dict({**tiny_config.to_dict(), "projector_hidden_dim": 16}))
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(CheckpointError, match="projector"):
        average([*runs, tmp_path / "other"], tmp_path / "soup")
    with pytest.raises(CheckpointError, match="not a model folder"):
        average([runs[0], tmp_path], tmp_path / "soup")
    with pytest.raises(FileExistsError):
        average(runs, runs[0])
    assert not (tmp_path / "soup").exists()
