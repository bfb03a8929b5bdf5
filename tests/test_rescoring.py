"""The LLM picking among a recogniser's CTC hypotheses (``reading="rescore"``)."""

from __future__ import annotations

import math

import pytest
import torch

from pipecat_tiny_audio import TinyAudioConfig, TinyAudioModel
from pipecat_tiny_audio.characters import CharacterVocabulary
from pipecat_tiny_audio.decoding import run_steps
from pipecat_tiny_audio.lexicon import Lexicon
from pipecat_tiny_audio.rescoring import (
    SCORING_CONTEXT,
    FusedBeamSearch,
    PrefixBeam,
    TextScorer,
    best_hypothesis,
    text_log_probs,
)


def log_posteriors(frames: list[list[float]]) -> torch.Tensor:
    """CTC log-posteriors from per-frame probabilities (blank first), zeros made merely unlikely."""
    return torch.tensor(frames).clamp_min(1e-9).log()


def prefix_beam_search(log_probs: torch.Tensor, vocabulary: CharacterVocabulary, beam: int) -> list[tuple[str, float]]:
    """The plain beam search over a whole utterance, a frame at a time."""
    search = PrefixBeam(vocabulary, beam)
    for frame in log_probs:
        search.keep(search.grow(frame))
    return search.hypotheses()


def test_beam_search_finds_the_likeliest_text_where_the_best_path_says_nothing():
    vocabulary = CharacterVocabulary(characters="a ")
    # Two frames, each blank 0.6 / "a" 0.4: the best path is blank-blank (""), but "a" has three
    # paths (a a, a -, - a) worth 0.64 together against the blank path's 0.36.
    log_probs = log_posteriors([[0.6, 0.4, 0.0], [0.6, 0.4, 0.0]])

    hypotheses = prefix_beam_search(log_probs, vocabulary, beam=4)

    assert [text for text, _ in hypotheses] == ["a", ""]
    assert math.exp(hypotheses[0][1]) == pytest.approx(0.64, abs=1e-6)
    assert math.exp(hypotheses[1][1]) == pytest.approx(0.36, abs=1e-6)


def test_beam_search_keeps_a_repeated_letter_only_across_a_blank():
    vocabulary = CharacterVocabulary(characters="l ")
    frames = [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]  # l, blank, l
    log_probs = log_posteriors(frames)
    assert prefix_beam_search(log_probs, vocabulary, beam=4)[0][0] == "ll"
    merged = log_posteriors([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])  # l, l
    assert prefix_beam_search(merged, vocabulary, beam=4)[0][0] == "l"


def test_a_beam_fed_piece_by_piece_without_the_llm_is_the_plain_beam_search():
    vocabulary = CharacterVocabulary(characters="ab ")
    log_probs = torch.randn(30, len(vocabulary), generator=torch.Generator().manual_seed(0)).log_softmax(-1)
    search = FusedBeamSearch(vocabulary, beam=4, lm_weight=0.0, word_bonus=0.0, every=12)

    for start in range(0, 30, 12):
        assert list(search.advance_steps(log_probs[start : start + 12])) == []  # no LLM pass
    earlier = search.copy()
    list(search.advance_steps(log_probs))

    assert earlier.hypotheses() == prefix_beam_search(log_probs, vocabulary, beam=4)
    assert earlier.best() == earlier.hypotheses()[0][0]  # no LLM: the best candidate is CTC's best


def test_the_language_model_score_can_overrule_the_acoustics():
    hypotheses = [("se a timer", -1.0), ("set a timer", -1.5)]
    assert best_hypothesis(hypotheses, [-40.0, -30.0], lm_weight=0.0, word_bonus=0.0) == "se a timer"
    assert best_hypothesis(hypotheses, [-40.0, -30.0], lm_weight=0.5, word_bonus=0.0) == "set a timer"
    assert best_hypothesis([], [], lm_weight=0.5, word_bonus=0.0) == ""


