"""Issue 12: how much of the streamed-vs-offline WER gap the VAD's segmentation costs, and which settings close it.

Streamed through the benchmark's pipeline (``VADProcessor(Silero, stop_secs=0.2) → TinyAudioSTT``), the
committed recogniser scores a couple of points worse on dev than the same clips transcribed whole. A
stream's final transcribes exactly what the service's :class:`~pipecat_tiny_audio.vad_router.VadRouter`
passed to its decoder between a VAD start and stop (``model.transcribe`` of that audio is the streamed
final, see README *Two readings*), so the gap is the segmentation's: a turn split at a short pause, a first
syllable before the pre-roll, a last one inside the closing pause. This probe replays the benchmark's stream
(0.5 s of silence or each of ``--leads``, the clip, 1 s of silence, in 20 ms frames, one continuous stream)
through Pipecat's Silero VAD and the real router, with no clock, and transcribes each segment as the service
would (an utterance that continues a turn the VAD split is decoded after the turn's earlier finals, unless
``--no-context``):

    PYTHONPATH=. python docs/probes/stream_segments.py --model checkpoints/recogniser \\
        --pre-roll 0.3 0.6 --stop-secs 0.2 0.5
    PYTHONPATH=. python docs/probes/stream_segments.py --pre-roll 0.6 --leads 0.5 0.52 0.54 0.56 0.58
    PYTHONPATH=. python docs/probes/stream_segments.py --manifest data/no-speech/heldout/manifest.jsonl \\
        --pre-roll 0.6 --min-speech 0.25     # noise alone: words written per minute (and again at 0.2)

It prints, per setting, the segments, WER and CER of the turns' joined finals, and the offline WER of the
whole clips (``--transcripts`` keeps each clip's texts). Timing is not simulated: latency is the benchmark's.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from loguru import logger
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams, VADState
from tqdm import tqdm

from benchmarks.streaming import DEV_SET, FRAME, LEAD_SILENCE, MIN_GAP, load_clips
from pipecat_tiny_audio.audio import SAMPLE_RATE
from pipecat_tiny_audio.commands import Audio, Start, Stop
from pipecat_tiny_audio.shared_model import load_model
from pipecat_tiny_audio.streaming import StreamingDecoder
from pipecat_tiny_audio.vad_router import VadRouter
from trainer.metrics import cer, wer


@dataclass
class Utterance:
    """What the service's decoder receives between a Start and a Stop."""

    audio: np.ndarray
    enough_speech: bool
    continues: bool  # it began moments after the last one stopped: the same turn


class Segments:
    """Collects the router's commands into one :class:`Utterance` each."""

    def __init__(self) -> None:
        self.done: list[Utterance] = []
        self._audio: list[np.ndarray] = []
        self._continues = False

    def send(self, command) -> None:
        if isinstance(command, Start):
            self._audio, self._continues = [], command.continues
        elif isinstance(command, Audio):
            self._audio.append(command.samples)
        elif isinstance(command, Stop):
            samples = np.concatenate(self._audio) if self._audio else np.zeros(0, np.float32)
            self.done.append(Utterance(samples, command.enough_speech, self._continues))


def transcribe_turn(decoder: StreamingDecoder, utterances: list[Utterance], context: bool) -> str:
    """The finals the service would send for one clip's utterances, joined; with ``context``, an utterance
    that continues the turn is decoded after its earlier finals, as the service does (``TurnState.said``)."""
    finals, said = [], ""
    for utterance in utterances:
        said = said if context and utterance.continues else ""
        if utterance.enough_speech and utterance.audio.size:
            decoder.reset(context=said)
            decoder.feed(utterance.audio)
            finals.append(decoder.finalize())
            said = f"{said} {finals[-1]}".strip()
    return " ".join(text for text in finals if text)


