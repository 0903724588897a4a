"""Diarization boundary: who spoke when inside one window.

The engine only sees :class:`Diarizer`. :class:`SingleSpeakerDiarizer` is the
``FLOWBOT_DIARIZATION=none`` choice; the pyannote engine (offline bundled
weights or the published pipeline) implements the same protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from contracts.frames import SAMPLE_RATE
from contracts.segments import SpeakerTurn

if TYPE_CHECKING:
    from processor.vad import SpeechMap

__all__ = [
    "Diarization",
    "Diarizer",
    "IdentityMapper",
    "LocalActivity",
    "SingleSpeakerDiarizer",
    "SpeakerMapper",
    "SpeakerTurn",
    "turns_overlap_seconds",
]


#: How far (s) a diarization turn boundary may be off: the precision of segmentation-3.0's turns,
#: within which a lone word or a short turn is trusted to the turn next to it.
BOUNDARY_TOLERANCE = 0.3


@dataclass(frozen=True, eq=False)
class LocalActivity:
    """segmentation-3.0's own frame scores: which local speaker of each 10 s chunk is active when.

    ``active[c, f, k]``: local speaker ``k`` of chunk ``c`` is active in frame ``f``, whose
    middle is ``starts[c] + frame_offset + f * frame_step`` seconds from the window start.
    ``labels[c][k]`` is the window speaker that local speaker was clustered into (None when it
    is silent or fed no turn). Kept with the window's raw diarization by the pyannote engine.
    """

    starts: np.ndarray
    frame_offset: float
    frame_step: float
    active: np.ndarray
    labels: tuple[tuple[str | None, ...], ...]

    def middles(self) -> np.ndarray:
        """(chunks, frames): the middle of each frame, seconds from the window start."""
        return self.starts[:, None] + self.frame_offset + self.frame_step * np.arange(self.active.shape[1])[None, :]

    def heard(self, start: float, end: float) -> dict[str, int]:
        """Active frames (all chunks together) of each window speaker's local speakers within [start, end)."""
        out: dict[str, int] = {}
        middles = self.middles()
        inside = (middles >= start) & (middles < end)
        for c, labels in enumerate(self.labels):
            for k, label in enumerate(labels):
                if label is not None and (n := int(self.active[c, inside[c], k].sum())):
                    out[label] = out.get(label, 0) + n
        return out

    def relabel(self, mapping: dict[str, str]) -> LocalActivity:
        """The same activity with window labels mapped."""
        labels = tuple(tuple(None if k is None else mapping.get(k, k) for k in chunk) for chunk in self.labels)
        return LocalActivity(self.starts, self.frame_offset, self.frame_step, self.active, labels)


