"""Training: cached encoder features → projector (CTC alignment, then LM loss) → LoRA.

Read top to bottom: build the model, load and cache the data, then run the configured stages,
each with its own AdamW + warmup/cosine schedule. A run directory holds the resolved config, a
metrics JSONL and its loss-curve PNG, rotated checkpoints, and finally ``model/`` (the folder
``TinyAudioModel.from_pretrained`` loads). ``--resume`` continues from the newest checkpoint
exactly: same data order, optimizer state and RNG, so the loss curve matches an uninterrupted run.

Stages (DESIGN.md, "Training on 2 CPU cores"):
- ``ctc``: projector + CTC head against the LLM's token embeddings, no LLM forward (fast).
- ``lm``: projector under the LM loss on transcript tokens, LLM frozen.
- ``lora``: LoRA adapters (and, by default, the projector) under the LM loss.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from loguru import logger
from tqdm import tqdm
from transformers import DynamicCache

from pipecat_tiny_audio import TinyAudioConfig, TinyAudioModel
from pipecat_tiny_audio.characters import DEFAULT_CHARACTERS
from pipecat_tiny_audio.modeling import feature_mode_of
from pipecat_tiny_audio.projectors import ChunkTransformerProjector
from pipecat_tiny_audio.prompt import IGNORE_INDEX
from pipecat_tiny_audio.sources import load_llm_tokenizer, load_whisper_encoder
from trainer.checkpoint import (
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    restore_trainables,
    rng_state,
    save_checkpoint,
    serves_by_rescoring,
    set_rng_state,
    trained_stages,
)
from trainer.config import Config, ConfigError, StageConfig, save_config
from trainer.ctc import CTCHead, character_ctc_loss, character_greedy_decode
from trainer.data import SkipCounter, SkipReason, Utterance, load_source, mix_sources
from trainer.feature_cache import Example, FeatureCache
from trainer.feature_masking import mask_features
from trainer.metrics import cer, normalize, wer
from trainer.subword_units import learn_units, llm_token_units
from trainer.top_layers import top_layer_features

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "loss.png"


class DataError(ValueError):
    """The configured data cannot be trained on (none usable, or it contains dev sentences)."""


# -----------------------------------------------------------------------------------------------
# data


def load_utterances(
    specs: Sequence[dict], skips: SkipCounter, forbidden: set[str] = frozenset()
) -> list[tuple[Sequence[Utterance], float]]:
    """(rows, weight) per configured source; a spec is ``{path, weight?, kind?, name?, max_rows?, ...}``.

    ``max_rows`` keeps the first rows of a source: train on what is cached while the rest encodes.
    ``skip_dev_sentences: true`` drops (and counts) the rows whose sentence is in ``forbidden``: a
    synthetic corpus's templates can repeat another corpus's held-out sentences. Without it such a
    row stops the run (:func:`check_no_dev_sentences`).
    """
    loaded = []
    for spec in specs:
        options = dict(spec)
        if "path" not in options:
            raise DataError(f"data source {spec} has no 'path'")
        weight = float(options.pop("weight", 1.0))
        max_rows = options.pop("max_rows", None)
        skip_dev = bool(options.pop("skip_dev_sentences", False))
        rows = load_source(options.pop("path"), options.pop("kind", None), skips=skips, **options)
        rows = rows[:max_rows] if max_rows is not None else rows
        if skip_dev:
            kept = []
            for u in rows:
                if normalize(u.text) in forbidden:
                    skips.record(SkipReason.DEV_SENTENCE, u.key, repr(u.text))
                else:
                    kept.append(u)
            rows = kept
        loaded.append((rows, weight))
    return loaded


def forbidden_sentences(config: Config, dev: Sequence[tuple[Sequence[Utterance], float]]) -> set[str]:
    """Normalized sentences training must never see: the dev sources' and the listed files'."""
    sentences = {normalize(u.text) for rows, _ in dev for u in rows}
    for name in config.data.forbidden_sentences:
        path = Path(name)
        if path.is_file():
            sentences.update(normalize(line) for line in path.read_text().splitlines())
        else:
            logger.warning(f"forbidden-sentence file {path} not found: not checked against it")
    sentences.discard("")
    return sentences


def check_no_dev_sentences(train: Sequence[tuple[Sequence[Utterance], float]], forbidden: set[str]) -> None:
    """Refuse to train on evaluation text: a dev WER on memorised sentences measures nothing."""
    leaks = [(u.source, u.text) for rows, _ in train for u in rows if normalize(u.text) in forbidden]
    if leaks:
        shown = "; ".join(f"{source}: {text!r}" for source, text in leaks[:5])
        raise DataError(f"training data contains {len(leaks)} dev/held-out sentence(s), e.g. {shown}")


def prepare_data(
    config: Config, cache: FeatureCache, shard: tuple[int, int] | None = None, whole: FeatureCache | None = None
) -> tuple[list[tuple[list[Example], float]], list[Example]]:
    """Load the sources, check them against the dev set, and cache every missing feature file.

    With ``shard = (k, n)`` only the utterances of shard k of n (by their cache key) are cached and
    returned: n processes, one per core, cache a corpus n times as fast as one. ``whole`` (see
    :func:`whole_utterance_cache`) also gets the training utterances' whole-utterance features.
    """
    skips = SkipCounter()
    dev = load_utterances(config.data.dev, skips)
    forbidden = forbidden_sentences(config, dev)
    train = load_utterances(config.data.train, skips, forbidden)
    if not train:
        raise DataError("data.train is empty: configure at least one training source")
    check_no_dev_sentences(train, forbidden)
    train_examples = []
    for rows, w in train:
        source = rows[0].source if rows else ""
        train_examples.append((cache.prepare(rows, config.data.max_seconds, skips, f"features {source}", shard), w))
        if whole is not None:
            whole.prepare(rows, config.data.max_seconds, None, f"whole-utterance features {source}", shard)
    dev_examples = [
        e for rows, _ in dev for e in cache.prepare(rows, config.data.max_seconds, skips, "features dev", shard)
    ]
    logger.info(
        f"train: {sum(len(e) for e, _ in train_examples)} utterances, "
        f"{sum(x.seconds for e, _ in train_examples for x in e) / 3600:.2f} h; dev: {len(dev_examples)}; "
        f"{skips.summary()}"
    )
    return train_examples, dev_examples


class SampleStream:
    """The training order: epoch ``e`` is a seeded weighted mix of the sources, endlessly repeated.

    ``cursor`` (samples drawn so far) is the whole data position, so resuming needs only that.
    """

    def __init__(self, sources: list[tuple[list[Example], float]], seed: int, cursor: int = 0):
        self.sources = [(rows, w) for rows, w in sources if rows and w > 0]
        if not self.sources:
            raise DataError("no usable training utterances (see the skipped-row counts above)")
        self.seed, self.cursor = seed, cursor
        self.epoch_length = sum(len(rows) for rows, _ in self.sources)
        self._epoch, self._order = -1, None

    def take(self, n: int) -> list[Example]:
        batch = []
        for _ in range(n):
            epoch, index = divmod(self.cursor, self.epoch_length)
            if epoch != self._epoch:
                seed = int(np.random.SeedSequence([self.seed, epoch]).generate_state(1)[0])
                self._epoch, self._order = epoch, mix_sources(self.sources, seed=seed)
            batch.append(self._order[index])
            self.cursor += 1
        return batch


# -----------------------------------------------------------------------------------------------
# model, losses and stages


# The model settings a run must share with ``init_from``'s model for its weights to mean the same.
INIT_KEYS = (
    "encoder_source",
    "llm_source",
    "projector_type",
    "stack_factor",
    "projector_hidden_dim",
    "projector_options",
    "lora_rank",
    "lora_alpha",
    "lora_target_modules",
    "audio_token",
)


def subword_units(texts: list[str], config: Config) -> tuple[list[str], str]:
    """The units of a run's CTC head, and where they came from: ``init_from``'s head when it has as
    many (its weights only mean something with its own units), else learned from the transcripts
    (``init_from``'s head rows then carry over to the classes both heads share)."""
    if config.init_from:
        units = (TinyAudioConfig.from_pretrained(config.init_from).projector_options or {}).get("units")
        if not units:
            raise ConfigError(f"subword_units: init_from={config.init_from} has a characters-only CTC head")
        if len(units) == config.subword_units:
            return units, f"units of init_from={config.init_from}"
    characters = (config.model["projector_options"] or {}).get("characters", DEFAULT_CHARACTERS)
    if config.subword_units_from == "llm":
        units = llm_token_units(texts, config.subword_units, load_llm_tokenizer(config.model["llm_source"]), characters)
    else:
        units = learn_units(texts, config.subword_units, characters)
    return units, f"{config.subword_units_from} units of the training transcripts"


def build_model(config: Config, device: torch.device, encoder: torch.nn.Module | None = None) -> TinyAudioModel:
    torch.manual_seed(config.seed)
    return TinyAudioModel(config.tiny_audio_config(), encoder=encoder).to(device)


def init_from_pretrained(model: TinyAudioModel, source: str) -> None:
    """Start ``model``'s projector and LoRA from a saved model trained with the same architecture.

    A saved model without LoRA (an alignment-stage model) initialises the projector only, whatever
    this run's LoRA settings: the LLM stages then start from an aligned recogniser. A saved model
    whose CTC head has other subword units gives its body, and the head rows of the classes both
    heads have (the characters, the blank and the shared units); the other rows start fresh.
    """
    pretrained = TinyAudioModel.from_pretrained(source, encoder=model.encoder)
    keys = INIT_KEYS if pretrained.config.lora_rank > 0 else [k for k in INIT_KEYS if not k.startswith("lora_")]
    mismatched = [
        f"{key}: run {getattr(model.config, key)!r}, init_from {getattr(pretrained.config, key)!r}"
        for key in keys
        if _comparable(_weight_options(getattr(model.config, key)))
        != _comparable(_weight_options(getattr(pretrained.config, key)))
    ]
    if mismatched:
        raise ConfigError(f"init_from={source} was trained with other model settings: {'; '.join(mismatched)}")
    projector = pretrained.trainable_state_dict()
    if pretrained.config.extra_encoder_layers != model.config.extra_encoder_layers:
        projector = _input_widened(model, pretrained, projector)
    new_head = model.projector.vocabulary and model.projector.vocabulary.units != pretrained.projector.vocabulary.units
    if new_head:
        projector = _head_carried_over(model.projector, pretrained.projector, projector)
    restore_trainables(model, {"projector": projector, "lora": pretrained.adapter_state_dict()}, partial_encoder=True)
    what = "projector and LoRA weights" if pretrained.config.lora_rank > 0 else "projector weights (no LoRA in it)"
    logger.info(f"{what} initialised from {source}")


# projector_options that do not change what the weights mean: the CTC head's units (its rows carry over by
# class) and dropout (training only).
WEIGHT_NEUTRAL_OPTIONS = ("units", "dropout")


def _weight_options(value: Any) -> Any:
    return {k: v for k, v in value.items() if k not in WEIGHT_NEUTRAL_OPTIONS} if isinstance(value, dict) else value


def _head_carried_over(
    projector: ChunkTransformerProjector, pretrained: ChunkTransformerProjector, state: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """``state`` with the CTC head resized to ``projector``'s classes, rows copied by class string."""
    old = {symbol: i + 1 for i, symbol in enumerate(pretrained.vocabulary.symbols)} | {"<blank>": 0}
    new = ["<blank>", *projector.vocabulary.symbols]
    rows, old_rows = zip(*[(i, old[symbol]) for i, symbol in enumerate(new) if symbol in old], strict=True)
    state = dict(state)
    for name in ("weight", "bias"):
        key = f"projector.ctc_head.{name}"
        fresh = getattr(projector.ctc_head, name).detach().clone()
        fresh[list(rows)] = state[key][list(old_rows)]
        state[key] = fresh
    logger.info(f"CTC head: {len(rows)} of {len(new)} classes carried over, {len(new) - len(rows)} new")
    return state


def _input_widened(
    model: TinyAudioModel, pretrained: TinyAudioModel, state: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """``state`` with the projector's input layer widened to the run's extra encoder layers: the
    columns of the features both models read are copied, the new layers' start at zero, so the run
    begins exactly where ``init_from`` stopped and learns how much the new layers add."""
    old_layers, new_layers = pretrained.config.extra_encoder_layers, model.config.extra_encoder_layers
    if not isinstance(model.projector, ChunkTransformerProjector) or not set(old_layers) <= set(new_layers):
        raise ConfigError(
            f"init_from reads encoder layers {old_layers} beside the top one, this run {new_layers}: only a "
            "chunk_transformer run that adds layers can start from it"
        )
    d = model.encoder.config.d_model
    old_blocks = [0, *(1 + new_layers.index(n) for n in old_layers)]  # per frame: top layer, then extras
    old = state["projector.input.weight"]
    weight = torch.zeros_like(model.projector.input.weight).view(old.shape[0], model.projector.stride, -1, d)
    weight[:, :, old_blocks] = old.view(old.shape[0], model.projector.stride, len(old_blocks), d)
    logger.info(f"projector input: encoder layers {new_layers} added beside {old_layers or 'the top one'}, from zero")
    return {**state, "projector.input.weight": weight.reshape(old.shape[0], -1)}


def _comparable(value: Any) -> Any:
    return sorted(value) if isinstance(value, (list, set, tuple)) else value


def encoder_features(model: TinyAudioModel, cache: FeatureCache, examples: Sequence[Example]) -> list[torch.Tensor]:
    """The encoder features of ``examples``: cached, or finished by the model's trained top layers."""
    loaded = [cache.load(e.key) for e in examples]
    if not cache.trained_layers:
        return loaded
    return top_layer_features(model.encoder, loaded, cache.trained_layers)


@dataclasses.dataclass(frozen=True)
class TrainingFeatures:
    """Where training samples' encoder features come from: the model's own feature mode, or for a share
    of them (``data.whole_utterance_share``) the whole utterance encoded at once, which a chunked model's
    whole-utterance finals read."""

    cache: FeatureCache
    whole: FeatureCache | None = None
    whole_share: float = 0.0

    def load(self, model: TinyAudioModel, examples: Sequence[Example], draw: str) -> list[torch.Tensor]:
        """``examples``' features; which ones are whole-utterance is drawn from ``draw`` (the step and
        batch), so a resumed run draws the same."""
        if self.whole is None:
            return encoder_features(model, self.cache, examples)
        rng = random.Random(draw)
        return [(self.whole if rng.random() < self.whole_share else self.cache).load(e.key) for e in examples]


def whole_utterance_cache(config: Config, cache: FeatureCache) -> FeatureCache | None:
    """The whole-utterance features' cache beside a chunked model's, when ``data.whole_utterance_share``
    is set: the model's layers of the whole utterance at once, what the stream's finals encode."""
    if not config.data.whole_utterance_share:
        return None
    return FeatureCache(cache.encoder, config.model["encoder_source"], cache.mode.whole_utterance, config.feature_cache)


def project(model: TinyAudioModel, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Projected audio (B, N, d_llm) and valid lengths of a list of (frames, d) features."""
    device = next(model.projector.parameters()).device
    padded = torch.nn.utils.rnn.pad_sequence(features, batch_first=True).to(device)
    frames = torch.tensor([f.shape[0] for f in features], device=device)
    lengths = torch.tensor([model.projector.output_length(f.shape[0]) for f in features])
    return model.projector(padded, frames), lengths


def ctc_loss(
    model: TinyAudioModel,
    head: CTCHead | None,
    features: list[torch.Tensor],
    texts: list[str],
    llm_weight: float = 0.0,
) -> torch.Tensor:
    """The alignment loss: CTC of the projector's own character head if it has one, else of ``head``
    over the LLM's token embeddings; with both, plus ``llm_weight`` × the latter on the projector's
    output, which puts the audio tokens near the embeddings of the words spoken (DESIGN.md)."""
    if model.projector.vocabulary is None:
        return llm_embedding_ctc_loss(model, head, features, texts)
    loss = character_ctc_loss(model.projector, features, texts)
    if head is not None and llm_weight:
        loss = loss + llm_weight * llm_embedding_ctc_loss(model, head, features, texts)
    return loss


def llm_embedding_ctc_loss(
    model: TinyAudioModel, head: CTCHead, features: list[torch.Tensor], texts: list[str]
) -> torch.Tensor:
    """CTC of the projector's output scored against the LLM's token embeddings by ``head``."""
    projected, lengths = project(model, features)
    embeddings = model.llm.get_input_embeddings().weight
    return head.loss(projected, lengths, head.targets(texts, model.tokenizer), embeddings)


def lm_loss(model: TinyAudioModel, features: list[torch.Tensor], texts: list[str]) -> torch.Tensor:
    """Next-token loss on the transcript (+ end of turn) only: prompt and audio positions are masked.

    Two shortcuts with the same loss and gradients as ``model(**batch).loss``: every row starts
    with the same prompt prefix (about 40 % of a typical row's tokens), so its keys and values are
    computed once and shared by the batch; and the LM head (49k-way) runs only where a
    transcript token is predicted.
    """
    batch = model.prepare_batch(features, texts)
    n = len(model.prompt.prefix_ids)
    embeds = model.merge_audio(batch["input_ids"], batch["audio_features"], batch["audio_lengths"])
    decoder = model.llm.get_decoder()
    cache = DynamicCache()
    decoder(inputs_embeds=embeds[:1, :n], past_key_values=cache, use_cache=True)
    cache.batch_repeat_interleave(embeds.shape[0])
    hidden = decoder(
        inputs_embeds=embeds[:, n:],
        attention_mask=batch["attention_mask"].to(embeds.device),
        past_key_values=cache,
    ).last_hidden_state
    # Position p predicts label p + 1; the prefix's labels and the first label after it are masked.
    targets = batch["labels"][:, n + 1 :].to(embeds.device)
    predicts = targets != IGNORE_INDEX
    logits = model.llm.get_output_embeddings()(hidden[:, :-1][predicts])
    return torch.nn.functional.cross_entropy(logits.float(), targets[predicts])


def stage_parameters(model: TinyAudioModel, head: CTCHead | None, stage: StageConfig) -> list[torch.nn.Parameter]:
    """Freeze everything, then unfreeze (and return, in a fixed order) what ``stage`` trains. The
    fine-tuned encoder layers, if any, train with the projector."""
    model.requires_grad_(False)
    if head is not None:
        head.requires_grad_(False)
    named = []
    if stage.name in ("ctc", "lm") or stage.train_projector:
        named += list(model.projector.named_parameters())
        named += [(n, p) for module in model.trained_encoder_modules().values() for n, p in module.named_parameters()]
    if stage.name == "ctc" and head is not None:
        named += list(head.named_parameters())
    if stage.name == "lora":
        lora = [(n, p) for n, p in model.llm.named_parameters() if "lora_" in n]
        if not lora:
            raise ConfigError("a lora stage needs model.lora_rank > 0")
        named += lora
    for _, p in named:
        p.requires_grad_(True)
    return [p for _, p in named]


def make_optimizer(
    params: list[torch.nn.Parameter], stage: StageConfig, pretrained: Sequence[torch.nn.Parameter] = ()
) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (not on norms, the blank vector or the logit scale). The
    ``pretrained`` ones among ``params`` (fine-tuned encoder layers) learn at ``stage.encoder_lr_ratio``
    of the rate."""
    slow = {id(p) for p in pretrained}
    new, old = [p for p in params if id(p) not in slow], [p for p in params if id(p) in slow]
    groups = [
        {"params": [p for p in new if p.ndim >= 2], "weight_decay": stage.weight_decay},
        {"params": [p for p in new if p.ndim < 2], "weight_decay": 0.0},
    ]
    if old:
        lr = stage.lr * stage.encoder_lr_ratio
        groups += [
            {"params": [p for p in old if p.ndim >= 2], "weight_decay": stage.weight_decay, "lr": lr},
            {"params": [p for p in old if p.ndim < 2], "weight_decay": 0.0, "lr": lr},
        ]
    return torch.optim.AdamW(groups, lr=stage.lr, betas=(0.9, 0.98))


def make_scheduler(optimizer: torch.optim.Optimizer, stage: StageConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup to ``lr``, then cosine decay to ``lr * min_lr_ratio`` at the stage's last step."""

    def factor(step: int) -> float:
        if step < stage.warmup_steps:
            return (step + 1) / stage.warmup_steps
        progress = min(1.0, (step - stage.warmup_steps) / max(1, stage.steps - stage.warmup_steps))
        return stage.min_lr_ratio + (1 - stage.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@torch.no_grad()
def ctc_transcripts(model: TinyAudioModel, head: CTCHead | None, features: list[torch.Tensor]) -> list[str]:
    """Greedy CTC transcripts of the alignment head (the projector's own, or ``head``)."""
    if head is None:
        return character_greedy_decode(model.projector, features)
    projected, lengths = project(model, features)
    ids = head.greedy_decode(projected, lengths, model.llm.get_input_embeddings().weight)
    return [model.tokenizer.decode(row, skip_special_tokens=True).strip() for row in ids]


def error_rates(prefix: str, subset: list[Example], hyps: list[str]) -> dict[str, float]:
    """``{prefix}_wer``/``_cer`` over ``subset``, and per source as ``{prefix}_wer/{source}``."""
    refs = [e.text for e in subset]
    result = {f"{prefix}_wer": wer(refs, hyps), f"{prefix}_cer": cer(refs, hyps)}
    for source in sorted({e.source for e in subset}):
        pairs = [(r, h) for e, r, h in zip(subset, refs, hyps, strict=True) if e.source == source]
        result[f"{prefix}_wer/{source}"] = wer([r for r, _ in pairs], [h for _, h in pairs])
        result[f"{prefix}_cer/{source}"] = cer([r for r, _ in pairs], [h for _, h in pairs])
    for ref, hyp in list(zip(refs, hyps, strict=True))[:3]:
        logger.info(f"  ref: {ref}\n  hyp: {hyp}")
    return result


def evenly_spaced(dev: list[Example], per_source: int) -> list[Example]:
    """Up to ``per_source`` evenly spaced utterances of each dev source (all for 0)."""
    subset = []
    for source in dict.fromkeys(e.source for e in dev):
        rows = [e for e in dev if e.source == source]
        stride = max(1, len(rows) // per_source) if per_source > 0 else 1
        subset += rows[::stride][:per_source] if per_source > 0 else rows
    return subset


@torch.no_grad()
def evaluate_dev(
    model: TinyAudioModel,
    head: CTCHead | None,
    stage: StageConfig,
    dev: list[Example],
    cache: FeatureCache,
    max_utterances: int,
) -> dict[str, Any]:
    """Dev WER/CER: greedy CTC decoding of the alignment head on every dev utterance (``ctc_*``), and
    after the ctc stage LLM decoding (``dev_*``) of ``max_utterances`` per dev source.

    LLM decoding costs ~70 ms per token on a CPU, hence the evenly spaced subset.
    """
    model.eval()
    result: dict[str, Any] = {}
    heads: dict[str, CTCHead | None] = {}  # None: the projector's own character head
    if model.projector.vocabulary is not None:
        heads["ctc"] = None
        if head is not None:
            heads["llm_ctc"] = head  # the projector's output read against the LLM's token embeddings
    elif head is not None:
        heads["ctc"] = head
    for prefix, scored in heads.items():
        hyps = []
        for start in range(0, len(dev), 16):
            hyps += ctc_transcripts(model, scored, encoder_features(model, cache, dev[start : start + 16]))
        result.update(error_rates(prefix, dev, hyps))
    if stage.name == "ctc":
        result.update({"dev_" + key[4:]: value for key, value in result.items() if key.startswith("ctc_")})
        result["dev_utterances"] = len(dev)
    else:
        subset = evenly_spaced(dev, max_utterances)
        hyps = [model.transcribe_features(encoder_features(model, cache, [e])[0]) for e in subset]
        result.update(error_rates("dev", subset, hyps), dev_utterances=len(subset))
    model.train()
    model.encoder.eval()
    return result


# -----------------------------------------------------------------------------------------------
# metrics log


class MetricsLog:
    """Append-only JSONL of training and eval records, plotted to a PNG loss curve."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / METRICS_FILE
        self.plot_path = run_dir / PLOT_FILE

    def truncate_after(self, step: int) -> None:
        """Drop records newer than a checkpoint we resume from: they will be logged again."""
        if not self.path.exists():
            return
        kept = [line for line in self.path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, self.path)

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def plot(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        if not self.path.exists():
            return
        records = [json.loads(line) for line in self.path.read_text().splitlines() if line]
        fig, ax = plt.subplots(figsize=(9, 4.5))
        for stage in dict.fromkeys(r["stage"] for r in records if "loss" in r):
            points = [(r["step"], r["loss"]) for r in records if "loss" in r and r["stage"] == stage]
            ax.plot(*zip(*points, strict=True), label=f"{stage} loss", linewidth=1)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss")
        evals = [(r["step"], 100 * r["dev_wer"]) for r in records if "dev_wer" in r]
        if evals:
            wer_axis = ax.twinx()
            wer_axis.plot(*zip(*evals, strict=True), "k.--", label="dev WER %")
            wer_axis.set_ylabel("dev WER (%)")
            wer_axis.legend(loc="upper center")
        ax.legend(loc="upper right")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(self.plot_path, dpi=100)
        plt.close(fig)


# -----------------------------------------------------------------------------------------------
# the loop


class StopOnSignal:
    """SIGINT/SIGTERM set a flag the loop checks after each step (checkpoint, then exit); a second one aborts."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, sig: int, frame: Any) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = sig
        logger.warning(f"{signal.Signals(sig).name}: saving a checkpoint after this step (again to abort)")

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def log_file(path: Path) -> Iterator[None]:
    """Copy the log into the run directory (removed again even when training fails)."""
    sink = logger.add(path, level="INFO")
    try:
        yield
    finally:
        logger.remove(sink)


def thread_count(requested: int) -> int:
    """``requested``, or for 0 one thread per idle core: on a shared CPU, more threads than idle
    cores make every OpenMP barrier wait for a descheduled thread (measured here: 2 threads on
    2 busy cores ran the LM step 3-4x slower than 1 thread)."""
    if requested > 0:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores - round(os.getloadavg()[0]))


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def feature_cache(config: Config) -> FeatureCache:
    """The feature cache of this config's encoder (loaded here), feature mode and trained layers."""
    source = config.model["encoder_source"]
    mode, trained = feature_mode_of(config.tiny_audio_config()), config.model["encoder_trained_layers"]
    return FeatureCache(load_whisper_encoder(source), source, mode, config.feature_cache, trained)


def train_step(
    model: TinyAudioModel,
    head: CTCHead | None,
    stage: StageConfig,
    batches: list[list[Example]],
    sources: TrainingFeatures,
    step: int,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    grad_clip: float,
    autocast: Callable[[], contextlib.AbstractContextManager],
) -> tuple[float, float]:
    """Optimizer step number ``step`` over ``batches`` (gradient accumulation); returns (mean loss, grad norm)."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    total = 0.0
    for index, batch in enumerate(batches):
        features = sources.load(model, batch, f"{step}/{index}")
        if stage.mask_features:
            layer_dim = model.encoder.config.d_model
            features = [mask_features(f, stage.mask_scale, layer_dim) for f in features]
        texts = [e.text for e in batch]
        with autocast():
            if stage.name == "ctc":
                loss = ctc_loss(model, head, features, texts, stage.llm_ctc_weight)
            else:
                loss = lm_loss(model, features, texts)
                if stage.ctc_weight:
                    loss = loss + stage.ctc_weight * ctc_loss(model, head, features, texts)
        scaler.scale(loss / len(batches)).backward()
        total += loss.item() / len(batches)
    scaler.unscale_(optimizer)
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, grad_clip))
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return total, grad_norm


def train(config: Config, resume: bool = False) -> Path:
    """Run (or resume) the configured stages; returns the run directory."""
    run_dir = Path(config.run_dir)
    if not resume and list_checkpoints(run_dir):
        raise FileExistsError(f"{run_dir} already has checkpoints: pass --resume, or choose another run_dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml")
    with log_file(run_dir / "train.log"):
        _train(config, run_dir, resume)
    return run_dir


def _train(config: Config, run_dir: Path, resume: bool) -> None:
    torch.set_num_threads(thread_count(config.num_threads))
    logger.info(f"{torch.get_num_threads()} torch threads (load average {os.getloadavg()[0]:.1f})")
    device = pick_device(config.device)
    amp_dtype = None  # fp32 on CPU; bf16 (or fp16 with loss scaling) autocast on a GPU
    if device.type == "cuda":
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    def autocast() -> contextlib.AbstractContextManager:
        return torch.autocast("cuda", dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()

    # -- data (encoding whatever is not in the feature cache yet), then the model
    cache = feature_cache(config)
    whole = whole_utterance_cache(config, cache)
    train_sources, dev = prepare_data(config, cache, whole=whole)
    sources = TrainingFeatures(cache, whole, config.data.whole_utterance_share)
    options = config.model["projector_options"] or {}
    if config.subword_units and "units" not in options:
        units, source = subword_units([e.text for rows, _ in train_sources for e in rows], config)
        config.model["projector_options"] = {**options, "units": units}
        save_config(config, run_dir / "config.yaml")  # --resume rebuilds the same head
        logger.info(f"CTC head: {len(units)} {source} besides the characters, e.g. {units[:8]}")
    model = build_model(config, device, encoder=cache.encoder)
    if config.init_from and not resume:  # a resumed run's checkpoint already holds these weights
        init_from_pretrained(model, config.init_from)
    embeddings = model.llm.get_input_embeddings().weight.detach().cpu()
    head = None
    aligned = any(stage.name == "ctc" or stage.ctc_weight for stage in config.stages)
    if aligned and (model.projector.vocabulary is None or any(s.llm_ctc_weight for s in config.stages)):
        texts = [e.text for rows, _ in train_sources for e in rows]
        head = CTCHead.for_texts(texts, model.tokenizer, embeddings).to(device)

    # -- where we are: fresh, or restored from the newest checkpoint
    progress = {"global_step": 0, "stage_index": 0, "stage_step": 0, "cursor": 0, "window": [0.0, 0, 0, 0.0]}
    state = None
    metrics = MetricsLog(run_dir)
    if resume:
        path = latest_checkpoint(run_dir)
        if path is None:
            raise FileNotFoundError(f"--resume: no checkpoint in {run_dir}")
        state = load_checkpoint(path)
        restore_trainables(model, state)
        if head is not None and state["ctc_head"]:
            head = CTCHead(state["ctc_head"]["token_ids"].tolist(), embeddings).to(device)
            head.load_state_dict(state["ctc_head"])
        progress = state["progress"]
        set_rng_state(state["rng"])
        metrics.truncate_after(progress["global_step"])
        logger.info(f"resuming from {path}: stage {progress['stage_index'] + 1}, step {progress['global_step']}")
    elif metrics.path.exists():
        metrics.path.unlink()
    stream = SampleStream(train_sources, config.seed, progress["cursor"])
    model.train()
    model.encoder.eval()
    last_plot = time.time()

    def save() -> None:
        progress["cursor"] = stream.cursor
        trainables = {"projector": model.trainable_state_dict(), "lora": model.adapter_state_dict()}
        save_checkpoint(
            {
                "config": config.to_dict(),
                "progress": progress,
                **trainables,
                "ctc_head": head.state_dict() if head is not None else {},
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": rng_state(),
            },
            run_dir,
            progress["global_step"],
            config.keep_checkpoints,
        )

    # -- the stages
    stop = StopOnSignal()
    with stop:
        for stage_index in range(progress["stage_index"], len(config.stages)):
            stage = config.stages[stage_index]
            if progress["stage_index"] != stage_index:
                progress.update(stage_index=stage_index, stage_step=0)
            params = stage_parameters(model, head, stage)
            encoder_params = [p for m in model.trained_encoder_modules().values() for p in m.parameters()]
            optimizer = make_optimizer(params, stage, encoder_params)
            scheduler = make_scheduler(optimizer, stage)
            if state is not None and progress["stage_step"] > 0:
                optimizer.load_state_dict(state["optimizer"])
                scheduler.load_state_dict(state["scheduler"])
                scaler.load_state_dict(state["scaler"])
            state = None
            logger.info(
                f"stage {stage_index + 1}/{len(config.stages)} {stage.name}: {stage.steps} steps × "
                f"{stage.batch_size * stage.grad_accum} samples, lr {stage.lr:g}, "
                f"{sum(p.numel() for p in params) / 1e6:.2f}M trainable parameters"
            )
            name = f"{stage_index + 1}/{len(config.stages)} {stage.name}"
            bar = tqdm(total=stage.steps, initial=progress["stage_step"], desc=name, dynamic_ncols=True)
            window_start = time.perf_counter()
            while progress["stage_step"] < stage.steps and not stop.received:
                batches = [stream.take(stage.batch_size) for _ in range(stage.grad_accum)]
                lr = scheduler.get_last_lr()[0]
                loss, grad_norm = train_step(
                    model,
                    head,
                    stage,
                    batches,
                    sources,
                    progress["global_step"],
                    optimizer,
                    scaler,
                    config.grad_clip,
                    autocast,
                )
                scheduler.step()
                progress["global_step"] += 1
                progress["stage_step"] += 1
                step, stage_done = progress["global_step"], progress["stage_step"] == stage.steps
                window = progress["window"]  # loss sum, steps, samples, audio seconds since the last log line
                window[0] += loss
                window[1] += 1
                window[2] += sum(len(b) for b in batches)
                window[3] += sum(e.seconds for b in batches for e in b)
                bar.update(1)

                if step % config.log_every == 0 or stage_done:
                    loss_sum, steps, samples, seconds = window
                    elapsed = time.perf_counter() - window_start
                    record = {
                        "step": step,
                        "stage": stage.name,
                        "loss": loss_sum / steps,
                        "lr": lr,
                        "grad_norm": grad_norm,
                        "samples_per_s": samples / elapsed,
                        "audio_s_per_s": seconds / elapsed,
                        "time": time.time(),
                    }
                    metrics.write(record)
                    bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{lr:.1e}", sps=f"{samples / elapsed:.1f}")
                    progress["window"] = [0.0, 0, 0, 0.0]
                    window_start = time.perf_counter()
                if dev and ((config.eval_every and step % config.eval_every == 0) or stage_done):
                    result = evaluate_dev(model, head, stage, dev, cache, config.eval_max_utterances)
                    metrics.write({"step": step, "stage": stage.name, **result, "time": time.time()})
                    bar.write(f"step {step} {stage.name}: dev WER {100 * result['dev_wer']:.1f}%")
                if step % config.checkpoint_every == 0 or stage_done or stop.received:
                    save()
                if stage_done or stop.received or time.time() - last_plot > 60:
                    metrics.plot()
                    last_plot = time.time()
            bar.close()
            if stop.received:
                logger.warning(
                    f"stopped at step {progress['global_step']}; resume: python -m trainer train --resume {run_dir}"
                )
                return

    if serves_by_rescoring(model, trained_stages(config, progress)):
        model.config.reading = "rescore"
    model.save_pretrained(run_dir / "model")
    logger.info(f"done: {run_dir / 'model'}; export with: python -m trainer export {run_dir} --out FOLDER")
