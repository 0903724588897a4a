"""Supabase transcript store (AWS mode): Postgres behind PostgREST, watched through Realtime.

:class:`SupabaseTranscriptStore` implements :class:`stores.base.TranscriptStore`
with the sync supabase-py client and the service-role key. The schema and the
write functions are in ``supabase/migrations``; every write that touches more
than one row is one Postgres function called by RPC, so it is one transaction:
a crash (of the processor, PostgREST or the network) never leaves half a window.

Failures are sorted in two:

* transient (connection errors, timeouts, HTTP 5xx, 429, Postgres connection /
  serialization errors) are retried with exponential backoff until the retry
  policy's deadline, then raised as :class:`StoreUnavailableError`;
* permanent (any other 4xx: bad JWT, constraint violation, unknown session) are
  raised at once as :class:`stores.base.PermanentStoreError`. The engine treats
  that as a failure of the window it was committing.

Both derive from :class:`stores.base.StoreError` and carry the HTTP status and
the Postgres/PostgREST code. Retrying a commit is safe because
``flowbot_commit_window`` replaces the window's rows wholesale.

Meeting status and notes written at the end of the workflow go through
:class:`SupabaseMeetingStatus` (``update(meeting_id, status, notes)``), which
also registers sessions (the owner of a session's rows) at start.
"""

from __future__ import annotations

import functools
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from postgrest import APIError

from contracts.frames import SAMPLE_RATE
from contracts.segments import (
    SpeakerRelabel,
    SpeakerTurn,
    TranscriptSegment,
    WindowRecord,
    WindowSpeaker,
    WindowStatus,
    relabel_segment,
    relabel_window,
)
from contracts.settings import Settings
from stores.base import (
    PermanentStoreError,
    SearchHit,
    Session,
    SessionProgress,
    StoreError,
    WindowChange,
    search_words,
)
from supabase import Client, ClientOptions, create_client

log = logging.getLogger("flowbot.stores.supabase")

T = TypeVar("T")

SEGMENTS = "transcript_segments"
WINDOWS = "transcript_windows"
PROGRESS = "session_progress"
SPEAKERS = "session_speakers"
NOTES = "meeting_notes"
RELABELS = "session_speaker_relabels"
# Supabase's PostgREST caps responses at 1000 rows by default (max-rows).
PAGE = 1000

# Postgres SQLSTATEs worth another try: connection loss, admin shutdown,
# serialization failures and deadlocks, too many connections.
_TRANSIENT_SQLSTATE_PREFIXES = ("08", "40", "53", "57P")
# PostgREST codes for "cannot reach / lost the database".
_TRANSIENT_PGRST = {"PGRST000", "PGRST001", "PGRST002", "PGRST003"}


class StoreUnavailableError(StoreError):
    """Supabase stayed unreachable or failing (5xx, 429, network) past the retry deadline."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded by attempts and a deadline."""

    attempts: int = 8
    base_delay: float = 0.2
    max_delay: float = 5.0
    deadline_s: float = 60.0

    def delay(self, attempt: int) -> float:
        """Sleep before retry number ``attempt`` (1-based)."""
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


