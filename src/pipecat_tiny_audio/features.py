"""Encoder features: the one place where audio becomes Whisper encoder frames.

The trainer (which caches these features) and the streaming decoder (which computes them chunk
by chunk as audio arrives) both call :func:`encode_audio` / :func:`encode_chunk`, so a model
is always served exactly the features it was trained on.

Whisper was trained on 30 s windows; we run it on only the frames that exist ("trimmed"
input), which is ~5x cheaper for short utterances. In chunked mode each chunk is encoded
together with up to ``left_context_seconds`` of the audio before it, and only the chunk's own
frames are kept: this is what lets a streaming decoder encode every chunk exactly once. With
``right_context_seconds`` a chunk is encoded only once that much audio after it has arrived, so its
frames are not the last of Whisper's window (the worst-informed frames of a bidirectional encoder):
partials lag by the look-ahead, a final does not (the audio ends there either way).

A model may also read intermediate encoder layers beside the top one (``extra_layers``): their
outputs, layer-normalised without weights, are appended to each frame's features, so a recogniser
can weigh acoustic detail the top layer has already abstracted away.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from pipecat_tiny_audio.audio import SAMPLE_RATE

HOP_LENGTH = 160
N_FFT = 400
SAMPLES_PER_FRAME = 2 * HOP_LENGTH  # one encoder frame = 20 ms (conv2 has stride 2)


@dataclass(frozen=True)
class FeatureMode:
    """How audio is cut before encoding, and which encoder layers a frame's features hold.

    ``chunk_seconds=None`` encodes the whole utterance at once. Otherwise audio is encoded in
    chunks of ``chunk_seconds`` (a multiple of 20 ms), each with ``left_context_seconds`` of
    preceding audio and up to ``right_context_seconds`` of following audio as context.
    ``extra_layers`` (1-based, below the top layer) are appended after the top layer's features.
    """

    chunk_seconds: float | None = None
    left_context_seconds: float = 0.0
    right_context_seconds: float = 0.0
    extra_layers: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.chunk_seconds is not None:
            frames = self.chunk_seconds * SAMPLE_RATE / SAMPLES_PER_FRAME
            if self.chunk_seconds <= 0 or abs(frames - round(frames)) > 1e-6:
                raise ValueError(f"chunk_seconds must be a positive multiple of 0.02 s, got {self.chunk_seconds}")
        if self.left_context_seconds < 0 or self.right_context_seconds < 0:
            raise ValueError("left_context_seconds and right_context_seconds must be >= 0")
        if self.right_context_seconds and self.chunk_seconds is None:
            raise ValueError("right_context_seconds needs chunk_seconds (whole utterances see everything)")
        object.__setattr__(self, "extra_layers", tuple(self.extra_layers))
        if any(not isinstance(n, int) or n < 1 for n in self.extra_layers) or len(set(self.extra_layers)) < len(
            self.extra_layers
        ):
            raise ValueError(f"extra_layers must be distinct layer numbers >= 1, got {self.extra_layers}")

    @property
    def chunk_samples(self) -> int | None:
        return None if self.chunk_seconds is None else round(self.chunk_seconds * SAMPLE_RATE)

    @property
    def context_samples(self) -> int:
        return round(self.left_context_seconds * SAMPLE_RATE)

    @property
    def lookahead_samples(self) -> int:
        # Whole frames, so a chunk's frames line up with an offline pass whatever follows.
        return round(self.right_context_seconds * SAMPLE_RATE) // SAMPLES_PER_FRAME * SAMPLES_PER_FRAME

    def to_dict(self) -> dict:
        mode = {"chunk_seconds": self.chunk_seconds, "left_context_seconds": self.left_context_seconds}
        if self.right_context_seconds:  # absent when 0, so caches keyed before it existed stay valid
            mode["right_context_seconds"] = self.right_context_seconds
        if self.extra_layers:  # likewise
            mode["extra_layers"] = list(self.extra_layers)
        return mode

    @property
    def whole_utterance(self) -> FeatureMode:
        """The same layers of the whole utterance at once: what a chunked model's whole-utterance finals read."""
        return FeatureMode(extra_layers=self.extra_layers)

    def feature_dim(self, encoder: nn.Module) -> int:
        """Width of one frame's features from ``encoder``."""
        return encoder.config.d_model * (1 + len(self.extra_layers))


