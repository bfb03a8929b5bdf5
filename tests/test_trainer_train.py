"""Training: feature cache, CTC head, one step per stage, label masking, checkpoints and exact resume."""

from __future__ import annotations

import json
import operator
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from trainer_helpers import tiny_train_config, write_tone_manifest

from pipecat_tiny_audio import CheckpointError, FeatureMode, TinyAudioConfig, TinyAudioModel
from pipecat_tiny_audio.prompt import IGNORE_INDEX
from trainer.checkpoint import list_checkpoints, load_model
from trainer.config import ConfigError, StageConfig, read_saved_config
from trainer.ctc import CTCHead, character_greedy_decode
from trainer.data import SkipCounter, Utterance
from trainer.feature_cache import FeatureCache
from trainer.train import (
    DataError,
    TrainingFeatures,
    ctc_loss,
    feature_cache,
    lm_loss,
    make_optimizer,
    make_scheduler,
    prepare_data,
    stage_parameters,
    train,
    whole_utterance_cache,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tones")
    return {
        "train": write_tone_manifest(folder, "train", 16, seed=0),
        "dev": write_tone_manifest(folder, "dev", 3, seed=1),
        "cache": folder / "features",
    }


def _losses(run_dir: Path) -> list[tuple]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["stage"], r["loss"], r["lr"]) for r in records if "loss" in r]


@pytest.fixture(scope="module")
def reference_run(tiny_source_dirs, tiny_data, tmp_path_factory) -> Path:
    """One uninterrupted run of the tiny config (ctc 8 + lm 6 + lora 2 steps)."""
    return train(tiny_train_config(tiny_source_dirs, tiny_data, tmp_path_factory.mktemp("reference")))


# -- feature cache --------------------------------------------------------------------------------


def test_feature_cache_stores_the_library_features_keyed_by_feature_mode(tiny_model, tiny_data, tmp_path):
    rows = [json.loads(line) for line in tiny_data["train"].read_text().splitlines()][:3]
    utterances = [Utterance(text=r["text"], audio_path=tiny_data["train"].parent / r["audio"]) for r in rows]
    cache = FeatureCache.for_model(tiny_model, tmp_path)
    examples = cache.prepare(utterances, max_seconds=30)
    assert len(examples) == 3
    from trainer.data import decode_utterance

    expected = tiny_model.encode(decode_utterance(utterances[0]))
    torch.testing.assert_close(cache.load(examples[0].key), expected, atol=2e-2, rtol=2e-3)  # fp16 storage
    assert examples[0].frames == expected.shape[0]

    stamp = cache.path(examples[0].key).stat().st_mtime_ns
    assert cache.prepare(utterances, max_seconds=30) == examples  # second pass: nothing re-encoded
    assert cache.path(examples[0].key).stat().st_mtime_ns == stamp

    chunked = FeatureCache(tiny_model.encoder, tiny_model.config.encoder_source, FeatureMode(0.4), tmp_path)
    assert chunked.dir != cache.dir  # the feature mode is part of the key
    assert chunked.prepare(utterances[:1], max_seconds=30)[0].key == examples[0].key  # same audio, other folder


def test_feature_cache_shards_split_the_work_between_processes(tiny_model, tiny_data, tmp_path):
    rows = [json.loads(line) for line in tiny_data["train"].read_text().splitlines()]
    utterances = [Utterance(text=r["text"], audio_path=tiny_data["train"].parent / r["audio"]) for r in rows]
    cache = FeatureCache.for_model(tiny_model, tmp_path)

    # Keys hash each file's path and mtime, so the split differs per run: with 16 rows a shard
    # comes out empty with probability 2 / 2**16 (8 rows, as before, failed CI once).
    first, second = (cache.prepare(utterances, max_seconds=30, shard=(k, 2)) for k in (1, 2))

    assert first and second and not {e.key for e in first} & {e.key for e in second}
    assert sorted(e.key for e in cache.prepare(utterances, max_seconds=30)) == sorted(e.key for e in first + second)
    with pytest.raises(ValueError, match="shard"):
        cache.prepare(utterances, max_seconds=30, shard=(3, 2))


