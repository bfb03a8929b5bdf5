"""Training and evaluation data: manifests, audio folders and Hugging Face datasets.

Every input format becomes the same :class:`Utterance` rows up front, so training and evaluation have
one code path. Audio is decoded late (``iter_decoded``) and every row that cannot be used is skipped
and counted per reason, because one broken file among 30,000 must not end a run that has been going
for hours.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, overload

import numpy as np
import soundfile as sf
from loguru import logger

from pipecat_tiny_audio.audio import MIN_SAMPLES, SAMPLE_RATE, AudioInputError, to_model_audio

AUDIO_KEYS = ("audio", "audio_path", "audio_filepath", "path", "file", "file_name")
TEXT_KEYS = ("text", "transcript", "transcription", "sentence", "normalized_text")
SPEAKER_KEYS = ("speaker", "speaker_id", "voice", "client_id")
DURATION_KEYS = ("duration", "duration_s")
DEFAULT_MAX_SECONDS = 30.0  # the Whisper encoder's window


class SkipReason(StrEnum):
    """Why a row was left out; the values are what the log and ``SkipCounter.counts`` show."""

    BAD_ROW = "bad_row"  # a malformed manifest row: not an object, no audio field, a bad value, invalid UTF-8
    EMPTY_TEXT = "empty_text"
    MISSING_FILE = "missing_file"
    UNDECODABLE = "undecodable"
    TOO_LONG = "too_long"
    NAN_AUDIO = "nan_audio"  # NaN or Inf samples
    EMPTY_AUDIO = "empty_audio"  # no samples, or less than one 20 ms encoder frame
    DEV_SENTENCE = "dev_sentence"  # a dev/held-out sentence in a source configured to skip them


@dataclass
class Utterance:
    """One transcribed recording: a file on disk, encoded file bytes, or samples in memory."""

    text: str
    audio_path: Path | None = None
    audio: np.ndarray | None = None  # samples, (n,) or (n, channels), at ``sample_rate``
    sample_rate: int = SAMPLE_RATE
    audio_bytes: bytes | None = None  # an encoded file (wav/flac/mp3/ogg), as Hugging Face datasets hold them
    duration: float | None = None  # seconds, when the source states it (lets too-long rows skip decoding)
    speaker: str | None = None
    source: str = ""
    uid: str | None = None
    no_speech: bool = False  # noise or silence only: the empty transcript is the label, not a missing one

    @property
    def lacks_transcript(self) -> bool:
        """No text and not a no-speech clip: a row that cannot be trained or scored."""
        return not self.no_speech and not self.text.strip()

    @property
    def key(self) -> str:
        """A stable name for logs and per-utterance error files."""
        return self.uid or (str(self.audio_path) if self.audio_path else f"{self.source}:{self.text[:40]}")


class SkipUtterance(Exception):
    """Raised by :func:`decode_utterance` for a row that cannot be used."""

    def __init__(self, reason: SkipReason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail


class SkipCounter:
    """Counts skipped rows per reason; the first row of each reason is logged with its detail."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def record(self, reason: SkipReason, what: str = "", detail: str = "") -> None:
        self.counts[reason.value] += 1
        message = f"skipping {what or 'row'}: {reason.value}" + (f" ({detail})" if detail else "")
        if self.counts[reason.value] == 1:
            logger.warning(message + " - further rows skipped for this reason are logged at debug level")
        else:
            logger.debug(message)

    def __getitem__(self, reason: SkipReason | str) -> int:
        return self.counts[str(reason)]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        if not self.total:
            return "no rows skipped"
        reasons = ", ".join(f"{reason}={count}" for reason, count in sorted(self.counts.items()))
        return f"skipped {self.total} rows: {reasons}"

    def log_summary(self, context: str = "") -> None:
        if self.total:
            logger.warning(f"{context}: {self.summary()}" if context else self.summary())


# --- audio decoding -----------------------------------------------------------------------------


def read_audio(source: Path | str | bytes) -> tuple[np.ndarray, int]:
    """Decodes a wav/flac/mp3/ogg file or its bytes into float32 ``(frames, channels)`` and its rate.

    soundfile (libsndfile) handles all four formats; PyAV, when installed (Pipecat's WebRTC and
    Whisper extras bring it), is the fallback for the MP3/AAC variants libsndfile rejects.
    """
    try:
        data, rate = sf.read(
            io.BytesIO(source) if isinstance(source, bytes) else source, dtype="float32", always_2d=True
        )
        return data, int(rate)
    except Exception as sf_error:
        try:
            return _read_with_av(source), SAMPLE_RATE
        except ImportError:
            raise sf_error from None


