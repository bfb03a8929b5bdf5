"""Subword units for a character CTC head: a small BPE learned from the training transcripts.

A character head hears well but spells phonetically (``he locan you herme clearly``); units let it
emit common words and endings whole. Only training transcripts are read, never dev text, and every
single character stays a class, so the head can still spell any word.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from pipecat_tiny_audio.characters import DEFAULT_CHARACTERS, CharacterVocabulary

_WORD_START = "\u2581"  # the BPE pre-tokenizer's word-start marker, a space in our units


def learn_units(texts: Iterable[str], count: int, characters: str = DEFAULT_CHARACTERS) -> list[str]:
    """Up to ``count`` multi-character units, in the order BPE merged them (most frequent first)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    vocabulary = CharacterVocabulary(characters)
    alphabet = [_WORD_START, *(c for c in vocabulary.characters if c != " ")]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=_WORD_START, prepend_scheme="always")
    trainer = trainers.BpeTrainer(
        vocab_size=len(alphabet) + count,
        initial_alphabet=alphabet,
        limit_alphabet=len(alphabet),
        show_progress=False,
    )
    tokenizer.train_from_iterator((vocabulary.normalize(t) for t in texts), trainer)
    by_id = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    units = [token.replace(_WORD_START, " ") for token, _ in by_id if len(token) > 1]
    return [u for u in units if " " not in u[1:]][:count]


def llm_token_units(texts: Iterable[str], count: int, tokenizer, characters: str = DEFAULT_CHARACTERS) -> list[str]:
    """The ``count`` most frequent multi-character LLM tokens of the transcripts, as text.

    A head over them emits the LLM's own tokens, so its output maps onto the LLM's embeddings.
    """
    vocabulary = CharacterVocabulary(characters)
    counts: Counter[str] = Counter()
    for text in texts:
        for token in tokenizer.tokenize(" " + vocabulary.normalize(text)):
            counts[tokenizer.convert_tokens_to_string([token])] += 1
    allowed = set(characters)
    units = [u for u, _ in counts.most_common() if len(u) > 1 and " " not in u[1:] and set(u) <= allowed]
    return units[:count]
