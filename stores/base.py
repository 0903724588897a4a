"""Store interfaces: where transcripts and session state live.

Two implementations each: SQLite (single machine) and Supabase/DynamoDB (AWS).
The processor, the control plane and the CLI only see these protocols.
"""

from __future__ import annotations

import enum
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from contracts.segments import SpeakerRelabel, TranscriptSegment, WindowRecord
from contracts.voices import Voice, VoiceNaming


@dataclass(frozen=True)
class SessionProgress:
    """How far the processor has durably got with one session.

    Written in the same transaction as a window's segments, so after a crash
    the processor resumes exactly after the last committed window.
    ``speaker_state`` is the session speaker registry (centroids), opaque here.
    """

    session_id: str
    next_window_index: int = 0
    committed_sample: int = 0
    ended_sample: int | None = None
    speaker_state: dict[str, Any] = field(default_factory=dict)

    @property
    def stream_done(self) -> bool:
        """True once the end-of-stream record was processed and all audio committed."""
        return self.ended_sample is not None and self.committed_sample >= self.ended_sample


@dataclass(frozen=True)
class WindowChange:
    """A window whose rows changed: the feed replaces the window's text wholesale."""

    window_index: int
    revision: int
    is_final: bool
    segments: tuple[TranscriptSegment, ...]


#: Marks around the matched words in :attr:`SearchHit.snippet` (never in a transcript: ASR emits no
#: control characters). Readers turn them into highlighting; nothing else in the snippet is markup.
MATCH_START = "\x02"
MATCH_END = "\x03"


@dataclass(frozen=True)
class SearchHit:
    """One final segment that matches a full-text query, best first."""

    session_id: str
    window_index: int
    segment_index: int
    start: float
    end: float
    speaker: str | None
    text: str
    #: ``text`` with every matched word between :data:`MATCH_START` and :data:`MATCH_END`.
    snippet: str
    #: Higher is better; comparable only within one answer.
    score: float


#: Most words of a query that are searched for; the rest are ignored.
MAX_QUERY_WORDS = 16
_WORD = re.compile(r"\w+", re.UNICODE)


def search_words(query: str) -> list[str]:
    """The words of a free-text query, lower-cased, as every backend searches them.

    Punctuation and operators are dropped: a query is words that must all occur, never syntax
    (a user's ``"`` or ``NEAR`` cannot change what the store runs).
    """
    return [w[:64] for w in _WORD.findall(query.casefold())][:MAX_QUERY_WORDS]


class TranscriptStore(Protocol):
    """Segments, windows, progress, speakers and notes of sessions."""

    def commit_window(
        self,
        window: WindowRecord,
        segments: Sequence[TranscriptSegment],
        progress: SessionProgress,
    ) -> None:
        """Atomically replace the window's rows with ``segments`` and store ``progress``.

        Idempotent: replaying the same window rewrites the same rows.
        """

    def put_interim(self, session_id: str, window_index: int, segments: Sequence[TranscriptSegment]) -> bool:
        """Replace a still-open window's interim rows; False if the window is already final."""

    def save_progress(self, progress: SessionProgress) -> None:
        """Store progress without a window (e.g. end of stream on an empty buffer)."""

    def load_progress(self, session_id: str) -> SessionProgress | None:
        """Last committed progress of a session, or None if it never committed."""

    def segments(self, session_id: str, *, include_interim: bool = False) -> list[TranscriptSegment]:
        """A session's segments in time order."""

    def windows(self, session_id: str) -> list[WindowRecord]:
        """A session's committed (done or failed) windows in order."""

    def changes_since(self, session_id: str, revision: int) -> list[WindowChange]:
        """Windows changed after ``revision`` (for live feeds), oldest first."""

    def speakers(self, session_id: str) -> dict[str, str]:
        """Speaker label -> display name (the label itself when unnamed)."""

    def rename_speaker(self, session_id: str, label: str, name: str) -> None:
        """Give a session speaker a display name."""

    def relabel_speakers(self, session_id: str, relabel: SpeakerRelabel) -> bool:
        """Apply the end-of-session speaker reconciliation in one transaction, once.

        Final rows (segment and word speakers), window turns and window speakers get
        their final labels, each changed window a new revision (live feeds send it
        again); display names follow their speech (:meth:`SpeakerRelabel.carry_names`);
        ``relabel`` is kept for :meth:`speaker_relabel`. False, changing nothing, when
        the session was already relabelled.
        """

    def speaker_relabel(self, session_id: str) -> SpeakerRelabel | None:
        """The reconciliation applied to a session, or None before it ran."""

    def put_notes(self, session_id: str, notes: dict[str, Any]) -> None:
        """Store the meeting notes of a session."""

    def get_notes(self, session_id: str) -> dict[str, Any] | None:
        """Stored notes, or None."""

    def search(self, query: str, *, session_ids: Sequence[str] | None, limit: int) -> list[SearchHit]:
        """Final segments matching every word of ``query``, ranked best first.

        ``session_ids`` limits the search to those sessions (None: every session the store's
        credentials may read). Words are matched by stem, case-insensitively.
        """


