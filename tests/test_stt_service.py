"""TinyAudioSTT in real Pipecat pipelines: real Silero VAD, real synthesized speech.

Untrained projectors give nonsense words, so these tests check structure (how many frames, in
what order, with which user and flags), never the words themselves.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import soxr
from loguru import logger
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.frames.frames import (
    ErrorFrame,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    InterruptionFrame,
    STTMuteFrame,
    STTUpdateSettingsFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair, LLMUserAggregatorParams
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.tests.utils import SleepFrame, run_test
from pipecat.transcriptions.language import Language
from pipeline_helpers import (
    FRAME_SECONDS,
    REAL_TIME,
    assert_well_formed,
    audio_frames,
    events,
    finals,
    utterance,
    with_vad,
)
from streaming_helpers import make_chatty, one_torch_thread  # noqa: F401 (an autouse fixture)

from pipecat_tiny_audio import StreamingDecoder, TinyAudioModel, TinyAudioSTT
from pipecat_tiny_audio import shared_model as shared_model_module
from pipecat_tiny_audio.commands import Interrupt
from pipecat_tiny_audio.model_process import ModelProcess
from pipecat_tiny_audio.shared_model import shared_model


@pytest.fixture
def model(tiny_model) -> TinyAudioModel:
    """A fast chunked-mode model that writes audio-dependent text."""
    tiny_model.config.chunk_seconds, tiny_model.config.left_context_seconds = 0.48, 1.0
    return make_chatty(tiny_model)


@pytest.fixture(scope="module")
def speech(say) -> list[np.ndarray]:
    return [say("please book a table for two people tonight"), say("what is the weather like in paris")]


class Fed(list):
    """Each utterance's audio blocks as its decoder was fed them, and (``contexts``) the words it was told
    came before."""

    def __init__(self) -> None:
        super().__init__()
        self.contexts: list[str] = []


@pytest.fixture
def fed(monkeypatch) -> Fed:
    """What each utterance's decoder is fed: the service runs the real StreamingDecoder, recorded."""
    utterances = Fed()

    class RecordingDecoder(StreamingDecoder):
        def reset(self, context: str = "") -> None:
            super().reset(context)
            utterances.append([])
            utterances.contexts.append(context)

        def feed_steps(self, audio: np.ndarray, follow: bool = True):
            utterances[-1].append(np.asarray(audio, np.float32).copy())
            return super().feed_steps(audio, follow)

    monkeypatch.setattr(shared_model_module, "StreamingDecoder", RecordingDecoder)
    return utterances


async def test_upstream_vad_interims_then_one_final_per_utterance(model, speech):
    stt = TinyAudioSTT(model=model)
    first = audio_frames(utterance(speech[0]), user_id="alice", pace=REAL_TIME)
    sent = [*first, *audio_frames(utterance(speech[1]), user_id="alice")]
    down, _ = await run_test(with_vad(stt), frames_to_send=sent)
    assert_well_formed(down, user_id="alice")
    stops = [f for f in down if isinstance(f, VADUserStoppedSpeakingFrame)]
    assert len(stops) >= 2 and len(finals(down)) == len(stops)
    seen = events(down)
    first_stop = seen.index(stops[0])
    assert any(isinstance(f, InterimTranscriptionFrame) for f in seen[:first_stop]), "no interim while speaking"


async def test_vad_in_the_user_aggregator_is_honoured(model, speech):
    """The usual 1.x bot: the VAD sits in the user aggregator after the STT and broadcasts upstream."""
    seen: list = []

    class Recorder(FrameProcessor):
        async def process_frame(self, frame, direction):
            await super().process_frame(frame, direction)
            seen.append(frame)
            await self.push_frame(frame, direction)

    stt = TinyAudioSTT(model=model)
    user_aggregator, _ = LLMContextAggregatorPair(
        LLMContext(), user_params=LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer())
    )
    await run_test(
        Pipeline([stt, Recorder(), user_aggregator]), frames_to_send=audio_frames(utterance(speech[0]), pace=REAL_TIME)
    )
    assert_well_formed(seen)
    stops = [f for f in seen if isinstance(f, VADUserStoppedSpeakingFrame)]
    assert len(finals(seen)) == len(stops) >= 1
    assert any(isinstance(f, InterimTranscriptionFrame) for f in events(seen)[: events(seen).index(stops[0])])


