"""CharacterVocabulary: the open-vocabulary CTC targets of a projector's own head."""

from pipecat_tiny_audio.characters import CharacterVocabulary


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
