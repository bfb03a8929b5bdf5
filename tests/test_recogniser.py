"""The committed recogniser (``checkpoints/recogniser``): real weights, real speech, its CTC head hears.

It is the projector a new machine resumes training from (``init_from=checkpoints/recogniser``), so a
corrupt or untrained file must fail here rather than silently restart a long run from scratch.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipecat_tiny_audio import TinyAudioModel
from trainer.ctc import character_greedy_decode
from trainer.metrics import cer

CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "recogniser"


@pytest.fixture(scope="module")
def recogniser(base_model) -> TinyAudioModel:
    return TinyAudioModel.from_pretrained(CHECKPOINT, encoder=base_model.encoder)


def test_the_committed_recogniser_spells_what_it_hears(recogniser, say):
    sentence = "please call me back tomorrow morning about the delivery"
    features = recogniser.encode(say(sentence))  # in its own feature mode: chunks with look-ahead
    heard = character_greedy_decode(recogniser.projector, [features])[0]
    assert cer([sentence], [heard]) < 0.35, heard
