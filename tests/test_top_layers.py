"""Fine-tuning the encoder's top layers: cached windows + trained layers = the features served."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from trainer_helpers import tiny_train_config, write_tone_manifest

from pipecat_tiny_audio import CheckpointError, FeatureMode, TinyAudioConfig, TinyAudioModel
from pipecat_tiny_audio.features import encode_audio, encode_windows
from pipecat_tiny_audio.sources import load_whisper_encoder
from trainer.checkpoint import load_model
from trainer.data import decode_utterance, load_source
from trainer.feature_cache import FeatureCache
from trainer.top_layers import EncoderWindows, top_layer_features
from trainer.train import train

STREAMED = FeatureMode(0.4, left_context_seconds=0.6, right_context_seconds=0.2)


def speechlike(seconds: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * 16000)) * 0.1).astype(np.float32)


@pytest.mark.parametrize("mode", [FeatureMode(), STREAMED], ids=["whole", "chunked"])
@pytest.mark.parametrize("layers", [1, 2])
def test_windows_below_the_top_layers_finish_into_the_served_features(tiny_model, mode, layers):
    encoder = tiny_model.encoder
    clips = [speechlike(seconds, seed) for seed, seconds in enumerate((2.33, 0.3, 1.2))]
    windows = [EncoderWindows(*encode_windows(encoder, clip, mode, len(encoder.layers) - layers)) for clip in clips]
    with torch.no_grad():
        finished = top_layer_features(encoder, windows, layers)
    for clip, features, window in zip(clips, finished, windows, strict=True):
        served = encode_audio(encoder, clip, mode)
        assert features.shape == served.shape and window.frames == served.shape[0]
        torch.testing.assert_close(features, served, atol=1e-5, rtol=1e-5)


def test_a_model_fine_tuning_the_top_layer_leaves_a_shared_encoder_alone(tiny_config, tmp_path):
    encoder = load_whisper_encoder(tiny_config.encoder_source)
    config = TinyAudioConfig.from_dict({**tiny_config.to_dict(), "encoder_trained_layers": 1})
    model = TinyAudioModel(config, encoder=encoder)
    with torch.no_grad():
        model.encoder.layers[-1].fc1.weight.add_(1.0)
    assert model.encoder.layers[0] is encoder.layers[0]  # the frozen layers are shared
    assert not torch.equal(model.encoder.layers[-1].fc1.weight, encoder.layers[-1].fc1.weight)
    assert "encoder.layers.1.fc1.weight" in model.trainable_state_dict()

    model.save_pretrained(tmp_path)
    loaded = TinyAudioModel.from_pretrained(tmp_path)
    assert torch.equal(loaded.encoder.layers[-1].fc1.weight, model.encoder.layers[-1].fc1.weight)

    frozen = json.loads((tmp_path / "config.json").read_text()) | {"encoder_trained_layers": 0}
    (tmp_path / "config.json").write_text(json.dumps(frozen))
    with pytest.raises(CheckpointError, match="weights this model does not train"):
        TinyAudioModel.from_pretrained(tmp_path)


def test_a_run_fine_tuning_the_top_layer_serves_the_features_it_trained_on(tiny_source_dirs, tmp_path):
    data = {
        "train": write_tone_manifest(tmp_path, "train", 8, seed=0),
        "dev": write_tone_manifest(tmp_path, "dev", 2, seed=1),
        "cache": tmp_path / "features",
    }
    overrides = [
        "model.encoder_trained_layers=1",
        "model.chunk_seconds=0.4",
        "model.left_context_seconds=0.6",
        "model.lora_rank=0",
        "stages=[{name: ctc, steps: 3, lr: 0.01, warmup_steps: 0, batch_size: 4, encoder_lr_ratio: 1.0}]",
    ]
    run_dir = train(tiny_train_config(tiny_source_dirs, data, tmp_path / "run", overrides))
    trained = TinyAudioModel.from_pretrained(run_dir / "model")
    source = load_whisper_encoder(trained.config.encoder_source)
    assert not torch.equal(trained.encoder.layers[-1].fc1.weight, source.layers[-1].fc1.weight)
    assert torch.equal(trained.encoder.layers[0].fc1.weight, source.layers[0].fc1.weight)
    checkpointed, _ = load_model(run_dir)
    for name, weight in trained.trainable_state_dict().items():
        assert torch.equal(checkpointed.trainable_state_dict()[name], weight), name

    cache = FeatureCache(source, trained.config.encoder_source, trained.feature_mode, data["cache"], 1)
    utterance = load_source(data["train"])[0]
    with torch.no_grad():
        trained_on = top_layer_features(trained.encoder, [cache.load(cache.key(utterance))], 1)[0]
    torch.testing.assert_close(trained_on, trained.encode(decode_utterance(utterance)), atol=2e-2, rtol=2e-3)