async def test_builtin_vad_segments_speech_without_upstream_frames(model, speech):
    stt = TinyAudioSTT(model=model, vad_params=VADParams(stop_secs=0.4))
    first = audio_frames(utterance(speech[0], tail=0), pace=REAL_TIME)
    speech_end = first[-2]  # the first utterance's last audio frame
    sent = [*first, *audio_frames(np.zeros(16000, np.float32)), *audio_frames(utterance(speech[1]))]
    down, _ = await run_test(stt, frames_to_send=sent)
    assert_well_formed(down)
    assert not any(isinstance(f, VADUserStartedSpeakingFrame | VADUserStoppedSpeakingFrame) for f in down)
    assert len(finals(down)) == 2
    first_interim = next(i for i, f in enumerate(down) if isinstance(f, InterimTranscriptionFrame))
    assert first_interim < down.index(speech_end), "no interim while the user was still speaking"


async def test_muted_speech_is_not_transcribed(model, speech):
    stt = TinyAudioSTT(model=model)
    unmuted = audio_frames(utterance(speech[1]))
    sent = [STTMuteFrame(mute=True), *audio_frames(utterance(speech[0])), STTMuteFrame(mute=False), *unmuted]
    down, _ = await run_test(with_vad(stt), frames_to_send=sent)
    assert_well_formed(down)
    unmuted_at = down.index(unmuted[0])
    assert any(isinstance(f, VADUserStoppedSpeakingFrame) for f in down[:unmuted_at])  # the VAD heard it
    assert finals(down[:unmuted_at]) == []
    stops_after = [f for f in down[unmuted_at:] if isinstance(f, VADUserStoppedSpeakingFrame)]
    assert len(finals(down)) == len(stops_after) >= 1


