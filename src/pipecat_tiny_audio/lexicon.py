"""Lexicon: the English words a recogniser's spellings are checked against.

A recogniser spells what it hears, and a word it mishears is most often no word at all ("pppers",
"closees", "sundaye"). The beam search (:mod:`pipecat_tiny_audio.rescoring`) takes the model's
``oov_penalty`` off a candidate for each finished word the lexicon does not know, so where the audio
allows a real word, the real word wins. It is a penalty, not a constraint: a name the lexicon lacks
is still written when the audio is clear.

The word list is package data: the 100,000 most frequent English words of ``wordfreq``
(``python -m trainer lexicon`` rebuilds it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import cache
from importlib import resources
from pathlib import Path

LEXICON_FILE = "lexicon.txt"


class Lexicon:
    """A set of lower-case words, most frequent first; :meth:`unknown` counts the words of a text it does not know."""

    def __init__(self, words: Iterable[str]):
        self._rank: dict[str, int] = {}
        for word in (w.strip().lower() for w in words):
            if word:
                self._rank.setdefault(word, len(self._rank) + 1)
        self._words = frozenset(self._rank)
        if not self._words:
            raise ValueError("a lexicon needs at least one word")
        self._prefixes = frozenset(w[:i] for w in self._words for i in range(1, len(w)))

    @classmethod
    def load(cls, path: str | Path) -> Lexicon:
        """A lexicon from a file of one word per line."""
        return cls(Path(path).read_text(encoding="utf-8").splitlines())

    @staticmethod
    @cache
    def default() -> Lexicon:
        """The package's English lexicon (read once per process)."""
        return Lexicon.load(resources.files("pipecat_tiny_audio") / "data" / LEXICON_FILE)

    def __len__(self) -> int:
        return len(self._words)

    def __contains__(self, word: str) -> bool:
        """Whether ``word`` (any case) is known: itself, its possessive's stem, or every part of a hyphenation.

        Numbers count as known: a recogniser that writes digits has heard digits.
        """
        word = word.lower().strip("'-")
        if not word or word in self._words or any(c.isdigit() for c in word):
            return True
        if word.endswith("'s") and word[:-2] in self._words:
            return True
        return "-" in word and all(part in self for part in word.split("-") if part)

    def can_begin(self, word: str) -> bool:
        """Whether ``word`` is known or may still grow into a known word (a hyphenation, a number)."""
        word = word.lower()
        return word in self or word in self._prefixes or word.endswith(("'", "-"))

    def log_frequency(self, word: str) -> float:
        """A guess at ``word``'s log-probability in running English from its rank in the list (Zipf's law:
        0.1 / rank), and below the rarest word's for a word the list lacks. A stand-in for an LLM's score."""
        word = word.lower().strip("'-")
        rank = self._rank.get(word) or self._rank.get(word.removesuffix("'s")) or 2 * len(self._rank)
        return math.log(0.1 / rank)

    def unknown(self, text: str) -> int:
        """How many of ``text``'s space-separated words are not known."""
        return sum(word not in self for word in text.split())