class SessionState(enum.StrEnum):
    """Life cycle of a session (see control.sessions for allowed transitions)."""

    STARTING = "starting"
    LIVE = "live"
    ENDING = "ending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    PARTIAL = "partial"
    FAILED = "failed"


@dataclass(frozen=True)
class Session:
    """One meeting session as the control plane tracks it."""

    session_id: str
    meeting_id: str
    user_id: str
    topic: str
    stream_key: str
    state: SessionState = SessionState.STARTING
    reason: str | None = None
    rtmp_url: str | None = None
    producer_ref: str | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    #: Transcript revision: 1 for a meeting as it was streamed, n+1 for a re-transcription of
    #: revision n (a session of its own, from the archived audio of ``revision_of``).
    revision: int = 1
    #: The session whose archived audio this revision re-transcribed (the meeting's first session).
    revision_of: str | None = None
    #: ASR model and language asked for by a re-transcription (None: the processor's own).
    asr_model: str | None = None
    asr_language: str | None = None

    def public_view(self) -> dict[str, Any]:
        """What the API returns (the stream key only via start_session)."""
        return {
            "session_id": self.session_id,
            "meeting_id": self.meeting_id,
            "user_id": self.user_id,
            "topic": self.topic,
            "state": self.state.value,
            "reason": self.reason,
            "rtmp_url": self.rtmp_url,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "ended_at": self.ended_at,
            "revision": self.revision,
            "revision_of": self.revision_of,
            "asr_model": self.asr_model,
            "asr_language": self.asr_language,
        }


class StoreError(RuntimeError):
    """A store operation failed.

    ``status`` and ``code`` say what the backend answered, where it answered
    (an HTTP status; a Postgres SQLSTATE or PostgREST code), else None.
    """

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class PermanentStoreError(StoreError):
    """The store refused a write for good (bad data, unknown session): retrying cannot help.

    The engine records the window as failed instead of replaying it forever.
    Transient failures raise anything else, and the window replays.
    """


class StateConflict(RuntimeError):
    """A conditional state transition lost: the session is not in an expected state."""


class SessionNotFound(KeyError):
    """No session with that id."""


class SessionStore(Protocol):
    """Session records with conditional transitions."""

    def create(self, session: Session) -> None:
        """Insert a new session; raises StateConflict if the id exists."""

    def get(self, session_id: str) -> Session:
        """The session, or raise :class:`SessionNotFound`."""

    def transition(
        self, session_id: str, expected: Sequence[SessionState], new: SessionState, **fields: Any
    ) -> Session:
        """Move to ``new`` only if the state is one of ``expected`` (atomic)."""

    def find_by_stream_key(self, stream_key: str) -> Session | None:
        """The session that owns a stream key."""

    def list(self, states: Sequence[SessionState] | None = None) -> list[Session]:
        """Sessions, optionally filtered by state."""


class VoiceLibrary(Protocol):
    """Owners' remembered voices (embeddings, never audio) and the speakers named after them.

    Every read and delete is scoped to one owner: a voice is never returned for
    another owner's id. See :mod:`contracts.voices` and docs/voices.md.
    """

    def save_voice(self, voice: Voice) -> None:
        """Insert or replace a voice (by ``voice_id``)."""

    def voices(self, owner_id: str, *, model: str | None = None) -> list[Voice]:
        """The owner's voices (of one embedding model when given), by name."""

    def forget_voice(self, owner_id: str, voice_id: str) -> bool:
        """Delete the owner's voice and its embedding; False if the owner has no such voice.

        Namings it made keep their name and score but lose the link to it.
        """

    def record_naming(self, naming: VoiceNaming) -> None:
        """Insert or replace the naming of one session speaker (by session and label)."""

    def namings(self, session_id: str) -> dict[str, VoiceNaming]:
        """Session speaker label -> how it was named by voice (undone ones included)."""