async def test_interruption_passes_through_and_keeps_the_utterance(model, speech):
    stt = TinyAudioSTT(model=model)
    frames = audio_frames(utterance(speech[0]))
    sent = [*frames[: len(frames) // 2], InterruptionFrame(), *frames[len(frames) // 2 :]]
    down, _ = await run_test(with_vad(stt), frames_to_send=sent)
    assert_well_formed(down)
    assert any(isinstance(f, InterruptionFrame) for f in down)
    stops = [f for f in down if isinstance(f, VADUserStoppedSpeakingFrame)]
    assert len(finals(down)) == len(stops) >= 1


async def test_stereo_48k_input_is_downmixed_and_resampled(model, speech):
    stt = TinyAudioSTT(model=model)
    down, _ = await run_test(stt, frames_to_send=audio_frames(utterance(speech[0]), rate=48000, channels=2))
    assert_well_formed(down)
    assert len(finals(down)) == 1


async def test_four_concurrent_sessions_get_the_finals_each_gets_alone(model, speech, say):
    """Four pipelines, as the runner serves four users, on one model: their passes are batched and every
    final is what that session gets when it is the only one (with the weights and dtype the service uses)."""
    served = model.optimize_for_inference()
    clips = [*speech, say("turn off the lights in the kitchen"), say("could you tell me what time it is")]

    async def transcribe(audio: np.ndarray) -> list[str]:
        stt = TinyAudioSTT(model=served)
        assert stt.model is served
        down, _ = await run_test(with_vad(stt), frames_to_send=audio_frames(utterance(audio)))
        assert_well_formed(down)
        return [f.text for f in finals(down)]

    alone = [await transcribe(audio) for audio in clips]
    stats = await TinyAudioSTT(model=served).scheduler_stats()
    batched_before = stats.passes - stats.batches
    together = await asyncio.gather(*(transcribe(audio) for audio in clips))
    assert list(together) == alone and all(len(texts) == 1 for texts in alone)
    assert stats.passes - stats.batches > batched_before, "the sessions' LLM passes were never batched"


async def test_a_model_in_its_own_process_gives_the_same_finals(model, speech, say, tmp_path):
    """model_process=True: four sessions on a model in a child process get the finals they get on it in-process."""
    model.save_pretrained(tmp_path / "ckpt")
    checkpoint = str(tmp_path / "ckpt")
    clips = [*speech, say("turn off the lights in the kitchen"), say("could you tell me what time it is")]

    async def transcribe(audio: np.ndarray, **options) -> list[str]:
        stt = TinyAudioSTT(model=checkpoint, **options)
        down, _ = await run_test(with_vad(stt), frames_to_send=audio_frames(utterance(audio)))
        assert_well_formed(down)
        return [f.text for f in finals(down)]

    in_process = [await transcribe(audio) for audio in clips]
    apart = await asyncio.gather(*(transcribe(audio, model_process=True) for audio in clips))
    assert list(apart) == in_process and all(len(texts) == 1 for texts in in_process)
    stt = TinyAudioSTT(model=checkpoint, model_process=True)
    assert stt.model is None, "the model is loaded in the child, not here"
    stats = await stt.scheduler_stats()
    assert stats.passes > stats.batches > 0, "the child's scheduler ran every session's passes, batched"


async def test_a_model_process_that_dies_is_a_fatal_error_not_silence(model, speech, tmp_path):
    model.save_pretrained(tmp_path / "ckpt")
    stt = TinyAudioSTT(model=tmp_path / "ckpt", model_process=True)
    stt._shared._process.kill()  # e.g. the kernel's OOM killer
    down, up = await run_test(with_vad(stt), frames_to_send=audio_frames(utterance(speech[0])))
    errors = [f for f in up if isinstance(f, ErrorFrame)]
    assert len(errors) == 1 and "model process exited" in errors[0].error
    assert not stt.is_usable and finals(down) == []


async def test_a_final_given_up_on_a_model_process_stops_in_the_child(model, speech, tmp_path):
    """The interrupt reaches the child at once: a final given up runs at most one LLM pass there, the next all."""
    model.save_pretrained(tmp_path / "ckpt")
    process = ModelProcess(str(tmp_path / "ckpt"), "cpu", fp16=True, num_threads=1)
    try:
        decoder = await process.open_decoder()
        await decoder.feed(speech[0])
        before = (await process.stats()).passes
        interrupt = Interrupt()
        interrupt.set()  # e.g. the user spoke again before the final could start
        assert await decoder.finalize(interrupt) is None
        given_up = (await process.stats()).passes - before
        text = await decoder.finalize()
        completed = (await process.stats()).passes - before - given_up
        assert text and given_up <= 1 < completed
    finally:
        process.close()


def test_a_model_process_needs_a_checkpoint_it_can_load(model, tmp_path):
    with pytest.raises(ValueError, match="checkpoint folder or hub id"):
        TinyAudioSTT(model=model, model_process=True)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(RuntimeError, match="could not load Tiny Audio model .* in a process of its own"):
        TinyAudioSTT(model=tmp_path / "broken", model_process=True)


async def test_garbage_audio_is_skipped_not_fatal(model, speech):
    stt = TinyAudioSTT(model=model)
    sent = [
        InputAudioRawFrame(audio=b"\x01\x02\x03", sample_rate=16000, num_channels=1),  # half a sample
        InputAudioRawFrame(audio=b"\x00\x00" * 7, sample_rate=16000, num_channels=2),  # half a stereo frame
        InputAudioRawFrame(audio=b"\x00\x00" * 160, sample_rate=12, num_channels=1),  # nonsense rate
        *audio_frames(utterance(speech[0])),
        *audio_frames(utterance(speech[1]), rate=8000),  # the rate changes mid-stream
    ]
    down, up = await run_test(stt, frames_to_send=sent)
    assert_well_formed(down)
    assert len(finals(down)) == 2
    assert not any(isinstance(f, ErrorFrame) and f.fatal for f in up)


async def test_vad_frames_around_silence_give_no_transcript(model):
    stt = TinyAudioSTT(model=model)
    sent = [VADUserStartedSpeakingFrame(), *audio_frames(np.zeros(24000, np.float32)), VADUserStoppedSpeakingFrame()]
    down, _ = await run_test(stt, frames_to_send=sent)
    assert finals(down) == [] and not any(isinstance(f, InterimTranscriptionFrame) for f in down)


async def test_end_of_pipeline_mid_utterance_flushes_one_final(model, speech):
    stt = TinyAudioSTT(model=model)
    down, _ = await run_test(stt, frames_to_send=audio_frames(utterance(speech[0], tail=0.0)))
    assert_well_formed(down)
    assert len(finals(down)) == 1


def test_english_only(model):
    assert TinyAudioSTT(model=model, language="en-US").settings.language == "en"
    with pytest.raises(ValueError, match="English only"):
        TinyAudioSTT(model=model, language=Language.FR)
    with pytest.raises(ValueError, match="English only"):
        TinyAudioSTT(model=model, settings=TinyAudioSTT.Settings(language=Language.DE))


async def test_settings_update_refuses_other_languages_and_switches_models(model, speech, tmp_path):
    other = tmp_path / "other"
    model.save_pretrained(other)
    stt = TinyAudioSTT(model=model)
    sent = [
        STTUpdateSettingsFrame(delta=TinyAudioSTT.Settings(language=Language.ES)),
        STTUpdateSettingsFrame(delta=TinyAudioSTT.Settings(model=str(other))),
        SleepFrame(sleep=2.0),  # the new model loads off the event loop
        *audio_frames(utterance(speech[0])),
    ]
    down, up = await run_test(stt, frames_to_send=sent)
    assert any(isinstance(f, ErrorFrame) and "English only" in f.error for f in up)
    assert stt.settings.language == "en"
    assert stt.model is shared_model(str(other)).model is not model
    assert len(finals(down)) == 1


def test_default_model_loads_the_shipped_folder_or_warns(model, tiny_config, tmp_path, monkeypatch):
    shipped = tmp_path / "default_model"
    model.save_pretrained(shipped)
    monkeypatch.setattr(shared_model_module, "DEFAULT_MODEL_DIR", shipped)
    assert shared_model_module.load_model("default", "cpu").config.chunk_seconds == 0.48

    warnings: list[str] = []
    sink = logger.add(lambda message: warnings.append(str(message)), level="WARNING")
    monkeypatch.setattr(shared_model_module, "DEFAULT_MODEL_DIR", tmp_path / "missing")
    monkeypatch.setattr(
        shared_model_module, "TinyAudioConfig", lambda: type(tiny_config).from_dict(tiny_config.to_dict())
    )
    try:
        untrained = shared_model_module.load_model("default", "cpu")
    finally:
        logger.remove(sink)
    assert isinstance(untrained, TinyAudioModel) and not untrained.training
    assert any("no trained default weights" in w for w in warnings)


async def test_real_weights_stream_end_to_end(base_model, speech):
    stt = TinyAudioSTT(model=base_model)
    down, _ = await run_test(with_vad(stt), frames_to_send=audio_frames(utterance(speech[1])))
    assert_well_formed(down)
    stops = [f for f in down if isinstance(f, VADUserStoppedSpeakingFrame)]
    assert len(finals(down)) == len(stops) >= 1


@pytest.mark.parametrize(
    "setting",
    [
        {"max_segment_seconds": 60},
        {"max_segment_seconds": 0.5},
        {"partial_interval": 0},
        {"pre_roll_secs": -0.1},
        {"num_threads": 0},
        {"ttfs_p99_latency": -1},
        {"vad_params": VADParams(confidence=1.5)},
        {"vad_params": VADParams(stop_secs=-0.2)},
    ],
    ids=[
        "segment-60s",
        "segment-0.5s",
        "partial-0",
        "pre-roll-negative",
        "threads-0",
        "ttfs-negative",
        "vad-confidence-1.5",
        "vad-stop-negative",
    ],
)
def test_out_of_range_settings_are_refused_when_constructed(model, setting):
    name = next(iter(setting))
    with pytest.raises(ValueError, match=name):
        TinyAudioSTT(model=model, **setting)


async def test_a_decode_task_that_dies_is_a_fatal_error_not_silence(model, speech, monkeypatch):
    """E.g. no memory for a decoder: the pipeline is told at once, and audio stops piling up."""

    def decoder_that_cannot_start(*args, **kwargs):
        raise RuntimeError("not enough memory for the KV cache")

    monkeypatch.setattr(shared_model_module, "StreamingDecoder", decoder_that_cannot_start)
    stt = TinyAudioSTT(model=model)
    down, up = await run_test(with_vad(stt), frames_to_send=audio_frames(utterance(speech[0])))
    errors = [f for f in up if isinstance(f, ErrorFrame)]
    assert len(errors) == 1 and "not enough memory" in errors[0].error
    assert not stt.is_usable  # Pipecat 1.14's fatal: the worker's ProcessorUnusablePolicy decides
    assert finals(down) == []
    assert not stt._commands, "commands queued for a decode task that is gone"


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050, 44100, 48000])
async def test_an_utterance_gets_all_of_its_audio_at_any_rate(model, rate, fed):
    """The stream resampler's held-back tail (37.5 ms at 48 kHz) reaches the utterance at the stop."""
    t = np.arange(round(0.8 * rate)) / rate
    chirp = (0.05 * np.sin(2 * np.pi * (200 + 300 * t) * t) * 32767).astype("<i2")  # quiet: no VAD pause
    step = round(FRAME_SECONDS * rate)
    frames = [
        InputAudioRawFrame(audio=chirp[i : i + step].tobytes(), sample_rate=rate, num_channels=1)
        for i in range(0, chirp.size, step)
    ]
    # The stop comes right after the last frame, as from a VAD on the transport.
    sent = [VADUserStartedSpeakingFrame(), *frames, VADUserStoppedSpeakingFrame()]
    await run_test(TinyAudioSTT(model=model), frames_to_send=sent)
    (received,) = [np.concatenate(utterance) for utterance in fed if utterance]
    expected = soxr.resample(chirp, rate, 16000, quality="VHQ").astype(np.float32) / 32768
    assert received.size == expected.size
    np.testing.assert_allclose(received, expected, atol=3 / 32768)  # the stream equals the one-shot resampling


