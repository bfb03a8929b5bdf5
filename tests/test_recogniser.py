"""The committed recogniser (``checkpoints/recogniser``): real weights, real speech, its CTC head hears.

It is the projector a new machine resumes training from (``init_from=checkpoints/recogniser``), so a
corrupt or untrained file must fail here rather than silently restart a long run from scratch.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from pipecat.frames.frames import InterimTranscriptionFrame, TranscriptionFrame
from pipecat.tests.utils import run_test
from pipeline_helpers import assert_well_formed, audio_frames, finals, utterance, with_vad

from pipecat_tiny_audio import StreamingDecoder, TinyAudioModel, TinyAudioSTT, streaming
from pipecat_tiny_audio.batch_scheduler import BatchScheduler, Priority
from pipecat_tiny_audio.decoding import run_steps
from pipecat_tiny_audio.features import FeatureMode, encode_audio
from pipecat_tiny_audio.recogniser_stream import RecogniserStream
from trainer.ctc import character_greedy_decode
from trainer.evaluate import ctc_transcriber, evaluate
from trainer.metrics import cer
from trainer.synth import colored_noise

CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "recogniser"


@pytest.fixture(scope="module")
def recogniser(base_model) -> TinyAudioModel:
    return TinyAudioModel.from_pretrained(CHECKPOINT, encoder=base_model.encoder)


def counting_llm(model: TinyAudioModel, passes: list[int]):
    """``model.llm``, appending each pass's token count to ``passes``."""

    def llm(**inputs):
        passes.append(inputs["inputs_embeds"].shape[1])
        return model.llm(**inputs)

    return llm


def test_the_committed_recogniser_spells_what_it_hears(recogniser, say):
    sentence = "please call me back tomorrow morning about the delivery"
    features = recogniser.encode(say(sentence))  # in its own feature mode: chunks with look-ahead
    heard = character_greedy_decode(recogniser.projector, [features])[0]
    assert cer([sentence], [heard]) < 0.35, heard


def test_trainer_eval_ctc_scores_the_recogniser_from_audio_files(recogniser, say, tmp_path):
    sentences = ["please call me back tomorrow morning", "set a timer for ten minutes"]
    rows = []
    for i, sentence in enumerate(sentences):
        sf.write(tmp_path / f"{i}.wav", say(sentence), 16_000)
        rows.append(json.dumps({"audio": f"{i}.wav", "text": sentence}))
    (tmp_path / "manifest.jsonl").write_text("\n".join(rows) + "\n")

    results = evaluate(recogniser, [f"spoken={tmp_path / 'manifest.jsonl'}"], tmp_path / "eval", ctc=True)

    assert results["spoken"]["utterances"] == 2
    assert results["spoken"]["cer"] < 0.35
    heard = [json.loads(line)["hyp"] for line in (tmp_path / "eval" / "errors.jsonl").read_text().splitlines()]
    assert all(heard), heard


def test_trainer_eval_counts_the_words_written_into_noise_apart_from_the_wer(recogniser, say, tmp_path):
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "said.wav", say("set a timer for ten minutes"), 16_000)
    sf.write(tmp_path / "hiss.wav", 0.003 * colored_noise("pink", 3 * 16_000, rng), 16_000)
    rows = [
        {"audio": "said.wav", "text": "set a timer for ten minutes"},
        {"audio": "hiss.wav", "text": "", "no_speech": True},
    ]
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    results = evaluate(recogniser, [f"mixed={tmp_path / 'manifest.jsonl'}"], tmp_path / "eval", ctc=True)

    mixed = results["mixed"]
    assert mixed["utterances"] == 2 and mixed["wer"] < 0.5  # the WER of the spoken clip alone
    hiss = json.loads((tmp_path / "eval" / "errors.jsonl").read_text().splitlines()[1])
    written = len(hiss["hyp"].split())
    assert hiss["no_speech"] and mixed["no_speech_clips_with_text"] == int(written > 0)
    assert mixed["no_speech_words_per_minute"] == pytest.approx(written / (3 / 60))


def test_trainer_eval_ctc_needs_a_recogniser(tiny_model):
    with pytest.raises(ValueError, match="no CTC head"):
        ctc_transcriber(tiny_model)


