"""When a session's partials are due: often until the first words are heard, then every partial_interval."""

from __future__ import annotations

import numpy as np
import pytest

from pipecat_tiny_audio import StreamingDecoder
from pipecat_tiny_audio.turn_state import FIRST_PARTIAL_POLL, TurnState


def test_partials_poll_until_the_first_words_then_keep_the_interval(tiny_model):
    turn = TurnState(shared=None, decoder=StreamingDecoder(tiny_model), partial_interval=0.5)
    turn.start()
    turn.decoder.feed(np.zeros(16_000, dtype=np.float32))  # a second of pre-roll and onset
    assert turn.partial_due

    assert not turn.is_news("")  # nothing heard yet
    turn.partial_done(seconds=0.01)
    assert turn.next_partial_at == pytest.approx(1.0 + FIRST_PARTIAL_POLL)

    assert turn.is_news("hello")
    turn.partial_done(seconds=0.01)
    assert turn.next_partial_at == pytest.approx(1.5)

    turn.partial_done(seconds=0.4)  # a slow partial: the next waits three times as long
    assert turn.next_partial_at == pytest.approx(1.0 + 1.2)


def test_a_turn_split_into_utterances_keeps_their_finals_until_a_new_turn(tiny_model):
    turn = TurnState(shared=None, decoder=StreamingDecoder(tiny_model), partial_interval=0.5)
    turn.start()
    turn.heard("I want to")
    turn.start(continues=True)  # speech resumed moments after the stop
    assert turn.said == "I want to"
    turn.heard("change the address")
    turn.start(continues=True)
    assert turn.said == "I want to change the address"

    turn.start()
    assert turn.said == ""


def test_an_interim_that_only_drops_the_last_one_s_later_words_is_not_news(tiny_model):
    turn = TurnState(shared=None, decoder=StreamingDecoder(tiny_model), partial_interval=0.5)
    turn.start()
    assert turn.is_news("Please read")  # the first words, read ahead of their chunks
    assert not turn.is_news("Please")  # the chunks' own partial, not there yet
    assert not turn.is_news("Please read")
    assert turn.is_news("Please read the last")
    assert turn.is_news("Please lead the")  # a changed word is news, even in fewer words
    assert turn.last_text == "Please lead the"
