"""Random accents: phoneme substitutions nobody spoke before (``synth --random-accents N``).

espeak-ng's English accents differ in their rules (rhoticity, a few vowels) but every one of them says "three"
with a /θ/ and "very" with a /v/. People do not: across the world's Englishes and second-language speakers the
same few substitutions recur (th-stopping "tree", th-fronting "free", h-dropping, "sing" as "sin", merged
vowels "ship"/"sheep", devoiced final consonants, v/w and r/l swaps, full vowels for schwas). A recogniser that
never heard them spells what it hears ("tree") and leaves the repair to the LLM's weak prior. Each random
accent here is a handful of such substitutions, each applied to a share of the phonemes it could change. An
espeak-ng clip is spoken from espeak-ng's own phonemes (``-x``) with the substitutions made, clause by clause so
the intonation of the punctuation stays (with no substitution that renders as the plain text does); a Kokoro
clip gets the same substitutions in Kokoro's symbols (:mod:`trainer.kokoro_tts`).

An accent depends on its number only, and which phonemes of a sentence it changes on (number, sentence), so
any machine renders the same clip.
"""

from __future__ import annotations

import re
import subprocess
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

MAX_RANDOM_ACCENTS = 10_000  # four digits in the name
ACCENT_SUFFIX = re.compile(r"~a(\d{4})$")
_SEED = 0x61636365  # fixed: an accent's rules depend on its number only

# espeak-ng's English phoneme names (its -x mnemonics). Longest match first, so "aI" is one vowel, not a + I.
PHONEMES = (
    *("@", "@2", "@5", "@L", "@-", "3", "3:", "a", "a#", "a2", "A:", "A@", "A#", "aa", "aI", "aI2", "aI@", "aI3"),
    *("aU", "aU@"),
    *("e", "e@", "E", "E2", "E#", "eI", "i", "i:", "I", "I2", "I#", "i@", "i@3", "o@", "O:", "O@", "O2", "OI"),
    *("oU", "oU#", "U", "u:", "U@", "V", "0", "0#", "o"),
    *("b", "d", "d#", "D", "dZ", "f", "g", "h", "j", "k", "l", "l/", "m", "n", "n-", "N", "p", "r", "r-", "R"),
    *("s", "S", "t", "t#", "t2", "t[", "T", "tS", "v", "w", "w#", "x", "z", "Z", "z#", "?"),
)
_TOKEN = re.compile("|".join(re.escape(p) for p in sorted(PHONEMES, key=len, reverse=True)) + "|.", re.S)


# Kokoro's (misaki's) symbols are one character each, a vowel perhaps lengthened; stress marks and punctuation
# are not phonemes.
_KOKORO_TOKEN = re.compile(r".ː?", re.S)
_KOKORO_MARKS = frozenset('ˈˌ,.!?;:—…"()“”')


@dataclass(frozen=True)
class Substitution:
    """Phonemes replaced by others ("" deletes), in espeak-ng's mnemonics and in Kokoro's symbols;
    ``word_final`` limits it to a word's last phoneme."""

    name: str
    espeak: dict[str, str]
    kokoro: dict[str, str]
    word_final: bool = False


# Each a pattern of many Englishes, none copied from one accent. At most one substitution per phoneme is drawn.
SUBSTITUTIONS = (
    Substitution("th-stopping", {"T": "t", "D": "d"}, {"θ": "t", "ð": "d"}),
    Substitution("th-fronting", {"T": "f", "D": "v"}, {"θ": "f", "ð": "v"}),
    Substitution("th-alveolar", {"T": "s", "D": "z"}, {"θ": "s", "ð": "z"}),
    Substitution("h-dropping", {"h": ""}, {"h": ""}),
    Substitution("velar-fronting", {"N": "n"}, {"ŋ": "n"}, word_final=True),
    Substitution(
        "final-devoicing",
        {"z": "s", "d": "t", "v": "f", "g": "k", "dZ": "tS", "Z": "S"},
        {"z": "s", "d": "t", "v": "f", "ɡ": "k", "ʤ": "ʧ", "ʒ": "ʃ"},
        word_final=True,
    ),
    Substitution("v-as-w", {"v": "w"}, {"v": "w"}),
    Substitution("w-as-v", {"w": "v"}, {"w": "v"}),
    Substitution("r-as-l", {"r": "l"}, {"ɹ": "l"}),
    Substitution("l-as-r", {"l": "r"}, {"l": "ɹ"}),
    Substitution("tense-i", {"I": "i:"}, {"ɪ": "i"}),
    Substitution("lax-i", {"i:": "I"}, {"i": "ɪ", "iː": "ɪ"}),
    Substitution("tense-u", {"U": "u:"}, {"ʊ": "u"}),
    Substitution("trap-as-dress", {"a": "E"}, {"æ": "ɛ"}),
    Substitution("dress-as-trap", {"E": "a"}, {"ɛ": "æ"}),
    Substitution("strut-as-lot", {"V": "0"}, {"ʌ": "ɑ"}),
    Substitution("monophthongs", {"eI": "E", "oU": "O:"}, {"A": "ɛ", "O": "ɔ", "Q": "ɔ"}),
    Substitution("full-schwa", {"@": "a", "@2": "a"}, {"ə": "ʌ"}),
    Substitution("sh-as-s", {"S": "s", "Z": "z"}, {"ʃ": "s", "ʒ": "z"}),
    Substitution("ch-as-sh", {"tS": "S", "dZ": "Z"}, {"ʧ": "ʃ", "ʤ": "ʒ"}),
)


