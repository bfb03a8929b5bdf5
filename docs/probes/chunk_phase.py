"""Issue 12: how much the served WER depends on where the chunk grid falls in the speech.

A stream's 0.48 s chunks start wherever the VAD's pre-roll starts, so their phase against the speech is
arbitrary; offline, it is fixed by each clip's own leading silence. This probe puts ``lead`` ms of
digital silence before every clip and transcribes it offline as served (``model.transcribe``): a lead
of a whole chunk (480 ms) keeps the grid's phase, any other lead moves it.

    PYTHONPATH=. python docs/probes/chunk_phase.py --model checkpoints/recogniser --leads 0 120 240 360 480
    PYTHONPATH=. python docs/probes/chunk_phase.py --model checkpoints/recogniser --set unseen --leads 0 240

Prints one row per lead: WER overall and per voice.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
import torch
from tqdm import tqdm

from pipecat_tiny_audio.audio import SAMPLE_RATE
from trainer.checkpoint import load_model
from trainer.data import decode_utterance, load_source
from trainer.metrics import wer

SETS = {
    "dev": "../shared/eval/dev/manifest.jsonl",
    "unseen": "data/synth8k/heldout/manifest.jsonl",
    "tune": "data/tune-llm/manifest.jsonl",
    "kokoro": "data/kokoro-check/manifest.jsonl",
    "piper": "data/piper-check/heldout/manifest.jsonl",  # Piper's joe under the unseen set's noise and rooms
    "piper-clean": "data/piper-clean/heldout/manifest.jsonl",  # the same sentences, clean and dry
}


def voice_of(speaker: str | None) -> str:
    """The engine and voice without espeak's variant (``espeak:en-029+m3`` → ``espeak:en-029``)."""
    return (speaker or "?").split("+")[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--set", choices=sorted(SETS), default="dev")
    parser.add_argument("--leads", type=int, nargs="+", default=[0, 120, 240, 360, 480], help="ms of silence")
    args = parser.parse_args()

    torch.set_num_threads(1)
    model, _ = load_model(args.model)
    model.optimize_for_inference()
    utterances = load_source(SETS[args.set])
    clips = [decode_utterance(u, 30.0) for u in utterances]
    for lead in args.leads:
        silence = np.zeros(lead * SAMPLE_RATE // 1000, np.float32)
        hyps = [model.transcribe(np.concatenate([silence, clip])) for clip in tqdm(clips, desc=f"lead {lead} ms")]
        by_voice = defaultdict(lambda: ([], []))
        for utt, hyp in zip(utterances, hyps, strict=True):
            refs_v, hyps_v = by_voice[voice_of(utt.speaker)]
            refs_v.append(utt.text)
            hyps_v.append(hyp)
        voices = "  ".join(f"{v} {100 * wer(r, h):.1f}" for v, (r, h) in sorted(by_voice.items()))
        print(f"{args.set} lead {lead:4d} ms  WER {100 * wer([u.text for u in utterances], hyps):5.2f} %   {voices}")


if __name__ == "__main__":
    main()