def test_feature_cache_skips_bad_rows_with_counts(tiny_model, tiny_data, tmp_path):
    good = tiny_data["train"].parent / "train" / "000.wav"
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio at all")
    utterances = [
        Utterance(text="fine", audio_path=good),
        Utterance(text="gone", audio_path=tmp_path / "missing.wav"),
        Utterance(text="  ", audio_path=good),
        Utterance(text="broken", audio_path=broken),
        Utterance(text="long", audio_path=good),
    ]
    skips = SkipCounter()
    examples = FeatureCache.for_model(tiny_model, tmp_path).prepare(utterances[:4], max_seconds=30, skips=skips)
    assert [e.text for e in examples] == ["fine"]
    assert dict(skips.counts) == {"missing_file": 1, "empty_text": 1, "undecodable": 1}
    skips = SkipCounter()  # a cached file that is now over the length limit is skipped too
    assert FeatureCache.for_model(tiny_model, tmp_path).prepare(utterances[4:], max_seconds=0.1, skips=skips) == []
    assert dict(skips.counts) == {"too_long": 1}


# -- losses and one step per stage ----------------------------------------------------------------


def _fixed_batch(model: TinyAudioModel) -> tuple[list[torch.Tensor], list[str]]:
    torch.manual_seed(1)
    features = [torch.randn(n, model.config.encoder_dim) for n in (40, 55, 31)]
    return features, ["alpha bravo charlie", "delta echo", "golf hotel india juliet"]


@pytest.mark.parametrize("stage_name", ["ctc", "lm", "lora"])
def test_one_training_step_lowers_the_loss_on_a_fixed_batch(tiny_model, stage_name):
    features, texts = _fixed_batch(tiny_model)
    embeddings = tiny_model.llm.get_input_embeddings().weight.detach()
    head = CTCHead.for_texts(texts, tiny_model.tokenizer, embeddings)
    stage = StageConfig(stage_name, steps=10, lr=3e-3 if stage_name == "ctc" else 1e-2, warmup_steps=0)
    params = stage_parameters(tiny_model, head, stage)
    optimizer = make_optimizer(params, stage)
    scheduler = make_scheduler(optimizer, stage)
    tiny_model.train()

    def loss() -> torch.Tensor:
        return (
            ctc_loss(tiny_model, head, features, texts) if stage_name == "ctc" else lm_loss(tiny_model, features, texts)
        )

    before = loss()
    before.backward()
    optimizer.step()
    scheduler.step()
    with torch.no_grad():
        after = loss()
    assert after.item() < before.item()


def test_each_stage_trains_only_its_parameters(tiny_model):
    head = CTCHead([1, 2, 3], tiny_model.llm.get_input_embeddings().weight.detach())
    projector = set(tiny_model.projector.parameters())
    lora = {p for n, p in tiny_model.llm.named_parameters() if "lora_" in n}
    assert lora
    for name, expected in [
        ("ctc", projector | set(head.parameters())),
        ("lm", projector),
        ("lora", projector | lora),
    ]:
        params = stage_parameters(tiny_model, head, StageConfig(name))
        trainable = {p for p in [*tiny_model.parameters(), *head.parameters()] if p.requires_grad}
        assert set(params) == trainable == expected, name
    assert set(stage_parameters(tiny_model, head, StageConfig("lora", train_projector=False))) == lora