def test_an_out_of_lexicon_penalty_picks_the_spelling_that_is_a_word():
    hypotheses = [("closees early", -1.0), ("closes early", -1.5)]
    lexicon = Lexicon(["closes", "early"])
    assert best_hypothesis(hypotheses, [0.0, 0.0], lm_weight=0.0, word_bonus=0.0) == "closees early"
    picked = best_hypothesis(hypotheses, [0.0, 0.0], lm_weight=0.0, word_bonus=0.0, oov_penalty=1.0, lexicon=lexicon)
    assert picked == "closes early"
    with pytest.raises(ValueError, match="lexicon"):
        best_hypothesis(hypotheses, [0.0, 0.0], lm_weight=0.0, word_bonus=0.0, oov_penalty=1.0)


def test_the_beam_keeps_a_word_the_acoustics_alone_would_prune():
    vocabulary = CharacterVocabulary(characters="abx ")
    # The first frame prefers "x" a little over "a": the acoustics alone spell "xb a", the lexicon knows
    # "ab". A word is judged once the next one starts, so the beam must still hold both by then.
    frames = [
        [0.0, 0.35, 0.0, 0.45, 0.2],
        [0.0, 0.0, 1.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0, 1.0],
        [0.0, 1.0, 0.0, 0.0, 0.0],
    ]
    log_probs = log_posteriors(frames)

    def best(oov_penalty: float) -> str:
        search = FusedBeamSearch(
            vocabulary,
            beam=2,
            lm_weight=0.0,
            word_bonus=0.0,
            every=12,
            oov_penalty=oov_penalty,
            lexicon=Lexicon(["ab"]),
        )
        list(search.advance_steps(log_probs))
        return search.best().strip()

    assert best(0.0) == "xb a"
    assert best(1.0) == "ab a"


def test_the_llm_reads_only_the_words_of_candidates_that_can_stay_in_the_beam(base_model):
    vocabulary = CharacterVocabulary(characters="abx ")
    # "a b" was said, ending in a space or not; "x" was heard at odds of one in a million.
    frames = [
        [0.0, 0.999999, 0.0, 0.000001, 0.0],
        [0.0, 0.0, 0.0, 0.0, 1.0],
        [0.0, 0.0, 1.0, 0.0, 0.0],
        [0.5, 0.0, 0.0, 0.0, 0.5],
    ]
    log_probs = log_posteriors(frames)
    scorer = TextScorer(base_model.embed_tokens, base_model.tokenizer)
    lexicon = Lexicon(["a", "b"])
    search = FusedBeamSearch(vocabulary, 2, 0.3, 1.0, every=4, scorer=scorer, oov_penalty=1.0, lexicon=lexicon)

    with torch.no_grad():
        run_steps(base_model.llm, search.advance_steps(log_probs[:3]))
        assert [text for text, _ in search.hypotheses()] == ["a b", "x b"]
        run_steps(base_model.llm, search.advance_steps(log_probs[3:]))  # the LLM's pass: "x b" cannot stay

    assert {"a", "a b"} <= set(search.scores) and "x b" not in search.scores
    assert search.best().strip() == "a b"


def test_smollm2_prefers_english_to_phonetic_spelling(base_model):
    english, phonetic = text_log_probs(
        base_model.llm, base_model.tokenizer, ["set a timer for ten minutes", "se a timer for ten minuts"]
    )
    assert english > phonetic


def test_the_n_best_scored_as_one_token_tree_score_as_each_line_alone(base_model):
    """Lines sharing prefixes (and one a prefix of another's words) in one tree-attention pass."""
    llm, tokenizer = base_model.llm, base_model.tokenizer
    texts = ["set a timer for ten minutes", "set a time her for ten minutes", "set a timer", "se a timer", ""]

    together = text_log_probs(llm, tokenizer, texts)

    for text, score in zip(texts, together, strict=True):
        alone = line_log_prob(llm, tokenizer, SCORING_CONTEXT, text[:1].upper() + text[1:] + "\n")
        assert score == pytest.approx(alone, abs=1e-3)


