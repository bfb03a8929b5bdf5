"""The English lexicon the served beam checks the recogniser's spellings against."""

from __future__ import annotations

from pipecat_tiny_audio.lexicon import Lexicon
from trainer.__main__ import main as trainer_main
from trainer.english_lexicon import LEXICON_PATH, english_words


def test_the_package_lexicon_knows_english_and_not_the_recognisers_misspellings():
    lexicon = Lexicon.default()

    assert len(lexicon) == 100_000
    assert lexicon.unknown("She planted tomatoes peppers and basil in the garden") == 0
    assert lexicon.unknown("she planed tomatoes pppers and beaszle") == 2
    assert lexicon.unknown("the river's edge twenty-one 12 times") == 0  # possessives, hyphenations, digits
    assert lexicon.unknown("") == 0
    assert lexicon.can_begin("tomat") and not lexicon.can_begin("pppe")  # a word being spelled


def test_a_words_frequency_guess_follows_its_rank():
    """What the beam counts for a word the LLM has not read yet."""
    lexicon = Lexicon.default()

    assert lexicon.log_frequency("the") > lexicon.log_frequency("garden") > lexicon.log_frequency("basil")
    assert lexicon.log_frequency("basil") > lexicon.log_frequency("beaszle")
    assert lexicon.log_frequency("Garden") == lexicon.log_frequency("garden")


def test_the_package_lexicon_is_what_trainer_lexicon_writes(tmp_path):
    out = tmp_path / "lexicon.txt"
    trainer_main(["lexicon", "--size", "1000", "--out", str(out)])

    assert out.read_text().splitlines() == english_words(1000)
    assert LEXICON_PATH.read_text().splitlines()[:1000] == english_words(1000)
    assert Lexicon.load(out).unknown("the people") == 0