def test_a_stream_computes_the_recognisers_posteriors_block_by_block_as_the_whole_utterance_does(recogniser, say):
    features = recogniser.encode(say("could you tell me what time it is"))
    projector = recogniser.projector

    blocks, past, position = [], [], 0
    for start in range(0, features.shape[0], projector.block_frames):  # the last block is short
        hidden, past = projector.encode_block(features[None, start : start + projector.block_frames], past, position)
        blocks.append(projector.ctc_logits(hidden)[0].log_softmax(-1))
        position += hidden.shape[1]

    whole = recogniser.recogniser_log_probs(features)
    assert torch.allclose(torch.cat(blocks), whole, atol=1e-4)


def test_the_recogniser_is_served_by_llm_fusion_and_streams_its_offline_transcript(recogniser, say):
    assert recogniser.config.reading == "rescore"  # no LLM stage trained yet: the LLM picks, never writes
    assert recogniser.config.fusion_lm_weight > 0  # ... and steers the beam, once per chunk
    sentence = "set a timer for ten minutes"
    audio = say(sentence)
    offline = recogniser.transcribe(audio)
    assert cer([sentence], [offline]) < 0.35, offline

    passes = []
    llm = counting_llm(recogniser, passes)
    decoder = StreamingDecoder(recogniser)
    partials = []
    for start in range(0, audio.size, 8000):  # half a second at a time
        run_steps(llm, decoder.feed_steps(audio[start : start + 8000]))
        partials.append(decoder.partial().text)  # the beam's best: no LLM pass of its own
    chunks = audio.size // recogniser.feature_mode.chunk_samples
    assert 0 < len(passes) <= chunks  # the LLM scored the beam's new words as the audio arrived
    assert any(partials)
    assert decoder.finalize() == offline


def test_a_decoder_told_the_words_before_has_the_llm_read_its_utterance_after_them(recogniser, say):
    """The second half of a turn a VAD split at a pause ("I want to" | "change the delivery address")."""
    audio = say("change the delivery address")
    decoder = StreamingDecoder(recogniser)
    first_pass, finals = {}, {}
    for context in ["I want to", ""]:  # then reset() forgets it
        passes = []
        llm = counting_llm(recogniser, passes)
        decoder.reset(context=context)
        run_steps(llm, decoder.feed_steps(audio))
        finals[context] = run_steps(llm, decoder.finalize_steps())
        first_pass[context] = passes[0]

    assert first_pass["I want to"] > first_pass[""]  # the LLM read the words before as the line's start
    assert cer(["change the delivery address"], [finals["I want to"]]) < 0.35, finals
    assert finals[""] == recogniser.transcribe(audio)


def test_a_whole_utterance_final_streams_its_offline_transcript_with_fewer_llm_tokens(base_model, say):
    recogniser = TinyAudioModel.from_pretrained(CHECKPOINT, encoder=base_model.encoder)
    recogniser.config.whole_utterance_final = True
    sentence = "please read the last message from sarah out loud"
    audio = say(sentence)
    offline = recogniser.transcribe(audio)
    assert cer([sentence], [offline]) < 0.35, offline

    decoder, streamed, final = StreamingDecoder(recogniser), [], []
    for start in range(0, audio.size, 8000):
        run_steps(counting_llm(recogniser, streamed), decoder.feed_steps(audio[start : start + 8000]))
    assert run_steps(counting_llm(recogniser, final), decoder.finalize_steps()) == offline

    # The same final without the LLM scores of the stream's words reads them all again: more LLM tokens, and
    # a transcript as good (its LLM scores every candidate, so it may spell an unsure word another way).
    whole = encode_audio(recogniser.encoder, audio, FeatureMode())
    fresh = []
    again = run_steps(counting_llm(recogniser, fresh), RecogniserStream(recogniser).whole_final_steps(whole))
    assert cer([sentence], [again]) < 0.35, again
    assert sum(final) < sum(fresh)


def test_a_whole_utterance_final_without_fusion_reads_the_llm_once(base_model, say):
    recogniser = TinyAudioModel.from_pretrained(CHECKPOINT, encoder=base_model.encoder)
    recogniser.config.whole_utterance_final = True
    recogniser.config.whole_final_fusion = False
    sentence = "please read the last message from sarah out loud"
    audio = say(sentence)
    offline = recogniser.transcribe(audio)
    assert cer([sentence], [offline]) < 0.35, offline

    passes = []
    decoder = StreamingDecoder(recogniser)
    for start in range(0, audio.size, 8000):
        run_steps(recogniser.llm, decoder.feed_steps(audio[start : start + 8000]))
    assert run_steps(counting_llm(recogniser, passes), decoder.finalize_steps()) == offline
    assert len(passes) == 1  # the rescoring of the N best; the beam ran on the stream's scores and guesses


