"""The session life cycle and the session report.

**Life cycle.** Every state change of a session is one of the named verbs
below, and :data:`TRANSITIONS` is the one table of them: for each verb, the
states it applies in and the state it leads to::

    starting --go_live--> live
    starting, live --end--> ending --start_processing--> processing
    ending, processing --complete / complete_partially / fail--> completed / partial / failed
    starting --fail_launch--> failed
    starting, live --record_launch--> (unchanged: where to publish, the producer's handle)
    starting, live --rotate_key--> (unchanged: a new stream key and where to publish with it)

A verb is the store's conditional transition (compare-and-set), so it is
atomic: one that finds the session in any other state raises
:class:`stores.base.StateConflict` and changes nothing. Completed, partial
and failed are terminal (:data:`TERMINAL`): no verb leaves them.

**Report.** :class:`SessionReport` is what there is to say about one session:
its record, how far processing got (:class:`Progress`), speakers, notes and
interim-caption counters. ``get_session`` answers with it, the end-of-session
workflow waits on its :class:`Progress`, and the web front's session page
reads it.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from contracts.frames import SAMPLE_RATE
from contracts.segments import SpeakerRelabel
from control.launch import LaunchResult
from stores.base import Session, SessionState, SessionStore, StateConflict, TranscriptStore


class Verb(enum.StrEnum):
    """The named state changes of a session (see the module doc)."""

    RECORD_LAUNCH = "record_launch"
    ROTATE_KEY = "rotate_key"
    FAIL_LAUNCH = "fail_launch"
    GO_LIVE = "go_live"
    END = "end"
    START_PROCESSING = "start_processing"
    COMPLETE = "complete"
    COMPLETE_PARTIALLY = "complete_partially"
    FAIL = "fail"


@dataclass(frozen=True)
class Transition:
    """The states a verb applies in, and the state it leads to (None: the state stays)."""

    sources: frozenset[SessionState]
    target: SessionState | None


#: States in which a session takes audio: ingest accepts its stream key, and it can be ended.
ACTIVE = frozenset({SessionState.STARTING, SessionState.LIVE})
_FINISHING = frozenset({SessionState.ENDING, SessionState.PROCESSING})

#: The one table of allowed state changes.
TRANSITIONS: dict[Verb, Transition] = {
    Verb.RECORD_LAUNCH: Transition(ACTIVE, None),
    Verb.ROTATE_KEY: Transition(ACTIVE, None),
    Verb.FAIL_LAUNCH: Transition(frozenset({SessionState.STARTING}), SessionState.FAILED),
    Verb.GO_LIVE: Transition(frozenset({SessionState.STARTING}), SessionState.LIVE),
    Verb.END: Transition(ACTIVE, SessionState.ENDING),
    Verb.START_PROCESSING: Transition(frozenset({SessionState.ENDING}), SessionState.PROCESSING),
    Verb.COMPLETE: Transition(_FINISHING, SessionState.COMPLETED),
    Verb.COMPLETE_PARTIALLY: Transition(_FINISHING, SessionState.PARTIAL),
    Verb.FAIL: Transition(_FINISHING, SessionState.FAILED),
}

#: States no verb leaves.
TERMINAL = frozenset(s for s in SessionState if not any(s in t.sources for t in TRANSITIONS.values()))


def apply(sessions: SessionStore, session_id: str, verb: Verb, **fields: Any) -> Session:
    """Apply ``verb`` to a session (atomically), setting ``fields`` with it; returns the session after.

    Raises :class:`StateConflict` when the session is in a state the verb does not apply in.
    """
    rule = TRANSITIONS[verb]
    sources = [s for s in SessionState if s in rule.sources]  # in life-cycle order
    if rule.target is not None:
        return sessions.transition(session_id, sources, rule.target, **fields)
    # The state stays: one compare-and-set per source state, so a concurrent change is never undone.
    for state in sources:
        try:
            return sessions.transition(session_id, [state], state, **fields)
        except StateConflict:
            continue
    raise StateConflict(f"{verb}: session {session_id} is not {' or '.join(sources)}")


# -- the verbs ---------------------------------------------------------------------------------


def record_launch(sessions: SessionStore, session_id: str, launched: LaunchResult) -> Session:
    """Ingest is ready: record where to publish and the producer's handle."""
    return apply(
        sessions,
        session_id,
        Verb.RECORD_LAUNCH,
        rtmp_url=launched.rtmp_url,
        producer_ref=launched.producer_ref,
    )


def rotate_key(sessions: SessionStore, session_id: str, stream_key: str, launched: LaunchResult) -> Session:
    """Ingest took a new stream key: record it and where to publish with it."""
    return apply(sessions, session_id, Verb.ROTATE_KEY, stream_key=stream_key, rtmp_url=launched.rtmp_url)


def fail_launch(sessions: SessionStore, session_id: str, reason: str) -> Session:
    """Ingest could not be started for a new session."""
    return apply(sessions, session_id, Verb.FAIL_LAUNCH, reason=reason)


def go_live(sessions: SessionStore, session_id: str) -> Session:
    """The first audio arrived."""
    return apply(sessions, session_id, Verb.GO_LIVE)


