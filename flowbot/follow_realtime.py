"""``flowbot follow`` from Supabase: Realtime changes of the session's rows plus RLS-filtered reads.

:func:`follow_supabase` subscribes with the async supabase-py Realtime client to
``postgres_changes`` of the session's rows (segments, windows, session state,
notes, speakers, names given by voice). Row-level security applies to what Realtime sends and to the
catch-up reads, so a user only ever follows their own meetings.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from contracts.segments import TranscriptSegment
from contracts.settings import Settings
from control.sessions import TERMINAL
from flowbot.follow_view import FollowError, TranscriptRenderer

if TYPE_CHECKING:
    import httpx
    from realtime import AsyncRealtimeChannel

    from supabase import AsyncClient

log = logging.getLogger("flowbot.follow")

SEGMENTS = "transcript_segments"
WINDOWS = "transcript_windows"
SESSIONS = "sessions"
NOTES = "meeting_notes"
SPEAKERS = "session_speakers"
NAMINGS = "voice_namings"


async def follow_supabase(
    settings: Settings,
    session_id: str,
    out: TextIO,
    *,
    renderer: TranscriptRenderer | None = None,
    catch_up_seconds: float = 30.0,
    subscribe_timeout: float = 15.0,
) -> str | None:
    """Print a session from Supabase (Realtime + RLS-filtered reads) until it ends.

    Needs ``FLOWBOT_SUPABASE_URL``, ``FLOWBOT_SUPABASE_ANON_KEY`` and the user's
    ``FLOWBOT_SUPABASE_ACCESS_TOKEN``. Every ``catch_up_seconds`` without a
    change (and after each window change) it reads what changed since the last
    revision it showed, so a missed Realtime message delays text, never loses it.
    Returns the final state, or raises :class:`FollowError`.
    """
    _check_credentials(settings)
    view = renderer or TranscriptRenderer(out)
    client, http = await _user_client(settings)
    feed = _RealtimeFeed(client, session_id)
    follower = _SupabaseFollower(client, session_id, view)
    try:
        await feed.subscribe(subscribe_timeout)
        # Subscribed first, then read what is already there: nothing falls in between.
        done = await follower.catch_up()
        while not done:
            done = await follower.handle(await feed.next(catch_up_seconds))
        return view.state
    except TimeoutError:
        raise FollowError(f"Realtime subscription for {session_id} timed out") from None
    finally:
        view.close()
        await _close(client, http, session_id)


def _check_credentials(settings: Settings) -> None:
    missing = [
        name
        for name, value in [
            ("FLOWBOT_SUPABASE_URL", settings.supabase_url),
            ("FLOWBOT_SUPABASE_ANON_KEY", settings.supabase_anon_key),
            ("FLOWBOT_SUPABASE_ACCESS_TOKEN", settings.supabase_access_token),
        ]
        if not value
    ]
    if missing:
        raise FollowError("following from Supabase needs " + ", ".join(missing))


async def _user_client(settings: Settings) -> tuple[AsyncClient, httpx.AsyncClient]:
    """An async client acting as the user (their access token), and the HTTP client it uses."""
    import httpx

    from supabase import AsyncClientOptions, acreate_client

    token = settings.supabase_access_token
    http = httpx.AsyncClient(timeout=30.0)
    client = await acreate_client(
        settings.supabase_url,
        settings.supabase_anon_key,
        AsyncClientOptions(
            headers={"Authorization": f"Bearer {token}"},
            auto_refresh_token=False,
            persist_session=False,
            httpx_client=http,
        ),
    )
    client.postgrest.auth(token)
    # Realtime checks RLS with the token sent when joining: the user's, not the anon key.
    await client.realtime.set_auth(token)
    return client, http


async def _close(client: AsyncClient, http: httpx.AsyncClient, session_id: str) -> None:
    try:
        await client.remove_all_channels()
        await client.realtime.close()
        await http.aclose()
    except Exception:  # closing a dead socket must not hide the real outcome
        log.debug("realtime close failed", extra={"session": session_id}, exc_info=True)


@dataclass
class _Change:
    table: str
    type: str
    record: dict[str, Any]


class _RealtimeFeed:
    """The session's Realtime channel: its row changes and its status changes, in order, on one queue."""

    def __init__(self, client: AsyncClient, session_id: str) -> None:
        from realtime.types import RealtimePostgresChangesListenEvent as Listen

        self.session_id = session_id
        self.queue: asyncio.Queue[_Change | str] = asyncio.Queue()
        self.statuses: list[str] = []
        self.channel: AsyncRealtimeChannel = client.channel(f"flowbot-follow:{session_id}")
        flt = f"session_id=eq.{session_id}"
        for table in (WINDOWS, SEGMENTS, NOTES, SPEAKERS, NAMINGS):
            self.channel.on_postgres_changes(Listen.All, self._on_change, table=table, schema="public", filter=flt)
        self.channel.on_postgres_changes(
            Listen.Update, self._on_change, table=SESSIONS, schema="public", filter=f"id=eq.{session_id}"
        )

    async def subscribe(self, timeout: float) -> None:
        """Join the channel; :class:`FollowError` unless Realtime confirmed it."""
        await asyncio.wait_for(self.channel.subscribe(self._on_status), timeout)
        status = self.statuses[-1] if self.statuses else "TIMED_OUT:"
        if not status.startswith("SUBSCRIBED"):
            raise FollowError(f"Realtime subscription for {self.session_id} failed: {status}")

    async def next(self, timeout: float) -> _Change | str | None:
        """The next change or status, or None after ``timeout`` seconds of neither."""
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None

    def _on_change(self, payload: Mapping[str, Any]) -> None:
        data = payload["data"]
        kind = data["type"]
        kind = str(getattr(kind, "value", kind))  # the client parses it into an enum
        record = data.get("record") or data.get("old_record") or {}
        log.debug("realtime change", extra={"session": self.session_id, "table": data.get("table"), "type": kind})
        self.queue.put_nowait(_Change(str(data["table"]), kind, dict(record)))

    def _on_status(self, status: Any, error: Exception | None) -> None:
        self.statuses.append(f"{getattr(status, 'value', status)}:{error or ''}")
        self.queue.put_nowait(self.statuses[-1])