class _Rest:
    """A sync supabase-py client plus the retry/classification rules."""

    def __init__(self, url: str, service_key: str, retry: RetryPolicy, timeout: float) -> None:
        if not url or not service_key:
            raise ValueError("Supabase store needs FLOWBOT_SUPABASE_URL and FLOWBOT_SUPABASE_SERVICE_KEY")
        self.retry = retry
        self._status = threading.local()
        # We retry ourselves (writes too, which postgrest-py never retries), so
        # its GET-only retry is off; the hook records each reply's HTTP status,
        # which postgrest-py's APIError does not carry.
        http = httpx.Client(timeout=timeout, event_hooks={"response": [self._record_status]})
        options = ClientOptions(
            postgrest_client_retry=False,
            httpx_client=http,
            auto_refresh_token=False,
            persist_session=False,
        )
        self.client: Client = create_client(url, service_key, options)

    def _record_status(self, response: httpx.Response) -> None:
        self._status.value = response.status_code

    def call(self, what: str, fn: Callable[[], T], *, session: str | None = None, **log_fields: Any) -> T:
        """Run ``fn`` (one HTTP request), retrying transient failures."""
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            self._status.value = None
            try:
                return fn()
            except httpx.TransportError as e:
                error: StoreError = StoreUnavailableError(f"{what}: {type(e).__name__}: {e}")
            except APIError as e:
                error = self._classify(what, e)
            if isinstance(error, PermanentStoreError):
                log.error(
                    "supabase request refused",
                    extra={
                        "session": session,
                        "op": what,
                        "status": error.status,
                        "code": error.code,
                        "error": str(error),
                        **log_fields,
                    },
                )
                raise error
            elapsed = time.monotonic() - started
            delay = self.retry.delay(attempt)
            if attempt >= self.retry.attempts or elapsed + delay > self.retry.deadline_s:
                log.error(
                    "supabase unavailable, giving up",
                    extra={"session": session, "op": what, "attempts": attempt, "error": str(error), **log_fields},
                )
                raise StoreUnavailableError(
                    f"{error} (gave up after {attempt} attempts in {elapsed:.1f}s)",
                    status=error.status,
                    code=error.code,
                ) from error
            log.warning(
                "supabase request failed, retrying",
                extra={
                    "session": session,
                    "op": what,
                    "attempt": attempt,
                    "delay_s": round(delay, 3),
                    "error": str(error),
                    **log_fields,
                },
            )
            time.sleep(delay)

    def _classify(self, what: str, e: APIError) -> StoreError:
        status: int | None = getattr(self._status, "value", None)
        code = e.code or ""
        if status is None and code.isdigit():
            status = int(code)  # postgrest-py puts the HTTP status there for non-JSON replies
        message = f"{what}: HTTP {status} {code}: {e.message}"
        if e.hint:
            message += f" (hint: {e.hint})"
        if code == "23503":
            message += " (session not registered in Supabase: call register_session first)"
        if code in {"PGRST301", "PGRST302"} or status == 401:
            message += " (check FLOWBOT_SUPABASE_SERVICE_KEY)"
        transient = (
            (status is not None and (status >= 500 or status in (408, 429)))
            or code in _TRANSIENT_PGRST
            or (len(code) == 5 and code.startswith(_TRANSIENT_SQLSTATE_PREFIXES))
        )
        cls = StoreUnavailableError if transient else PermanentStoreError
        return cls(message, status=status, code=code or None)


def _url_and_key(url: str | Settings, service_key: str | None) -> tuple[str, str]:
    if isinstance(url, Settings):
        return url.supabase_url, url.supabase_service_key
    return url, service_key or ""


def _data(builder: Any) -> Any:
    """Execute a postgrest-py request; its ``data`` is plain JSON (typed loosely here)."""
    return builder.execute().data


def _check_finite(seg: TranscriptSegment) -> None:
    values = [("start", seg.start), ("end", seg.end)]
    if seg.avg_logprob is not None:
        values.append(("avg_logprob", seg.avg_logprob))
    values += [(f"words[{i}].start", w.start) for i, w in enumerate(seg.words)]
    values += [(f"words[{i}].end", w.end) for i, w in enumerate(seg.words)]
    for name, value in values:
        if not math.isfinite(value):
            raise PermanentStoreError(f"segment {seg.key} has non-finite {name}={value}; JSON cannot carry it")


def _segment_json(seg: TranscriptSegment) -> dict[str, Any]:
    _check_finite(seg)
    data = seg.to_dict()
    data.pop("version", None)
    return data


def _progress_json(p: SessionProgress) -> dict[str, Any]:
    return {
        "session_id": p.session_id,
        "next_window_index": p.next_window_index,
        "committed_sample": p.committed_sample,
        "ended_sample": p.ended_sample,
        "speaker_state": p.speaker_state,
    }


def _segment_from_row(row: dict[str, Any]) -> TranscriptSegment:
    return TranscriptSegment.from_dict(row)