@dataclass(frozen=True)
class Diarization:
    """Exclusive (non-overlapping) turns plus one embedding per window-local speaker.

    Embeddings let the session registry map window labels to session labels;
    a speaker whose embedding is missing or NaN is matched by nothing and
    becomes a new session speaker only if it has enough speech.

    ``speech_turns`` are the turns before they were made exclusive (two people
    talking at once are both there): what RTTM export and DER want. Empty when
    the diarizer has no such output (then nobody claims to know who spoke when).
    ``turn_voices``: the voice of each exclusive turn embedded on its own, keyed by
    the turn's start (``processor.turn_check.regroup_turns``; empty otherwise).
    ``activity``: the segmentation model's per-chunk local speaker activity the turns were
    built from (None when the diarizer has none).
    """

    turns: tuple[SpeakerTurn, ...]
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)
    speech_turns: tuple[SpeakerTurn, ...] = ()
    turn_voices: dict[float, np.ndarray] = field(default_factory=dict)
    activity: LocalActivity | None = None

    def speaker_at(self, t: float) -> str | None:
        """Speaker active at time ``t`` (nearest turn if ``t`` falls in a gap)."""
        best, best_dist = None, float("inf")
        for turn in self.turns:
            if turn.start <= t < turn.end:
                return turn.speaker
            dist = min(abs(t - turn.start), abs(t - turn.end))
            if dist < best_dist:
                best, best_dist = turn.speaker, dist
        return best

    def relabel(self, mapping: dict[str, str]) -> Diarization:
        """The same turns with labels mapped (window-local -> session labels)."""
        return Diarization(
            tuple(SpeakerTurn(t.start, t.end, mapping.get(t.speaker, t.speaker)) for t in self.turns),
            {mapping.get(k, k): v for k, v in self.embeddings.items()},
            tuple(SpeakerTurn(t.start, t.end, mapping.get(t.speaker, t.speaker)) for t in self.speech_turns),
            self.turn_voices,
            None if self.activity is None else self.activity.relabel(mapping),
        )

    def until(self, seconds: float) -> Diarization:
        """Only what happens before ``seconds`` (a window committed short of its cut).

        Speakers heard only later are dropped with their embeddings: the next
        window, which starts at ``seconds``, will meet them.
        """

        def clip(turns: tuple[SpeakerTurn, ...]) -> tuple[SpeakerTurn, ...]:
            return tuple(SpeakerTurn(t.start, min(t.end, seconds), t.speaker) for t in turns if t.start < seconds)

        turns = clip(self.turns)
        speech = clip(self.speech_turns)
        heard = {t.speaker for t in turns} | {t.speaker for t in speech}
        voices = {k: v for k, v in self.turn_voices.items() if k < seconds}
        embeddings = {k: v for k, v in self.embeddings.items() if k in heard}
        return Diarization(turns, embeddings, speech, voices, self.activity)


class Diarizer(Protocol):
    """Finds speaker turns in float32 16 kHz mono audio."""

    def diarize(self, audio: np.ndarray, speech: SpeechMap | None = None) -> Diarization:
        """Diarize one window; ``speech`` is the window's VAD (its one pass, :mod:`processor.vad`) when known."""


class SpeakerMapper(Protocol):
    """Keeps session speaker labels stable across windows (state survives restarts)."""

    def assign(self, diarization: Diarization) -> dict[str, str]:
        """Map window-local labels to session labels, updating the registry."""

    def state(self) -> dict[str, object]:
        """JSON-serialisable registry state, stored with each committed window."""


class SingleSpeakerDiarizer:
    """Everything is one speaker: the choice when diarization is switched off."""

    label = "S1"

    def diarize(self, audio: np.ndarray, speech: SpeechMap | None = None) -> Diarization:
        """One turn over the whole window."""
        return Diarization((SpeakerTurn(0.0, len(audio) / SAMPLE_RATE, self.label),))


class IdentityMapper:
    """Session labels = window labels (for the single-speaker diarizer)."""

    def __init__(self, state: dict[str, object] | None = None) -> None:
        self._state = dict(state or {})

    def assign(self, diarization: Diarization) -> dict[str, str]:
        """Keep labels as they are."""
        return {t.speaker: t.speaker for t in diarization.turns}

    def state(self) -> dict[str, object]:
        """Nothing to remember."""
        return self._state


def turns_overlap_seconds(turns: Sequence[SpeakerTurn], start: float, end: float) -> dict[str, float]:
    """Seconds each speaker talks within [start, end)."""
    out: dict[str, float] = {}
    for t in turns:
        d = min(end, t.end) - max(start, t.start)
        if d > 0:
            out[t.speaker] = out.get(t.speaker, 0.0) + d
    return out


def unit_vector(vec: object) -> np.ndarray | None:
    """Unit-norm float64 copy, or None for missing, NaN/inf or all-zero embeddings."""
    if vec is None:
        return None
    arr = np.asarray(vec, dtype=np.float64).reshape(-1)
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        return None
    norm = float(np.linalg.norm(arr))
    if norm < 1e-8:
        return None
    return arr / norm
