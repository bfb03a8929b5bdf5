"""Evaluate, export and push: per-source WER, loadable folder with model card, Hub upload arguments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi, ModelCard
from trainer_helpers import tiny_train_config, write_tone_manifest

from pipecat_tiny_audio import TinyAudioConfig, TinyAudioModel
from trainer.__main__ import main
from trainer.checkpoint import list_checkpoints, load_model
from trainer.data import decode_utterance, load_source
from trainer.export import export, model_card
from trainer.metrics import wer
from trainer.train import train


@pytest.fixture(scope="module")
def tones(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tones")
    return {
        "train": write_tone_manifest(folder, "train", 8, seed=0),
        "dev": write_tone_manifest(folder, "dev", 3, seed=1),
        "other": write_tone_manifest(folder, "other", 2, seed=2),
        "cache": folder / "features",
    }


@pytest.fixture(scope="module")
def run_dir(tiny_source_dirs, tones, tmp_path_factory) -> Path:
    stages = (
        "stages=[{name: ctc, steps: 2, lr: 0.01, batch_size: 4}, {name: lm, steps: 1, lr: 0.01, batch_size: 2},"
        " {name: lora, steps: 2, lr: 0.05, warmup_steps: 1, batch_size: 2}]"
    )
    return train(tiny_train_config(tiny_source_dirs, tones, tmp_path_factory.mktemp("run"), [stages]))


def test_export_load_transcribe_round_trip_matches_the_in_memory_model(run_dir, tones, tmp_path):
    in_memory, info = load_model(run_dir)
    assert info["progress"]["global_step"] == 5
    lora_b = [v for k, v in in_memory.adapter_state_dict().items() if "lora_B" in k]
    assert any(v.abs().sum() > 0 for v in lora_b)  # the LoRA stage really changed the adapter

    folder = export(run_dir, tmp_path / "exported")
    loaded = TinyAudioModel.from_pretrained(folder)
    for name, tensor in in_memory.trainable_state_dict().items():
        assert torch.equal(tensor, loaded.trainable_state_dict()[name])
    for name, tensor in in_memory.adapter_state_dict().items():
        assert torch.equal(tensor, loaded.adapter_state_dict()[name])
    for utterance in load_source(tones["dev"]):
        audio = decode_utterance(utterance)
        assert loaded.transcribe(audio) == in_memory.transcribe(audio)
    final = TinyAudioModel.from_pretrained(run_dir / "model")  # what training itself wrote at the end
    assert torch.equal(final.projector.linear_1.weight, loaded.projector.linear_1.weight)


def test_a_checkpoint_from_before_the_lora_stage_exports_without_an_adapter(run_dir, tmp_path):
    before_lora = next(p for p in list_checkpoints(run_dir) if p.name == "ckpt-00000003.pt")  # ctc + lm done
    model, info = load_model(before_lora)
    assert info["progress"]["global_step"] == 3 and model.config.lora_rank == 0
    assert model.config.reading == "generate"  # its lm stage taught the LLM to read the audio tokens
    folder = export(before_lora, tmp_path / "recogniser")
    assert not (folder / "adapter_model.safetensors").exists()
    assert TinyAudioModel.from_pretrained(folder).config.lora_rank == 0


def test_eval_reports_each_source_and_compares_two_models_then_export_cards_it(run_dir, tones, tmp_path):
    exported = tmp_path / "exported"
    main(["export", str(run_dir), "--out", str(exported)])
    eval_dir = tmp_path / "eval"
    data = [str(tones["dev"]), f"held-out={tones['other']}"]
    main(["eval", "--model", str(exported), "--compare", str(run_dir), "--data", *data, "--out", str(eval_dir)])
    results = json.loads((eval_dir / "results.json").read_text())
    assert {"dev", "held-out", "overall"} <= set(results)
    assert results["dev"]["utterances"] == 3 and results["overall"]["utterances"] == 5
    assert results["dev"]["wer"] == results["dev"]["compare_wer"]  # same weights, same transcripts
    errors = [json.loads(line) for line in (eval_dir / "errors.jsonl").read_text().splitlines()]
    assert len(errors) == 5 and {"source", "utterance", "speaker", "ref", "hyp", "wer", "compare_hyp"} <= set(errors[0])
    by_speaker = results["dev"]["speakers"]  # which voices the model hears worst
    assert set(by_speaker) == {"tone-0", "tone-1"} and [s["utterances"] for s in by_speaker.values()] == [2, 1]
    tone_0 = [e for e in errors if e["source"] == "dev" and e["speaker"] == "tone-0"]
    assert by_speaker["tone-0"]["wer"] == wer([e["ref"] for e in tone_0], [e["hyp"] for e in tone_0])

    results_file = str(eval_dir / "results.json")
    main(["export", str(run_dir), "--out", str(exported), "--results", results_file, "--name", "tiny-test"])
    card = ModelCard.load(exported / "README.md")
    results_by_dataset = {(r.dataset_name, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert results_by_dataset[("dev", "wer")] == round(100 * results["dev"]["wer"], 2)
    assert ("held-out", "cer") in results_by_dataset and card.data.model_name == "tiny-test"
    assert card.data.pipeline_tag == "automatic-speech-recognition" and "pipecat" in card.data.tags
    text = card.text
    assert "rank 4, alpha 32" in text and "`mlp`, 4 frames per token" in text
    assert "- steps: 5" in text and str(tones["train"]) in text and "lora 2 steps" in text


def test_model_card_names_the_hub_models_behind_bundled_weights():
    card = ModelCard(model_card(TinyAudioConfig(), "default", {"dev": {"wer": 0.1234, "cer": 0.05, "utterances": 90}}))
    assert card.data.base_model == ["openai/whisper-base", "HuggingFaceTB/SmolLM2-135M-Instruct"]
    assert card.data.to_dict()["model-index"][0]["results"][0]["metrics"][0] == {
        "type": "wer",
        "value": 12.34,
        "name": "WER",
    }
    assert "| dev | 12.34 % | 5.00 % | 90 |" in card.text


def test_push_uploads_the_folder_with_the_requested_repo_card_and_tags(run_dir, tmp_path, monkeypatch):
    folder = export(run_dir, tmp_path / "exported")
    original_card = (folder / "README.md").read_text()
    custom = tmp_path / "card.md"
    custom.write_text("---\nlicense: apache-2.0\ntags: [mine]\n---\n# My model\n\nHand-written card.\n")
    calls = {}

    def create_repo(self, repo_id, **kwargs):
        calls["create_repo"] = {"repo_id": repo_id, **kwargs}

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        uploaded = Path(folder_path)
        calls["upload_folder"] = {
            "repo_id": repo_id,
            "files": sorted(p.name for p in uploaded.iterdir()),
            "card": ModelCard.load(uploaded / "README.md"),
            **kwargs,
        }
        return "https://huggingface.co/org/tiny/commit/abc"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    options = ["--organization", "org", "--private", "--tags", "demo", "asr", "--model-card", str(custom)]
    main(["push", str(folder), "--repo-id", "tiny", *options])

    assert calls["create_repo"] == {"repo_id": "org/tiny", "private": True, "exist_ok": True, "repo_type": "model"}
    upload = calls["upload_folder"]
    assert upload["repo_id"] == "org/tiny" and upload["repo_type"] == "model"
    assert {"config.json", "model.safetensors", "adapter_model.safetensors", "README.md"} <= set(upload["files"])
    assert sorted(upload["card"].data.tags) == ["asr", "demo", "mine"] and "Hand-written card." in upload["card"].text
    assert (folder / "README.md").read_text() == original_card  # the export itself is untouched
