"""TinyAudioModel: projector, prompt, checkpoints, upstream layout and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from pipecat_tiny_audio import (
    AudioInputError,
    AudioProjector,
    CheckpointError,
    TinyAudioConfig,
    TinyAudioModel,
    register_projector,
)
from pipecat_tiny_audio.projectors import PROJECTORS, build_projector, stack_frames
from pipecat_tiny_audio.prompt import IGNORE_INDEX


@pytest.mark.parametrize("name", ["mlp", "swiglu"])
def test_projector_maps_stacked_frames_to_llm_width(name):
    projector = build_projector(name, encoder_dim=16, llm_dim=24, stack_factor=4, hidden_dim=32)
    out = projector(torch.randn(2, 10, 16))  # 10 frames → 3 tokens (last group zero-padded)
    assert out.shape == (2, 3, 24)
    assert projector.output_length(10) == 3


def test_chunk_transformer_projects_only_new_tokens_exactly_as_a_full_pass():
    torch.manual_seed(0)
    projector = build_projector("chunk_transformer", 16, 24, 8, 32, layers=2, left_blocks=1).eval()
    frames = torch.randn(1, 250, 16)  # 10 blocks of 24 frames and a partial one
    full = projector(frames)
    assert full.shape == (1, 32, 24)
    for start_group in (0, 3, 6, 27):  # block-aligned, as the streaming decoder commits them
        torch.testing.assert_close(projector.project_from(frames, start_group), full[:, start_group:])


def test_chunk_transformer_ignores_batch_padding():
    torch.manual_seed(0)
    projector = build_projector("chunk_transformer", 16, 24, 8, 32, layers=2).eval()
    long, short = torch.randn(100, 16), torch.randn(37, 16)
    batch = torch.nn.utils.rnn.pad_sequence([long, short], batch_first=True)
    out = projector(batch, torch.tensor([100, 37]))
    torch.testing.assert_close(out[1, :5], projector(short[None])[0])
    logits = projector.ctc_logits(projector.encode(batch, torch.tensor([100, 37])))
    assert logits.shape == (2, 50, len(projector.vocabulary))


def test_unknown_projector_options_are_named():
    with pytest.raises(ValueError, match="do not fit the 'chunk_transformer' projector"):
        build_projector("chunk_transformer", 16, 24, 8, 32, depth=3)


def test_stack_frames_pads_the_last_group_so_streaming_can_project_early():
    frames = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)
    stacked = stack_frames(frames, 2)
    assert stacked.shape == (2, 3, 6)
    assert torch.equal(stacked[:, 0], frames[:, :2].reshape(2, 6))
    assert torch.equal(stacked[:, 2, 3:], torch.zeros(2, 3))


def test_projector_output_starts_at_the_llm_embedding_scale(tiny_model):
    embeddings = tiny_model.llm.get_input_embeddings().weight
    audio = tiny_model.projector(torch.randn(1, 8, tiny_model.config.encoder_dim))
    text_rms = embeddings.pow(2).mean().sqrt()
    assert torch.allclose(audio.pow(2).mean().sqrt(), text_rms, rtol=0.05)


def test_a_user_projector_plugs_in_by_name(tiny_config):
    @register_projector("linear-test")
    class LinearProjector(AudioProjector):
        def __init__(self, encoder_dim, llm_dim, stack_factor, hidden_dim):
            super().__init__(encoder_dim, llm_dim, stack_factor, hidden_dim)
            self.linear = torch.nn.Linear(encoder_dim * stack_factor, llm_dim)

        def project(self, stacked):
            return self.linear(stacked)

    try:
        config = TinyAudioConfig.from_dict({**tiny_config.to_dict(), "projector_type": "linear-test"})
        model = TinyAudioModel(config)
        assert isinstance(model.projector, LinearProjector)
    finally:
        del PROJECTORS["linear-test"]
    with pytest.raises(ValueError, match="unknown projector_type 'nope'"):
        build_projector("nope", 4, 4, 4, 4)


def test_prompt_has_one_placeholder_per_audio_token_and_masks_the_prompt(tiny_model):
    prompt = tiny_model.prompt
    tokenizer = tiny_model.tokenizer
    ids, labels = prompt.training_example(5, tokenizer("Hello there", add_special_tokens=False).input_ids)
    assert ids.count(prompt.audio_token_id) == 5
    text = tokenizer.decode(ids)
    assert "<|im_start|>user\nTranscribe the speech to text: <audio><audio><audio><audio><audio><|im_end|>" in text
    assert tokenizer.decode(prompt.suffix_ids) == "<|im_end|>\n<|im_start|>assistant\n"
    assert text.endswith("<|im_start|>assistant\nHello there<|im_end|>")
    supervised = [t for t, label in zip(ids, labels, strict=True) if label != IGNORE_INDEX]
    assert tokenizer.decode(supervised) == "Hello there<|im_end|>"


def test_batch_places_projected_audio_at_the_placeholders(tiny_model):
    features = [torch.randn(9, 64), torch.randn(4, 64)]
    batch = tiny_model.prepare_batch(features, ["one two", "three"])
    assert batch["attention_mask"][1].sum() < batch["attention_mask"][0].sum()  # right padding
    embeds = tiny_model.merge_audio(batch["input_ids"], batch["audio_features"], batch["audio_lengths"])
    audio_rows = embeds[0][batch["input_ids"][0] == tiny_model.prompt.audio_token_id]
    expected = tiny_model.projector(features[0].unsqueeze(0))[0]
    assert torch.allclose(audio_rows, expected, atol=1e-6)
    loss = tiny_model(**batch).loss
    assert torch.isfinite(loss) and loss.requires_grad


def test_save_and_load_round_trip_is_bit_identical(adapted_tiny_model, tmp_path):
    tiny_model = adapted_tiny_model
    features = torch.randn(20, 64)
    batch = tiny_model.prepare_batch([features], ["a test"])
    before = tiny_model(**batch).logits
    tiny_model.save_pretrained(tmp_path / "ckpt")
    saved = {p.name for p in (tmp_path / "ckpt").iterdir()}
    assert {"config.json", "model.safetensors", "adapter_model.safetensors", "tokenizer.json"} <= saved
    assert sum(p.stat().st_size for p in (tmp_path / "ckpt").iterdir()) < 20e6  # base weights are referenced

    loaded = TinyAudioModel.from_pretrained(tmp_path / "ckpt")
    assert torch.equal(loaded(**batch).logits, before)
    assert loaded.transcribe_features(features) == tiny_model.transcribe_features(features)


def test_inference_optimization_merges_lora_and_halves_the_llm_weights(adapted_tiny_model, tmp_path):
    tiny_model = adapted_tiny_model
    features = torch.randn(20, 64)
    batch = tiny_model.prepare_batch([features], ["a test"])
    before = tiny_model(**batch).logits
    tiny_model.save_pretrained(tmp_path / "ckpt")

    merged = tiny_model.optimize_for_inference(fp16=False)
    assert not any("lora_" in name for name, _ in merged.llm.named_parameters())
    torch.testing.assert_close(merged(**batch).logits, before, atol=1e-4, rtol=1e-4)

    served = TinyAudioModel.from_pretrained(tmp_path / "ckpt").optimize_for_inference()
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in served.llm.modules())
    torch.testing.assert_close(served(**batch).logits, before, atol=2e-2, rtol=2e-2)
    assert served.transcribe_features(features) == merged.transcribe_features(features)
    with pytest.raises(RuntimeError, match="optimize_for_inference"):
        served.save_pretrained(tmp_path / "again")


def test_served_llm_computes_each_token_as_if_alone(adapted_tiny_model):
    """A token's logits must not depend on the other tokens of its pass (int8 dynamic quantization broke this)."""
    llm = adapted_tiny_model.optimize_for_inference().llm
    embeds = torch.randn(1, 12, llm.config.hidden_size) * 0.05
    embeds[0, 1:6] *= 50  # loud audio-like tokens after the first
    with torch.no_grad():
        alone = llm(inputs_embeds=embeds[:, :1]).logits[0, 0]
        with_others = llm(inputs_embeds=embeds).logits[0, 0]
    torch.testing.assert_close(with_others, alone, atol=1e-5, rtol=1e-5)


