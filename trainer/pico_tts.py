"""SVOX Pico voices (``synth --engines pico``): a fourth family of engine voices to train on.

Pico's two English voices (``en-US``, ``en-GB``, both women) are hidden-Markov-model voices from the
lingware that ``py-nanotts`` bundles (Apache-2.0): neither formant (espeak-ng), diphone (flite,
festival) nor neural (Kokoro). Two speakers are little on their own; ``--converted-voices N`` turns each
into N (:mod:`trainer.voice_conversion`), as it does the diphone voices.
"""

from __future__ import annotations

import importlib.util

import numpy as np

PICO_VOICES = ("en-GB", "en-US")
PICO_SAMPLE_RATE = 16_000
INSTALL_COMMAND = "pip install py-nanotts"
# Pico speaks at full scale and clips some peaks; half its volume keeps every sample in range.
_VOLUME = 0.5


def pico_available() -> bool:
    return importlib.util.find_spec("py_nanotts") is not None


def pico_speech(voice: str, text: str) -> np.ndarray:
    """``text`` spoken by the Pico voice ``voice`` ("en-US") -> 16 kHz mono float32 samples."""
    if voice not in PICO_VOICES:
        raise ValueError(f"unknown Pico voice {voice!r}; the English voices are {PICO_VOICES}")
    if not pico_available():
        raise RuntimeError(f"Pico voices are not installed: {INSTALL_COMMAND}")
    from py_nanotts import NanoTTS

    pcm = NanoTTS().speak(text, voice=voice, volume=_VOLUME)
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
