"""Supabase transcript store (AWS mode): Postgres behind PostgREST, watched through Realtime.

:class:`SupabaseTranscriptStore` implements :class:`stores.base.TranscriptStore`
with the sync supabase-py client and the service-role key. The schema and the
write functions are in ``supabase/migrations``; every write that touches more
than one row is one Postgres function called by RPC, so it is one transaction:
a crash (of the processor, PostgREST or the network) never leaves half a window.

The modules behind it:

* :mod:`stores.supabase_rest`: the client, the retry policy and the sorting of
  failures into transient (:class:`StoreUnavailableError`, after retries) and
  permanent (:class:`stores.base.PermanentStoreError`), shared by every Supabase store;
* :mod:`stores.supabase_rows`: records to and from JSON rows, both directions;
* :mod:`stores.supabase_meetings`: :class:`SupabaseMeetingStatus`, the meeting and
  session rows the coordinator registers and the end-of-session workflow updates.

Retrying a commit is safe because ``flowbot_commit_window`` replaces the window's
rows wholesale. The names other code imports from here (``RetryPolicy``,
``StoreUnavailableError``, ``SupabaseMeetingStatus``) stay importable from here.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from contracts.segments import (
    SpeakerRelabel,
    TranscriptSegment,
    WindowRecord,
    relabel_segment,
    relabel_window,
)
from stores.base import SearchHit, SessionProgress, WindowChange, search_words
from stores.supabase_meetings import SupabaseMeetingStatus
from stores.supabase_rest import RetryPolicy, StoreUnavailableError, SupabaseClient, result
from stores.supabase_rows import (
    WINDOW_COLUMNS,
    commit_params,
    interim_params,
    progress_from_row,
    progress_json,
    relabelled_segment_json,
    relabelled_window_json,
    search_hit_from_json,
    segment_from_row,
    window_change_from_json,
    window_from_row,
)

__all__ = [
    "RetryPolicy",
    "StoreUnavailableError",
    "SupabaseMeetingStatus",
    "SupabaseTranscriptStore",
    "search_hit_from_json",
    "window_change_from_json",
]

log = logging.getLogger("flowbot.stores.supabase")

SEGMENTS = "transcript_segments"
WINDOWS = "transcript_windows"
PROGRESS = "session_progress"
SPEAKERS = "session_speakers"
NOTES = "meeting_notes"
RELABELS = "session_speaker_relabels"
# Supabase's PostgREST caps responses at 1000 rows by default (max-rows).
PAGE = 1000


class SupabaseTranscriptStore(SupabaseClient):
    """:class:`stores.base.TranscriptStore` on Supabase (service-role key)."""

    # --- writes --------------------------------------------------------------

    def commit_window(
        self,
        window: WindowRecord,
        segments: Sequence[TranscriptSegment],
        progress: SessionProgress,
    ) -> None:
        """See :meth:`stores.base.TranscriptStore.commit_window`: one RPC, one transaction."""
        sid, idx = window.session_id, window.window_index
        params = commit_params(window, segments, progress)
        started = time.perf_counter()
        revision = self._rest.call(
            "commit_window",
            lambda: result(self._db.rpc("flowbot_commit_window", params)),
            session=sid,
            window=idx,
        )
        ms = round((time.perf_counter() - started) * 1000, 1)
        log.info(
            "window committed",
            extra={"session": sid, "window": idx, "segments": len(segments), "status": window.status}
            | {"revision": revision, "ms": ms},
        )

    def put_interim(self, session_id: str, window_index: int, segments: Sequence[TranscriptSegment]) -> bool:
        """See :meth:`stores.base.TranscriptStore.put_interim`."""
        params = interim_params(session_id, window_index, segments)
        return bool(
            self._rest.call(
                "put_interim",
                lambda: result(self._db.rpc("flowbot_put_interim", params)),
                session=session_id,
                window=window_index,
            )
        )

    def save_progress(self, progress: SessionProgress) -> None:
        """See :meth:`stores.base.TranscriptStore.save_progress`."""
        params = {"p_progress": progress_json(progress)}
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
        params = self._relabel_params(session_id, relabel)
        return bool(
            self._rest.call(
                "relabel_speakers",
                lambda: result(self._db.rpc("flowbot_relabel_speakers", params)),
                session=session_id,
            )
        )

    def _relabel_params(self, session_id: str, relabel: SpeakerRelabel) -> dict[str, Any]:
        """``flowbot_relabel_speakers``' arguments: the relabelled rows, computed as SQLite does."""
        changed = {k: v for k, v in relabel.windows.items() if v}
        segments = [
            relabel_segment(s, changed[s.window_index]) for s in self.segments(session_id) if s.window_index in changed
        ]
        windows = [
            relabel_window(w, changed[w.window_index]) for w in self.windows(session_id) if w.window_index in changed
        ]
        return {
            "p_session_id": session_id,
            "p_segments": [relabelled_segment_json(s) for s in segments],
            "p_windows": [relabelled_window_json(w) for w in windows],
            "p_names": relabel.carry_names(self.speakers(session_id)),
            "p_record": relabel.to_dict(),
        }

    def speaker_relabel(self, session_id: str) -> SpeakerRelabel | None:
        """See :meth:`stores.base.TranscriptStore.speaker_relabel`."""
        rows = self._rest.call(
            "speaker_relabel",
            lambda: result(self._db.table(RELABELS).select("record").eq("session_id", session_id)),
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
            lambda: result(self._db.table(PROGRESS).select("*").eq("session_id", session_id)),
            session=session_id,
        )
        return progress_from_row(rows[0]) if rows else None

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
            return list(result(q.order("window_index").order("segment_index").range(lo, hi)))

        return [segment_from_row(r) for r in self._paged("segments", session_id, page)]

    def windows(self, session_id: str) -> list[WindowRecord]:
        """See :meth:`stores.base.TranscriptStore.windows`."""

        def page(lo: int, hi: int) -> list[dict[str, Any]]:
            q = self._db.table(WINDOWS).select(WINDOW_COLUMNS).eq("session_id", session_id).neq("status", "open")
            return list(result(q.order("window_index").range(lo, hi)))

        return [window_from_row(r) for r in self._paged("windows", session_id, page)]

    def changes_since(self, session_id: str, revision: int) -> list[WindowChange]:
        """See :meth:`stores.base.TranscriptStore.changes_since` (one consistent read)."""
        params = {"p_session_id": session_id, "p_revision": revision}
        data = self._rest.call(
            "changes_since",
            lambda: result(self._db.rpc("flowbot_changes_since", params)),
            session=session_id,
        )
        return [window_change_from_json(w) for w in data or []]

    def speakers(self, session_id: str) -> dict[str, str]:
        """See :meth:`stores.base.TranscriptStore.speakers`."""
        data = self._rest.call(
            "speakers",
            lambda: result(self._db.rpc("flowbot_speakers", {"p_session_id": session_id})),
            session=session_id,
        )
        return {k: str(data[k]) for k in sorted(data or {})}

    def get_notes(self, session_id: str) -> dict[str, Any] | None:
        """See :meth:`stores.base.TranscriptStore.get_notes`."""
        rows = self._rest.call(
            "get_notes",
            lambda: result(self._db.table(NOTES).select("notes").eq("session_id", session_id)),
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
            lambda: result(self._db.rpc("flowbot_search", {**params, "p_limit": limit})),
        )
        return [search_hit_from_json(r) for r in data or []]
