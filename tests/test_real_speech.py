"""The real-speech spot check: real recordings fetched and cut where the reader pauses."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from trainer.real_speech import ALSA_SOUNDS, RECORDINGS, build_real_check


@pytest.mark.skipif(not ALSA_SOUNDS.is_dir(), reason="needs alsa-utils' test voice")
def test_the_real_check_is_every_recording_cut_in_a_pause(tmp_path):
    rows = [json.loads(line) for line in build_real_check(tmp_path / "real").read_text().splitlines()]
    assert [row["text"] for row in rows] == [recording.text for recording in RECORDINGS]
    clips = [sf.read(tmp_path / "real" / row["audio"], dtype="float32") for row in rows]
    assert all(rate == 16000 and audio.ndim == 1 and np.abs(audio).max() > 0.05 for audio, rate in clips)
    first_part, second_part = clips[-2][0], clips[-1][0]
    assert len(first_part) == round(24.3 * 16000) and 19 < len(second_part) / 16000 < 21

    def rms(audio: np.ndarray) -> float:
        return float(np.sqrt(np.mean(audio**2)))

    # Around the cut (the last 0.2 s of the first part, the first 0.2 s of the second) the reader is silent.
    assert rms(first_part[-3200:]) < 0.1 * rms(first_part) and rms(second_part[:3200]) < 0.1 * rms(second_part)
