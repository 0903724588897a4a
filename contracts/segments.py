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
from dataclasses import asdict, dataclass, field, replace
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
class WindowSpeaker:
    """One session speaker as one window heard it: how long it spoke and what its voice is.

    The processor stores one per session label with each committed window
    (:attr:`WindowRecord.speakers`); the end-of-session reconciliation
    (:mod:`control.speakers`) clusters all of a session's window speakers at once
    from them, and the voice library compares them with remembered voices.
    ``embedding`` is the speech-weighted mean of the unit-norm embeddings of the
    window-local speakers mapped to ``label`` (None when none had a usable one);
    ``seconds`` is their exclusive speech in the window.
    """

    label: str
    seconds: float
    embedding: tuple[float, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "label": self.label,
            "seconds": self.seconds,
            "embedding": None if self.embedding is None else list(self.embedding),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WindowSpeaker:
        """Inverse of :meth:`to_dict`."""
        emb = data.get("embedding")
        return cls(str(data["label"]), float(data["seconds"]), None if emb is None else tuple(float(x) for x in emb))


def relabel_segment(segment: TranscriptSegment, mapping: dict[str, str]) -> TranscriptSegment:
    """``segment`` with its speaker and its words' speakers mapped (labels not in ``mapping`` kept)."""
    if not mapping:
        return segment

    def new(label: str | None) -> str | None:
        return mapping.get(label, label) if label is not None else None

    words = tuple(
        Word(w.start, w.end, w.text, w.probability, new(w.speaker)) if w.speaker in mapping else w
        for w in segment.words
    )
    return replace(segment, speaker=new(segment.speaker), words=words)


def relabel_window(window: WindowRecord, mapping: dict[str, str]) -> WindowRecord:
    """``window`` with its turns' and speakers' labels mapped.

    Two window speakers mapped to one label become one (seconds added, embeddings
    speech-weighted), so a window still holds one entry per label.
    """
    if not mapping:
        return window
    turns = tuple(SpeakerTurn(t.start, t.end, mapping.get(t.speaker, t.speaker)) for t in window.turns)
    merged: dict[str, list[WindowSpeaker]] = {}
    for spk in window.speakers:
        merged.setdefault(mapping.get(spk.label, spk.label), []).append(spk)
    return replace(window, turns=turns, speakers=tuple(merge_window_speakers(k, v) for k, v in merged.items()))


def merge_window_speakers(label: str, speakers: list[WindowSpeaker]) -> WindowSpeaker:
    """One window speaker from several heard in one window: seconds added, embeddings speech-weighted."""
    if len(speakers) == 1:
        return replace(speakers[0], label=label)
    seconds = sum(s.seconds for s in speakers)
    with_emb = [s for s in speakers if s.embedding is not None]
    embedding = None
    if with_emb:
        dim = len(with_emb[0].embedding or ())
        total = [0.0] * dim
        for s in with_emb:
            w = max(s.seconds, 1e-3)
            for i, x in enumerate(s.embedding or ()):
                total[i] += w * x
        norm = sum(x * x for x in total) ** 0.5 or 1.0
        embedding = tuple(round(x / norm, 6) for x in total)
    return WindowSpeaker(label, round(seconds, 3), embedding)


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
    ``speakers``: each session speaker of the window with its speech and voice
    embedding (:class:`WindowSpeaker`), for the end-of-session reconciliation.
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
    speakers: tuple[WindowSpeaker, ...] = ()

    @property
    def start(self) -> float:
        """Start in seconds."""
        return self.start_sample / SAMPLE_RATE

    @property
    def end(self) -> float:
        """End in seconds."""
        return self.end_sample / SAMPLE_RATE


@dataclass(frozen=True)
class SpeakerRelabel:
    """What the end-of-session speaker reconciliation changed in one session.

    ``windows`` maps a window index to the labels that change in it (live label ->
    final label); a window or label not in it keeps its label. ``before`` and
    ``after`` are the session's speaker labels before and after. Stores apply it
    to the final rows, the window turns and speakers and the display names in one
    transaction and keep it (``get_session`` reports it); a session is relabelled
    at most once.
    """

    windows: dict[int, dict[str, str]]
    before: tuple[str, ...]
    after: tuple[str, ...]
    #: Seconds since the epoch when it was decided.
    at: float = 0.0

    @property
    def changed(self) -> bool:
        """True when some row gets another label."""
        return any(self.windows.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (window indexes as strings, as JSON keys are)."""
        return {
            "windows": {str(k): dict(v) for k, v in sorted(self.windows.items()) if v},
            "before": list(self.before),
            "after": list(self.after),
            "at": self.at,
            "windows_changed": sum(1 for v in self.windows.values() if v),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpeakerRelabel:
        """Inverse of :meth:`to_dict`."""
        return cls(
            {int(k): {str(a): str(b) for a, b in v.items()} for k, v in (data.get("windows") or {}).items()},
            tuple(str(x) for x in data.get("before") or ()),
            tuple(str(x) for x in data.get("after") or ()),
            float(data.get("at") or 0.0),
        )

    def carry_names(self, names: dict[str, str]) -> dict[str, str]:
        """Display names after the relabel: a renamed label's name follows its speech.

        A final label keeps its own name; one without a name takes the name of a live
        label merged into it; names of labels merged away are dropped. Labels the
        reconciliation never saw (no stored voice) keep their names.
        """
        merged_away = {old for mapping in self.windows.values() for old in mapping} - set(self.after)
        out = {label: name for label, name in names.items() if label not in merged_away and name != label}
        for mapping in self.windows.values():
            for old, new in sorted(mapping.items()):
                if new not in out and old in names and names[old] != old:
                    out[new] = names[old]
        return out