def test_chunk_finals_skip_the_whole_utterance_encoding_and_match_a_chunk_final_recogniser(
    base_model, say, monkeypatch
):
    recogniser = TinyAudioModel.from_pretrained(CHECKPOINT, encoder=base_model.encoder)
    recogniser.config.whole_utterance_final = False
    sentence = "please read the last message from sarah out loud"
    audio = say(sentence)
    chunk_final = recogniser.transcribe(audio)
    assert cer([sentence], [chunk_final]) < 0.35, chunk_final

    recogniser.config.whole_utterance_final = True  # the model asks for whole-utterance finals; the stream declines
    whole_encodings = []
    monkeypatch.setattr(streaming, "encode_audio", lambda *args: whole_encodings.append(args) or encode_audio(*args))
    decoder = StreamingDecoder(recogniser, whole_utterance_final=False)
    for start in range(0, audio.size, 8000):
        decoder.feed(audio[start : start + 8000])
    assert decoder.finalize() == chunk_final
    assert whole_encodings == []

    decoder = StreamingDecoder(recogniser)  # the model's choice: the final encodes the utterance whole
    decoder.feed(audio)
    decoder.finalize()
    assert len(whole_encodings) == 1


@pytest.fixture
def chunk_encodings(monkeypatch) -> list[tuple]:
    """The arguments of every chunk encoding a decoder runs, in order (the real encoder still runs)."""
    encodings = []
    encode = streaming.encode_chunk_at
    monkeypatch.setattr(streaming, "encode_chunk_at", lambda *args: encodings.append(args) or encode(*args))
    return encodings


def test_a_decoder_behind_real_time_stops_following_and_its_final_still_hears_everything(
    base_model, say, chunk_encodings
):
    recogniser = TinyAudioModel.from_pretrained(CHECKPOINT, encoder=base_model.encoder)
    assert recogniser.whole_utterance_final
    chunks = chunk_encodings
    sentence = "please read the last message from sarah out loud"
    audio = say(sentence)
    decoder = StreamingDecoder(recogniser)
    decoder.feed(audio[:16000])
    heard_in_time, encoded_in_time = decoder.partial().text, len(chunks)
    assert encoded_in_time > 0

    decoder.feed(audio[16000:], follow=False)  # the session fell behind: catch up without the chunks
    assert len(chunks) == encoded_in_time and decoder.partial().text == heard_in_time
    final = decoder.finalize()
    assert cer([sentence], [final]) < 0.35, final  # the whole segment, encoded once for the final

    decoder.reset()  # the next utterance is followed again
    decoder.feed(audio[:16000])
    assert len(chunks) == 2 * encoded_in_time


def test_the_first_words_are_read_ahead_of_their_chunk_and_then_the_chunks_take_over(base_model, say, chunk_encodings):
    recogniser = TinyAudioModel.from_pretrained(CHECKPOINT, encoder=base_model.encoder)
    encodings = chunk_encodings
    sentence = "please read the last message from sarah out loud"
    audio = say(sentence)
    decoder = StreamingDecoder(recogniser)
    partials = []  # (seconds fed, text, chunks the partial encoded itself)
    for start in range(0, audio.size, 1600):  # a partial every 0.1 s
        decoder.feed(audio[start : start + 1600])
        before = len(encodings)
        partials.append((decoder.audio_seconds, decoder.partial().text, len(encodings) - before))
    final = decoder.finalize()

    first = next(p for p in partials if p[1])
    assert first[2] > 0  # read ahead: its words were in chunks the stream had not completed
    assert final.lower().split()[: len(first[1].split())] == first[1].lower().split(), (first, final)
    later = [p for p in partials if p[0] > first[0] + 1.0]
    assert later and all(encoded == 0 for _, _, encoded in later)  # once the chunks hear words, no extra work

    chunk_finals = StreamingDecoder(recogniser, whole_utterance_final=False)
    chunk_finals.feed(audio[: round(first[0] * 16000) - 1600])
    chunk_finals.partial()  # the words a first reading ahead finds are shown once a second one agrees
    chunk_finals.feed(audio[round(first[0] * 16000) - 1600 : round(first[0] * 16000)])
    assert chunk_finals.partial().text == first[1]
    alone = StreamingDecoder(recogniser, whole_utterance_final=False)
    alone.feed(audio[: round(first[0] * 16000)])
    assert chunk_finals.finalize() == alone.finalize()  # the final reads them its own way