class _SupabaseFollower:
    """State of one Supabase follow: last revision shown, and how to catch up."""

    def __init__(self, client: AsyncClient, session_id: str, view: TranscriptRenderer) -> None:
        self.client = client
        self.session_id = session_id
        self.view = view
        self.revision = 0

    async def _rows(self, builder: Any) -> Any:
        try:
            return (await builder.execute()).data
        except Exception as e:
            raise FollowError(f"reading session {self.session_id} failed: {e}") from e

    async def catch_up(self) -> bool:
        """Read state, speakers, changed windows and notes; True once the session ended."""
        sessions = await self._rows(self.client.table(SESSIONS).select("*").eq("id", self.session_id))
        if not sessions:
            # RLS answers "not yours" exactly like "does not exist".
            raise FollowError(f"no session {self.session_id} visible to this user")
        speakers = await self._rows(self.client.rpc("flowbot_speakers", {"p_session_id": self.session_id}))
        self.view.set_speakers(speakers or {})
        namings = await self._rows(
            self.client.table(NAMINGS).select("label,name,score,state,at").eq("session_id", self.session_id)
        )
        self.view.show_namings(self.session_id, {str(n["label"]): n for n in namings or ()})
        await self._windows()
        self.view.show_state(sessions[0])
        return await self._finish_if_ended(str(sessions[0]["state"]))

    async def _windows(self) -> None:
        changes = await self._rows(
            self.client.rpc(
                "flowbot_changes_since",
                {"p_session_id": self.session_id, "p_revision": self.revision},
            )
        )
        for w in changes or ():
            self.revision = max(self.revision, int(w["revision"]))
            self.view.window(
                int(w["window_index"]),
                int(w["revision"]),
                w["status"] != "open",
                [TranscriptSegment.from_dict(s) for s in w.get("segments") or ()],
            )

    async def _finish_if_ended(self, state: str) -> bool:
        if state not in TERMINAL:
            return False
        notes = await self._rows(self.client.table(NOTES).select("notes").eq("session_id", self.session_id))
        if notes:
            self.view.show_notes(notes[0]["notes"])
        return True

    async def apply(self, change: _Change) -> bool:
        """Apply one Realtime change; True once the session ended."""
        rec = change.record
        if change.table == SEGMENTS and change.type in ("INSERT", "UPDATE"):
            self.view.segment(TranscriptSegment.from_dict(rec))
        elif change.table == WINDOWS and change.type in ("INSERT", "UPDATE"):
            if int(rec.get("revision") or 0) > self.revision:
                # The window row is written last in its transaction: read the
                # window's rows now, consistent, replacing it wholesale.
                await self._windows()
        elif change.table == SPEAKERS and change.type in ("INSERT", "UPDATE"):
            self.view.set_speakers({str(rec["label"]): str(rec["display_name"])})
        elif change.table == NAMINGS and change.type in ("INSERT", "UPDATE"):
            self.view.show_namings(self.session_id, {str(rec["label"]): rec})
        elif change.table == NOTES and change.type in ("INSERT", "UPDATE"):
            self.view.show_notes(rec["notes"])
        elif change.table == SESSIONS and "state" in rec:
            state = str(rec["state"])
            if state in TERMINAL:
                await self._windows()  # the last windows before the end marker
            self.view.show_state(rec)
            return await self._finish_if_ended(state)
        return False

    async def handle(self, item: _Change | str | None) -> bool:
        """Act on what the channel delivered (None: nothing for a while); True once the session ended."""
        if item is None:
            return await self.catch_up()
        if isinstance(item, str):
            if item.startswith("SUBSCRIBED"):
                return await self.catch_up()  # re-joined after a drop: read what we missed
            if item.startswith(("CHANNEL_ERROR", "TIMED_OUT")):
                log.warning("realtime channel trouble", extra={"session": self.session_id, "status": item})
            return False
        return await self.apply(item)