class SupabaseTranscriptStore:
    """:class:`stores.base.TranscriptStore` on Supabase (service-role key)."""

    def __init__(
        self,
        url: str | Settings,
        service_key: str | None = None,
        *,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
    ) -> None:
        """Build from ``settings``, or from ``url`` and ``service_key``."""
        self._rest = _Rest(*_url_and_key(url, service_key), retry or RetryPolicy(), timeout)
        self._db = self._rest.client

    @classmethod
    def from_settings(cls, settings: Settings) -> SupabaseTranscriptStore:
        """Build from ``FLOWBOT_SUPABASE_URL`` and ``FLOWBOT_SUPABASE_SERVICE_KEY``."""
        return cls(settings)

    # --- writes --------------------------------------------------------------

    def commit_window(
        self,
        window: WindowRecord,
        segments: Sequence[TranscriptSegment],
        progress: SessionProgress,
    ) -> None:
        """See :meth:`stores.base.TranscriptStore.commit_window`: one RPC, one transaction."""
        sid, idx = window.session_id, window.window_index
        for s in segments:
            if (s.session_id, s.window_index) != (sid, idx):
                raise PermanentStoreError(f"segment {s.key} is not in window ({sid!r}, {idx})")
        if progress.session_id != sid:
            raise PermanentStoreError(f"progress of {progress.session_id!r} given for {sid!r}")
        if window.status not in tuple(WindowStatus):
            raise PermanentStoreError(f"window status {window.status!r} is not one of {', '.join(WindowStatus)}")
        params = {
            "p_window": {
                "session_id": sid,
                "window_index": idx,
                "start_sample": window.start_sample,
                "end_sample": window.end_sample,
                "status": window.status,
                "error": window.error,
                "audio_uri": window.audio_uri,
                "turns": [t.to_dict() for t in window.turns],
                "dropped_segments": window.dropped_segments,
                "speakers": [spk.to_dict() for spk in window.speakers],
            },
            "p_segments": [_segment_json(s) for s in segments],
            "p_progress": _progress_json(progress),
        }
        started = time.perf_counter()
        revision = self._rest.call(
            "commit_window",
            lambda: _data(self._db.rpc("flowbot_commit_window", params)),
            session=sid,
            window=idx,
        )
        log.info(
            "window committed",
            extra={
                "session": sid,
                "window": idx,
                "segments": len(segments),
                "status": window.status,
                "revision": revision,
                "ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )

    def put_interim(self, session_id: str, window_index: int, segments: Sequence[TranscriptSegment]) -> bool:
        """See :meth:`stores.base.TranscriptStore.put_interim`."""
        for s in segments:
            if (s.session_id, s.window_index) != (session_id, window_index):
                raise PermanentStoreError(f"segment {s.key} is not in window ({session_id!r}, {window_index})")
        params = {
            "p_session_id": session_id,
            "p_window_index": window_index,
            "p_start_sample": int(segments[0].start * SAMPLE_RATE) if segments else 0,
            "p_end_sample": int(segments[-1].end * SAMPLE_RATE) if segments else 0,
            "p_segments": [_segment_json(s) for s in segments],
        }
        return bool(
            self._rest.call(
                "put_interim",
                lambda: _data(self._db.rpc("flowbot_put_interim", params)),
                session=session_id,
                window=window_index,
            )
        )

    def save_progress(self, progress: SessionProgress) -> None:
        """See :meth:`stores.base.TranscriptStore.save_progress`."""
        params = {"p_progress": _progress_json(progress)}
        self._rest.call(
            "save_progress",
            lambda: self._db.rpc("flowbot_save_progress", params).execute(),
            session=progress.session_id,
        )

    def rename_speaker(self, session_id: str, label: str, name: str) -> None:
        """See :meth:`stores.base.TranscriptStore.rename_speaker`."""
        row = {"session_id": session_id, "label": label, "display_name": name}
        self._rest.call(
            "rename_speaker",
            lambda: (
                self._db.table(SPEAKERS)
                .upsert(row, on_conflict="session_id,label", returning="minimal")  # type: ignore[arg-type]
                .execute()
            ),
            session=session_id,
        )

    def relabel_speakers(self, session_id: str, relabel: SpeakerRelabel) -> bool:
        """See :meth:`stores.base.TranscriptStore.relabel_speakers`.

        The new rows are computed here with the same functions as SQLite's; one RPC
        (``flowbot_relabel_speakers``) writes them in one transaction, once per session.
        """
        changed = {k: v for k, v in relabel.windows.items() if v}
        segments = [
            relabel_segment(s, changed[s.window_index]) for s in self.segments(session_id) if s.window_index in changed
        ]
        windows = [
            relabel_window(w, changed[w.window_index]) for w in self.windows(session_id) if w.window_index in changed
        ]
        names = self.speakers(session_id)
        params = {
            "p_session_id": session_id,
            "p_segments": [
                {
                    "window_index": s.window_index,
                    "segment_index": s.segment_index,
                    "speaker": s.speaker,
                    "words": [w.to_dict() for w in s.words],
                }
                for s in segments
            ],
            "p_windows": [
                {
                    "window_index": w.window_index,
                    "turns": [t.to_dict() for t in w.turns],
                    "speakers": [spk.to_dict() for spk in w.speakers],
                }
                for w in windows
            ],
            "p_names": relabel.carry_names(names),
            "p_record": relabel.to_dict(),
        }
        return bool(
            self._rest.call(
                "relabel_speakers",
                lambda: _data(self._db.rpc("flowbot_relabel_speakers", params)),
                session=session_id,
            )
        )

    def speaker_relabel(self, session_id: str) -> SpeakerRelabel | None:
        """See :meth:`stores.base.TranscriptStore.speaker_relabel`."""
        rows = self._rest.call(
            "speaker_relabel",
            lambda: _data(self._db.table(RELABELS).select("record").eq("session_id", session_id)),
            session=session_id,
        )
        return SpeakerRelabel.from_dict(rows[0]["record"]) if rows else None

    def put_notes(self, session_id: str, notes: dict[str, Any]) -> None:
        """See :meth:`stores.base.TranscriptStore.put_notes` (per-session notes only)."""
        row = {"session_id": session_id, "notes": notes}
        self._rest.call(
            "put_notes",
            lambda: (
                self._db.table(NOTES)
                .upsert(row, on_conflict="session_id", returning="minimal")  # type: ignore[arg-type]
                .execute()
            ),
            session=session_id,
        )

    # --- reads ---------------------------------------------------------------

    def load_progress(self, session_id: str) -> SessionProgress | None:
        """See :meth:`stores.base.TranscriptStore.load_progress`."""
        rows = self._rest.call(
            "load_progress",
            lambda: _data(self._db.table(PROGRESS).select("*").eq("session_id", session_id)),
            session=session_id,
        )
        if not rows:
            return None
        r = rows[0]
        return SessionProgress(
            session_id=session_id,
            next_window_index=int(r["next_window_index"]),
            committed_sample=int(r["committed_sample"]),
            ended_sample=None if r["ended_sample"] is None else int(r["ended_sample"]),
            speaker_state=dict(r["speaker_state"] or {}),
        )

    def _paged(
        self, what: str, session_id: str, query: Callable[[int, int], list[dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            page = self._rest.call(what, functools.partial(query, len(out), len(out) + PAGE - 1), session=session_id)
            out.extend(page)
            if len(page) < PAGE:
                return out

    def segments(self, session_id: str, *, include_interim: bool = False) -> list[TranscriptSegment]:
        """See :meth:`stores.base.TranscriptStore.segments`."""

        def page(lo: int, hi: int) -> list[dict[str, Any]]:
            q = self._db.table(SEGMENTS).select("*").eq("session_id", session_id)
            if not include_interim:
                q = q.eq("is_final", True)
            return list(_data(q.order("window_index").order("segment_index").range(lo, hi)))

        return [_segment_from_row(r) for r in self._paged("segments", session_id, page)]

    def windows(self, session_id: str) -> list[WindowRecord]:
        """See :meth:`stores.base.TranscriptStore.windows`."""

        def page(lo: int, hi: int) -> list[dict[str, Any]]:
            return list(
                _data(
                    self._db.table(WINDOWS)
                    .select(
                        "session_id,window_index,start_sample,end_sample,status,error,audio_uri,turns,"
                        "dropped_segments,speakers"
                    )
                    .eq("session_id", session_id)
                    .neq("status", "open")
                    .order("window_index")
                    .range(lo, hi)
                )
            )

        return [
            WindowRecord(
                **{
                    **r,
                    "status": WindowStatus(r["status"]),
                    "turns": tuple(SpeakerTurn.from_dict(t) for t in r.get("turns") or ()),
                    "speakers": tuple(WindowSpeaker.from_dict(s) for s in r.get("speakers") or ()),
                }
            )
            for r in self._paged("windows", session_id, page)
        ]

    def changes_since(self, session_id: str, revision: int) -> list[WindowChange]:
        """See :meth:`stores.base.TranscriptStore.changes_since` (one consistent read)."""
        params = {"p_session_id": session_id, "p_revision": revision}
        data = self._rest.call(
            "changes_since",
            lambda: _data(self._db.rpc("flowbot_changes_since", params)),
            session=session_id,
        )
        return [window_change_from_json(w) for w in data or []]

    def speakers(self, session_id: str) -> dict[str, str]:
        """See :meth:`stores.base.TranscriptStore.speakers`."""
        data = self._rest.call(
            "speakers",
            lambda: _data(self._db.rpc("flowbot_speakers", {"p_session_id": session_id})),
            session=session_id,
        )
        return {k: str(data[k]) for k in sorted(data or {})}

    def get_notes(self, session_id: str) -> dict[str, Any] | None:
        """See :meth:`stores.base.TranscriptStore.get_notes`."""
        rows = self._rest.call(
            "get_notes",
            lambda: _data(self._db.table(NOTES).select("notes").eq("session_id", session_id)),
            session=session_id,
        )
        return dict(rows[0]["notes"]) if rows else None

    def search(self, query: str, *, session_ids: Sequence[str] | None, limit: int) -> list[SearchHit]:
        """See :meth:`stores.base.TranscriptStore.search` (Postgres full text, ``flowbot_search``)."""
        words = search_words(query)
        if not words or (session_ids is not None and not session_ids):
            return []
        params = {"p_words": " ".join(words), "p_session_ids": None if session_ids is None else list(session_ids)}
        data = self._rest.call(
            "search",
            lambda: _data(self._db.rpc("flowbot_search", {**params, "p_limit": limit})),
        )
        return [search_hit_from_json(r) for r in data or []]


def search_hit_from_json(row: dict[str, Any]) -> SearchHit:
    """A :class:`SearchHit` from one row of ``flowbot_search``."""
    return SearchHit(
        session_id=str(row["session_id"]),
        window_index=int(row["window_index"]),
        segment_index=int(row["segment_index"]),
        start=float(row["start"]),
        end=float(row["end"]),
        speaker=row["speaker"],
        text=str(row["text"]),
        snippet=str(row["snippet"]),
        score=float(row["score"]),
    )


def window_change_from_json(data: dict[str, Any]) -> WindowChange:
    """A :class:`WindowChange` from one element of ``flowbot_changes_since``."""
    return WindowChange(
        window_index=int(data["window_index"]),
        revision=int(data["revision"]),
        is_final=data["status"] != "open",
        segments=tuple(_segment_from_row(s) for s in data.get("segments") or ()),
    )


class SupabaseMeetingStatus:
    """Meeting/session rows the coordinator and the end-of-session workflow write.

    ``register_session`` must run before the processor commits a session's
    first window (its rows reference the session, which names the owner RLS
    checks). ``update`` is what the workflow calls at the end: it sets the
    meeting's status and notes, and with ``session_id`` also that session's
    state and per-session notes (the ones ``TranscriptStore.get_notes`` reads),
    all in one transaction.
    """

    def __init__(
        self,
        url: str | Settings,
        service_key: str | None = None,
        *,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
    ) -> None:
        """``SupabaseMeetingStatus(settings)`` or ``SupabaseMeetingStatus(url, service_key)``."""
        self._rest = _Rest(*_url_and_key(url, service_key), retry or RetryPolicy(), timeout)
        self._db = self._rest.client

    @classmethod
    def from_settings(cls, settings: Settings) -> SupabaseMeetingStatus:
        """Build from ``FLOWBOT_SUPABASE_URL`` and ``FLOWBOT_SUPABASE_SERVICE_KEY``."""
        return cls(settings)

    def owner_of(self, meeting_id: str) -> str | None:
        """The owner's user id of a meeting, or None if there is no such meeting."""
        rows = self._rest.call(
            "owner_of",
            lambda: _data(self._db.table("meetings").select("owner_id").eq("id", meeting_id)),
            meeting=meeting_id,
        )
        return str(rows[0]["owner_id"]) if rows else None

    def register_session(self, session: Session) -> None:
        """Create the meeting (owned by ``session.user_id``, a Supabase user id) and the session."""
        params = {
            "p_session_id": session.session_id,
            "p_meeting_id": session.meeting_id,
            "p_owner_id": session.user_id,
            "p_topic": session.topic,
            "p_state": session.state.value,
        }
        self._rest.call(
            "register_session",
            lambda: self._db.rpc("flowbot_register_session", params).execute(),
            session=session.session_id,
        )

    def update(
        self,
        meeting_id: str,
        status: str,
        notes: dict[str, Any] | None = None,
        *,
        session_id: str | None = None,
        reason: str | None = None,
    ) -> None:
        """Set a meeting's status (a SessionState value) and, when given, its notes."""
        params = {
            "p_meeting_id": meeting_id,
            "p_status": status,
            "p_notes": notes,
            "p_session_id": session_id,
            "p_reason": reason,
        }
        self._rest.call(
            "update_meeting_status",
            lambda: self._db.rpc("flowbot_update_meeting_status", params).execute(),
            session=session_id,
            meeting=meeting_id,
            status=status,
        )