def test_words_said_before_are_read_as_the_start_of_the_line(base_model):
    """A turn the VAD split at a pause: the second utterance's candidates continue the first's words."""
    llm, tokenizer = base_model.llm, base_model.tokenizer
    texts = ["change the delivery address", "chains the deliver read dress"]
    scorer = TextScorer(base_model.embed_tokens, tokenizer, preceding="i want to")

    scores = run_steps(llm, scorer.score_steps(texts))

    for text, score in zip(texts, scores, strict=True):
        alone = line_log_prob(llm, tokenizer, SCORING_CONTEXT + "I want to", f" {text}\n")
        assert score == pytest.approx(alone, abs=1e-3)
    assert scores[0] > scores[1]


def line_log_prob(llm, tokenizer, context: str, line: str) -> float:
    """The LLM's log-probability of ``line`` after ``context``, in one plain forward pass."""
    context_ids = tokenizer(context, add_special_tokens=False).input_ids
    ids = torch.tensor([context_ids + tokenizer(line, add_special_tokens=False).input_ids])
    with torch.no_grad():
        log_probs = llm(input_ids=ids).logits[0, :-1].float().log_softmax(-1)
    return log_probs[len(context_ids) - 1 :].gather(-1, ids[0, len(context_ids) :, None]).sum().item()


def test_a_scorer_growing_its_tree_word_by_word_scores_as_a_fresh_one(base_model):
    """A beam's texts grow by a word a chunk: each call computes only the new words' tokens."""
    llm, tokenizer = base_model.llm, base_model.tokenizer
    scorer = TextScorer(base_model.embed_tokens, tokenizer)
    calls = [
        (["set a", "set the", "sit a"], False),
        (["set a timer", "set the timer", "set a time"], False),  # "sit a" was dropped from the beam
        (["set a timer for ten minutes", "set a time for ten minutes"], True),  # the final's lines
    ]
    for texts, finished in calls:
        before = scorer.cache.get_seq_length()
        scores = run_steps(llm, scorer.score_steps(texts, finished))
        scorer.keep_ends(texts[:2])

        fresh = TextScorer(base_model.embed_tokens, tokenizer)
        assert scores == pytest.approx(run_steps(llm, fresh.score_steps(texts, finished)), abs=1e-3)
        assert scorer.cache.get_seq_length() - before < fresh.cache.get_seq_length() or before == 0


def test_rescoring_needs_a_recogniser(tiny_config):
    with pytest.raises(ValueError, match="needs a projector with a CTC head"):
        TinyAudioModel(TinyAudioConfig.from_dict({**tiny_config.to_dict(), "reading": "rescore"}))
    headless = {"projector_type": "chunk_transformer", "stack_factor": 8, "projector_options": {"characters": None}}
    with pytest.raises(ValueError, match="needs a projector with a CTC head"):  # scored by the LLM's embeddings
        TinyAudioModel(TinyAudioConfig.from_dict({**tiny_config.to_dict(), **headless, "reading": "rescore"}))
    with pytest.raises(ValueError, match="reading must be one of"):
        TinyAudioModel(TinyAudioConfig.from_dict({**tiny_config.to_dict(), "reading": "guess"}))


def test_a_finished_line_scores_its_newline_from_the_rows_it_already_has(base_model):
    """A final's N best end in a newline that nothing follows: it needs no row of its own in the pass."""
    llm, tokenizer = base_model.llm, base_model.tokenizer
    scorer = TextScorer(base_model.embed_tokens, tokenizer)
    run_steps(llm, scorer.score_steps(["set a timer"], finished=False))  # the stream's words
    scorer.keep_ends(["set a timer"])
    before = scorer.cache.get_seq_length()

    (score,) = run_steps(llm, scorer.score_steps(["set a timer"]))

    assert scorer.cache.get_seq_length() == before  # no pass at all
    assert score == pytest.approx(line_log_prob(llm, tokenizer, SCORING_CONTEXT, "Set a timer\n"), abs=1e-3)
