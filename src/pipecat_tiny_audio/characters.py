"""The character vocabulary of a projector's CTC head: open-vocabulary targets for the alignment stage.

A CTC head over characters can spell any word, including words no training sentence had; a head over
the LLM's BPE tokens seen in training cannot (DESIGN.md). Index 0 is the CTC blank.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

DEFAULT_CHARACTERS = " abcdefghijklmnopqrstuvwxyz'"
_DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


class CharacterVocabulary:
    """Maps transcripts to CTC target indices and best paths back to text."""

    def __init__(self, characters: str = DEFAULT_CHARACTERS):
        if len(set(characters)) != len(characters) or " " not in characters:
            raise ValueError(f"characters must be distinct and include a space, got {characters!r}")
        self.characters = characters
        self._index = {c: i + 1 for i, c in enumerate(characters)}
        self._drop = re.compile(f"[^{re.escape(characters)}]")

    def __len__(self) -> int:
        """Number of CTC classes, the blank included."""
        return len(self.characters) + 1

    def normalize(self, text: str) -> str:
        """Lower case, accents stripped, digits spelled, anything else outside the vocabulary a space."""
        text = unicodedata.normalize("NFKD", text.lower()).encode("ascii", "ignore").decode()
        text = re.sub(r"\d", lambda m: f" {_DIGIT_WORDS[int(m[0])]} ", text)
        return " ".join(self._drop.sub(" ", text).split())

    def encode(self, text: str) -> list[int]:
        return [self._index[c] for c in self.normalize(text)]

    def decode(self, indices: Iterable[int]) -> str:
        """Text of a collapsed label sequence (blanks already removed)."""
        return " ".join("".join(self.characters[i - 1] for i in indices if i > 0).split())

    def best_path(self, path: Sequence[int]) -> str:
        """Greedy CTC text of per-frame argmax indices: repeats merged, blanks dropped."""
        collapsed = [c for i, c in enumerate(path) if c != 0 and (i == 0 or path[i - 1] != c)]
        return self.decode(collapsed)
