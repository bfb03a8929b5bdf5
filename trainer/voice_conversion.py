"""New speakers from the few diphone voices (``synth --converted-voices N``).

flite and festival give four trainable diphone voices of three men (kal, kal16, rms, kd); the unseen-voice
test speaks with two other diphone speakers (awb, and slt, a woman). Pico's two women (``trainer.pico_tts``)
are converted the same way, from a woman's vocal tract. Praat's "Change gender" (PSOLA pitch
resynthesis with a formant shift, through ``praat-parselmouth``) turns one rendering into another speaker: the
formants move by a ratio (a shorter or longer vocal tract) while the pitch gets its own median and range,
something sox's ``pitch`` and ``speed`` cannot do (both scale formants and pitch together). A converted voice
is the base voice's name plus a conversion number ("flite:rms+vc0042"), whose settings depend on that number
alone.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass

import numpy as np

CONVERSION = re.compile(r"vc(\d{4})")
MAX_CONVERSIONS = 10_000  # four digits in the name
CONVERTED_ENGINES = ("flite", "festival", "pico")
FEMALE_BASE_ENGINES = ("pico",)  # engines whose trainable voices are all women's (Conversion.from_number's female_base)
FEMALE_TRACT_RATIO = 1.15  # a woman's formants over a man's, roughly: a ~15 % shorter vocal tract
INSTALL_COMMAND = "pip install praat-parselmouth"
_SEED = 0x76636F6E  # fixed: a conversion's settings depend on its number only


@dataclass(frozen=True)
class Conversion:
    """Praat "Change gender" settings: the formant shift ratio, the new pitch median (Hz) and the factor
    on the pitch range."""

    formant_ratio: float
    pitch_median: float
    pitch_range: float

    @classmethod
    def from_number(cls, number: int, female_base: bool = False) -> Conversion:
        """Half women (formants up 8-22 %, pitch 165-250 Hz), half men (formants 0-14 % down, 85-140 Hz),
        from a man's voice; from a woman's (``female_base``) the formants move :data:`FEMALE_TRACT_RATIO` less."""
        rng = np.random.default_rng([_SEED, number])
        if rng.random() < 0.5:
            ratio, median = rng.uniform(1.08, 1.22), rng.uniform(165, 250)
        else:
            ratio, median = rng.uniform(0.86, 1.0), rng.uniform(85, 140)
        ratio /= FEMALE_TRACT_RATIO if female_base else 1.0
        return cls(round(float(ratio), 3), round(float(median), 1), round(float(rng.uniform(0.6, 1.6)), 2))


def converted_voice_name(voice: str, number: int) -> str:
    """ "flite:rms" and 42 -> "flite:rms+vc0042"."""
    return f"{voice}+vc{number:04d}"


def split_conversion(ident: str) -> tuple[str, int | None]:
    """ "rms+vc0042" -> ("rms", 42); an ident with no conversion -> (ident, None)."""
    base, _, suffix = ident.rpartition("+")
    match = CONVERSION.fullmatch(suffix)
    return (base, int(match[1])) if base and match else (ident, None)


def conversion_available() -> bool:
    return importlib.util.find_spec("parselmouth") is not None


def require_praat() -> None:
    """A clear error naming the install command when ``praat-parselmouth`` is missing."""
    if not conversion_available():
        raise RuntimeError(f"converted voices need Praat: {INSTALL_COMMAND}")


def convert(audio: np.ndarray, sample_rate: int, conversion: Conversion) -> np.ndarray:
    """``audio`` (mono float) spoken by the converted speaker; same length and rate."""
    require_praat()
    import parselmouth
    from parselmouth.praat import call

    sound = parselmouth.Sound(audio.astype(np.float64), sample_rate)
    changed = call(
        sound, "Change gender", 75, 600, conversion.formant_ratio, conversion.pitch_median, conversion.pitch_range, 1.0
    )
    return np.nan_to_num(changed.values[0]).astype(np.float32)
