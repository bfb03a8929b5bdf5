"""Issue 12: Whisper base on the evaluation sets, offline, as the peer the ship bar is read against.

Each clip is transcribed whole by faster-whisper (the CTranslate2 Whisper base int8 that Pipecat's
``WhisperSTTService`` runs, from the same bundled weights, language English, its default beam search) and
scored with the trainer's metrics (Whisper's English normalizer), as ``trainer eval`` scores our model:

    PYTHONPATH=. python docs/probes/whisper_offline.py dev=../shared/eval/dev/manifest.jsonl \
        unseen=data/synth8k/heldout/manifest.jsonl

Run it with ``OMP_NUM_THREADS=1``; it uses one CPU thread.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import numpy as np
from faster_whisper import WhisperModel

from pipecat_tiny_audio.sources import WHISPER_BASE, ct2_whisper_folder
from trainer.data import decode_utterance, load_source
from trainer.metrics import cer, wer


def score_sets(peer: str, transcribe: Callable[[np.ndarray], str], sets: list[str]) -> None:
    """Print ``peer``'s WER and CER on each ``name=manifest`` of ``sets``, every clip transcribed whole."""
    if not sets or any("=" not in s for s in sets):
        raise SystemExit("give the sets as name=manifest.jsonl ...")
    for name, path in (s.split("=", 1) for s in sets):
        refs, hyps, started = [], [], time.perf_counter()
        for utterance in load_source(path):
            hyps.append(transcribe(decode_utterance(utterance, 30.0)))
            refs.append(utterance.text)
        print(
            f"{name}: {peer} WER {100 * wer(refs, hyps):.2f} % (CER {100 * cer(refs, hyps):.2f} %) "
            f"on {len(refs)} clips, {time.perf_counter() - started:.0f} s",
            flush=True,
        )


def main(sets: list[str]) -> None:
    model = WhisperModel(str(ct2_whisper_folder(WHISPER_BASE)), device="cpu", compute_type="int8", cpu_threads=1)

    def transcribe(audio: np.ndarray) -> str:
        segments, _ = model.transcribe(audio, language="en")
        return " ".join(segment.text.strip() for segment in segments)

    score_sets("Whisper base", transcribe, sets)


if __name__ == "__main__":
    main(sys.argv[1:])
