"""StreamingDecoder: transcribe speech while it is still arriving.

Work is done as audio arrives, so little is left when the speaker stops. Each chunk of audio
(the model's :class:`~pipecat_tiny_audio.features.FeatureMode`) is encoded once, with its left
context, as soon as it is complete. Its projected frames go into the LLM's KV cache behind the
prompt prefix and stay there: a partial hypothesis appends the prompt suffix plus the previous
hypothesis as a draft, verifies the draft in one forward pass (:func:`greedy_decode`), then
crops the cache back to the audio. The final is the same computation over all the audio, so it
equals :meth:`TinyAudioModel.transcribe` of the same samples. (A recogniser with
``whole_utterance_final`` encodes the segment once more, whole, for its final; ``transcribe`` does too.)

In whole-utterance mode (``chunk_seconds=None``) encoder features depend on the whole
utterance, so every hypothesis re-encodes it and only the prompt prefix is reused.

Speech longer than ``max_segment_seconds`` is cut at its quietest point near the limit: the
part before the cut is finalized into the transcript and decoding continues on a fresh cache
with the rest, so memory stays bounded and no audio is dropped.

Every method that computes has a *steps* twin (:meth:`StreamingDecoder.feed_steps`,
:meth:`~StreamingDecoder.partial_steps`, :meth:`~StreamingDecoder.finalize_steps`) that yields its
LLM passes and its chunk encodings instead of running them (see :mod:`~pipecat_tiny_audio.decoding`),
so a scheduler can run the passes of many decoders as one batch and encode beside them. The plain
methods run those steps alone.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass

import numpy as np
import torch
from transformers import DynamicCache

from pipecat_tiny_audio.audio import MIN_SAMPLES, SAMPLE_RATE, AudioInputError, as_float_samples
from pipecat_tiny_audio.decoding import Compute, Interrupted, Steps, greedy_steps, run_steps, truncate_cache
from pipecat_tiny_audio.features import SAMPLES_PER_FRAME, encode_audio, encode_chunk_at
from pipecat_tiny_audio.modeling import SILENCE_PEAK, TinyAudioModel
from pipecat_tiny_audio.recogniser_stream import RecogniserStream

FRAME_SECONDS = SAMPLES_PER_FRAME / SAMPLE_RATE
CUT_SEARCH_FRACTION = 0.2  # look for the quietest point in the last 20 % of a too-long segment
MAX_SEGMENT_RANGE = (1.0, 30.0)  # seconds: at most Whisper's window
CUT_SMOOTHING_FRAMES = 5  # energy averaged over 100 ms, so a cut lands in a pause, not a stop consonant


@dataclass(frozen=True)
class Hypothesis:
    """A partial transcript split into words that have settled and words that may still change.

    ``stable`` is the agreement (longest common word prefix) of this and the previous
    hypothesis, plus everything finalized at earlier segment cuts; ``unstable`` is the rest.
    """

    text: str
    stable: str
    unstable: str


class _AudioBuffer:
    """Growable float32 buffer: appending 20 ms frames to a 25 s segment must not copy it every time."""

    def __init__(self) -> None:
        self._data = np.zeros(SAMPLE_RATE, dtype=np.float32)
        self.size = 0

    def append(self, samples: np.ndarray) -> None:
        if self.size + samples.size > self._data.size:
            grown = np.zeros(max(2 * self._data.size, self.size + samples.size), dtype=np.float32)
            grown[: self.size] = self._data[: self.size]
            self._data = grown
        self._data[self.size : self.size + samples.size] = samples
        self.size += samples.size

    def view(self) -> np.ndarray:
        return self._data[: self.size]

    def truncate(self, size: int) -> None:
        self.size = min(self.size, size)


def _common_prefix(a: list[str], b: list[str]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _quietest_point(audio: np.ndarray, start: int) -> int:
    """Sample index at or after ``start`` where the smoothed 20 ms energy of ``audio`` is lowest."""
    start -= start % SAMPLES_PER_FRAME
    frames = audio[start : start + (audio.size - start) // SAMPLES_PER_FRAME * SAMPLES_PER_FRAME]
    energy = (frames.reshape(-1, SAMPLES_PER_FRAME).astype(np.float64) ** 2).mean(axis=1)
    smoothed = np.convolve(energy, np.ones(CUT_SMOOTHING_FRAMES) / CUT_SMOOTHING_FRAMES, mode="same")
    return max(SAMPLES_PER_FRAME, start + int(np.argmin(smoothed)) * SAMPLES_PER_FRAME)


class StreamingDecoder:
    """Incremental transcription of one speaker's audio with a :class:`TinyAudioModel`.

    Feed 16 kHz mono float32 audio as it arrives, ask for a :meth:`partial` whenever you want an
    update, and call :meth:`finalize` when the speaker stops; :meth:`reset` starts the next
    utterance. :meth:`finalize` does not discard anything: feeding more audio afterwards
    continues the same utterance, and calling it again without new audio is free. One decoder
    holds one utterance's state; it is not thread-safe, and several decoders may share a model
    as long as calls into the model are serialized.

    Example (a file, streamed in 20 ms frames)::

        import soundfile as sf
        from pipecat_tiny_audio import StreamingDecoder, TinyAudioModel, to_model_audio

        model = TinyAudioModel.from_pretrained("path/to/checkpoint")
        decoder = StreamingDecoder(model)
        audio, rate = sf.read("speech.wav", dtype="float32")
        audio = to_model_audio(audio, rate)  # 16 kHz mono float32
        for start in range(0, len(audio), 320):
            decoder.feed(audio[start : start + 320])
            if start % 8000 == 0:  # a partial every 0.5 s
                print("partial:", decoder.partial().text)
        print("final:", decoder.finalize())
        decoder.reset()

    A socket works the same way: convert each received int16 PCM block with
    ``to_model_audio(block, sample_rate)`` and ``feed`` it.

    Args:
        model: the model; its ``feature_mode`` decides chunked or whole-utterance encoding.
        max_segment_seconds: longest stretch decoded on one KV cache before a cut (at most 30 s,
            Whisper's window).
        whole_utterance_final: ``False`` takes a chunked recogniser's finals from its chunks even when the
            model's config asks for whole-utterance finals: far less work after the speaker stops, for a
            few points of WER (README, *Many sessions on one model*). ``True``: the model's choice.
    """

    def __init__(
        self,
        model: TinyAudioModel,
        *,
        max_segment_seconds: float = 25.0,
        whole_utterance_final: bool = True,
    ):
        low, high = MAX_SEGMENT_RANGE
        if not low <= max_segment_seconds <= high:
            raise ValueError(f"max_segment_seconds must be between {low:g} and {high:g} s, got {max_segment_seconds}")
        self.model = model
        self._whole_final = model.whole_utterance_final and whole_utterance_final
        self._mode = model.feature_mode
        self._k = model.config.stack_factor
        self._device = next(model.encoder.parameters()).device
        self._max_samples = round(max_segment_seconds * SAMPLE_RATE)
        prompt = model.prompt
        self._suffix_ids = torch.tensor([prompt.suffix_ids])
        self._cache = DynamicCache()
        with torch.no_grad():
            model.llm(
                inputs_embeds=model.embed_tokens(torch.tensor([prompt.prefix_ids])),
                past_key_values=self._cache,
                use_cache=True,
            )
        self._prefix_len = self._cache.get_seq_length()
        self._audio = _AudioBuffer()
        self.reset()

    # -- public API ---------------------------------------------------------------------------

    def reset(self, context: str = "") -> None:
        """Forget the utterance: the next :meth:`feed` starts a new one (the prompt prefix is kept).

        ``context``: what the speaker said just before, when the new utterance continues it (a VAD split
        the turn at a short pause); a recogniser's LLM reads the new words as following it.
        """
        self._context = context
        self._texts: list[str] = []  # finalized text of earlier segments
        self._cuts: list[int] = []
        self._offset = 0  # utterance samples before the current segment
        self._new_segment()

    def feed(self, audio: np.ndarray, follow: bool = True) -> None:
        """Append 16 kHz mono samples (float in [-1, 1], or int16, which is scaled), encoding every
        chunk they complete.

        ``follow=False`` says the caller is behind real time. A decoder with whole-utterance finals then
        stops following the segment chunk by chunk until its next :meth:`reset` or cut: no more chunks are
        encoded and partials stay where they are, and the final encodes the segment whole, as it does
        anyway, so the work of keeping up is skipped, not put off. (Its beam then knows the LLM's opinion
        of fewer words.) Other decoders need every chunk for their final and ignore it.

        Raises :class:`~pipecat_tiny_audio.audio.AudioInputError` for non-1-D input, other dtypes,
        NaN/Inf, or float samples far outside [-1, 1].
        """
        run_steps(self.model.llm, self.feed_steps(audio, follow))

    def partial(self, interrupt: threading.Event | None = None) -> Hypothesis | None:
        """Hypothesis for the audio encoded so far (in chunked mode the unfinished chunk waits, except
        before a recogniser has heard the segment's first words: then it is read with the look-ahead it has).

        Setting ``interrupt`` (from another thread) abandons the decode before its next forward
        pass and returns ``None``, so a partial never delays a final the caller needs now.
        """
        return run_steps(self.model.llm, self.partial_steps(), interrupt)

    def finalize(self, interrupt: threading.Event | None = None) -> str | None:
        """Transcript of everything fed since :meth:`reset`, equal to the offline transcription.

        With no segment cut, this is ``model.transcribe(audio)`` of the same samples. Returns
        ``None`` only when ``interrupt`` was set (a speculative final the caller gave up on).
        """
        return run_steps(self.model.llm, self.finalize_steps(), interrupt)

    def feed_steps(self, audio: np.ndarray, follow: bool = True) -> Steps[None]:
        """:meth:`feed` as steps: a compute per chunk it encodes, LLM passes for a recogniser's beam (one
        per chunk) and at a segment cut."""
        audio = np.asarray(audio)
        if audio.ndim != 1:
            raise AudioInputError(f"expected 1-D 16 kHz mono audio, got shape {audio.shape}")
        audio = as_float_samples(audio)
        if not follow and self._whole_final:
            self._following = False
        while audio.size:
            room = self._max_samples - self._audio.size
            yield from self._append(audio[:room])
            audio = audio[room:]
            if self._audio.size >= self._max_samples:
                audio = np.concatenate([(yield from self._cut()), audio])

    def partial_steps(self) -> Steps[Hypothesis | None]:
        """:meth:`partial` as steps; :class:`~pipecat_tiny_audio.decoding.Interrupted` thrown in gives ``None``."""
        try:
            tokens = yield from self._decode(final=False)
        except Interrupted:
            return None
        text = self._text(tokens)
        words = text.split()
        stable = _common_prefix(self._words, words)
        self._words = words
        return Hypothesis(
            text=self._join(text),
            stable=self._join(" ".join(words[:stable])),
            unstable=" ".join(words[stable:]),
        )

    def finalize_steps(self) -> Steps[str | None]:
        """:meth:`finalize` as steps; :class:`~pipecat_tiny_audio.decoding.Interrupted` thrown in gives ``None``."""
        try:
            tokens = yield from self._decode(final=True)
        except Interrupted:
            return None
        text = self._text(tokens)
        self._words = text.split()
        return self._join(text)

    @property
    def audio_seconds(self) -> float:
        """Seconds of audio fed since :meth:`reset`."""
        return (self._offset + self._audio.size) / SAMPLE_RATE

    @property
    def cuts(self) -> list[int]:
        """Sample offsets (from the start of the utterance) where long speech was cut."""
        return list(self._cuts)

    # -- internals ----------------------------------------------------------------------------

    def _new_segment(self) -> None:
        truncate_cache(self._cache, self._prefix_len)
        self._audio.truncate(0)
        self._peak = 0.0
        self._encoded = 0  # samples of the segment already encoded as whole chunks
        self._following = True  # encoding chunks as they complete (see feed's ``follow``)
        self._frames = torch.zeros(0, self.model.config.encoder_dim, device=self._device)
        self._cached_groups = 0  # audio tokens in the KV cache after the prefix
        self._tokens: list[int] = []  # last hypothesis: the next decode's draft
        self._words: list[str] = []
        self._read_ahead: list[str] = []  # the last partial's words read ahead of the chunks
        self._decoded: tuple[int, bool] | None = None  # samples the last decode covered; a chunked final?
        # A recogniser ("rescore" reading) follows the whole chunks as they are encoded.
        rescores = self.model.config.reading == "rescore"
        self._recogniser = RecogniserStream(self.model, self._preceding()) if rescores else None

    def _append(self, samples: np.ndarray) -> Steps[None]:
        if samples.size == 0:
            return
        self._audio.append(samples)
        self._peak = max(self._peak, float(np.abs(samples).max()))
        step = self._mode.chunk_samples
        if step is None or not self._following:
            return
        audio = self._audio.view()
        while self._encoded + step + self._mode.lookahead_samples <= audio.size:
            frames = yield self._encode_chunk(audio, self._encoded)
            self._frames = torch.cat([self._frames, frames])
            self._encoded += step
            if self._recogniser is not None:
                yield from self._recogniser.feed_steps(frames)

    def _encode_chunk(self, audio: np.ndarray, start: int) -> Compute:
        """Encoding the chunk at ``start``: a unit of work a scheduler may run beside LLM passes."""
        return Compute(functools.partial(encode_chunk_at, self.model.encoder, audio, start, self._mode))

    def _features(self, tail: bool) -> Steps[torch.Tensor]:
        """Encoder frames of the segment: complete chunks, plus the unfinished one when ``tail``."""
        audio = self._audio.view()
        if self._mode.chunk_samples is None:
            return (yield Compute(functools.partial(encode_audio, self.model.encoder, audio, self._mode)))
        if not tail or self._encoded == audio.size:
            return self._frames
        # The unfinished chunk, and with look-ahead the chunks still waiting for theirs.
        tail = []
        for start in range(self._encoded, audio.size, self._mode.chunk_samples):
            tail.append((yield self._encode_chunk(audio, start)))
        return torch.cat([self._frames, *tail])

    def _decode(self, final: bool) -> Steps[list[int]]:
        chunked = self._mode.chunk_samples is not None
        if chunked and not final and not self._following:
            return self._tokens  # behind real time: partials stay where they are
        # Until the recogniser's stream hears a word, a partial also reads the unfinished chunks (encoded with
        # the look-ahead they have, as a chunked final does): the first words show when they are said, not a
        # chunk and its look-ahead later. It costs the tail's encoding (no LLM pass), only at an utterance's start.
        first_words = not final and self._recogniser is not None and not self._recogniser.partial()
        tail = chunked and (first_words or (final and not self._whole_final))
        covers = self._audio.size if tail or final or not chunked else self._encoded
        # A hypothesis depends only on the samples it covers and how it reads them: decoding again would repeat it.
        decoded = (covers, final and chunked)
        if decoded == self._decoded:
            return self._tokens
        self._decoded = decoded
        if covers == 0 or self._offset + covers < MIN_SAMPLES or self._peak < SILENCE_PEAK:  # nothing said
            self._tokens = []
            return self._tokens
        try:
            # A whole-utterance final needs only the chunks the recogniser's stream has had.
            features = yield from self._features(tail)
            if self.model.config.reading == "rescore":
                self._tokens = yield from self._rescored(features, final, tail)
            else:
                self._tokens = yield from self._generated(features)
        except Interrupted:
            self._decoded = None
            raise
        return self._tokens

    def _rescored(self, features: torch.Tensor, final: bool, tail: bool) -> Steps[list[int]]:
        """No audio tokens: the recogniser spells, the LLM steers its beam and picks the final."""
        if self._mode.chunk_samples is None:  # whole-utterance frames change with every sample: start over
            text = yield from RecogniserStream(self.model, self._preceding()).final_steps(features)
        elif final and self._whole_final:
            audio = self._audio.view()
            whole = yield Compute(
                functools.partial(encode_audio, self.model.encoder, audio, self._mode.whole_utterance)
            )
            text = yield from self._recogniser.whole_final_steps(whole)
        elif final and tail:
            text = yield from self._recogniser.final_steps(features[self._frames.shape[0] :])
        elif tail:  # the first words, read ahead of their chunks: those two readings in a row agree on
            words = (yield from self._recogniser.read_ahead_steps(features[self._frames.shape[0] :])).split()[:-1]
            text = " ".join(words[: _common_prefix(self._read_ahead, words)])
            self._read_ahead = words
        else:
            text = self._recogniser.partial()
        return self.model.tokenizer(text, add_special_tokens=False).input_ids

    def _generated(self, features: torch.Tensor) -> Steps[list[int]]:
        """The LLM writes the transcript after the audio tokens, checking the last one as a draft."""
        model = self.model
        # Audio tokens not yet in the cache go into the same forward pass as the suffix and draft.
        new = model.projector.project_from(features.unsqueeze(0), self._cached_groups)
        suffix = model.embed_tokens(self._suffix_ids)
        try:
            return (
                yield from greedy_steps(
                    model.embed_tokens,
                    self._cache,
                    torch.cat([new.to(suffix.dtype), suffix], dim=1),
                    stop_id=model.prompt.end_of_turn_id,
                    max_new_tokens=model.max_tokens_for(features.shape[0] * FRAME_SECONDS),
                    draft=self._tokens,
                )
            )
        finally:
            # Keep only whole groups of whole chunks: they never change, whatever audio follows.
            committed = self._frames.shape[0] // self._k if self._mode.chunk_samples is not None else 0
            truncate_cache(self._cache, self._prefix_len + committed)
            self._cached_groups = min(committed, self._cache.get_seq_length() - self._prefix_len)

    def _preceding(self) -> str:
        """The words before the current segment: the context, then the earlier segments' finals."""
        return " ".join(t for t in [self._context, *self._texts] if t)

    def _text(self, tokens: list[int]) -> str:
        return self.model.tokenizer.decode(tokens, skip_special_tokens=True).strip()

    def _join(self, text: str) -> str:
        return " ".join(t for t in [*self._texts, text] if t)

    def _cut(self) -> Steps[np.ndarray]:
        """Finalize the segment up to its quietest recent point; return the audio after it."""
        audio = self._audio.view()
        cut = _quietest_point(audio, audio.size - round(self._max_samples * CUT_SEARCH_FRACTION))
        rest = audio[cut:].copy()
        step = self._mode.chunk_samples
        if step is not None:
            # Chunks whose audio or look-ahead ends after the cut saw audio the segment no longer has.
            self._encoded = min(self._encoded, max(0, (cut - self._mode.lookahead_samples) // step * step))
            self._frames = self._frames[: self._encoded // SAMPLES_PER_FRAME]
            kept_groups = self._frames.shape[0] // self._k
            if self._cached_groups > kept_groups:
                truncate_cache(self._cache, self._prefix_len + kept_groups)
                self._cached_groups = kept_groups
            if self._recogniser is not None:
                self._recogniser = RecogniserStream(self.model, self._preceding())
                yield from self._recogniser.feed_steps(self._frames)
        self._audio.truncate(cut)
        self._peak = float(np.abs(audio[:cut]).max())
        self._decoded = None
        text = self._text((yield from self._decode(final=True)))
        if text:
            self._texts.append(text)
        self._offset += cut
        self._cuts.append(self._offset)
        self._new_segment()
        return rest
