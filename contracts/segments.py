"""Transcript segment contract v1: what the processor writes and every viewer reads.

A segment is keyed by ``(session_id, window_index, segment_index)``. Writers
upsert on that key, so replaying a window after a crash rewrites the same rows
and never duplicates them. Times are seconds on the session timeline (sample
offset / :data:`contracts.frames.SAMPLE_RATE`), not on the window.

``is_final`` separates interim text (re-transcribed while a window is still
open, may change) from final text (written once the window closed). A final
segment replaces every interim segment of its window; consumers must never show
interim text as if it were final.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any

from contracts.frames import SAMPLE_RATE

SCHEMA_VERSION = 1


class WindowStatus(enum.StrEnum):
    """How processing a window ended; stores keep the value as it is ("done", "failed")."""

    DONE = "done"
    #: Not transcribed (ASR or diarization raised) or refused by the store; ``error`` says why.
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Word:
    """One recognised word with its timing and the speaker active at its middle."""

    start: float
    end: float
    text: str
    probability: float = 1.0
    speaker: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Word:
        """Inverse of :meth:`to_dict`."""
        return cls(
            start=float(data["start"]),
            end=float(data["end"]),
            text=str(data["text"]),
            probability=float(data.get("probability", 1.0)),
            speaker=data.get("speaker"),
        )


@dataclass(frozen=True, slots=True)
class TranscriptSegment:
    """One speaker-attributed piece of transcript."""

    session_id: str
    window_index: int
    segment_index: int
    start: float
    end: float
    text: str
    speaker: str | None = None
    words: tuple[Word, ...] = field(default_factory=tuple)
    is_final: bool = True
    stable: bool = True
    avg_logprob: float | None = None
    audio_uri: str | None = None
    version: int = SCHEMA_VERSION

    @property
    def key(self) -> tuple[str, int, int]:
        """Idempotency key."""
        return (self.session_id, self.window_index, self.segment_index)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the golden files in ``contracts/golden`` show it)."""
        data = asdict(self)
        data["words"] = [w.to_dict() for w in self.words]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TranscriptSegment:
        """Inverse of :meth:`to_dict`; rejects unknown schema versions."""
        version = int(data.get("version", SCHEMA_VERSION))
        if version != SCHEMA_VERSION:
            raise ValueError(f"unsupported transcript segment version {version}")
        return cls(
            session_id=str(data["session_id"]),
            window_index=int(data["window_index"]),
            segment_index=int(data["segment_index"]),
            start=float(data["start"]),
            end=float(data["end"]),
            text=str(data["text"]),
            speaker=data.get("speaker"),
            words=tuple(Word.from_dict(w) for w in data.get("words") or ()),
            is_final=bool(data.get("is_final", True)),
            stable=bool(data.get("stable", True)),
            avg_logprob=data.get("avg_logprob"),
            audio_uri=data.get("audio_uri"),
            version=version,
        )


@dataclass(frozen=True, slots=True)
class SpeakerTurn:
    """A stretch of one speaker, in seconds.

    Relative to the window start when a diarizer returns it; on the session
    timeline (with session labels) when stored with a :class:`WindowRecord`.
    """

    start: float
    end: float
    speaker: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"start": self.start, "end": self.end, "speaker": self.speaker}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpeakerTurn:
        """Inverse of :meth:`to_dict`."""
        return cls(float(data["start"]), float(data["end"]), str(data["speaker"]))


@dataclass(frozen=True, slots=True)
class WindowRecord:
    """A processed window: its span on the session timeline and where its audio lives.

    ``status`` is :class:`WindowStatus` (``error`` says why it failed). A failed window
    is reported to the session, never hidden; so are the ASR segments the
    hallucination guard dropped from it (``dropped_segments``). ``turns`` is
    who spoke when in the window's span as the diarizer found it (session
    labels, session timeline, overlapping speech kept): speaker turns for RTTM
    export, which words alone describe badly (the pauses between words are
    speech too). Empty when diarization is off or the window failed.
    """

    session_id: str
    window_index: int
    start_sample: int
    end_sample: int
    status: WindowStatus = WindowStatus.DONE
    error: str | None = None
    audio_uri: str | None = None
    turns: tuple[SpeakerTurn, ...] = ()
    dropped_segments: int = 0

    @property
    def start(self) -> float:
        """Start in seconds."""
        return self.start_sample / SAMPLE_RATE

    @property
    def end(self) -> float:
        """End in seconds."""
        return self.end_sample / SAMPLE_RATE
