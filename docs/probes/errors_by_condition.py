"""Issue 12: where a served recogniser's errors are, by voice and by the corpus's augmentation.

``trainer eval`` writes one line per utterance (``errors.jsonl``); a synthesized corpus's manifest says how
each clip was made (voice, noise kind and SNR, reverberation). This joins the two and prints the WER of
each group (over the group's words, after Whisper's normalizer, as ``trainer eval`` scores):

    PYTHONPATH=. python docs/probes/errors_by_condition.py runs/eval-s8k-whole50-served/errors.jsonl \
        data/synth8k/heldout/manifest.jsonl

The real-speech check (``python -m trainer real-check``) is split by source instead (its rows' ``voice``
is ``source:file``).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from trainer.metrics import wer


def noise_band(augment: dict) -> str:
    if augment["noise"] == "none":
        return "no noise"
    return "SNR < 12 dB" if augment["snr_db"] < 12 else "SNR 12-20 dB" if augment["snr_db"] < 20 else "SNR >= 20 dB"


def condition(augment: dict) -> str:
    noisy = "noise" if augment["noise"] != "none" else "no noise"
    return f"{noisy}, {'reverb' if augment['rt60'] > 0 else 'dry'}"


GROUPINGS: dict[str, Callable[[dict], str]] = {
    "voice": lambda clip: clip["voice"].split("+")[0],
    "noise kind": lambda clip: clip["augment"]["noise"],
    "noise level": lambda clip: noise_band(clip["augment"]),
    "reverberation": lambda clip: "reverb" if clip["augment"]["rt60"] > 0 else "dry",
    "voice and condition": lambda clip: f"{clip['voice'].split('+')[0]}: {condition(clip['augment'])}",
}
RECORDED: dict[str, Callable[[dict], str]] = {"source": lambda clip: clip["voice"].split(":", 1)[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("errors", type=Path, help="errors.jsonl of `python -m trainer eval`")
    parser.add_argument("manifest", type=Path, help="the synthesized corpus's (or real-speech check's) manifest.jsonl")
    args = parser.parse_args()

    clips = {}
    for line in args.manifest.read_text().splitlines():
        row = json.loads(line)
        clips[str(args.manifest.parent / row["audio"])] = row
    scored = []
    for line in args.errors.read_text().splitlines():
        row = json.loads(line)
        key = str(Path(row["utterance"]))
        if key in clips:
            scored.append((row, clips[key]))
    if not scored:
        raise SystemExit(f"no utterance of {args.errors} is a clip of {args.manifest}")
    print(f"{len(scored)} clips of {args.manifest}")
    synthesized = all("augment" in clip for _, clip in scored)
    for name, group_of in (GROUPINGS if synthesized else RECORDED).items():
        groups: dict[str, list[dict]] = defaultdict(list)
        for row, clip in scored:
            groups[group_of(clip)].append(row)
        print(f"\nby {name}:")
        for group, rows in sorted(groups.items()):
            score = wer([r["ref"] for r in rows], [r["hyp"] for r in rows])
            print(f"  {group:48s} {len(rows):4d} clips  WER {100 * score:5.1f} %")


if __name__ == "__main__":
    main()
