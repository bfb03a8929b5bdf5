"""TurnState: where a session's current utterance stands on the decode side, and when a partial is due."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PARTIAL_DUTY = 3.0  # partials take at most about a third of a session's real time
FIRST_PARTIAL_POLL = 0.1  # seconds of audio between partials until the first words are heard


@dataclass
class TurnState:
    """A session's model, decoder and utterance, as its decode loop sees them.

    Args:
        shared: the :class:`~pipecat_tiny_audio.shared_model.SharedModel` it decodes with.
        decoder: its decoder on that model (a :class:`~pipecat_tiny_audio.shared_model.ScheduledDecoder`
            or :class:`~pipecat_tiny_audio.model_process.ProcessDecoder`).
        partial_interval: seconds of new audio between interim transcripts, at the least.
    """

    shared: Any
    decoder: Any
    partial_interval: float
    active: bool = False  # between the utterance's start and its stop
    holding: bool = False  # a pause is held back: its preview is the latest hypothesis
    last_text: str = ""  # the last interim pushed
    said: str = ""  # the finals of the speaker's turn so far: the utterances a VAD split it into
    next_partial_at: float = 0.0  # decoder.audio_seconds at which a partial is due
    pending_switch: Any = None  # a SharedModel to switch to at the next utterance

    @property
    def partial_due(self) -> bool:
        return self.active and not self.holding and self.decoder.audio_seconds >= self.next_partial_at

    def start(self, continues: bool = False) -> None:
        """A new utterance (``continues``: of the same turn): no interim yet, the first partial after
        ``partial_interval`` of audio."""
        self.active, self.holding, self.last_text = True, False, ""
        self.said = self.said if continues else ""
        self.next_partial_at = self.partial_interval

    def partial_done(self, seconds: float) -> None:
        """Schedule the next partial after one that took ``seconds`` (waiting for the CPU included).

        Partials are best effort: the next waits for at least PARTIAL_DUTY times this one's cost in
        new audio, so when the CPU is short they thin out instead of holding the speaker up. Until the
        first interim, the next comes after FIRST_PARTIAL_POLL instead of ``partial_interval``: a
        chunked decoder's hypothesis changes only when a chunk completes, and a partial in between
        repeats the last one at no cost, so the first words go out when their chunk is in, not up to
        ``partial_interval`` later (the utterance's first audio is pre-roll, often silence).
        """
        interval = self.partial_interval if self.last_text else FIRST_PARTIAL_POLL
        self.next_partial_at = self.decoder.audio_seconds + max(interval, PARTIAL_DUTY * seconds)

    def heard(self, final: str) -> None:
        """The utterance's final: the next utterance of the turn continues it."""
        self.said = f"{self.said} {final}".strip()

    def is_news(self, text: str | None) -> bool:
        """Whether ``text`` is worth an interim; it becomes the last one. Not news: empty, the last one
        again, or the last one's first words only (a partial lagging behind one that read further ahead,
        such as the first words read before their chunk was complete, or a held pause's preview)."""
        if not text or self.last_text.split()[: len(text.split())] == text.split():
            return False
        self.last_text = text
        return True
