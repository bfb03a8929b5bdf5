"""CharacterVocabulary: the open-vocabulary CTC targets of a projector's own head."""

import pytest

from pipecat_tiny_audio.characters import CharacterVocabulary
from trainer.subword_units import learn_units, llm_token_units


def test_text_is_normalized_into_the_vocabulary():
    vocabulary = CharacterVocabulary()
    assert vocabulary.normalize("Hello, Zoë! It's 3 o'clock.") == "hello zoe it's three o'clock"
    assert vocabulary.decode(vocabulary.encode("Call me at 5.")) == "call me at five"
    assert len(vocabulary) == 29  # blank, space, a-z and the apostrophe


def test_best_path_merges_repeats_and_drops_blanks():
    vocabulary = CharacterVocabulary()
    h, e, ell, o = (vocabulary.encode(c)[0] for c in "helo")
    path = [0, h, h, 0, e, ell, ell, 0, ell, o, o, 0]
    assert vocabulary.best_path(path) == "hello"


def test_units_spell_common_words_whole_and_characters_the_rest():
    vocabulary = CharacterVocabulary(units=[" the", " can", "ing", "ll"])
    ids = vocabulary.encode("The cat can sing, Zoë!")
    assert [vocabulary.symbols[i - 1] for i in ids] == [
        *[" the", " ", "c", "a", "t", " can", " ", "s", "ing", " ", "z", "o", "e"]
    ]
    assert vocabulary.decode(ids) == "the cat can sing zoe"
    assert len(vocabulary) == 29 + 4


def test_units_are_learned_from_training_text_only():
    texts = ["the thing is on the table", "then the other thing", "nothing else"] * 20
    units = learn_units(texts, count=12)
    assert 0 < len(units) <= 12 and " the" in units
    vocabulary = CharacterVocabulary(units=units)
    assert vocabulary.decode(vocabulary.encode("Zebras think otherwise.")) == "zebras think otherwise"
    assert len(vocabulary.encode("the thing")) < len("the thing")


def test_units_outside_the_characters_are_refused():
    with pytest.raises(ValueError, match="units"):
        CharacterVocabulary(units=["a b"])


def test_llm_token_units_are_single_tokens_of_the_llm(base_model):
    tokenizer = base_model.tokenizer
    texts = ["Set a timer for the oven.", "The timer is set.", "Call the office at five."] * 5
    units = llm_token_units(texts, count=6, tokenizer=tokenizer)
    assert len(units) == 6 and " the" in units and " timer" in units
    assert all(len(tokenizer.tokenize(unit)) == 1 for unit in units)
