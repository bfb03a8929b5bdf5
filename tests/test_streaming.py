"""StreamingDecoder invariants: streaming final == offline transcript, KV-cache reuse is exact,
reset forgets everything, long speech is cut without losing audio, silence gives ""."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from streaming_helpers import make_chatty, one_torch_thread  # noqa: F401 (an autouse fixture)

from pipecat_tiny_audio import AudioInputError, StreamingDecoder, TinyAudioConfig, TinyAudioModel
from pipecat_tiny_audio.modeling import SILENCE_PEAK

FRAME = 320  # 20 ms at 16 kHz
MODES = {
    "whole": {"chunk_seconds": None},
    "chunk-0.48-ctx-1.0": {"chunk_seconds": 0.48, "left_context_seconds": 1.0},
    "chunk-0.1-ctx-0.3": {"chunk_seconds": 0.1, "left_context_seconds": 0.3},  # groups straddle chunks
    "chunk-0.48-ctx-1.0-ahead-0.5": {"chunk_seconds": 0.48, "left_context_seconds": 1.0, "right_context_seconds": 0.5},
}


@pytest.fixture
def chatty(tiny_model) -> TinyAudioModel:
    return make_chatty(tiny_model)


@pytest.fixture(scope="module")
def speech(say) -> np.ndarray:
    return say("the quick brown fox jumps over the lazy dog near the river bank")


def stream(decoder: StreamingDecoder, audio: np.ndarray, block: int = FRAME, partial_every: int = 15):
    """Feed ``audio`` in blocks, asking for a partial every ``partial_every`` blocks."""
    partials = []
    for i, start in enumerate(range(0, audio.size, block)):
        decoder.feed(audio[start : start + block])
        if i % partial_every == partial_every - 1:
            partials.append(decoder.partial())
    return partials


def set_mode(model: TinyAudioModel, mode: dict) -> TinyAudioModel:
    model.config.chunk_seconds = mode["chunk_seconds"]
    model.config.left_context_seconds = mode.get("left_context_seconds", 0.0)
    model.config.right_context_seconds = mode.get("right_context_seconds", 0.0)
    return model


@pytest.mark.parametrize("mode", MODES.values(), ids=MODES.keys())
@pytest.mark.parametrize("seconds", [1.3, 2.6])
def test_final_equals_offline_transcript(chatty, speech, mode, seconds):
    model = set_mode(chatty, mode)
    audio = speech[: round(seconds * 16000)]
    decoder = StreamingDecoder(model)
    partials = stream(decoder, audio)
    final = decoder.finalize()
    assert final, "the chatty model must say something, else the comparison proves nothing"
    assert final == model.transcribe(audio)
    assert any(p.text for p in partials)
    assert decoder.finalize() == final  # asking again changes nothing


def test_final_equals_offline_as_served(chatty, speech):
    """The model TinyAudioSTT serves (LoRA merged, fp16 LLM weights) keeps the invariant."""
    model = set_mode(chatty, MODES["chunk-0.48-ctx-1.0"]).optimize_for_inference()
    audio = speech[:40000]
    decoder = StreamingDecoder(model)
    stream(decoder, audio)
    final = decoder.finalize()
    assert final and final == model.transcribe(audio)


def test_final_equals_offline_with_three_frame_groups(tiny_config, speech):
    config = TinyAudioConfig.from_dict({**tiny_config.to_dict(), "stack_factor": 3, "chunk_seconds": 0.1})
    torch.manual_seed(0)
    model = make_chatty(TinyAudioModel(config).eval())
    audio = speech[:24000]
    decoder = StreamingDecoder(model)
    stream(decoder, audio, block=1234, partial_every=3)  # blocks that match no chunk or group size
    assert decoder.finalize() == model.transcribe(audio)


def test_final_equals_offline_with_a_chunk_transformer_projector(tiny_config, speech):
    """A projector with context across frames still appends each audio token to the cache once."""
    config = TinyAudioConfig.from_dict(
        {
            **tiny_config.to_dict(),
            "projector_type": "chunk_transformer",
            "projector_options": {"layers": 2, "left_blocks": 1},
            "stack_factor": 8,
            **MODES["chunk-0.48-ctx-1.0"],
        }
    )
    torch.manual_seed(0)
    model = make_chatty(TinyAudioModel(config).eval())
    audio = speech[:48000]
    decoder = StreamingDecoder(model)
    stream(decoder, audio, partial_every=10)
    assert decoder._cached_groups > model.projector.context_frames // 8, "the window must slide in this test"
    assert decoder.finalize() == model.transcribe(audio)


def test_final_equals_offline_on_real_weights(base_model, speech, monkeypatch):
    monkeypatch.setattr(base_model.config, "chunk_seconds", 0.48)
    monkeypatch.setattr(base_model.config, "left_context_seconds", 1.0)
    monkeypatch.setattr(base_model.config, "max_new_tokens", 8)
    audio = speech[:20000]
    decoder = StreamingDecoder(base_model)
    stream(decoder, audio, partial_every=40)
    assert decoder.finalize() == base_model.transcribe(audio)


def test_partials_split_stable_and_unstable_words(chatty, speech):
    decoder = StreamingDecoder(set_mode(chatty, MODES["chunk-0.48-ctx-1.0"]))
    previous: list[str] = []
    for hypothesis in stream(decoder, speech, partial_every=10):
        words = hypothesis.text.split()
        stable = hypothesis.stable.split()
        assert words == stable + hypothesis.unstable.split()
        assert stable == words[: len(stable)] and stable == previous[: len(stable)]
        previous = words


@pytest.mark.parametrize("mode", list(MODES.values())[:2], ids=list(MODES)[:2])
def test_reused_kv_cache_gives_the_logits_of_a_full_recomputation(chatty, speech, mode):
    model = set_mode(chatty, mode)
    decoder = StreamingDecoder(model)
    stream(decoder, speech[:40000], partial_every=12)  # the cache grows over several partials
    groups = decoder._cached_groups
    if mode["chunk_seconds"] is not None:
        assert groups > 0, "chunked decoding must keep the audio in the cache"
    features = model.encode(speech[:40000])[: groups * model.config.stack_factor]
    suffix = model.embed_tokens(torch.tensor([model.prompt.suffix_ids]))
    with torch.no_grad():
        reused = model.llm(inputs_embeds=suffix, past_key_values=decoder._cache, use_cache=True).logits[0, -1]
        ids = torch.tensor([model.prompt.input_ids(groups)])
        embeds = model.merge_audio(ids, features.unsqueeze(0), torch.tensor([features.shape[0]]))
        full = model.llm(inputs_embeds=embeds).logits[0, -1]
    torch.testing.assert_close(reused, full, rtol=1e-4, atol=1e-4)


def test_reset_leaves_no_state(chatty, speech, say):
    model = set_mode(chatty, MODES["chunk-0.48-ctx-1.0"])
    other = say("a completely different sentence about green apples")
    used = StreamingDecoder(model, max_segment_seconds=1.5)
    stream(used, speech)
    used.finalize()
    prefix = used._prefix_len
    used.reset()
    assert used.audio_seconds == 0 and used.cuts == [] and used.finalize() == ""
    assert used._cache.get_seq_length() == prefix

    fresh = StreamingDecoder(model, max_segment_seconds=1.5)
    assert [h.text for h in stream(used, other)] == [h.text for h in stream(fresh, other)]
    assert used.finalize() == fresh.finalize()


@pytest.mark.parametrize("mode", ["chunk-0.48-ctx-1.0", "chunk-0.48-ctx-1.0-ahead-0.5"])
def test_long_speech_is_cut_in_a_pause_and_loses_no_audio(chatty, say, mode):
    model = set_mode(chatty, MODES[mode])
    words = say("one two three four five six seven eight nine ten")
    gap_start = 14000  # a clear pause inside the search window (the last 20 % of 1 s)
    audio = np.concatenate([words[:gap_start], np.zeros(2400, np.float32), words[gap_start:], words])
    decoder = StreamingDecoder(model, max_segment_seconds=1.0)
    stream(decoder, audio, partial_every=7)
    final = decoder.finalize()

    bounds = [0, *decoder.cuts, audio.size]
    assert len(bounds) > 3
    assert gap_start <= decoder.cuts[0] <= gap_start + 2400
    assert all(0 < b - a <= 16000 for a, b in zip(bounds, bounds[1:], strict=False))  # bounded memory
    assert decoder._cache.get_seq_length() <= decoder._prefix_len + 16000 // FRAME // model.config.stack_factor
    pieces = [model.transcribe(audio[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
    assert final == " ".join(p for p in pieces if p)


def test_silence_and_empty_input_give_empty_text(chatty):
    decoder = StreamingDecoder(set_mode(chatty, MODES["chunk-0.48-ctx-1.0"]))
    assert decoder.finalize() == ""
    decoder.feed(np.zeros(0, np.float32))
    assert decoder.partial().text == ""
    decoder.feed(np.full(32000, SILENCE_PEAK / 2, np.float32))
    assert decoder.partial().text == "" and decoder.finalize() == ""


def test_bad_audio_is_refused(chatty):
    decoder = StreamingDecoder(chatty)
    with pytest.raises(AudioInputError):
        decoder.feed(np.array([0.1, np.nan], np.float32))
    with pytest.raises(AudioInputError):
        decoder.feed(np.zeros((10, 2), np.float32))
    with pytest.raises(AudioInputError, match="must be in \\[-1, 1\\]"):
        decoder.feed(np.full(320, 3000.0, np.float32))  # int16 values stored as floats
    with pytest.raises(AudioInputError, match="unsupported audio dtype"):
        decoder.feed(np.zeros(320, np.int32))
    assert decoder.audio_seconds == 0


def test_int16_audio_is_scaled_and_gives_the_float_transcript(chatty, speech):
    pcm = (speech * 32767).astype(np.int16)
    decoder = StreamingDecoder(chatty)
    decoder.feed(pcm)
    assert decoder.finalize() == chatty.transcribe(pcm.astype(np.float32) / 32768)


def test_less_than_one_frame_of_audio_gives_empty_text(chatty):
    decoder = StreamingDecoder(chatty)
    decoder.feed(np.array([0.5], np.float32))
    assert decoder.partial().text == "" and decoder.finalize() == ""


def test_interrupted_partial_keeps_the_decoder_consistent(chatty, speech, monkeypatch):
    model = set_mode(chatty, MODES["chunk-0.48-ctx-1.0"])
    audio = speech[:36000]
    decoder = StreamingDecoder(model)
    stop = threading.Event()
    stop.set()
    decoder.feed(audio[:20000])
    assert decoder.partial(stop) is None  # given up before any forward pass

    forward = model.llm.forward

    def forward_then_interrupt(*args, **kwargs):
        stop.set()  # e.g. the speaker stopped while the first pass ran
        return forward(*args, **kwargs)

    stop.clear()
    monkeypatch.setattr(model.llm, "forward", forward_then_interrupt)
    decoder.feed(audio[20000:])
    assert decoder.partial(stop) is None
    monkeypatch.setattr(model.llm, "forward", forward)
    assert decoder.finalize() == model.transcribe(audio)


def test_final_equals_offline_when_the_projector_reads_an_extra_encoder_layer(tiny_config, speech):
    """The stream encodes the intermediate layer chunk by chunk exactly as the offline pass does."""
    config = TinyAudioConfig.from_dict(
        {
            **tiny_config.to_dict(),
            "projector_type": "chunk_transformer",
            "projector_options": {"layers": 2, "left_blocks": 1},
            "stack_factor": 8,
            "extra_encoder_layers": [1],
            **MODES["chunk-0.48-ctx-1.0-ahead-0.5"],
        }
    )
    torch.manual_seed(0)
    model = make_chatty(TinyAudioModel(config).eval())
    assert model.config.encoder_dim == 2 * model.encoder.config.d_model
    audio = speech[:32000]
    decoder = StreamingDecoder(model)
    stream(decoder, audio, partial_every=10)
    assert decoder.finalize() == model.transcribe(audio)
