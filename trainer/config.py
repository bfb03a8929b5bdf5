"""Typed training configuration: dataclass defaults ← an experiment YAML ← ``key=value`` overrides.

An experiment is a YAML file in ``trainer/configs/`` (``--config smoke``) or any path. It and the
command-line overrides (``seed=1``, ``data.max_seconds=20``, ``stages.0.steps=500``,
``model.stack_factor=8``) are applied on top of the defaults below, with values parsed as YAML
(``null``, ``[a, b]``, ``1e-3``). Unknown keys and wrong types are errors, because a typo that
silently trains the default is an hour lost on this CPU. The ``model`` section holds
:class:`~pipecat_tiny_audio.TinyAudioConfig` arguments and is checked against its signature.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipecat_tiny_audio import TinyAudioConfig
from pipecat_tiny_audio.modeling import check_device

CONFIG_DIR = Path(__file__).parent / "configs"
STAGE_NAMES = ("ctc", "lm", "lora")
# TinyAudioConfig arguments a user may set; encoder_dim/llm_dim are filled in from the weights.
MODEL_KEYS = tuple(
    name
    for name, p in inspect.signature(TinyAudioConfig.__init__).parameters.items()
    if name not in ("self", "encoder_dim", "llm_dim") and p.kind is p.POSITIONAL_OR_KEYWORD
)


class ConfigError(ValueError):
    """A config file or override names an unknown key or has a value of the wrong type."""


@dataclass
class StageConfig:
    """One training stage: ``ctc`` (alignment, no LLM forward), ``lm`` (frozen LLM) or ``lora``."""

    name: str = "ctc"
    steps: int = 1000
    lr: float = 1e-3
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    weight_decay: float = 0.01
    batch_size: int = 8
    grad_accum: int = 1
    train_projector: bool = True  # lora stage: also keep training the projector
    mask_features: bool = False  # SpecAugment-style time and channel masks on the cached features
    mask_scale: float = 1.0  # more (> 1) or fewer masks per second, and wider ones
    # model.encoder_trained_layers > 0: those pretrained layers learn at this fraction of lr
    encoder_lr_ratio: float = 0.1
    ctc_weight: float = 0.0  # lm/lora stages: add this times the alignment loss (keeps the recogniser aligned)
    # ctc stage of a projector with its own character head: also this times CTC of its output against
    # the LLM's token embeddings, so the LLM stages start from audio tokens it can already read
    llm_ctc_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in STAGE_NAMES:
            raise ConfigError(f"stage name must be one of {STAGE_NAMES}, got {self.name!r}")
        if self.mask_scale <= 0:
            raise ConfigError(f"stage {self.name}: mask_scale must be > 0, got {self.mask_scale}")
        if self.steps < 0 or self.batch_size < 1 or self.grad_accum < 1:
            raise ConfigError(f"stage {self.name}: steps >= 0, batch_size >= 1 and grad_accum >= 1 are required")


@dataclass
class DataConfig:
    """Where utterances come from. Each source is a dict understood by :mod:`trainer.data`."""

    train: list[dict] = field(default_factory=lambda: [{"path": "data/synth/manifest.jsonl"}])
    dev: list[dict] = field(default_factory=lambda: [{"path": "../shared/eval/dev/manifest.jsonl", "name": "dev"}])
    max_seconds: float = 30.0
    # Sentences that must never be trained on (text files, one per line), besides the dev sources.
    forbidden_sentences: list[str] = field(default_factory=lambda: ["../shared/eval/dev_sentences.txt"])
    # The share of training samples a chunked model reads as whole-utterance features (the rest in its
    # chunked mode): with model.whole_utterance_final its finals are computed on those, its partials on chunks.
    whole_utterance_share: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.whole_utterance_share <= 1.0:
            raise ConfigError(f"data.whole_utterance_share must be in [0, 1], got {self.whole_utterance_share}")


@dataclass
class Config:
    """Everything a training run depends on; saved as ``config.yaml`` in the run directory."""

    model: dict[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    stages: list[StageConfig] = field(
        default_factory=lambda: [
            StageConfig("ctc", steps=1000, lr=1e-3, batch_size=16),
            StageConfig("lm", steps=1000, lr=5e-4),
            StageConfig("lora", steps=1000, lr=2e-4),
        ]
    )
    run_dir: str = "runs/default"
    # A saved model (folder or hub id) whose projector and LoRA weights a new run starts from:
    # fine-tune a trained model on new data instead of starting from random weights.
    init_from: str | None = None
    # A fresh chunk_transformer's CTC head: this many BPE units learned from the training transcripts
    # on top of its characters (0: characters only). Stored in model.projector_options.units. With
    # init_from: its units when it has this many, else new ones (its body and the head rows of the
    # classes both heads share carry over).
    subword_units: int = 0
    # Where the units come from: "bpe" (merges learned from the transcripts) or "llm" (the most frequent
    # of the LLM's own tokens in them, so the head's output is a sequence of LLM tokens).
    subword_units_from: str = "bpe"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    num_threads: int = 0  # 0: one per idle CPU core at start
    feature_cache: str | None = None  # None: <pipecat-tiny-audio cache dir>/features
    grad_clip: float = 1.0
    log_every: int = 10
    eval_every: int = 500  # 0: only at the end of each stage
    eval_max_utterances: int = 40  # LM decoding is slow on a CPU: a fixed subset of each dev source (0: all)
    checkpoint_every: int = 200
    keep_checkpoints: int = 3

    def __post_init__(self) -> None:
        unknown = set(self.model) - set(MODEL_KEYS)
        if unknown:
            raise ConfigError(_unknown_message("model", sorted(unknown)[0], MODEL_KEYS))
        defaults = TinyAudioConfig().to_dict()
        self.model = {key: self.model.get(key, defaults[key]) for key in MODEL_KEYS}
        for key, value in self.model.items():
            if value is not None and defaults[key] is not None:
                self.model[key] = _check_type(f"model.{key}", value, type(defaults[key]))
        if not self.stages:
            raise ConfigError("stages: at least one stage is required")
        if self.subword_units_from not in ("bpe", "llm"):
            raise ConfigError(f"subword_units_from must be 'bpe' or 'llm', got {self.subword_units_from!r}")
        if min(self.log_every, self.checkpoint_every, self.keep_checkpoints) < 1 or self.eval_every < 0:
            raise ConfigError("log_every, checkpoint_every and keep_checkpoints must be >= 1, eval_every >= 0")
        if self.data.whole_utterance_share and (
            self.model["chunk_seconds"] is None or self.model["encoder_trained_layers"]
        ):
            raise ConfigError(
                "data.whole_utterance_share needs a chunked model (model.chunk_seconds) with a frozen encoder"
            )
        if self.device != "auto":
            try:
                check_device(self.device)
            except ValueError as e:
                raise ConfigError(f"device: {e}") from None

    def tiny_audio_config(self) -> TinyAudioConfig:
        return TinyAudioConfig(**self.model)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _unknown_message(section: str, key: str, known: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(sorted(known))}"
    return f"unknown config key {section + '.' if section else ''}{key}{hint}"


def _check_type(path: str, value: Any, annotation: Any) -> Any:
    """``value`` converted to ``annotation`` (int → float allowed), or a :class:`ConfigError`."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_type(path, value, option)
            except ConfigError:
                pass
        raise ConfigError(f"{path}: expected {annotation}, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        (item,) = typing.get_args(annotation)
        return [_check_type(f"{path}.{i}", v, item) for i, v in enumerate(value)]
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return value
    if annotation is Any:
        return value
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, str):  # PyYAML reads 3e-4 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if annotation in (int, float) and isinstance(value, bool) or not isinstance(value, annotation):
        raise ConfigError(f"{path}: expected {annotation.__name__}, got {value!r}")
    return value


