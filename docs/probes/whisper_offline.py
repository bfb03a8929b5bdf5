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

from faster_whisper import WhisperModel

from pipecat_tiny_audio.sources import WHISPER_BASE, ct2_whisper_folder
from trainer.data import decode_utterance, load_source
from trainer.metrics import cer, wer


def main(sets: list[str]) -> None:
    if not sets or any("=" not in s for s in sets):
        raise SystemExit(__doc__)
    model = WhisperModel(str(ct2_whisper_folder(WHISPER_BASE)), device="cpu", compute_type="int8", cpu_threads=1)
    for name, path in (s.split("=", 1) for s in sets):
        refs, hyps, started = [], [], time.perf_counter()
        for utterance in load_source(path):
            segments, _ = model.transcribe(decode_utterance(utterance, 30.0), language="en")
            hyps.append(" ".join(segment.text.strip() for segment in segments))
            refs.append(utterance.text)
        print(
            f"{name}: Whisper base WER {100 * wer(refs, hyps):.2f} % (CER {100 * cer(refs, hyps):.2f} %) "
            f"on {len(refs)} clips, {time.perf_counter() - started:.0f} s",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
