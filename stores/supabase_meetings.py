"""Meeting and session rows on Supabase: registered at start, updated by the end-of-session workflow."""

from __future__ import annotations

from typing import Any

from stores.base import Session
from stores.supabase_rest import SupabaseClient, result


class SupabaseMeetingStatus(SupabaseClient):
    """Meeting/session rows the coordinator and the end-of-session workflow write.

    ``register_session`` must run before the processor commits a session's
    first window (its rows reference the session, which names the owner RLS
    checks). ``update`` is what the workflow calls at the end: it sets the
    meeting's status and notes, and with ``session_id`` also that session's
    state and per-session notes (the ones ``TranscriptStore.get_notes`` reads),
    all in one transaction.
    """

    def owner_of(self, meeting_id: str) -> str | None:
        """The owner's user id of a meeting, or None if there is no such meeting."""
        rows = self._rest.call(
            "owner_of",
            lambda: result(self._db.table("meetings").select("owner_id").eq("id", meeting_id)),
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