def test_a_whole_utterance_final_transcribes_speech_longer_than_whisper_s_window(base_model, say):
    recogniser = TinyAudioModel.from_pretrained(CHECKPOINT, encoder=base_model.encoder)
    recogniser.config.whole_utterance_final = True
    sentence = "set a timer for ten minutes"
    audio = np.concatenate([np.zeros(31 * 16_000, np.float32), say(sentence)])  # cut as a stream cuts it

    assert cer([sentence], [recogniser.transcribe(audio)]) < 0.35


async def test_thirty_seconds_of_silence_or_steady_noise_give_no_text(base_model):
    """The ship bar's noise check, through a real pipeline: the VAD keeps steady noise from the model (which,
    fed 30 s of white noise directly, writes a few words), so the bot hears nothing and says nothing."""
    served = TinyAudioModel.from_pretrained(CHECKPOINT, encoder=base_model.encoder).optimize_for_inference()
    rng = np.random.default_rng(0)
    backgrounds = {
        "silence": np.zeros(30 * 16000),
        "white noise at -15 dBFS": 0.178 * colored_noise("white", 30 * 16000, rng),
        "pink noise at -25 dBFS": 0.056 * colored_noise("pink", 30 * 16000, rng),
    }

    async def transcripts(audio: np.ndarray, upstream_vad: bool) -> list[str]:
        stt = TinyAudioSTT(model=served)  # its built-in Silero VAD segments the audio when nothing is upstream
        down, _ = await run_test(with_vad(stt) if upstream_vad else stt, frames_to_send=audio_frames(audio))
        return [f.text for f in down if isinstance(f, (TranscriptionFrame, InterimTranscriptionFrame))]

    cases = list(itertools.product(backgrounds, (True, False)))
    said = await asyncio.gather(*(transcripts(backgrounds[name], upstream) for name, upstream in cases))
    assert dict(zip(cases, said, strict=True)) == {case: [] for case in cases}


async def test_four_sessions_on_the_recogniser_get_the_finals_each_gets_alone(base_model, say):
    """Each final's rescoring pass (the token tree of its N best) goes through the shared scheduler,
    beside the other sessions' work, and still picks what the session picks when it is alone."""
    served = TinyAudioModel.from_pretrained(CHECKPOINT, encoder=base_model.encoder).optimize_for_inference()
    sentences = [
        "please book a table for two people tonight",
        "what is the weather like in paris",
        "turn off the lights in the kitchen",
        "could you tell me what time it is",
    ]

    async def transcribe(audio) -> list[str]:
        down, _ = await run_test(with_vad(TinyAudioSTT(model=served)), frames_to_send=audio_frames(utterance(audio)))
        assert_well_formed(down)
        return [f.text for f in finals(down)]

    clips = [say(sentence) for sentence in sentences]
    alone = [await transcribe(audio) for audio in clips]
    together = await asyncio.gather(*(transcribe(audio) for audio in clips))
    assert list(together) == alone and all(len(texts) == 1 for texts in alone)
    assert cer(sentences, [texts[0].lower() for texts in alone]) < 0.35, alone


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two cores")
async def test_a_lone_final_borrows_the_idle_encoder_lane_s_core_and_gets_the_one_core_transcript(base_model, say):
    served = TinyAudioModel.from_pretrained(CHECKPOINT, encoder=base_model.encoder).optimize_for_inference()
    audio = say("please read the last message from sarah out loud")
    streamed, alone = StreamingDecoder(served), StreamingDecoder(served)
    streamed.feed(audio)
    alone.feed(audio)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one_core = alone.finalize()
    finally:
        torch.set_num_threads(threads)

    scheduler = BatchScheduler(served, num_threads=1)
    assert await scheduler.run(streamed.finalize_steps(), Priority.FINAL) == one_core
    assert scheduler.wide_threads == 2 and scheduler.stats.wide_batches == scheduler.stats.batches > 0