async def test_a_turn_the_vad_splits_at_a_short_pause_is_decoded_as_one_line(model, speech, fed):
    """Speech resuming 0.5 s after a VAD stop continues the turn: the new utterance is decoded after the
    last final's words; two seconds later, a new turn starts afresh."""
    audio = np.concatenate(
        [utterance(speech[0], tail=0.5), utterance(speech[1], lead=0.0, tail=2.0), utterance(speech[0], lead=0.0)]
    )
    down, _ = await run_test(with_vad(TinyAudioSTT(model=model)), frames_to_send=audio_frames(audio))
    assert_well_formed(down)
    texts = [f.text for f in finals(down)]
    contexts = [context for context, blocks in zip(fed.contexts, fed, strict=True) if blocks]
    assert len(texts) == len(contexts) == 3
    assert contexts == ["", texts[0], ""]


async def test_a_blip_between_vad_start_and_stop_gives_no_final(model, speech):
    """50 ms of sound is not an utterance: no invented final for it, and the next turn is unaffected."""
    blip = speech[0][8000:8800]
    sent = [
        VADUserStartedSpeakingFrame(),
        *audio_frames(blip),
        VADUserStoppedSpeakingFrame(),
        *audio_frames(np.zeros(8000, np.float32)),
        VADUserStartedSpeakingFrame(start_secs=0.2),
        *audio_frames(speech[0]),
        VADUserStoppedSpeakingFrame(),
    ]
    down, _ = await run_test(TinyAudioSTT(model=model), frames_to_send=sent)
    assert_well_formed(down)
    second_start = [i for i, f in enumerate(down) if isinstance(f, VADUserStartedSpeakingFrame)][1]
    assert finals(down[:second_start]) == []
    assert len(finals(down)) == 1