def _read_with_av(source: Path | str | bytes) -> np.ndarray:
    import av  # optional: only reached for files libsndfile cannot read

    chunks: list[np.ndarray] = []
    with av.open(io.BytesIO(source) if isinstance(source, bytes) else str(source)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        for frame in container.decode(audio=0):
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
        chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    return samples.reshape(-1, 1)


def decode_utterance(utt: Utterance, max_seconds: float = DEFAULT_MAX_SECONDS) -> np.ndarray:
    """16 kHz mono float32 samples for ``utt``; raises :class:`SkipUtterance` saying why it is unusable.

    Cheap checks come first (text, file presence, stated duration) so bad rows cost no decoding.
    """
    if utt.lacks_transcript:
        raise SkipUtterance(SkipReason.EMPTY_TEXT)
    if utt.duration is not None and utt.duration > max_seconds:
        raise SkipUtterance(SkipReason.TOO_LONG, f"{utt.duration:.1f} s > {max_seconds:g} s")
    if utt.audio is not None:
        data, rate = np.asarray(utt.audio), utt.sample_rate
    else:
        source: Path | bytes
        if utt.audio_bytes is not None:
            source = utt.audio_bytes
        elif utt.audio_path is not None:
            if not utt.audio_path.is_file():
                raise SkipUtterance(SkipReason.MISSING_FILE, str(utt.audio_path))
            _check_header_duration(utt.audio_path, max_seconds)
            source = utt.audio_path
        else:
            raise SkipUtterance(SkipReason.BAD_ROW, "no audio")
        try:
            data, rate = read_audio(source)
        except Exception as exc:  # any decoder failure is a property of the file, not of the run
            raise SkipUtterance(SkipReason.UNDECODABLE, f"{type(exc).__name__}: {exc}") from exc
    if data.size and data.shape[0] / rate > max_seconds:
        raise SkipUtterance(SkipReason.TOO_LONG, f"{data.shape[0] / rate:.1f} s > {max_seconds:g} s")
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise SkipUtterance(SkipReason.NAN_AUDIO)
    try:
        samples = to_model_audio(data, int(rate))
    except AudioInputError as exc:
        raise SkipUtterance(SkipReason.UNDECODABLE, str(exc)) from exc
    if samples.size < MIN_SAMPLES:
        raise SkipUtterance(SkipReason.EMPTY_AUDIO, f"{samples.size} samples at 16 kHz")
    return samples


def _check_header_duration(path: Path, max_seconds: float) -> None:
    """Rejects a too-long file from its header, before decoding an hour of audio to throw it away."""
    try:
        seconds = sf.info(str(path)).duration
    except Exception:  # not readable by libsndfile: decoding decides
        return
    if seconds > max_seconds:
        raise SkipUtterance(SkipReason.TOO_LONG, f"{seconds:.1f} s > {max_seconds:g} s")


def iter_decoded(
    utterances: Iterable[Utterance],
    max_seconds: float = DEFAULT_MAX_SECONDS,
    skips: SkipCounter | None = None,
) -> Iterator[tuple[Utterance, np.ndarray]]:
    """Yields ``(utterance, 16 kHz mono samples)`` for every usable row, skipping and counting the rest.

    The per-reason summary is logged when iteration ends (also when the consumer stops early).
    """
    skips = skips if skips is not None else SkipCounter()
    try:
        for utt in utterances:
            try:
                samples = decode_utterance(utt, max_seconds)
            except SkipUtterance as skip:
                skips.record(skip.reason, utt.key, skip.detail)
                continue
            yield utt, samples
    finally:
        skips.log_summary("decoding")


# --- manifest formats ---------------------------------------------------------------------------


def _first(row: Mapping[str, Any], keys: Sequence[str]) -> Any:
    return next((row[k] for k in keys if row.get(k) not in (None, "")), None)


def _row_problem(row: Any) -> str | None:
    """What makes a manifest row unusable, or None."""
    if not isinstance(row, Mapping):
        return f"expected an object, got {str(row)[:80]}"
    if not isinstance(_first(row, AUDIO_KEYS), str | Path):
        return f"no audio path in {str(row)[:80]}"
    text = _first(row, TEXT_KEYS)
    if text is not None and not isinstance(text, str | int | float):
        return f"text is not a string: {text!r:.80}"
    if row.get("no_speech", False) not in (True, False):
        return f"no_speech is not true or false: {row['no_speech']!r:.80}"
    if row.get("no_speech") and str(text or "").strip():
        return f"a no_speech row has text: {text!r:.80}"
    duration = _first(row, DURATION_KEYS)
    if duration is not None:
        try:
            float(duration)
        except (TypeError, ValueError):
            return f"duration is not a number: {duration!r:.80}"
    if any("\udc80" <= c <= "\udcff" for value in row.values() if isinstance(value, str) for c in value):
        return "invalid UTF-8"  # a CSV read with errors="surrogateescape"
    return None


def utterance_from_row(
    row: Any, base_dir: Path, source: str, skips: SkipCounter | None = None, where: str | None = None
) -> Utterance | None:
    """Maps one manifest row (any of the accepted column names) to an Utterance; None for a bad row.

    A malformed row is counted as ``bad_row`` under ``where`` (``file:line``), never raised.
    """
    problem = _row_problem(row)
    if problem is not None:
        if skips is not None:
            skips.record(SkipReason.BAD_ROW, where or source, problem)
        return None
    path = Path(_first(row, AUDIO_KEYS)).expanduser()
    duration = _first(row, DURATION_KEYS)
    speaker = _first(row, SPEAKER_KEYS)
    duration = float(duration) if duration is not None else None
    return Utterance(
        text=str(_first(row, TEXT_KEYS) or "").strip(),
        audio_path=path if path.is_absolute() else base_dir / path,
        duration=duration if duration is not None and math.isfinite(duration) else None,
        speaker=str(speaker) if speaker is not None else None,
        source=source,
        no_speech=bool(row.get("no_speech", False)),
    )


def _rows_to_utterances(
    rows: Iterable[tuple[str, Any]], base_dir: Path, source: str, skips: SkipCounter | None
) -> list[Utterance]:
    """``(where, row)`` pairs → utterances; ``where`` names the row's line in skip messages."""
    counter = skips if skips is not None else SkipCounter()
    utterances = [
        u for where, row in rows if (u := utterance_from_row(row, base_dir, source, counter, where)) is not None
    ]
    if skips is None:
        counter.log_summary(source)
    logger.info(f"{source}: {len(utterances)} utterances")
    return utterances


def load_jsonl_manifest(
    path: Path | str, source: str | None = None, skips: SkipCounter | None = None
) -> list[Utterance]:
    """One JSON object per line (``{"audio": "a.flac", "text": ..., "voice": ...}`` like the dev set).

    Relative audio paths are resolved against the manifest's folder; unparsable lines (bad JSON,
    invalid UTF-8) count as bad rows with their line number.
    """
    path = Path(path)
    counter = skips if skips is not None else SkipCounter()
    rows: list[tuple[str, Any]] = []
    for number, raw in enumerate(path.read_bytes().splitlines(), 1):
        where = f"{path}:{number}"
        try:
            line = raw.decode("utf-8")
            if line.strip():
                rows.append((where, json.loads(line)))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            counter.record(SkipReason.BAD_ROW, where, str(exc))
    result = _rows_to_utterances(rows, path.parent, source or path.stem, counter)
    if skips is None:
        counter.log_summary(str(path))
    return result


def load_csv_manifest(path: Path | str, source: str | None = None, skips: SkipCounter | None = None) -> list[Utterance]:
    """A CSV with a header: audio/audio_path/path column, text/transcript/sentence column, optional
    duration and speaker. Relative paths are resolved against the CSV's folder."""
    path = Path(path)
    # Invalid UTF-8 is kept as surrogates, so the row it is in (not the whole file) is skipped.
    with path.open(newline="", encoding="utf-8", errors="surrogateescape") as f:
        reader = csv.DictReader(f)
        rows = [(f"{path}:{reader.line_num}", {k.strip().lower(): v for k, v in row.items() if k}) for row in reader]
    return _rows_to_utterances(rows, path.parent, source or path.stem, skips)


def load_transcripts_json(
    path: Path | str, source: str | None = None, skips: SkipCounter | None = None
) -> list[Utterance]:
    """The seed project's ``transcripts.json``: a JSON list of
    ``{"audio_path", "text", "duration", "speaker_id", "metadata"}`` objects."""
    path = Path(path)
    rows = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a JSON list of utterances, got {type(rows).__name__}")
    return _rows_to_utterances(
        ((f"{path}[{i}]", row) for i, row in enumerate(rows)), path.parent, source or path.stem, skips
    )


def load_audio_folder(
    folder: Path | str, source: str | None = None, skips: SkipCounter | None = None
) -> list[Utterance]:
    """A folder with ``metadata.csv`` (``file_name,transcription`` or ``file_name,text``), the Hugging
    Face "audiofolder" convention, read directly so it needs no ``datasets``."""
    folder = Path(folder)
    metadata = folder / "metadata.csv"
    if not metadata.is_file():
        raise FileNotFoundError(f"{folder} has no metadata.csv (expected columns file_name,transcription)")
    return load_csv_manifest(metadata, source or folder.name, skips)


class _UtteranceRows(Sequence[Utterance]):
    """A sequence of utterances indexed by row; subclasses implement ``_row`` for 0 <= index < len."""

    def _row(self, index: int) -> Utterance:
        raise NotImplementedError

    @overload
    def __getitem__(self, index: int) -> Utterance: ...
    @overload
    def __getitem__(self, index: slice) -> list[Utterance]: ...
    def __getitem__(self, index: int | slice) -> Utterance | list[Utterance]:
        if isinstance(index, slice):
            return [self._row(i) for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        return self._row(index)


class HFDatasetSource(_UtteranceRows):
    """A Hugging Face dataset read row by row (Arrow is memory-mapped, so nothing is loaded up front).

    The audio column is read undecoded (``{"bytes", "path"}``) and decoded by :func:`read_audio`, so
    this works without ``torchcodec``, which ``datasets`` >= 4 needs for its own decoding.
    """

    def __init__(
        self,
        dataset: Any,
        name: str,
        audio_column: str | None = None,
        text_column: str | None = None,
        speaker_column: str | None = None,
    ) -> None:
        from datasets import Audio

        columns = list(dataset.column_names)
        self.audio_column = audio_column or _pick_column(columns, AUDIO_KEYS, "audio", name)
        self.text_column = text_column or _pick_column(columns, TEXT_KEYS, "text", name)
        self.speaker_column = speaker_column or next((c for c in SPEAKER_KEYS if c in columns), None)
        if isinstance(dataset.features.get(self.audio_column), Audio):
            dataset = dataset.cast_column(self.audio_column, Audio(decode=False))
        self.dataset = dataset
        self.name = name

    def __len__(self) -> int:
        return len(self.dataset)

    def _row(self, index: int) -> Utterance:
        row = self.dataset[index]
        utt = Utterance(
            text=str(row.get(self.text_column) or "").strip(),
            speaker=str(row[self.speaker_column]) if self.speaker_column and row.get(self.speaker_column) else None,
            source=self.name,
            uid=f"{self.name}/{index}",
        )
        audio = row.get(self.audio_column)
        if isinstance(audio, Mapping) and audio.get("bytes"):
            utt.audio_bytes = audio["bytes"]
        elif isinstance(audio, Mapping) and audio.get("array") is not None:
            utt.audio = np.asarray(audio["array"], dtype=np.float32)
            utt.sample_rate = int(audio["sampling_rate"])
        elif isinstance(audio, Mapping) and audio.get("path"):
            utt.audio_path = Path(audio["path"])
        elif isinstance(audio, str):
            utt.audio_path = Path(audio)
        return utt

    def __iter__(self) -> Iterator[Utterance]:
        return (self[i] for i in range(len(self)))


def _pick_column(columns: Sequence[str], candidates: Sequence[str], what: str, name: str) -> str:
    found = next((c for c in candidates if c in columns), None)
    if found is None:
        raise ValueError(f"{name}: no {what} column among {columns}; name it explicitly")
    return found


def load_hf_dataset(
    name_or_path: str | Path,
    config: str | None = None,
    split: str = "train",
    *,
    audio_column: str | None = None,
    text_column: str | None = None,
    source: str | None = None,
) -> HFDatasetSource:
    """A Hugging Face dataset: a hub id (``load_dataset(id, config, split=split)``) or a folder written
    by ``save_to_disk``. ``datasets`` is imported only here, so it stays an optional dependency."""
    import datasets

    path = Path(name_or_path)
    if path.is_dir() and ((path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()):
        dataset = datasets.load_from_disk(str(path))
        if isinstance(dataset, datasets.DatasetDict):
            dataset = dataset[split]
    else:
        dataset = datasets.load_dataset(str(name_or_path), config, split=split)
    name = source or f"{path.name if path.is_dir() else name_or_path}:{split}"
    result = HFDatasetSource(dataset, name, audio_column=audio_column, text_column=text_column)
    logger.info(f"{name}: {len(result)} utterances (audio column {result.audio_column!r}, text {result.text_column!r})")
    return result


SOURCE_KINDS = ("jsonl", "csv", "transcripts", "audiofolder", "hf")


def load_source(
    location: str | Path,
    kind: str | None = None,
    *,
    name: str | None = None,
    skips: SkipCounter | None = None,
    **hf_options: Any,
) -> Sequence[Utterance]:
    """Loads any supported source; ``kind`` (one of ``SOURCE_KINDS``) is guessed when omitted.

    Guessing: ``hf:owner/name`` or a ``save_to_disk`` folder is a Hugging Face dataset, a folder with
    metadata.csv an audio folder, ``.jsonl``/``.csv`` manifests by extension, ``.json`` the seed's
    transcripts.json list. ``hf_options`` (config, split, audio_column, text_column) go to
    :func:`load_hf_dataset`.
    """
    text = str(location)
    if kind is None:
        kind = _guess_kind(text)
    if kind == "hf":
        return load_hf_dataset(text.removeprefix("hf:"), source=name, **hf_options)
    if hf_options:
        raise TypeError(f"options {sorted(hf_options)} only apply to Hugging Face datasets")
    loaders = {
        "jsonl": load_jsonl_manifest,
        "csv": load_csv_manifest,
        "transcripts": load_transcripts_json,
        "audiofolder": load_audio_folder,
    }
    if kind not in loaders:
        raise ValueError(f"unknown data source kind {kind!r}; expected one of {SOURCE_KINDS}")
    return loaders[kind](Path(location), name, skips)


def _guess_kind(location: str) -> str:
    path = Path(location)
    if location.startswith("hf:"):
        return "hf"
    if path.is_dir():
        if (path / "metadata.csv").is_file():
            return "audiofolder"
        if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
            return "hf"
        raise ValueError(f"{path}: folder is neither an audio folder (metadata.csv) nor a saved dataset")
    suffixes = {".jsonl": "jsonl", ".csv": "csv", ".json": "transcripts"}
    if path.suffix.lower() in suffixes:
        return suffixes[path.suffix.lower()]
    raise ValueError(f"cannot tell the format of {location!r}; pass kind= one of {SOURCE_KINDS}")


# --- mixing -------------------------------------------------------------------------------------


class MixedSource(_UtteranceRows):
    """Several sources interleaved by weight, in a fixed seeded order.

    Each position draws its source with probability proportional to the weights; within a source,
    rows come in a seeded shuffled order, reshuffled each time the source is exhausted (so a small
    source with a big weight is repeated rather than running dry). The order is a plain index list,
    so a resumed run can continue from a position.
    """

    def __init__(
        self,
        sources: Sequence[tuple[Sequence[Utterance], float]],
        num_samples: int | None = None,
        seed: int = 0,
    ) -> None:
        kept = [(s, float(w)) for s, w in sources if w > 0 and len(s) > 0]
        for s, w in sources:
            if w > 0 and len(s) == 0:
                logger.warning(f"data source {getattr(s, 'name', '')!r} is empty and is left out of the mix")
        if not kept:
            raise ValueError("no non-empty data source with a positive weight to mix")
        self.sources = [s for s, _ in kept]
        weights = np.array([w for _, w in kept])
        self.probabilities = weights / weights.sum()
        total = num_samples if num_samples is not None else sum(len(s) for s in self.sources)
        rng = np.random.default_rng(seed)
        self.source_index = rng.choice(len(self.sources), size=total, p=self.probabilities)
        self.row_index = np.empty(total, dtype=np.int64)
        for k, source in enumerate(self.sources):
            positions = np.flatnonzero(self.source_index == k)
            rounds = -(-len(positions) // len(source))  # ceil
            order = np.concatenate([rng.permutation(len(source)) for _ in range(rounds)]) if rounds else []
            self.row_index[positions] = order[: len(positions)]

    def __len__(self) -> int:
        return len(self.source_index)

    def _row(self, index: int) -> Utterance:
        return self.sources[self.source_index[index]][int(self.row_index[index])]


def mix_sources(
    sources: Sequence[tuple[Sequence[Utterance], float]],
    num_samples: int | None = None,
    seed: int = 0,
) -> MixedSource:
    """``[(source, weight), ...]`` -> one seeded sequence of ``num_samples`` rows (default: all rows' count)."""
    return MixedSource(sources, num_samples, seed)