def _build(cls: type, data: dict[str, Any], path: str = "") -> Any:
    """A dataclass instance from a (partial) mapping, checking keys and types recursively."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(_unknown_message(path.rstrip("."), key, names))
        annotation = hints[key]
        where = f"{path}{key}"
        if dataclasses.is_dataclass(annotation):
            kwargs[key] = _build(annotation, value, f"{where}.")
        elif typing.get_origin(annotation) is list and dataclasses.is_dataclass(typing.get_args(annotation)[0]):
            if not isinstance(value, list):
                raise ConfigError(f"{where}: expected a list, got {value!r}")
            item = typing.get_args(annotation)[0]
            kwargs[key] = [_build(item, v, f"{where}.{i}.") for i, v in enumerate(value)]
        else:
            kwargs[key] = _check_type(where, value, annotation)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{path or 'config'}: {e}") from None


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.0.c`` in a nested dict/list tree (to add list items, override the whole list)."""
    parts = dotted.split(".")
    node: Any = tree
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = ".".join(parts[: i + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"{where}: {part!r} is not an index of a {len(node)}-item list")
            part = int(part)
        elif not isinstance(node, dict):
            raise ConfigError(f"{where}: cannot set a key inside {node!r}")
        elif part not in node:
            raise ConfigError(_unknown_message(".".join(parts[:i]), part, node))
        if last:
            node[part] = value
        else:
            node = node[part]


def experiment_path(name: str) -> Path:
    """``smoke`` → ``trainer/configs/smoke.yaml``; any existing path is used as is."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        return path
    path = CONFIG_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise ConfigError(f"no experiment config {name!r}; known: {', '.join(known)} (or pass a .yaml path)")
    return path


def parse_overrides(overrides: typing.Sequence[str]) -> list[tuple[str, Any]]:
    """``["a.b=1", "c=[x, y]"]`` → ``[("a.b", 1), ("c", ["x", "y"])]``, values parsed as YAML."""
    parsed = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({problem})") from None
        parsed.append((key.strip(), value))
    return parsed


def load_config(
    experiment: str | Path | None = None,
    overrides: typing.Sequence[str] = (),
    base: dict[str, Any] | None = None,
) -> Config:
    """Defaults (or ``base``, e.g. a saved run config) ← experiment YAML ← overrides."""
    tree = base if base is not None else Config().to_dict()
    if experiment is not None:
        loaded = yaml.safe_load(experiment_path(str(experiment)).read_text()) or {}
        # Rebuilt with every default spelled out, so `stages.0.KEY=...` reaches keys the YAML left out.
        tree = _build(Config, _merge(tree, loaded, "")).to_dict()
    for key, value in parse_overrides(overrides):
        _set(tree, key, value)
    return _build(Config, tree)


def _merge(base: Any, update: Any, path: str) -> Any:
    """Deep-merge ``update`` into ``base``: mappings merge key by key, anything else replaces."""
    if not isinstance(update, dict) or not isinstance(base, dict):
        return update
    merged = dict(base)
    for key, value in update.items():
        if key not in base:
            raise ConfigError(_unknown_message(path.rstrip("."), key, base))
        merged[key] = _merge(base.get(key), value, f"{path}{key}.")
    return merged


def save_config(config: Config, path: Path) -> None:
    """Write the fully resolved config (every default spelled out) so a run can be repeated."""
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


def read_saved_config(path: Path, overrides: typing.Sequence[str] = ()) -> Config:
    """A run's saved ``config.yaml``, optionally with overrides (e.g. more steps when resuming)."""
    return load_config(None, overrides, base=yaml.safe_load(path.read_text()))
