"""A caller's meetings, and search across them: what the index page, the API and the CLI list.

One access rule (:func:`control.access.may_access`) decides which sessions a caller may read;
listing and search both start from :func:`readable_sessions`, so neither can show more than
``get_session`` would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from contracts.frames import SAMPLE_RATE
from control.access import Caller, may_access
from stores.base import SearchHit, Session, SessionNotFound, SessionStore, TranscriptStore

#: Most hits one search returns; most meetings one listing returns.
MAX_HITS = 50
MAX_MEETINGS = 200


def readable_sessions(sessions: SessionStore, caller: Caller) -> list[Session]:
    """The sessions ``caller`` may read, newest first."""
    readable = [s for s in sessions.list() if may_access(caller, s.user_id)]
    return sorted(readable, key=lambda s: s.created_at, reverse=True)


@dataclass(frozen=True)
class MeetingSummary:
    """One line of a meeting list."""

    session_id: str
    meeting_id: str
    topic: str
    state: str
    created_at: float
    ended_at: float | None
    #: Audio committed so far (the whole meeting once it is done).
    duration: float
    #: Display names of the session's speakers, in label order.
    speakers: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON form (API, index page)."""
        return {
            "session_id": self.session_id,
            "meeting_id": self.meeting_id,
            "topic": self.topic,
            "state": self.state,
            "created_at": self.created_at,
            "ended_at": self.ended_at,
            "duration": self.duration,
            "speakers": list(self.speakers),
        }


def summarise(session: Session, transcripts: TranscriptStore) -> MeetingSummary:
    """The list line of one session, read from the transcript store."""
    progress = transcripts.load_progress(session.session_id)
    committed = progress.committed_sample if progress else 0
    return MeetingSummary(
        session_id=session.session_id,
        meeting_id=session.meeting_id,
        topic=session.topic,
        state=session.state.value,
        created_at=session.created_at,
        ended_at=session.ended_at,
        duration=round(committed / SAMPLE_RATE, 2),
        speakers=tuple(transcripts.speakers(session.session_id).values()),
    )


def list_meetings(
    sessions: SessionStore, transcripts: TranscriptStore, caller: Caller, *, limit: int = MAX_MEETINGS
) -> list[MeetingSummary]:
    """The meetings ``caller`` may read, newest first."""
    return [summarise(s, transcripts) for s in readable_sessions(sessions, caller)[:limit]]


def revisions(sessions: SessionStore, session: Session) -> list[Session]:
    """Every transcript revision of ``session``'s meeting recording, first to latest (itself included)."""
    root = session.revision_of or session.session_id
    found = [s for s in sessions.list() if s.session_id == root or s.revision_of == root]
    return sorted(found, key=lambda s: s.revision)


@dataclass(frozen=True)
class MeetingHit:
    """A search hit with what a reader needs to open it: the meeting, the speaker's name, a link."""

    hit: SearchHit
    topic: str
    speaker_name: str | None
    #: The session page at the hit's moment (it plays from the archive there), where pages are served.
    url: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON form (API, index page)."""
        h = self.hit
        return {
            "session_id": h.session_id,
            "topic": self.topic,
            "window_index": h.window_index,
            "segment_index": h.segment_index,
            "start": h.start,
            "end": h.end,
            "speaker": h.speaker,
            "speaker_name": self.speaker_name,
            "text": h.text,
            "snippet": h.snippet,
            "score": h.score,
            "url": self.url,
        }


def moment_url(page_url: str, start: float) -> str:
    """The session page opened at ``start`` seconds: the page marks that passage and plays it."""
    return f"{page_url}?t={start:.2f}"


def search_meetings(
    sessions: SessionStore,
    transcripts: TranscriptStore,
    caller: Caller,
    query: str,
    *,
    limit: int = 20,
    page_url: Callable[[str], str] | None = None,
) -> list[MeetingHit]:
    """Ranked hits for ``query`` in every session ``caller`` may read."""
    if caller.is_operator:
        # Operators read everything: no listing of every session per query (it was 80 % of a
        # search's time over 1,000 meetings in bench/search.py); only the hits' sessions are read.
        hits = transcripts.search(query, session_ids=None, limit=min(limit, MAX_HITS))
        readable = {}
        for sid in dict.fromkeys(h.session_id for h in hits):
            try:
                readable[sid] = sessions.get(sid)
            except SessionNotFound:  # rows of a session the session store no longer has
                continue
    else:
        readable = {s.session_id: s for s in readable_sessions(sessions, caller)}
        hits = transcripts.search(query, session_ids=list(readable), limit=min(limit, MAX_HITS))
    names: dict[str, dict[str, str]] = {}
    out = []
    for h in hits:
        session = readable.get(h.session_id)
        if session is None:
            continue
        if h.session_id not in names:
            names[h.session_id] = transcripts.speakers(h.session_id)
        name = names[h.session_id].get(h.speaker, h.speaker) if h.speaker else None
        url = moment_url(page_url(h.session_id), h.start) if page_url else None
        out.append(MeetingHit(h, session.topic, name, url))
    return out