def test_auto_classes_know_the_model(tiny_model, tmp_path):
    from transformers import AutoConfig, AutoModel

    tiny_model.save_pretrained(tmp_path)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), TinyAudioConfig)
    assert isinstance(AutoModel.from_pretrained(tmp_path), TinyAudioModel)


def test_loads_an_upstream_tiny_audio_checkpoint(tiny_source_dirs, tmp_path):
    """Upstream writes config.json (asr_model), projector in model.safetensors, a PEFT adapter."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    encoder_dir, llm_dir = tiny_source_dirs
    folder = tmp_path / "upstream"
    folder.mkdir()
    upstream_config = {
        "model_type": "asr_model",
        "architectures": ["ASRModel"],
        "audio_model_id": encoder_dir,
        "text_model_id": llm_dir,
        "projector_type": "mlp",
        "projector_pool_stride": 4,
        "projector_hidden_dim": 48,
        "use_lora": True,
        "lora_rank": 4,
        "lora_alpha": 16,
        "lora_target_modules": ["q_proj", "v_proj"],
        "system_prompt": "",
    }
    (folder / "config.json").write_text(json.dumps(upstream_config))
    torch.manual_seed(1)
    projector = {
        "projector.linear_1.weight": torch.randn(48, 64 * 4) * 0.05,
        "projector.norm.weight": torch.ones(48),
        "projector.linear_2.weight": torch.randn(64, 48) * 0.05,
        "projector.norm_2.weight": torch.full((64,), 0.5),
    }
    save_file(projector, folder / "model.safetensors")
    llm = get_peft_model(
        AutoModelForCausalLM.from_pretrained(llm_dir),
        LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"]),
    )
    with torch.no_grad():
        for name, param in llm.named_parameters():
            if "lora_B" in name:
                param.fill_(0.01)
    llm.save_pretrained(folder)  # adapter_model.safetensors + adapter_config.json, PEFT naming
    tokenizer = AutoTokenizer.from_pretrained(llm_dir)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<audio>"]})
    tokenizer.save_pretrained(folder)

    model = TinyAudioModel.from_pretrained(folder)
    assert model.config.stack_factor == 4 and model.config.lora_rank == 4
    assert torch.equal(model.projector.linear_1.weight, projector["projector.linear_1.weight"])
    lora_b = [p for n, p in model.llm.named_parameters() if "lora_B" in n]
    assert lora_b and all(torch.all(p == 0.01) for p in lora_b)
    assert isinstance(model.transcribe(np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)), str)


def test_missing_or_corrupt_checkpoint_files_are_named(tiny_model, tmp_path):
    folder = tmp_path / "ckpt"
    tiny_model.save_pretrained(folder)
    (folder / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"model\.safetensors is corrupt or truncated"):
        TinyAudioModel.from_pretrained(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model\.safetensors is missing"):
        TinyAudioModel.from_pretrained(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config\.json is not valid JSON"):
        TinyAudioModel.from_pretrained(folder)
    with pytest.raises(CheckpointError, match="not a checkpoint folder"):
        TinyAudioModel.from_pretrained(tmp_path / "nowhere")


def edit_config(folder, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: (f / "config.json").write_text("[1, 2]"), r"config\.json must hold a JSON object, got a JSON list"),
        (lambda f: edit_config(f, stack_factor="8"), r"config\.json: stack_factor must be int, got '8'"),
        (lambda f: (f / "tokenizer.json").write_text("{broken"), r"tokenizer\.json is not valid JSON"),
        (lambda f: (f / "tokenizer_config.json").write_text('{"a": '), r"tokenizer_config\.json is not valid JSON"),
    ],
    ids=["config-is-a-list", "string-stack-factor", "corrupt-tokenizer", "corrupt-tokenizer-config"],
)
def test_a_bad_checkpoint_file_is_named_before_any_weights_load(tiny_model, tmp_path, damage, message):
    folder = tmp_path / "ckpt"
    tiny_model.save_pretrained(folder)
    if not message.startswith("config"):
        edit_config(folder, llm_source=str(tmp_path / "no-llm-here"))  # loading the LLM first would fail on this
    damage(folder)
    with pytest.raises(CheckpointError, match=message):
        TinyAudioModel.from_pretrained(folder)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_cuda_device_without_cuda_is_refused_before_loading(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    edit_config(tmp_path, llm_source=str(tmp_path / "no-llm-here"))  # loading first would fail on this
    with pytest.raises(ValueError, match="device='cuda' but this torch .* sees no CUDA GPU; use device='cpu'"):
        TinyAudioModel.from_pretrained(tmp_path, device="cuda")


def test_projector_weights_of_another_shape_are_refused(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["projector_hidden_dim"] = 16
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="does not match the 'mlp' projector"):
        TinyAudioModel.from_pretrained(tmp_path)


class TestAudioInput:
    """Every way audio arrives is converted, or refused with a message."""

    def test_int16_bytes_stereo_48k_is_resampled_and_downmixed(self, tiny_model):
        tone = (np.sin(np.arange(48000) / 48000 * 2 * np.pi * 440) * 8000).astype(np.int16)
        stereo = np.stack([tone, tone], axis=1).tobytes()
        from pipecat_tiny_audio import to_model_audio

        mono = to_model_audio(stereo, 48000, num_channels=2)
        assert mono.dtype == np.float32 and mono.shape == (16000,)
        assert abs(np.abs(mono).max() - 8000 / 32768) < 0.01
        assert isinstance(tiny_model.transcribe(stereo, 48000, num_channels=2), str)

    def test_empty_and_silent_audio_transcribe_to_nothing(self, tiny_model):
        assert tiny_model.transcribe(np.zeros(0, dtype=np.float32)) == ""
        assert tiny_model.transcribe(np.zeros(32000, dtype=np.float32)) == ""
        assert tiny_model.transcribe(b"") == ""

    @pytest.mark.parametrize(
        ("audio", "kwargs", "message"),
        [
            (np.array([0.0, np.nan, 0.1], dtype=np.float32), {}, "NaN or Inf"),
            (np.array([0.0, np.inf], dtype=np.float32), {}, "NaN or Inf"),
            (b"\x00\x01\x02", {}, "not a whole number"),
            (np.zeros((10, 2, 2), dtype=np.float32), {}, "1-D or"),
            (np.zeros(10, dtype=np.int64), {}, "unsupported audio dtype"),
            (np.zeros((10, 2), dtype=np.float32), {"num_channels": 1}, "expected 1 channel"),
            (np.zeros(10, dtype=np.float32), {"sample_rate": 0}, "sample_rate"),
            (np.full(16000, 3000.0, dtype=np.float32), {}, "must be in \\[-1, 1\\]"),  # int16 values as float
            (np.full((2, 16000), 0.1, dtype=np.float32), {}, "more channels than samples"),  # (channels, samples)
            (np.array([0.5], dtype=np.float32), {}, "shorter than one 20 ms frame"),
        ],
    )
    def test_bad_audio_is_refused_clearly(self, tiny_model, audio, kwargs, message):
        with pytest.raises(AudioInputError, match=message):
            tiny_model.transcribe(audio, **kwargs)


def test_greedy_decoding_stops_a_repetition_loop():
    from pipecat_tiny_audio.decoding import repetition_cut

    assert repetition_cut([5, 1, 2, 1, 2, 1, 2, 1, 2]) == 3
    assert repetition_cut([7, 7, 7, 7]) == 1
    assert repetition_cut([1, 2, 3, 4]) is None
