"""Sentences sampled from the bundled SmolLM2 (``python -m trainer sentences``) for a wider corpus."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.__main__ import build_parser
from trainer.llm_sentences import EXAMPLES, STYLES, continued_lines, make_prompt, sample_sentences
from trainer.text_corpus import DevSetFilter, clean_sentence, read_sentences


def test_a_continuation_yields_its_list_items_until_the_list_ends():
    text = " Set an alarm for six.\n- Is it cold outside?\n- Thanks!\n\nThese sentences show how people talk"
    assert continued_lines(text) == ["Set an alarm for six.", "Is it cold outside?", "Thanks!"]


def test_an_item_cut_by_the_token_limit_is_dropped():
    assert continued_lines(" The bus was late.\n- Do you have a") == ["The bus was late."]


def test_a_prompt_shows_three_examples_and_leaves_the_next_item_open():
    prompt = make_prompt(np.random.default_rng(0))
    header, *examples, last = prompt.split("\n")
    assert header.endswith(":") and last == "-"
    assert len(examples) == 3 and all(e[2:] in EXAMPLES for e in examples)


def test_a_turns_prompt_asks_for_conversation_turns_with_its_own_examples():
    prompt = make_prompt(np.random.default_rng(0), STYLES["turns"])
    header, *examples, _ = prompt.split("\n")

    assert any(header.startswith(kind.split("{topic}")[0]) for kind in STYLES["turns"].kinds)
    assert all(e[2:] in STYLES["turns"].examples for e in examples)


@pytest.mark.parametrize("style", sorted(STYLES))
def test_the_prompt_examples_are_not_dev_sentences(style):
    dev = DevSetFilter.from_file()
    assert not [e for e in STYLES[style].examples if dev.rejects(e)]


def test_an_unknown_style_is_refused_before_the_llm_loads():
    with pytest.raises(ValueError, match="unknown prompt style 'chat'"):
        sample_sentences(5, seed=0, style="chat")


def test_sampled_sentences_are_clean_distinct_and_never_dev_text(tmp_path):
    sentences = sample_sentences(12, seed=3, batch_size=8)

    assert len(sentences) == len(set(sentences)) == 12
    assert all(clean_sentence(s) == s for s in sentences)
    dev = DevSetFilter.from_file()
    assert not [s for s in sentences if dev.rejects(s) or s in EXAMPLES]


def test_the_sentences_command_writes_a_file_synth_reads(tmp_path):
    out = tmp_path / "llm.txt"
    args = build_parser().parse_args(["sentences", "--out", str(out), "--n", "5", "--seed", "1"])

    with pytest.raises(SystemExit) as stop:
        args.func(args)
    assert stop.value.code == 0
    assert len(read_sentences(out)) == 5


def test_a_stopped_run_resumes_from_its_progress_file_to_the_same_list(tmp_path):
    progress, small = tmp_path / "llm.txt.progress.json", {"batch_size": 4, "max_new_tokens": 48}
    first = sample_sentences(4, seed=5, progress_file=progress, **small)  # then the session ends
    resumed = sample_sentences(10, seed=5, progress_file=progress, **small)

    assert resumed[:4] == first
    assert resumed == sample_sentences(10, seed=5, **small)  # what one uninterrupted run writes
    with pytest.raises(ValueError, match="delete it to start over"):
        sample_sentences(10, seed=6, progress_file=progress, **small)
