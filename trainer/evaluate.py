"""``python -m trainer eval``: WER/CER per data source through the model's own ``transcribe``.

Evaluation decodes audio files exactly as a user would (``TinyAudioModel.transcribe``: audio →
library features → greedy LLM decoding), not cached training features, so its numbers are the
model's. ``--ctc`` reads the recogniser's own CTC head instead, from the same library features.
Writes ``results.json`` (per source and overall, and per speaker of a source whose rows name
one: a voice the model has not learnt shows there) and ``errors.jsonl`` (one line per utterance
with speaker, reference, hypothesis and WER, and the second model's when comparing). Clips of noise
alone (manifest rows with ``"no_speech": true``, ``python -m trainer synth --no-speech``) are scored by
the words written into them, per minute of noise, and left out of the WER.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from loguru import logger
from tqdm import tqdm

from pipecat_tiny_audio import SAMPLE_RATE, TinyAudioModel
from pipecat_tiny_audio.audio import MIN_SAMPLES
from trainer.ctc import character_greedy_decode
from trainer.data import SkipCounter, iter_decoded, load_source
from trainer.metrics import cer, normalize, wer
from trainer.text_corpus import DEV_SENTENCES_PATH

DEFAULT_EVAL_DATA = DEV_SENTENCES_PATH.parent / "dev" / "manifest.jsonl"


def _scores(rows: list[dict[str, Any]], hyp_key: str) -> dict[str, float]:
    """WER/CER of the spoken rows; words written per minute of the no-speech rows (and in how many)."""
    spoken = [r for r in rows if not r["no_speech"]]
    refs, hyps = [r["ref"] for r in spoken], [r[hyp_key] for r in spoken]
    scores = {"wer": wer(refs, hyps), "cer": cer(refs, hyps)} if spoken else {}
    quiet = [r for r in rows if r["no_speech"]]
    if quiet:
        words = [len(normalize(r[hyp_key]).split()) for r in quiet]
        minutes = sum(r["seconds"] for r in quiet) / 60
        scores |= {
            "no_speech_words_per_minute": sum(words) / minutes,
            "no_speech_clips_with_text": sum(w > 0 for w in words),
        }
    return scores


def _summary(scores: dict[str, Any], prefix: str = "") -> str:
    parts = []
    if f"{prefix}wer" in scores:
        parts.append(f"WER {100 * scores[f'{prefix}wer']:.2f}%  CER {100 * scores[f'{prefix}cer']:.2f}%")
    if f"{prefix}no_speech_words_per_minute" in scores:
        parts.append(
            f"{scores[f'{prefix}no_speech_words_per_minute']:.2f} words/min of noise "
            f"({scores[f'{prefix}no_speech_clips_with_text']} clips with text)"
        )
    return "  ".join(parts)


def _utterance_wer(ref: str, hyp: str) -> float:
    """WER of one utterance; an empty reference scores 1.0 for any output and 0.0 for none."""
    return wer([ref], [hyp]) if normalize(ref) else float(bool(normalize(hyp)))


def ctc_transcriber(model: TinyAudioModel) -> Callable[[np.ndarray], str]:
    """The recogniser's own greedy CTC transcript of 16 kHz audio, no LLM: how a recogniser checkpoint scores.

    Raises ValueError for a projector without a CTC head.
    """
    if model.projector.vocabulary is None:
        raise ValueError(f"--ctc: the {model.config.projector_type} projector has no CTC head to read")

    def transcribe(samples: np.ndarray) -> str:
        if samples.size < MIN_SAMPLES:
            return ""
        return character_greedy_decode(model.projector, [model.encode(samples)])[0]

    return transcribe


def evaluate(
    model: TinyAudioModel,
    data: Sequence[str | Path],
    out_dir: str | Path | None = None,
    compare: TinyAudioModel | None = None,
    max_utterances: int = 0,
    max_seconds: float = 30.0,
    ctc: bool = False,
) -> dict[str, Any]:
    """WER/CER per source and ``"overall"`` (fractions, not %), plus the second model's.

    ``data`` items are paths or ``name=path``. Each result is ``{"wer", "cer", "utterances",
    "audio_seconds", "rtf"}``, with ``compare_wer``/``compare_cer`` when ``compare`` is given; a source with
    no-speech clips has ``no_speech_words_per_minute`` and ``no_speech_clips_with_text`` (and no WER when
    it has nothing else).
    ``ctc`` scores the projector's CTC head (:func:`ctc_transcriber`) instead of the LLM's transcript.
    """
    transcribe = ctc_transcriber(model) if ctc else model.transcribe
    transcribe_compare = None if compare is None else ctc_transcriber(compare) if ctc else compare.transcribe
    skips = SkipCounter()
    rows: list[dict[str, Any]] = []
    for item in data:
        name, sep, location = str(item).partition("=")
        if not sep or "/" in name:  # plain path, not name=path
            name, location = None, str(item)
        utterances = load_source(location, name=name, skips=skips)
        if max_utterances > 0:
            utterances = utterances[:max_utterances]
        for utt, samples in tqdm(iter_decoded(utterances, max_seconds, skips), total=len(utterances), desc="eval"):
            started = time.perf_counter()
            row = {"source": utt.source, "utterance": utt.key, "speaker": utt.speaker, "ref": utt.text}
            row["no_speech"] = utt.no_speech
            row["hyp"] = transcribe(samples)
            row["seconds"], row["compute_s"] = samples.size / SAMPLE_RATE, time.perf_counter() - started
            if compare is not None:
                row["compare_hyp"] = transcribe_compare(samples)
            rows.append(row)
    if not rows:
        raise ValueError(f"no usable utterances in {list(map(str, data))} ({skips.summary()})")
    results: dict[str, Any] = {}
    for source in [*dict.fromkeys(r["source"] for r in rows), "overall"]:
        subset = [r for r in rows if source in ("overall", r["source"])]
        seconds = sum(r["seconds"] for r in subset)
        results[source] = {
            **_scores(subset, "hyp"),
            "utterances": len(subset),
            "audio_seconds": seconds,
            "rtf": sum(r["compute_s"] for r in subset) / seconds,
        }
        if compare is not None:
            results[source].update({f"compare_{k}": v for k, v in _scores(subset, "compare_hyp").items()})
        by_speaker: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in subset if source != "overall" else []:
            if r["speaker"] is not None:
                by_speaker[r["speaker"]].append(r)
        if by_speaker:
            results[source]["speakers"] = {
                speaker: {**_scores(spoken, "hyp"), "utterances": len(spoken)}
                for speaker, spoken in sorted(by_speaker.items())
            }
    results["skipped"] = dict(skips.counts)
    for source, r in results.items():
        if source != "skipped":
            versus = f"  (compare: {_summary(r, 'compare_')})" if compare is not None else ""
            logger.info(f"{source}: {_summary(r)}  n={r['utterances']}{versus}")
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(results, indent=2))
        with (out / "errors.jsonl").open("w") as f:
            for r in rows:
                r["wer"] = _utterance_wer(r["ref"], r["hyp"])
                if compare is not None:
                    r["compare_wer"] = _utterance_wer(r["ref"], r["compare_hyp"])
                f.write(json.dumps(r) + "\n")
        logger.info(f"wrote {out / 'results.json'} and {out / 'errors.jsonl'}")
    return results