def test_lm_loss_counts_only_transcript_tokens(tiny_model):
    features, texts = _fixed_batch(tiny_model)
    batch = tiny_model.prepare_batch(features, texts)
    labels = batch["labels"]
    for row, text in zip(labels, texts, strict=True):
        kept = row[row != IGNORE_INDEX].tolist()
        transcript = tiny_model.tokenizer(text, add_special_tokens=False).input_ids
        assert kept == [*transcript, tiny_model.prompt.end_of_turn_id]  # prompt, audio and padding masked
    with torch.no_grad():
        output = tiny_model(**batch)
        logits = output.logits[:, :-1].reshape(-1, output.logits.shape[-1])
        manual = torch.nn.functional.cross_entropy(logits, labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX)
        assert torch.allclose(lm_loss(tiny_model, features, texts), manual, atol=1e-5)


def test_lm_loss_shares_the_prompt_prefix_without_changing_gradients(adapted_tiny_model):
    tiny_model = adapted_tiny_model  # a non-zero adapter: the shared prefix depends on trained weights
    features, texts = _fixed_batch(tiny_model)
    params = stage_parameters(tiny_model, None, StageConfig("lora"))

    def gradients(loss: torch.Tensor) -> list[torch.Tensor]:
        return [g.clone() for g in torch.autograd.grad(loss, params)]

    full = gradients(tiny_model(**tiny_model.prepare_batch(features, texts)).loss)
    shared = gradients(lm_loss(tiny_model, features, texts))
    for a, b in zip(full, shared, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_ctc_greedy_decoding_reads_the_tokens_the_frames_point_at(tiny_model):
    embeddings = tiny_model.llm.get_input_embeddings().weight.detach()
    ids = tiny_model.tokenizer("hello world again", add_special_tokens=False).input_ids
    head = CTCHead([*ids, 5, 6, 7], embeddings)
    with torch.no_grad():
        head.log_scale.fill_(10.0)
        head.blank.copy_(-embeddings[ids].mean(0))
    frames = [embeddings[ids[0]], embeddings[ids[0]], head.blank, embeddings[ids[1]], head.blank, embeddings[ids[2]]]
    projected = torch.stack(frames)[None]
    assert head.greedy_decode(projected, torch.tensor([6]), embeddings) == [ids]
    assert head.greedy_decode(projected, torch.tensor([2]), embeddings) == [ids[:1]]  # padding ignored


def test_a_chunk_transformer_learns_to_spell_with_its_own_ctc_head(tiny_config):
    config = TinyAudioConfig.from_dict(
        {**tiny_config.to_dict(), "projector_type": "chunk_transformer", "stack_factor": 8}
    )
    torch.manual_seed(0)
    model = TinyAudioModel(config)
    texts = ["alpha bravo charlie", "delta echo", "golf hotel india juliet"]
    features = [torch.randn(n, config.encoder_dim) for n in (70, 50, 90)]  # 2+ frames per character
    stage = StageConfig("ctc", steps=150, lr=3e-3, warmup_steps=0)
    assert stage_parameters(model, None, stage) == list(model.projector.parameters())  # no LLM-embedding head
    optimizer = make_optimizer(list(model.projector.parameters()), stage)
    model.train()
    for _ in range(stage.steps):
        ctc_loss(model, None, features, texts).backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    assert character_greedy_decode(model.projector, features) == texts


# -- runs, checkpoints and resume -----------------------------------------------------------------


def test_training_run_writes_config_metrics_plot_checkpoints_and_model(reference_run):
    assert (reference_run / "config.yaml").is_file() and (reference_run / "loss.png").stat().st_size > 0
    losses = _losses(reference_run)
    assert [step for step, *_ in losses] == list(range(1, 17))
    assert [stage for _, stage, *_ in losses] == ["ctc"] * 8 + ["lm"] * 6 + ["lora"] * 2
    assert [p.name for p in list_checkpoints(reference_run)] == ["ckpt-00000015.pt", "ckpt-00000016.pt"]  # rotated
    records = [json.loads(line) for line in (reference_run / "metrics.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in records if "dev_wer" in r} == {"ctc", "lm", "lora"}  # dev WER at each stage end
    assert TinyAudioModel.from_pretrained(reference_run / "model").config.lora_rank == 4


def test_fine_tuning_starts_from_a_saved_model(tiny_source_dirs, tiny_data, reference_run, tmp_path):
    trained = TinyAudioModel.from_pretrained(reference_run / "model")
    frozen_lr = ["stages=[{name: lora, steps: 1, lr: 0.0, warmup_steps: 0, batch_size: 2}]"]
    config = tiny_train_config(
        tiny_source_dirs, tiny_data, tmp_path / "tuned", [f"init_from={reference_run / 'model'}", *frozen_lr]
    )
    tuned = TinyAudioModel.from_pretrained(train(config) / "model")
    expected = {**trained.trainable_state_dict(), **trained.adapter_state_dict()}
    weights = {**tuned.trainable_state_dict(), **tuned.adapter_state_dict()}
    assert weights.keys() == expected.keys()
    for name, weight in weights.items():
        assert torch.equal(weight, expected[name]), name


def test_llm_stages_start_from_an_alignment_model_without_lora(tiny_source_dirs, tiny_data, tmp_path):
    ctc_only = ["model.lora_rank=0", "stages=[{name: ctc, steps: 2, lr: 0.01, warmup_steps: 0, batch_size: 4}]"]
    aligned = TinyAudioModel.from_pretrained(
        train(tiny_train_config(tiny_source_dirs, tiny_data, tmp_path / "ctc", ctc_only)) / "model"
    )
    frozen_lr = ["stages=[{name: lora, steps: 1, lr: 0.0, warmup_steps: 0, batch_size: 2}]"]
    config = tiny_train_config(
        tiny_source_dirs, tiny_data, tmp_path / "lora", [f"init_from={tmp_path / 'ctc' / 'model'}", *frozen_lr]
    )
    tuned = TinyAudioModel.from_pretrained(train(config) / "model")
    assert tuned.config.lora_rank == 4 and aligned.config.lora_rank == 0
    for name, weight in tuned.trainable_state_dict().items():
        assert torch.equal(weight, aligned.trainable_state_dict()[name]), name


def test_a_recogniser_run_learns_subword_units_from_its_transcripts(tiny_source_dirs, tiny_data, tmp_path):
    overrides = [
        "model.projector_type=chunk_transformer",
        "model.stack_factor=8",
        "model.lora_rank=0",
        "subword_units=8",
        "stages=[{name: ctc, steps: 2, lr: 0.01, warmup_steps: 0, batch_size: 4}]",
    ]
    run_dir = train(tiny_train_config(tiny_source_dirs, tiny_data, tmp_path / "units", overrides))
    model = TinyAudioModel.from_pretrained(run_dir / "model")
    assert model.config.reading == "rescore"  # its LLM never learnt to read audio tokens
    assert load_model(run_dir)[0].config.reading == "rescore"
    units = model.config.projector_options["units"]
    assert 0 < len(units) <= 8 and model.projector.vocabulary.units == tuple(units)
    assert read_saved_config(run_dir / "config.yaml").model["projector_options"]["units"] == units  # --resume
    more_overrides = [*overrides, f"init_from={run_dir}/model", "model.projector_options={dropout: 0.3}"]
    more = tiny_train_config(tiny_source_dirs, tiny_data, tmp_path / "more", more_overrides)
    continued = TinyAudioModel.from_pretrained(train(more) / "model")
    assert continued.config.projector_options["units"] == units  # the head it starts from, not new ones
    assert continued.config.projector_options["dropout"] == 0.3  # other dropout: the same weights' meaning


def test_a_run_with_more_units_keeps_the_body_and_the_shared_head_rows(tiny_source_dirs, tiny_data, tmp_path):
    overrides = [
        "model.projector_type=chunk_transformer",
        "model.stack_factor=8",
        "model.lora_rank=0",
        "stages=[{name: ctc, steps: 2, lr: 0.01, warmup_steps: 0, batch_size: 4}]",
    ]
    few_config = tiny_train_config(tiny_source_dirs, tiny_data, tmp_path / "few", [*overrides, "subword_units=4"])
    few = TinyAudioModel.from_pretrained(train(few_config) / "model")
    frozen = ["stages=[{name: ctc, steps: 1, lr: 0.0, warmup_steps: 0, batch_size: 4}]"]
    more_overrides = [*overrides, "subword_units=12", f"init_from={tmp_path / 'few' / 'model'}", *frozen]
    more = TinyAudioModel.from_pretrained(
        train(tiny_train_config(tiny_source_dirs, tiny_data, tmp_path / "more", more_overrides)) / "model"
    )
    assert len(more.projector.vocabulary.units) > len(few.projector.vocabulary.units)
    for name, weight in more.projector.state_dict().items():
        if not name.startswith("ctc_head"):
            assert torch.equal(weight, few.projector.state_dict()[name]), name
    for row, symbol in enumerate(more.projector.vocabulary.symbols, start=1):
        if symbol in few.projector.vocabulary.symbols:
            old_row = few.projector.vocabulary.symbols.index(symbol) + 1
            assert torch.equal(more.projector.ctc_head.weight[row], few.projector.ctc_head.weight[old_row]), symbol
    assert torch.equal(more.projector.ctc_head.bias[0], few.projector.ctc_head.bias[0])  # the blank


def test_a_run_reading_an_extra_encoder_layer_starts_exactly_where_its_init_from_stopped(
    tiny_source_dirs, tiny_data, tmp_path
):
    overrides = [
        "model.projector_type=chunk_transformer",
        "model.stack_factor=8",
        "model.lora_rank=0",
        "stages=[{name: ctc, steps: 2, lr: 0.01, warmup_steps: 0, batch_size: 4}]",
    ]
    top = TinyAudioModel.from_pretrained(
        train(tiny_train_config(tiny_source_dirs, tiny_data, tmp_path / "top", overrides)) / "model"
    )
    frozen = ["stages=[{name: ctc, steps: 1, lr: 0.0, warmup_steps: 0, batch_size: 4}]"]
    more_overrides = [*overrides, "model.extra_encoder_layers=[1]", f"init_from={tmp_path / 'top' / 'model'}", *frozen]
    both = TinyAudioModel.from_pretrained(
        train(tiny_train_config(tiny_source_dirs, tiny_data, tmp_path / "both", more_overrides)) / "model"
    )
    assert both.config.extra_encoder_layers == [1] and both.feature_mode.extra_layers == (1,)
    audio = (np.random.default_rng(0).standard_normal(16000) * 0.1).astype(np.float32)
    features = both.encode(audio)
    assert features.shape[1] == 2 * top.encode(audio).shape[1]
    with torch.no_grad():  # the new layer's columns start at zero: the same recogniser as before
        torch.testing.assert_close(both.projector.encode(features[None]), top.projector.encode(top.encode(audio)[None]))
    with pytest.raises(ConfigError, match="only a chunk_transformer run that adds layers"):
        fewer = [*overrides, f"init_from={tmp_path / 'both' / 'model'}", *frozen]
        train(tiny_train_config(tiny_source_dirs, tiny_data, tmp_path / "fewer", fewer))


def test_a_chunked_recogniser_also_reads_whole_utterances_when_a_share_is_set(tiny_source_dirs, tiny_data, tmp_path):
    chunked = [
        "model.projector_type=chunk_transformer",
        "model.stack_factor=8",
        "model.lora_rank=0",
        "model.chunk_seconds=0.48",
        "model.left_context_seconds=0.48",
        "stages=[{name: ctc, steps: 2, lr: 0.01, warmup_steps: 0, batch_size: 4}]",
    ]
    config = tiny_train_config(
        tiny_source_dirs, tiny_data, tmp_path / "mixed", [*chunked, "data.whole_utterance_share=0.5"]
    )
    assert (train(config) / "model").is_dir()

    cache = feature_cache(config)
    whole = whole_utterance_cache(config, cache)
    assert whole.mode == FeatureMode() and whole.dir != cache.dir  # what a stream's whole final encodes
    ((examples, _),) = prepare_data(config, cache, whole=whole)[0]  # cached by the run: nothing to encode
    sources = TrainingFeatures(cache, whole, config.data.whole_utterance_share)
    model = TinyAudioModel(config.tiny_audio_config())
    drawn = sources.load(model, examples, "7/0")
    read_whole = [torch.equal(f, whole.load(e.key)) for f, e in zip(drawn, examples, strict=True)]
    read_chunked = [torch.equal(f, cache.load(e.key)) for f, e in zip(drawn, examples, strict=True)]
    assert any(read_whole) and any(read_chunked) and all(map(operator.xor, read_whole, read_chunked))
    assert all(torch.equal(a, b) for a, b in zip(drawn, sources.load(model, examples, "7/0"), strict=True))  # resume

    assert whole_utterance_cache(tiny_train_config(tiny_source_dirs, tiny_data, tmp_path / "c", chunked), cache) is None
    with pytest.raises(ConfigError, match="whole_utterance_share needs a chunked model"):
        tiny_train_config(tiny_source_dirs, tiny_data, tmp_path / "w", ["data.whole_utterance_share=0.5"])


def test_a_recogniser_learns_from_noise_clips_whose_transcript_is_empty(tiny_source_dirs, tiny_data, tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(4):
        sf.write(tmp_path / f"noise{i}.wav", 0.01 * rng.standard_normal(int(rng.uniform(0.5, 1.5) * 16_000)), 16_000)
        rows.append(json.dumps({"audio": f"noise{i}.wav", "text": "", "no_speech": True}))
    (tmp_path / "noise.jsonl").write_text("\n".join(rows) + "\n")
    overrides = [
        "model.projector_type=chunk_transformer",
        "model.stack_factor=8",
        "model.lora_rank=0",
        f"data.train=[{{path: {tiny_data['train']}}}, {{path: {tmp_path / 'noise.jsonl'}}}]",
        "stages=[{name: ctc, steps: 4, lr: 0.01, warmup_steps: 0, batch_size: 8},"
        " {name: lm, steps: 2, lr: 0.01, warmup_steps: 0, batch_size: 8}]",
    ]
    config = tiny_train_config(tiny_source_dirs, tiny_data, tmp_path / "quiet", overrides)

    run_dir = train(config)

    _, (noise, _) = prepare_data(config, feature_cache(config))[0]  # cached by the run: nothing to encode
    assert [e.text for e in noise] == [""] * 4
    losses = [loss for _, _, loss, _ in _losses(run_dir)]
    assert len(losses) == 6 and all(np.isfinite(losses))


def test_fine_tuning_refuses_a_model_of_another_shape(tiny_source_dirs, tiny_data, reference_run, tmp_path):
    overrides = [f"init_from={reference_run / 'model'}", "model.projector_hidden_dim=64"]
    with pytest.raises(ConfigError, match="projector_hidden_dim: run 64, init_from 32"):
        train(tiny_train_config(tiny_source_dirs, tiny_data, tmp_path / "other", overrides))


def test_a_new_run_refuses_to_overwrite_an_old_one(tiny_source_dirs, tiny_data, reference_run):
    with pytest.raises(FileExistsError, match="--resume"):
        train(tiny_train_config(tiny_source_dirs, tiny_data, reference_run))


def test_kill_9_then_resume_reproduces_the_uninterrupted_loss_curve(
    tiny_source_dirs, tiny_data, reference_run, tmp_path
):
    run_dir = tmp_path / "killed"
    config_path = tmp_path / "config.yaml"
    from trainer.config import save_config

    save_config(tiny_train_config(tiny_source_dirs, tiny_data, run_dir), config_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "trainer", "train", "--config", str(config_path)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 90
    while not any(int(p.stem.split("-")[1]) >= 9 for p in list_checkpoints(run_dir)):  # mid lm stage
        assert process.poll() is None and time.time() < deadline, "training ended before it could be killed"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (run_dir / "model").exists()  # it really died mid-run
    logged = len(_losses(run_dir))

    train(tiny_train_config(tiny_source_dirs, tiny_data, run_dir), resume=True)
    resumed, reference = _losses(run_dir), _losses(reference_run)
    assert logged < len(reference) == len(resumed)
    for (step, stage, loss, lr), (ref_step, ref_stage, ref_loss, ref_lr) in zip(resumed, reference, strict=True):
        assert (step, stage, lr) == (ref_step, ref_stage, ref_lr)
        assert abs(loss - ref_loss) <= 1e-6, (step, loss, ref_loss)


def test_sigterm_saves_a_checkpoint_and_stops_cleanly(tiny_source_dirs, tiny_data, tmp_path):
    import threading

    run_dir = tmp_path / "stopped"

    def terminate_once_training() -> None:
        while not (run_dir / "metrics.jsonl").exists():
            time.sleep(0.005)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=terminate_once_training, daemon=True).start()
    train(tiny_train_config(tiny_source_dirs, tiny_data, run_dir, ["checkpoint_every=100"]))
    last_step = _losses(run_dir)[-1][0]
    assert last_step < 16 and not (run_dir / "model").exists()
    assert [p.name for p in list_checkpoints(run_dir)] == [f"ckpt-{last_step:08d}.pt"]
    assert "trainer train --resume" in (run_dir / "train.log").read_text()


def test_corrupt_checkpoint_gives_a_clear_error(tiny_source_dirs, tiny_data, reference_run, tmp_path):
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(reference_run, run_dir)
    newest = list_checkpoints(run_dir)[-1]
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated, e.g. a disk that filled up
    with pytest.raises(
        CheckpointError, match=r"ckpt-00000016\.pt is corrupt or truncated.*delete it to resume from ckpt-00000015"
    ):
        train(tiny_train_config(tiny_source_dirs, tiny_data, run_dir), resume=True)


def test_training_refuses_dev_sentences(tiny_source_dirs, tiny_data, tmp_path):
    dev_text = json.loads(tiny_data["dev"].read_text().splitlines()[0])["text"]
    leaky = tmp_path / "leaky.jsonl"
    row = {"audio": str(tiny_data["train"].parent / "train" / "000.wav"), "text": dev_text.upper() + "!"}
    leaky.write_text(tiny_data["train"].read_text() + json.dumps(row) + "\n")
    config = tiny_train_config(tiny_source_dirs, {**tiny_data, "train": leaky}, tmp_path / "run")
    with pytest.raises(DataError, match="1 dev/held-out sentence"):
        train(config)
    sentences = tmp_path / "held_out.txt"
    sentences.write_text("Alpha, bravo; charlie.\n")
    row["text"] = "alpha bravo charlie"
    leaky.write_text(tiny_data["train"].read_text() + json.dumps(row) + "\n")
    config = tiny_train_config(
        tiny_source_dirs, {**tiny_data, "train": leaky}, tmp_path / "run", [f"data.forbidden_sentences=[{sentences}]"]
    )
    with pytest.raises(DataError, match="alpha bravo charlie"):
        train(config)


def test_mixing_weights_and_sample_stream_are_deterministic():
    from trainer.feature_cache import Example
    from trainer.train import SampleStream

    a = [Example(f"a{i}", f"a{i}", 10, "a", f"a{i}") for i in range(4)]
    b = [Example(f"b{i}", f"b{i}", 10, "b", f"b{i}") for i in range(4)]
    stream = SampleStream([(a, 3.0), (b, 1.0)], seed=0)
    first = stream.take(40)
    assert sum(e.source == "a" for e in first) > 2 * sum(e.source == "b" for e in first)
    resumed = SampleStream([(a, 3.0), (b, 1.0)], seed=0, cursor=13)
    assert resumed.take(27) == first[13:]
    assert np.unique([e.text for e in first]).size == 8
