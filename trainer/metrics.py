"""WER and CER exactly as the benchmarks compute them: Whisper's English normalizer + jiwer.

Training, ``eval`` and the benchmarks import this module, so every figure we quote is measured
the same way. Rates are corpus-level (total edits / total reference words), as fractions.
"""

from __future__ import annotations

from functools import cache

import jiwer


@cache
def _normalizer():
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalize(text: str) -> str:
    """Lower-cased, punctuation-free, spelling- and number-normalised text (Whisper's rules)."""
    return _normalizer()(text).strip()


def wer(refs: list[str], hyps: list[str]) -> float:
    """Corpus word error rate of normalised hypotheses against normalised references."""
    return jiwer.process_words([normalize(r) for r in refs], [normalize(h) for h in hyps]).wer


def cer(refs: list[str], hyps: list[str]) -> float:
    """Corpus character error rate of normalised hypotheses against normalised references."""
    return jiwer.process_characters([normalize(r) for r in refs], [normalize(h) for h in hyps]).cer
