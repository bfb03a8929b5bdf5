"""Training data sources: every manifest format, bad-row skipping, mixing, Hugging Face datasets."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from loguru import logger

from trainer.data import (
    SkipCounter,
    SkipReason,
    Utterance,
    decode_utterance,
    iter_decoded,
    load_audio_folder,
    load_csv_manifest,
    load_jsonl_manifest,
    load_source,
    load_transcripts_json,
    mix_sources,
    read_audio,
)


def tone(seconds: float, rate: int = 16_000, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    return np.repeat(wave[:, None], channels, axis=1) if channels > 1 else wave


def write(path: Path, seconds: float = 0.5, rate: int = 16_000, channels: int = 1, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(seconds, rate, channels), rate, **kwargs)
    return path


def decoded(utterances) -> list[tuple[str, np.ndarray]]:
    return [(utt.text, audio) for utt, audio in iter_decoded(utterances)]


# --- formats ------------------------------------------------------------------------------------


def test_jsonl_manifest_like_the_dev_set(tmp_path: Path) -> None:
    write(tmp_path / "espeak_00.flac", 1.0)
    write(tmp_path / "sub" / "flite_00.flac", 0.5, rate=8000)
    rows = [
        {"audio": "espeak_00.flac", "text": "Hello, can you hear me?", "voice": "espeak"},
        {"audio": "sub/flite_00.flac", "text": "Yes I can.", "voice": "flite", "duration": 0.5},
    ]
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    utterances = load_jsonl_manifest(tmp_path / "manifest.jsonl")

    assert [u.audio_path for u in utterances] == [tmp_path / "espeak_00.flac", tmp_path / "sub/flite_00.flac"]
    assert [u.speaker for u in utterances] == ["espeak", "flite"]
    assert utterances[1].duration == 0.5 and utterances[0].source == "manifest"
    (text0, audio0), (_, audio1) = decoded(utterances)
    assert text0 == "Hello, can you hear me?"
    assert audio0.dtype == np.float32 and audio0.shape == (16_000,)
    assert audio1.shape == (8_000,)  # 0.5 s at 8 kHz resampled to 16 kHz


def test_csv_manifest_accepts_common_column_names(tmp_path: Path) -> None:
    write(tmp_path / "clips" / "a.wav")
    write(tmp_path / "clips" / "b.ogg", format="OGG", subtype="VORBIS")
    with open(tmp_path / "train.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "transcript", "duration", "speaker"])
        writer.writerow(["clips/a.wav", "first clip", "0.5", "alice"])
        writer.writerow([str(tmp_path / "clips" / "b.ogg"), "second clip", "", ""])

    utterances = load_csv_manifest(tmp_path / "train.csv")

    assert [(u.text, u.speaker, u.duration) for u in utterances] == [
        ("first clip", "alice", 0.5),
        ("second clip", None, None),
    ]
    assert all(audio.shape == (8_000,) for _, audio in decoded(utterances))


def test_seed_transcripts_json(tmp_path: Path) -> None:
    write(tmp_path / "audio" / "0001.mp3", 1.0, rate=44_100, format="MP3")
    entries = [
        {
            "audio_path": "audio/0001.mp3",
            "text": "testing one two three",
            "duration": 1.0,
            "speaker_id": "spk1",
            "metadata": {"device": "laptop"},
        }
    ]
    (tmp_path / "transcripts.json").write_text(json.dumps(entries))

    [utt] = load_transcripts_json(tmp_path / "transcripts.json")

    assert (utt.text, utt.speaker, utt.duration) == ("testing one two three", "spk1", 1.0)
    [(_, audio)] = decoded([utt])
    assert abs(len(audio) - 16_000) < 2_000  # mp3 adds encoder padding


@pytest.mark.parametrize("text_column", ["transcription", "text"])
def test_audio_folder_with_metadata_csv(tmp_path: Path, text_column: str) -> None:
    write(tmp_path / "stereo.wav", 0.25, rate=44_100, channels=2)
    write(tmp_path / "mono.flac", 0.25)
    metadata = f"file_name,{text_column}\nstereo.wav,left and right\nmono.flac,just one\n"
    (tmp_path / "metadata.csv").write_text(metadata)

    utterances = load_audio_folder(tmp_path)

    assert [u.text for u in utterances] == ["left and right", "just one"]
    assert [a.shape for _, a in decoded(utterances)] == [(4_000,), (4_000,)]  # stereo 44.1 kHz -> mono 16 kHz


def test_load_source_guesses_the_format(tmp_path: Path) -> None:
    write(tmp_path / "a.flac")
    (tmp_path / "m.jsonl").write_text('{"audio": "a.flac", "text": "x y z"}\n')
    (tmp_path / "m.csv").write_text("audio,text\na.flac,x y z\n")
    (tmp_path / "transcripts.json").write_text('[{"audio_path": "a.flac", "text": "x y z"}]')
    (tmp_path / "metadata.csv").write_text("file_name,transcription\na.flac,x y z\n")

    for location in ["m.jsonl", "m.csv", "transcripts.json", "."]:
        [utt] = load_source(tmp_path / location)
        assert (utt.text, utt.audio_path) == ("x y z", tmp_path / "a.flac")
    with pytest.raises(ValueError, match="cannot tell the format"):
        load_source(tmp_path / "notes.txt")


def test_a_configured_source_can_keep_only_its_first_rows(tmp_path: Path) -> None:
    from trainer.train import load_utterances

    write(tmp_path / "a.flac")
    (tmp_path / "m.jsonl").write_text("".join(f'{{"audio": "a.flac", "text": "row {i}"}}\n' for i in range(5)))
    [(rows, weight)] = load_utterances([{"path": str(tmp_path / "m.jsonl"), "max_rows": 3, "weight": 2}], SkipCounter())
    assert [u.text for u in rows] == ["row 0", "row 1", "row 2"] and weight == 2.0


def test_a_source_may_skip_sentences_of_the_dev_set_instead_of_stopping_the_run(tmp_path: Path) -> None:
    from trainer.train import check_no_dev_sentences, load_utterances

    write(tmp_path / "a.flac")
    texts = ["Turn the volume down.", "row one", "turn the volume down"]
    (tmp_path / "m.jsonl").write_text("".join(f'{{"audio": "a.flac", "text": "{t}"}}\n' for t in texts))
    forbidden = {"turn the volume down"}
    skips = SkipCounter()
    [(rows, _)] = load_utterances([{"path": str(tmp_path / "m.jsonl"), "skip_dev_sentences": True}], skips, forbidden)
    assert [u.text for u in rows] == ["row one"] and skips["dev_sentence"] == 2
    check_no_dev_sentences([(rows, 1.0)], forbidden)
    leaky = load_utterances([{"path": str(tmp_path / "m.jsonl")}], SkipCounter(), forbidden)
    with pytest.raises(ValueError, match="2 dev/held-out sentence"):
        check_no_dev_sentences(leaky, forbidden)


def test_in_memory_int16_stereo_audio_is_converted() -> None:
    pcm = (tone(0.5, 48_000, channels=2) * 32767).astype(np.int16)
    audio = decode_utterance(Utterance(text="hi there", audio=pcm, sample_rate=48_000))
    assert audio.dtype == np.float32 and audio.shape == (8_000,)


def test_undecodable_by_soundfile_falls_back_to_pyav(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("av")
    mp3 = write(tmp_path / "a.mp3", 1.0, rate=22_050, format="MP3")

    def libsndfile_without_mp3(*args, **kwargs):
        raise sf.LibsndfileError(1, "Format not recognised")

    monkeypatch.setattr(sf, "read", libsndfile_without_mp3)
    audio, rate = read_audio(mp3)
    assert rate == 16_000 and audio.shape[1] == 1 and abs(len(audio) - 16_000) < 2_000


# --- bad rows -----------------------------------------------------------------------------------


def test_bad_rows_are_skipped_and_counted_per_reason(tmp_path: Path) -> None:
    write(tmp_path / "good.flac", 1.0)
    write(tmp_path / "long.flac", 3.0)
    (tmp_path / "garbage.wav").write_bytes(b"RIFF this is not a wave file at all")
    nan = tone(1.0)
    nan[100] = np.nan
    sf.write(tmp_path / "nan.wav", nan, 16_000, subtype="FLOAT")
    rows = [
        '{"audio": "good.flac", "text": "a good row"}',
        '{"audio": "missing.flac", "text": "file is gone"}',
        '{"audio": "garbage.wav", "text": "cannot decode"}',
        '{"audio": "good.flac", "text": "   "}',
        '{"audio": "long.flac", "text": "too long for max_seconds"}',
        '{"audio": "good.flac", "text": "stated duration too long", "duration": 99}',
        '{"audio": "nan.wav", "text": "not a number"}',
        '{"text": "no audio field"}',
        "{not json",
    ]
    (tmp_path / "manifest.jsonl").write_text("\n".join(rows) + "\n")
    messages: list[str] = []
    sink = logger.add(lambda m: messages.append(m.record["message"]), level="WARNING")
    try:
        skips = SkipCounter()
        utterances = load_jsonl_manifest(tmp_path / "manifest.jsonl", skips=skips)
        kept = list(iter_decoded(utterances, max_seconds=2.0, skips=skips))
    finally:
        logger.remove(sink)

    assert [utt.text for utt, _ in kept] == ["a good row"]
    assert skips.counts == {
        "missing_file": 1,
        "undecodable": 1,
        "empty_text": 1,
        "too_long": 2,
        "nan_audio": 1,
        "bad_row": 2,
    }
    assert skips[SkipReason.TOO_LONG] == 2 and skips.total == 8
    summary = messages[-1]
    assert "skipped 8 rows" in summary and "missing_file=1" in summary and "too_long=2" in summary


def test_a_no_speech_row_is_noise_whose_transcript_is_empty_on_purpose(tmp_path: Path) -> None:
    write(tmp_path / "hum.flac", 1.0)
    rows = [
        '{"audio": "hum.flac", "text": "", "no_speech": true}',
        '{"audio": "hum.flac", "no_speech": true}',
        '{"audio": "hum.flac", "text": "words in a no-speech row", "no_speech": true}',
        '{"audio": "hum.flac", "text": "", "no_speech": "yes"}',
        '{"audio": "hum.flac", "text": ""}',
    ]
    (tmp_path / "manifest.jsonl").write_text("\n".join(rows) + "\n")

    skips = SkipCounter()
    kept = list(iter_decoded(load_jsonl_manifest(tmp_path / "manifest.jsonl", skips=skips), skips=skips))

    assert [(utt.text, utt.no_speech) for utt, _ in kept] == [("", True), ("", True)]
    assert skips.counts == {"bad_row": 2, "empty_text": 1}


def test_malformed_values_and_invalid_utf8_are_counted_skips_with_their_line(tmp_path: Path) -> None:
    write(tmp_path / "good.flac", 1.0)
    lines = [
        b'{"audio": "good.flac", "text": "a good row"}',
        b'{"audio": "good.flac", "text": "a list as duration", "duration": [1]}',
        b'{"audio": "good.flac", "text": "caf\xe9 in latin-1"}',
        b'{"audio": "good.flac", "text": {"nested": "object"}}',
        b"[1, 2, 3]",
        b'{"audio": "good.flac", "text": "the last good row", "duration": "1.0"}',
    ]
    (tmp_path / "manifest.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (tmp_path / "manifest.csv").write_bytes(
        b"audio,text,duration\ngood.flac,fine,1.0\ngood.flac,caf\xe9,1.0\ngood.flac,bad duration,one second\n"
    )
    messages: list[str] = []
    sink = logger.add(lambda m: messages.append(m.record["message"]), level="DEBUG")
    try:
        skips = SkipCounter()
        jsonl = load_jsonl_manifest(tmp_path / "manifest.jsonl", skips=skips)
        rows = load_csv_manifest(tmp_path / "manifest.csv", skips=skips)
    finally:
        logger.remove(sink)
    assert [u.text for u in jsonl] == ["a good row", "the last good row"]
    assert [u.text for u in rows] == ["fine"]
    assert skips.counts == {"bad_row": 6}
    for line in ["manifest.jsonl:2", "manifest.jsonl:3", "manifest.jsonl:4", "manifest.jsonl:5", "manifest.csv:3"]:
        assert any(line in m for m in messages), f"no skip message names {line}"


@pytest.mark.parametrize("frames", [0, 1], ids=["header-only", "one-sample"])
def test_a_wav_without_a_frame_of_audio_is_empty_audio(tmp_path: Path, frames: int) -> None:
    sf.write(tmp_path / "short.wav", np.full(frames, 0.5, np.float32), 16_000)
    skips = SkipCounter()
    assert list(iter_decoded([Utterance("hello", tmp_path / "short.wav")], skips=skips)) == []
    assert skips.counts == {"empty_audio": 1}


def test_iteration_never_raises_on_a_bad_row_in_the_middle(tmp_path: Path) -> None:
    good = write(tmp_path / "good.wav")
    utterances = [Utterance("one", good), Utterance("two", tmp_path / "gone.wav"), Utterance("three", good)]
    skips = SkipCounter()
    assert [u.text for u, _ in iter_decoded(utterances, skips=skips)] == ["one", "three"]
    assert skips.summary() == "skipped 1 rows: missing_file=1"


# --- mixing -------------------------------------------------------------------------------------


def in_memory(name: str, n: int) -> list[Utterance]:
    return [Utterance(f"{name} {i}", audio=np.zeros(320, np.float32), source=name) for i in range(n)]


def test_mixing_follows_the_weights_and_is_seeded() -> None:
    big, small = in_memory("big", 100), in_memory("small", 10)

    mixed = mix_sources([(big, 3.0), (small, 1.0)], num_samples=4_000, seed=7)

    counts = Counter(utt.source for utt in mixed)
    assert len(mixed) == 4_000
    assert 0.72 < counts["big"] / 4_000 < 0.78
    # the small source is cycled through evenly rather than sampled with replacement
    per_row = Counter(utt.text for utt in mixed if utt.source == "small")
    assert len(per_row) == 10 and max(per_row.values()) - min(per_row.values()) <= 1

    def first_texts(seed: int) -> list[str]:
        return [u.text for u in mix_sources([(big, 3.0), (small, 1.0)], num_samples=4_000, seed=seed)[:50]]

    assert first_texts(7) == [u.text for u in mixed[:50]]
    assert first_texts(8) != first_texts(7)


def test_mixing_defaults_to_one_pass_and_drops_empty_sources() -> None:
    mixed = mix_sources([(in_memory("a", 5), 1.0), ([], 2.0), (in_memory("b", 7), 1.0)])
    assert len(mixed) == 12 and {u.source for u in mixed} == {"a", "b"}
    with pytest.raises(ValueError):
        mix_sources([([], 1.0)])


# --- Hugging Face datasets ----------------------------------------------------------------------


def test_hugging_face_dataset_saved_to_disk(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    flac = write(tmp_path / "a.flac", 0.5)
    write(tmp_path / "b.wav", 0.25, rate=8_000)
    table = datasets.Dataset.from_dict(
        {
            "audio": [
                {"bytes": flac.read_bytes(), "path": "a.flac"},  # how hub datasets embed audio
                {"bytes": None, "path": str(tmp_path / "b.wav")},  # how local ones refer to files
            ],
            "sentence": ["from bytes", "from a path"],
            "client_id": ["u1", "u2"],
        }
    ).cast_column("audio", datasets.Audio(sampling_rate=16_000))  # the feature type hub datasets carry
    datasets.DatasetDict({"train": table, "test": table.select([0])}).save_to_disk(str(tmp_path / "hf"))

    source = load_source(tmp_path / "hf", split="train")

    assert len(source) == 2
    assert [(u.text, u.speaker) for u in source] == [("from bytes", "u1"), ("from a path", "u2")]
    assert [a.shape for _, a in decoded(source)] == [(8_000,), (4_000,)]
    assert len(load_source(tmp_path / "hf", split="test")) == 1
    mixed = mix_sources([(source, 1.0), (in_memory("other", 2), 1.0)], num_samples=6, seed=0)
    assert len(list(iter_decoded(mixed))) == 6
