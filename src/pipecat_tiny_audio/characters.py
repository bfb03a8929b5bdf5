"""The vocabulary of a projector's CTC head: open-vocabulary targets for the alignment stage.

A CTC head over characters can spell any word, including words no training sentence had; a head over
the LLM's BPE tokens seen in training cannot (DESIGN.md). Multi-character *units* (a small BPE learned
from training transcripts, ``python -m trainer`` ``subword_units``) let the head spell common words and
endings whole while single characters still spell anything else. Index 0 is the CTC blank.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

DEFAULT_CHARACTERS = " abcdefghijklmnopqrstuvwxyz'"
_DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


class CharacterVocabulary:
    """Maps transcripts to CTC target indices and best paths back to text.

    ``units`` are multi-character strings of the characters; a unit may start with a space, which
    marks a word start. Transcripts are encoded greedily, longest unit first, from a leading space.
    """

    def __init__(self, characters: str = DEFAULT_CHARACTERS, units: Sequence[str] = ()):
        if len(set(characters)) != len(characters) or " " not in characters:
            raise ValueError(f"characters must be distinct and include a space, got {characters!r}")
        bad = [u for u in units if len(u) < 2 or " " in u[1:] or set(u) - set(characters)]
        if bad or len(set(units)) != len(units):
            raise ValueError(f"units must be distinct strings of 2+ characters, a space only first: {bad[:5]}")
        self.characters = characters
        self.units = tuple(units)
        self.symbols = (*characters, *units)
        self._index = {c: i + 1 for i, c in enumerate(self.symbols)}
        self._longest = max(map(len, units), default=1)
        self._drop = re.compile(f"[^{re.escape(characters)}]")

    def __len__(self) -> int:
        """Number of CTC classes, the blank included."""
        return len(self.symbols) + 1

    def normalize(self, text: str) -> str:
        """Lower case, accents stripped, digits spelled, anything else outside the vocabulary a space."""
        text = unicodedata.normalize("NFKD", text.lower()).encode("ascii", "ignore").decode()
        text = re.sub(r"\d", lambda m: f" {_DIGIT_WORDS[int(m[0])]} ", text)
        return " ".join(self._drop.sub(" ", text).split())

    def encode(self, text: str) -> list[int]:
        text = self.normalize(text)
        if not self.units:
            return [self._index[c] for c in text]
        text, ids, i = " " + text, [], 0
        while i < len(text):
            for length in range(min(self._longest, len(text) - i), 0, -1):
                index = self._index.get(text[i : i + length])
                if index is not None:
                    ids.append(index)
                    i += length
                    break
        return ids

    def decode(self, indices: Iterable[int]) -> str:
        """Text of a collapsed label sequence (blanks already removed)."""
        return " ".join("".join(self.symbols[i - 1] for i in indices if i > 0).split())

    def best_path(self, path: Sequence[int]) -> str:
        """Greedy CTC text of per-frame argmax indices: repeats merged, blanks dropped."""
        collapsed = [c for i, c in enumerate(path) if c != 0 and (i == 0 or path[i - 1] != c)]
        return self.decode(collapsed)