@pytest.mark.parametrize("word", ["no", "hi"])
async def test_a_one_word_answer_the_vad_starts_on_gets_its_final(model, say, word):
    """The VAD's start confirms its start_secs of speech; a short word may end right after it, and is an answer."""
    audio = np.concatenate([utterance(say(word), lead=lead, tail=1.0) for lead in (0.5, 0.52, 0.54, 0.56)])
    down, _ = await run_test(with_vad(TinyAudioSTT(model=model)), frames_to_send=audio_frames(audio))
    assert_well_formed(down)
    starts = [f for f in down if isinstance(f, VADUserStartedSpeakingFrame)]
    assert len(starts) == 4 and len(finals(down)) == 4


def test_min_speech_secs_is_a_setting(model):
    with pytest.raises(ValueError, match="min_speech_secs"):
        TinyAudioSTT(model=model, min_speech_secs=-1)


def test_one_checkpoint_folder_is_loaded_once_however_it_is_spelled(model, tmp_path, monkeypatch):
    model.save_pretrained(tmp_path / "ckpt")
    monkeypatch.chdir(tmp_path)
    first = TinyAudioSTT(model="ckpt")
    for spelling in ["ckpt/", "./ckpt", str(tmp_path / "ckpt"), tmp_path / "ckpt" / ".." / "ckpt"]:
        assert TinyAudioSTT(model=spelling).model is first.model

    warnings: list[str] = []
    sink = logger.add(lambda message: warnings.append(str(message)), level="WARNING")
    try:
        TinyAudioSTT(model="ckpt", num_threads=2)  # the loaded model's worker has 1 thread
    finally:
        logger.remove(sink)
    assert any("num_threads=2 is ignored" in w for w in warnings)