async def segment(
    clips: list[bytes], params: VADParams, pre_roll: float, lead: float, min_speech: float
) -> list[list[Utterance]]:
    """Each clip's utterances as the service receives them behind an upstream ``VADProcessor(params)``, each
    clip after ``lead`` seconds of silence."""
    upstream = SileroVADAnalyzer(sample_rate=SAMPLE_RATE, params=params)
    upstream.set_sample_rate(SAMPLE_RATE)
    segments = Segments()
    router = VadRouter(segments, None, pre_roll, min_speech)
    router.follow_upstream(params)  # the SpeechControlParamsFrame the VADProcessor sends at start
    step = round(FRAME * SAMPLE_RATE) * 2
    silence = bytes(step)
    state, per_clip = VADState.QUIET, []
    for pcm in clips:
        before = len(segments.done)
        stream = [silence] * round(lead / FRAME)
        stream += [pcm[i : i + step].ljust(step, b"\0") for i in range(0, len(pcm), step)]
        stream += [silence] * round(MIN_GAP / FRAME)
        for frame in stream:
            await router.process(frame)  # the VADProcessor passes the audio on before it analyses it
            new = await upstream.analyze_audio(frame)
            if new != state and new in (VADState.SPEAKING, VADState.QUIET):
                state = new
                if new == VADState.SPEAKING and not router.in_utterance:
                    router.begin(params.start_secs)
                elif new == VADState.QUIET:
                    router.end("user")
        per_clip.append(segments.done[before:])
    await upstream.cleanup()
    await router.cleanup()
    return per_clip


def score(refs: list[str], hyps: list[str], seconds: float) -> tuple[float, str]:
    """WER and a printable WER (CER); for a set of noise clips (no reference words), words written per minute."""
    if not any(ref.strip() for ref in refs):
        words = sum(len(hyp.split()) for hyp in hyps)
        return words, f"{words} words written on {seconds:.0f} s of noise ({60 * words / seconds:.2f} per minute)"
    error = wer(refs, hyps)
    return error, f"WER {100 * error:.2f} % (CER {100 * cer(refs, hyps):.2f} %)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="checkpoints/recogniser")
    parser.add_argument("--manifest", type=Path, default=DEV_SET / "manifest.jsonl")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--pre-roll", type=float, nargs="+", default=[0.3], help="TinyAudioSTT pre_roll_secs")
    parser.add_argument("--stop-secs", type=float, nargs="+", default=[0.2], help="the upstream VAD's stop_secs")
    parser.add_argument(
        "--leads",
        type=float,
        nargs="+",
        default=[LEAD_SILENCE],
        help="seconds of silence before each clip: several move the clips' phase against the VAD's windows and "
        "the recogniser's blocks (the live benchmark's phase varies), and print the mean over them",
    )
    parser.add_argument("--min-speech", type=float, default=0.2, help="TinyAudioSTT min_speech_secs")
    parser.add_argument("--transcripts", type=Path, help="write each clip's reference, offline and streamed text")
    parser.add_argument(
        "--no-context", action="store_true", help="decode every utterance on its own, as before session 23"
    )
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    torch.set_num_threads(1)
    model = load_model(args.model, "cpu")
    clips = load_clips(args.limit, args.manifest)
    refs = [c["text"] for c in clips]
    pcm = [c["pcm"] for c in clips]
    offline = [model.transcribe(p) for p in tqdm(pcm, desc="offline")]
    decoder = StreamingDecoder(model)
    seconds = sum(len(p) for p in pcm) / 2 / SAMPLE_RATE
    print(f"offline, whole clips: {score(refs, offline, seconds)[1]}")
    rows = []
    for pre_roll, stop_secs in itertools.product(args.pre_roll, args.stop_secs):
        errors = []
        for lead in args.leads:
            per_clip = asyncio.run(segment(pcm, VADParams(stop_secs=stop_secs), pre_roll, lead, args.min_speech))
            hyps = [
                transcribe_turn(decoder, utterances, not args.no_context)
                for utterances in tqdm(per_clip, desc=f"pre-roll {pre_roll} s, stop {stop_secs} s, lead {lead} s")
            ]
            n = sum(map(len, per_clip))
            continuing = sum(u.continues for utterances in per_clip for u in utterances)
            error, printed = score(refs, hyps, seconds)
            errors.append(error)
            print(
                f"pre-roll {pre_roll:.2f} s, upstream stop_secs {stop_secs:.2f} s, lead {lead:.2f} s: {n} segments "
                f"({continuing} continuing a turn), {printed}",
                flush=True,
            )
            rows.append(
                {
                    "pre_roll": pre_roll,
                    "stop_secs": stop_secs,
                    "lead": lead,
                    "hyps": hyps,
                    "segments": list(map(len, per_clip)),
                }
            )
        if len(errors) > 1 and any(ref.strip() for ref in refs):
            print(
                f"pre-roll {pre_roll:.2f} s, upstream stop_secs {stop_secs:.2f} s: mean WER over the leads "
                f"{100 * np.mean(errors):.2f} %",
                flush=True,
            )
    if args.transcripts:
        args.transcripts.write_text(json.dumps({"refs": refs, "offline": offline, "streamed": rows}) + "\n")


if __name__ == "__main__":
    main()
