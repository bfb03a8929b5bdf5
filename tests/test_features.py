"""Encoder features with intermediate layers read beside the top one (``extra_encoder_layers``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipecat_tiny_audio import FeatureMode
from pipecat_tiny_audio.features import encode_audio, encode_chunk_at

STREAMED = {"chunk_seconds": 0.4, "left_context_seconds": 0.6, "right_context_seconds": 0.2}


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return (np.random.default_rng(3).standard_normal(int(1.7 * 16000)) * 0.1).astype(np.float32)


@pytest.mark.parametrize("cut", [{}, STREAMED], ids=["whole", "chunked"])
def test_an_extra_layer_is_appended_normalised_after_the_top_layers_features(tiny_model, clip, cut):
    encoder = tiny_model.encoder  # two layers: layer 1 is the one below the top
    top = encode_audio(encoder, clip, FeatureMode(**cut))
    both = encode_audio(encoder, clip, FeatureMode(**cut, extra_layers=(1,)))
    d = encoder.config.d_model
    assert both.shape == (top.shape[0], 2 * d) == (top.shape[0], FeatureMode(extra_layers=(1,)).feature_dim(encoder))
    torch.testing.assert_close(both[:, :d], top)
    torch.testing.assert_close(both[:, d:].mean(-1), torch.zeros(top.shape[0]), atol=1e-4, rtol=0)
    torch.testing.assert_close(both[:, d:].std(-1, unbiased=False), torch.ones(top.shape[0]), atol=1e-3, rtol=0)


def test_a_stream_encodes_each_chunk_with_the_extra_layer_as_the_whole_pass_does(tiny_model, clip):
    mode = FeatureMode(**STREAMED, extra_layers=(1,))
    chunks = [encode_chunk_at(tiny_model.encoder, clip, start, mode) for start in range(0, clip.size, 6400)]
    torch.testing.assert_close(torch.cat(chunks), encode_audio(tiny_model.encoder, clip, mode))


@pytest.mark.parametrize("layers", [(2,), (0,), (1, 1)], ids=["the-top-layer", "zero", "twice"])
def test_extra_layers_that_are_not_below_the_top_are_refused(tiny_model, clip, layers):
    with pytest.raises(ValueError, match="extra_layers"):
        encode_audio(tiny_model.encoder, clip, FeatureMode(extra_layers=layers))


def test_empty_audio_has_no_frames_of_the_full_width(tiny_model):
    empty = encode_audio(tiny_model.encoder, np.zeros(0, np.float32), FeatureMode(extra_layers=(1,)))
    assert empty.shape == (0, 2 * tiny_model.encoder.config.d_model)
