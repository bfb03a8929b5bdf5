"""The package's English lexicon (:mod:`pipecat_tiny_audio.lexicon`), built from ``wordfreq``'s word list.

    python -m trainer lexicon        # rewrites src/pipecat_tiny_audio/data/lexicon.txt

Only words a recogniser can spell (lower-case letters and apostrophes) are kept, most frequent first.
100,000 words leave ~220 of the 1,900 words the recogniser wrote for the unseen-voice clips unknown,
nearly all misspellings, and ~20 of their reference words (rare WordNet words such as "crapulous").
"""

from __future__ import annotations

import re
from pathlib import Path

from loguru import logger

LEXICON_PATH = Path(__file__).resolve().parent.parent / "src" / "pipecat_tiny_audio" / "data" / "lexicon.txt"
SPELLABLE = re.compile(r"[a-z][a-z']*")


def english_words(size: int) -> list[str]:
    """The ``size`` most frequent English words of wordfreq that a recogniser's characters can spell."""
    from wordfreq import top_n_list

    words = [w for w in top_n_list("en", 2 * size) if SPELLABLE.fullmatch(w)][:size]
    if len(words) < size:
        raise ValueError(f"wordfreq lists only {len(words)} spellable English words, fewer than {size}")
    return words


def write_lexicon(size: int = 100_000, out: Path = LEXICON_PATH) -> Path:
    """Write the lexicon (one word per line) atomically and return its path."""
    words = english_words(size)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text("\n".join(words) + "\n", encoding="utf-8")
    tmp.replace(out)
    logger.info(f"wrote {len(words)} words to {out}")
    return out