def end(sessions: SessionStore, session_id: str) -> Session:
    """The meeting is over: ingest is to stop (its end-of-stream record comes next)."""
    return apply(sessions, session_id, Verb.END, ended_at=time.time())


def start_processing(sessions: SessionStore, session_id: str) -> Session:
    """The stream has its end: the end-of-session workflow takes over."""
    return apply(sessions, session_id, Verb.START_PROCESSING)


def complete(sessions: SessionStore, session_id: str) -> Session:
    """Every window was processed and the notes are written."""
    return apply(sessions, session_id, Verb.COMPLETE, reason=None)


def complete_partially(sessions: SessionStore, session_id: str, reason: str) -> Session:
    """Done, but part of the audio is missing from the transcript (``reason`` says which)."""
    return apply(sessions, session_id, Verb.COMPLETE_PARTIALLY, reason=reason)


def fail(sessions: SessionStore, session_id: str, reason: str) -> Session:
    """The end of the session failed: no transcript, or the workflow itself broke."""
    return apply(sessions, session_id, Verb.FAIL, reason=reason)


# -- the report --------------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowFailure:
    """A window the processor could not transcribe (its audio is missing from the transcript)."""

    window_index: int
    start: float
    end: float
    error: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"window_index": self.window_index, "start": self.start, "end": self.end, "error": self.error}


@dataclass(frozen=True)
class Progress:
    """How far the processor has durably got with one session."""

    windows_done: int
    failures: tuple[WindowFailure, ...]
    #: Audio committed so far, in samples of the session timeline.
    committed_sample: int
    #: Where the stream ends (its end-of-stream record), once known.
    ended_sample: int | None
    #: ASR segments the hallucination guard dropped (never silently: see processor.asr.guard).
    segments_dropped: int
    #: Windows the whole stream makes, once its end is known and the window length is given.
    windows_expected: int | None

    @classmethod
    def read(cls, transcripts: TranscriptStore, session_id: str, window_seconds: float | None = None) -> Progress:
        """Read a session's progress from the transcript store."""
        stored = transcripts.load_progress(session_id)
        windows = transcripts.windows(session_id)
        failures = tuple(
            WindowFailure(w.window_index, w.start, w.end, w.error) for w in windows if w.status == "failed"
        )
        ended = stored.ended_sample if stored else None
        expected = None
        if ended is not None and window_seconds:
            expected = max(len(windows), math.ceil(ended / SAMPLE_RATE / window_seconds))
        return cls(
            windows_done=len(windows) - len(failures),
            failures=failures,
            committed_sample=stored.committed_sample if stored else 0,
            ended_sample=ended,
            segments_dropped=sum(w.dropped_segments for w in windows),
            windows_expected=expected,
        )

    @property
    def windows_failed(self) -> int:
        """Windows that could not be transcribed."""
        return len(self.failures)

    @property
    def processed_seconds(self) -> float:
        """Audio committed so far, in seconds (two decimals)."""
        return round(self.committed_sample / SAMPLE_RATE, 2)

    @property
    def stream_ended(self) -> bool:
        """The end-of-stream record was processed."""
        return self.ended_sample is not None

    @property
    def stream_done(self) -> bool:
        """The stream ended and every sample up to its end is committed."""
        return self.ended_sample is not None and self.committed_sample >= self.ended_sample

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``get_session``'s ``progress``)."""
        return {
            "windows_done": self.windows_done,
            "windows_failed": self.windows_failed,
            "windows_expected": self.windows_expected,
            "failures": [f.to_dict() for f in self.failures],
            "processed_seconds": self.processed_seconds,
            "stream_ended": self.stream_ended,
            "segments_dropped": self.segments_dropped,
        }


@dataclass(frozen=True)
class SessionReport:
    """Everything there is to say about one session (``get_session``'s answer)."""

    session: Session
    progress: Progress
    speakers: dict[str, str]
    notes: dict[str, Any] | None
    #: Interim-caption counters, where captions run in this process.
    interim: dict[str, Any] | None
    #: What the end-of-session speaker reconciliation changed (None before it ran).
    speaker_relabel: SpeakerRelabel | None = None

    @classmethod
    def read(
        cls,
        session: Session,
        transcripts: TranscriptStore,
        *,
        window_seconds: float,
        interim_stats: Callable[[str], dict[str, Any]] | None = None,
    ) -> SessionReport:
        """Read the rest of the report of ``session`` from the transcript store."""
        sid = session.session_id
        return cls(
            session=session,
            progress=Progress.read(transcripts, sid, window_seconds),
            speakers=transcripts.speakers(sid),
            notes=transcripts.get_notes(sid),
            interim=interim_stats(sid) if interim_stats is not None else None,
            speaker_relabel=transcripts.speaker_relabel(sid),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON form: the session's public view with progress, speakers, notes and interim counters."""
        return {
            **self.session.public_view(),
            "progress": self.progress.to_dict(),
            "speakers": self.speakers,
            "notes": self.notes,
            "interim": self.interim,
            "speakers_reconciled": None if self.speaker_relabel is None else self.speaker_relabel.to_dict(),
        }