@lru_cache(maxsize=4)
def _mel_filters(n_mels: int) -> torch.Tensor:
    from transformers.audio_utils import mel_filter_bank

    filters = mel_filter_bank(
        num_frequency_bins=1 + N_FFT // 2,
        num_mel_filters=n_mels,
        min_frequency=0.0,
        max_frequency=8000.0,
        sampling_rate=SAMPLE_RATE,
        norm="slaney",
        mel_scale="slaney",
    )
    return torch.from_numpy(filters).float()  # (freq, mels)


def log_mel(audio: torch.Tensor, n_mels: int = 80) -> torch.Tensor:
    """Whisper's log-mel spectrogram of 16 kHz mono audio: (n_mels, len(audio) // 160)."""
    window = torch.hann_window(N_FFT, device=audio.device)
    stft = torch.stft(audio, N_FFT, HOP_LENGTH, window=window, return_complex=True)
    power = stft[..., :-1].abs() ** 2
    mel = _mel_filters(n_mels).to(audio.device).T @ power
    log_spec = torch.clamp(mel, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0


def _as_tensor(audio: np.ndarray | torch.Tensor) -> torch.Tensor:
    tensor = torch.as_tensor(audio, dtype=torch.float32)
    if tensor.ndim != 1:
        raise ValueError(f"expected 1-D 16 kHz mono audio, got shape {tuple(tensor.shape)}")
    return tensor


@torch.no_grad()
def _encode_window(
    encoder: nn.Module, audio: torch.Tensor, layers: int | None = None, extra_layers: tuple[int, ...] = ()
) -> torch.Tensor:
    """Run a Whisper encoder on exactly the frames of ``audio`` (padded to 20 ms): (frames, d), or
    (frames, d × (1 + len(extra_layers))) with those layers' normalised outputs appended.

    ``layers`` stops after that many Transformer layers, before the final layer norm: the input of
    the layers a trainer fine-tunes (:func:`encode_windows`).
    """
    if layers is not None and extra_layers:
        raise ValueError("extra_layers cannot be read below fine-tuned top layers")
    if any(n >= len(encoder.layers) for n in extra_layers):
        raise ValueError(f"extra_layers must be below the top layer ({len(encoder.layers)}), got {extra_layers}")
    audio = torch.nn.functional.pad(audio, (0, (-audio.numel()) % SAMPLES_PER_FRAME))
    frames = audio.numel() // SAMPLES_PER_FRAME
    max_frames = encoder.embed_positions.num_embeddings
    if frames > max_frames:
        raise ValueError(f"audio window of {frames * 0.02:.1f} s exceeds the encoder's 30 s limit")
    param = next(encoder.parameters())
    mel = log_mel(audio.to(param.device), encoder.config.num_mel_bins).to(param.dtype)
    hidden = nn.functional.gelu(encoder.conv1(mel.unsqueeze(0)))
    hidden = nn.functional.gelu(encoder.conv2(hidden)).permute(0, 2, 1)
    hidden = hidden + encoder.embed_positions.weight[:frames]
    extra = {}
    for number, layer in enumerate(encoder.layers[:layers], start=1):
        out = layer(hidden, None)
        hidden = out[0] if isinstance(out, tuple) else out
        if number in extra_layers:
            extra[number] = nn.functional.layer_norm(hidden, hidden.shape[-1:])
    if layers is not None:
        return hidden[0].float()
    return torch.cat([encoder.layer_norm(hidden), *(extra[n] for n in extra_layers)], dim=-1)[0].float()


def _chunk_window(chunk: torch.Tensor, context: torch.Tensor, lookahead: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """The audio Whisper sees for ``chunk``, and where the chunk's own frames are in it (first, count)."""
    if lookahead.numel() and chunk.numel() % SAMPLES_PER_FRAME:
        raise ValueError("a chunk with look-ahead must be whole 20 ms frames")
    # Keep context frame-aligned so the chunk's frames line up with an offline pass.
    context = context[context.numel() % SAMPLES_PER_FRAME :]
    first = context.numel() // SAMPLES_PER_FRAME
    return torch.cat([context, chunk, lookahead]), first, -(-chunk.numel() // SAMPLES_PER_FRAME)


def encode_chunk(
    encoder: nn.Module,
    chunk: np.ndarray | torch.Tensor,
    context: np.ndarray | torch.Tensor | None = None,
    lookahead: np.ndarray | torch.Tensor | None = None,
    extra_layers: tuple[int, ...] = (),
) -> torch.Tensor:
    """Encoder frames of ``chunk`` alone, computed with ``context`` (earlier audio) and
    ``lookahead`` (later audio, whole 20 ms frames of a whole-frame chunk) in view."""
    chunk = _as_tensor(chunk)
    if chunk.numel() == 0:
        return torch.zeros(0, FeatureMode(extra_layers=extra_layers).feature_dim(encoder))
    context = _as_tensor(context) if context is not None and len(context) else chunk[:0]
    lookahead = _as_tensor(lookahead) if lookahead is not None and len(lookahead) else chunk[:0]
    window, first, frames = _chunk_window(chunk, context, lookahead)
    return _encode_window(encoder, window, extra_layers=extra_layers)[first : first + frames]


def _chunk_parts(audio: torch.Tensor, start: int, mode: FeatureMode) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(context, chunk, look-ahead) of ``audio``'s chunk starting at ``start``."""
    end = start + mode.chunk_samples
    context = audio[max(0, start - mode.context_samples) : start]
    return context, audio[start:end], audio[end : end + mode.lookahead_samples]


def encode_chunk_at(
    encoder: nn.Module, audio: np.ndarray | torch.Tensor, start: int, mode: FeatureMode
) -> torch.Tensor:
    """Frames of ``audio``'s chunk starting at ``start``, with the context ``mode`` gives it: what
    :func:`encode_audio` computes for that chunk, whenever enough of ``audio`` has arrived."""
    context, chunk, lookahead = _chunk_parts(audio, start, mode)
    return encode_chunk(encoder, chunk, context, lookahead, mode.extra_layers)


def encode_audio(
    encoder: nn.Module, audio: np.ndarray | torch.Tensor, mode: FeatureMode = FeatureMode()
) -> torch.Tensor:
    """Encoder features (frames, d) of a whole utterance of 16 kHz mono float audio.

    This is the function the trainer caches and the reference the streaming decoder matches.
    """
    audio = _as_tensor(audio)
    if audio.numel() == 0:
        return torch.zeros(0, mode.feature_dim(encoder))
    step = mode.chunk_samples
    if step is None:
        return _encode_window(encoder, audio, extra_layers=mode.extra_layers)
    return torch.cat([encode_chunk_at(encoder, audio, start, mode) for start in range(0, audio.numel(), step)])


def encode_windows(
    encoder: nn.Module, audio: np.ndarray | torch.Tensor, mode: FeatureMode, layers: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """What the encoder's first ``layers`` layers compute for every window :func:`encode_audio`
    runs: the input of the top layers when a trainer fine-tunes them on cached features.

    Returns the windows' frames one after another (sum of window lengths, d) and, per window, its
    length and where its chunk's own frames are in it: ``(n_windows, 3)`` of (length, first, count).
    Running the remaining layers and the final layer norm on each window and keeping
    ``[first : first + count]`` gives exactly :func:`encode_audio`'s features.
    """
    if not 0 <= layers < len(encoder.layers):
        raise ValueError(f"layers must be in [0, {len(encoder.layers)}), got {layers}")
    if mode.extra_layers:
        raise ValueError("extra_layers cannot be read below fine-tuned top layers")
    audio = _as_tensor(audio)
    if mode.chunk_samples is None:
        parts = [(audio[:0], audio, audio[:0])] if audio.numel() else []
    else:
        parts = [_chunk_parts(audio, start, mode) for start in range(0, audio.numel(), mode.chunk_samples)]
    hidden, spans = [], []
    for context, chunk, lookahead in parts:
        window, first, count = _chunk_window(chunk, context, lookahead)
        hidden.append(_encode_window(encoder, window, layers))
        spans.append((hidden[-1].shape[0], first, count))
    if not hidden:
        return torch.zeros(0, encoder.config.d_model), torch.zeros(0, 3, dtype=torch.long)
    return torch.cat(hidden), torch.tensor(spans, dtype=torch.long)
