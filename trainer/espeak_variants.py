"""Random espeak-ng voice variants: formant voices nobody chose by hand (``synth --random-espeak-voices N``).

espeak-ng ships ~40 human-sounding variants (``+m3``, ``+f2``, ``+klatt3``, ...), each a small text file of
formant, pitch and voicing settings. A recogniser trained on those few timbres learns noise robustness for
them, not for the formant family: on an espeak accent it never heard, noise costs it several times what it
costs on its training voices. This module draws as many new variants as asked, each from its number alone
(so any machine renders the same voice); :func:`espeak_command` writes the one a call needs beside links to
the system's espeak-ng data, in a folder it hands to espeak-ng as ``--path``.
"""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path

import numpy as np

RANDOM_VARIANT = re.compile(r"rv(\d{4})")
MAX_RANDOM_VARIANTS = 10_000  # four digits in the name
_SEED = 0x65737065  # fixed: a variant's settings depend on its number only
_KLATT_VERSIONS = (1, 2, 3, 4, 6)


def random_variant_name(number: int) -> str:
    """The variant's name in a voice ("espeak:en-us+rv0042")."""
    return f"rv{number:04d}"


def random_variant_number(ident: str) -> int | None:
    """The number of the random variant an espeak voice ident ("en-us+rv0042") uses, or None."""
    _, _, variant = ident.partition("+")
    match = RANDOM_VARIANT.fullmatch(variant)
    return int(match[1]) if match else None


def random_variant_text(number: int) -> str:
    """The variant file for ``number``: a speaker drawn within the range of espeak's own human variants.

    A vocal-tract scale moves every formant together (lower for male, higher for female voices), each formant
    then jitters by a few percent and gets its own height and width; pitch, voicing, consonant strength and
    spectral tilt vary too, and a third of the voices use the Klatt synthesizer.
    """
    rng = np.random.default_rng([_SEED, number])
    female = bool(rng.random() < 0.5)
    base = int(rng.uniform(150, 230) if female else rng.uniform(75, 135))
    scale = rng.uniform(1.05, 1.2) if female else rng.uniform(0.88, 1.04)
    lines = [
        "language variant",
        f"name {random_variant_name(number)}",
        f"gender {'female' if female else 'male'}",
        f"pitch {base} {int(base * rng.uniform(1.3, 2.0))}",
        "formant 0 100 100 100",
    ]
    for k in range(1, 9):
        freq = int(100 * scale * rng.uniform(0.95, 1.05))
        lines.append(f"formant {k} {freq} {int(rng.uniform(60, 140))} {int(rng.uniform(70, 150))}")
    lines += [
        f"voicing {int(rng.uniform(70, 150))}",
        f"consonants {int(rng.uniform(80, 125))}",
        f"flutter {int(rng.integers(0, 30))}",
        f"roughness {int(rng.integers(0, 4))}",
    ]
    if rng.random() < 0.5:
        lines.append(
            f"tone 600 {int(rng.uniform(70, 200))} 1200 {int(rng.uniform(60, 140))} 2000 {int(rng.uniform(40, 120))}"
        )
    if rng.random() < 1 / 3:
        lines.append(f"klatt {_KLATT_VERSIONS[int(rng.integers(len(_KLATT_VERSIONS)))]}")
    return "\n".join(lines) + "\n"


@cache
def system_data_dir() -> Path:
    """Where the installed espeak-ng keeps its data (``espeak-ng --version`` says)."""
    version = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=True).stdout
    return Path(re.search(r"Data at: (\S+)", version)[1])


def espeak_command(ident: str, scratch: Path) -> list[str]:
    """``espeak-ng``, and for a random variant the ``--path`` of a data folder made in ``scratch``: links to
    the system's data and a variants folder holding that one variant.

    One folder per call, not one for all variants: espeak-ng reads every voice file it can find and stops
    listing them at 350, after which it no longer finds the voice asked for.
    """
    number = random_variant_number(ident)
    if number is None:
        return ["espeak-ng"]
    system = system_data_dir()
    data = scratch / "espeak-ng-data"
    (data / "voices" / "!v").mkdir(parents=True)
    for entry in system.iterdir():
        if entry.name != "voices":
            (data / entry.name).symlink_to(entry)
    for entry in (system / "voices").iterdir():
        if entry.name != "!v":
            (data / "voices" / entry.name).symlink_to(entry)
    (data / "voices" / "!v" / random_variant_name(number)).write_text(random_variant_text(number))
    return ["espeak-ng", f"--path={scratch}"]