async def test_cancel_during_a_final_abandons_its_decode(model):
    """cancel() returns after at most one more LLM pass of the final, not after the whole decode."""
    from pipecat.pipeline.worker import PipelineWorker
    from pipecat.workers.runner import WorkerRunner

    model.config.max_new_tokens, model.config.max_tokens_per_second = 64, 100.0  # a final of many LLM steps
    t = np.arange(24000) / 16000
    hum = (0.05 * np.sin(2 * np.pi * (200 + 300 * t) * t)).astype(np.float32)  # not speech to the VAD: no preview
    loop = asyncio.get_running_loop()
    passes: list[int] = []  # LLM forward passes since the stop (the worker thread appends)
    first_pass = asyncio.Event()
    counting, stt = False, None

    def count(*_) -> None:
        if counting:
            passes.append(1)
            if len(passes) == 1 and stt is not None:
                loop.call_soon_threadsafe(first_pass.set)
                # Hold the first pass until cancel() has asked the decode to stop, however loaded the CPU.
                stt._commands.interrupt.wait(timeout=10)

    hook = model.llm.register_forward_hook(count)
    try:
        decoder = StreamingDecoder(model)
        decoder.feed(hum)
        counting = True
        decoder.finalize()
        full, counting = len(passes), False
        assert full > 10, "the final should need many LLM passes for this test to mean anything"
        passes.clear()

        # No partials and no minimum: every LLM pass after the stop is the final's.
        stt = TinyAudioSTT(model=model, partial_interval=100.0, min_speech_secs=0.0)
        worker = PipelineWorker(Pipeline([stt]), cancel_on_idle_timeout=False)
        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        running = asyncio.create_task(runner.run())
        await asyncio.sleep(0.5)  # the StartFrame reaches the service
        pcm = (hum * 32767).astype("<i2").tobytes()
        frames = [InputAudioRawFrame(pcm[i : i + 640], 16000, 1) for i in range(0, len(pcm), 640)]
        await worker.queue_frames([VADUserStartedSpeakingFrame(), *frames])
        await asyncio.sleep(0.5)
        counting = True
        await worker.queue_frame(VADUserStoppedSpeakingFrame())
        await asyncio.wait_for(first_pass.wait(), timeout=30)
        await asyncio.wait_for(worker.cancel(), timeout=30)
        await asyncio.wait_for(running, timeout=30)
        at_cancel = len(passes)
    finally:
        hook.remove()
    assert at_cancel == 1, f"cancel waited for {at_cancel} of the final's {full} LLM passes"