@dataclass(frozen=True)
class Accent:
    """Substitutions with the share of their phonemes each changes."""

    number: int
    rules: tuple[tuple[Substitution, float], ...]

    def rng(self, text: str) -> np.random.Generator:
        """Which phonemes of ``text`` change depends on the accent and the text only."""
        return np.random.default_rng([_SEED, self.number, zlib.crc32(text.encode())])

    def apply(self, phonemes: str, rng: np.random.Generator, kokoro: bool = False) -> str:
        """Phonemes (words separated by spaces) with this accent's substitutions made: espeak-ng's mnemonics,
        or with ``kokoro`` Kokoro's symbols."""
        words = []
        for word in phonemes.split():
            tokens = (_KOKORO_TOKEN if kokoro else _TOKEN).findall(word)
            spoken = (i for i, t in enumerate(tokens) if (t not in _KOKORO_MARKS if kokoro else t in PHONEMES))
            last = max(spoken, default=-1)
            for i, token in enumerate(tokens):
                for rule, share in self.rules:
                    changes = rule.kokoro if kokoro else rule.espeak
                    if token in changes and (i == last or not rule.word_final) and rng.random() < share:
                        tokens[i] = changes[token]
                        break
            words.append("".join(tokens))
        return " ".join(w for w in words if w)


def accent_name(number: int) -> str:
    """The suffix a voice ident carries when it speaks with random accent ``number`` ("en-us+rv0042~a0007")."""
    return f"~a{number:04d}"


def split_accent(ident: str) -> tuple[str, int | None]:
    """ "en-us+rv0042~a0007" -> ("en-us+rv0042", 7); an ident with no accent -> (ident, None)."""
    match = ACCENT_SUFFIX.search(ident)
    return (ident[: match.start()], int(match[1])) if match else (ident, None)


@cache
def random_accent(number: int) -> Accent:
    """Two to five substitutions, at most one per phoneme, each changing 40-100 % of the phonemes it could."""
    if not 0 <= number < MAX_RANDOM_ACCENTS:
        raise ValueError(f"accent number must be 0 to {MAX_RANDOM_ACCENTS - 1}, not {number}")
    rng = np.random.default_rng([_SEED, number])
    chosen: list[tuple[Substitution, float]] = []
    taken: set[str] = set()
    count = int(rng.integers(2, 6))
    for index in rng.permutation(len(SUBSTITUTIONS)):
        rule = SUBSTITUTIONS[int(index)]
        if len(chosen) < count and taken.isdisjoint(rule.espeak):
            chosen.append((rule, round(float(rng.uniform(0.4, 1.0)), 2)))
            taken |= set(rule.espeak)
    return Accent(number, tuple(chosen))


_CLAUSE = re.compile(r"\s*([,.!?;:]+)(?=\s|$)\s*")


def clauses(text: str) -> list[tuple[str, str]]:
    """(words, punctuation) per clause, for speaking a clause at a time: espeak-ng's phonemes drop the
    punctuation, and with it the clause's intonation. Punctuation ends a clause only before a space or the
    end, so "3.5" and "7:30" stay inside theirs."""
    pieces = [*_CLAUSE.split(text.strip()), ""]  # clause, punctuation, ..., clause, ""
    return [(words.strip(), mark) for words, mark in zip(pieces[::2], pieces[1::2], strict=True) if words.strip()]


def accented_text(espeak: Sequence[str], text: str, accent: Accent) -> str:
    """``text`` as espeak-ng input in phonemes ("[[h@l'oU]], [[...]]?") with ``accent``'s substitutions;
    ``espeak`` is the command that speaks it ("espeak-ng -v en-us", with its ``--path`` if any)."""
    rng = accent.rng(text)
    spoken = []
    for words, punctuation in clauses(text):
        phonemes = subprocess.run(
            [*espeak, "-q", "-x", "--stdin"], input=words, capture_output=True, text=True, check=True
        ).stdout
        accented = accent.apply(phonemes, rng)
        if accented:
            spoken.append(f"[[{accented}]]{punctuation}")
    return " ".join(spoken)
