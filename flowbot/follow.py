"""``flowbot follow SESSION``: print a session's transcript live as it is written.

Two sources, one renderer:

* :func:`follow_local` reads the local server's Server-Sent Events feed
  ``GET {base_url}/sessions/{id}/events`` (``window``, ``state`` and ``notes``
  events; reconnects with ``Last-Event-ID`` if the connection drops). When
  names change it asks the API which were given by voice (the owner may; a
  view token may not, and is shown the names only).
* :func:`follow_supabase` subscribes with the async supabase-py Realtime client
  to ``postgres_changes`` of the session's rows (segments, windows, session
  state, notes, speakers, names given by voice). Row-level security applies to what Realtime sends and
  to the catch-up reads, so a user only ever follows their own meetings.

A window's segments replace that window's previous ones wholesale. Interim
text is shown distinctly: on a terminal it is drawn dimmed at the bottom and
rewritten in place until the final text replaces it; otherwise interim lines
are printed marked ``(interim)`` and every final line exactly once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

from contracts.segments import TranscriptSegment
from contracts.settings import Settings
from contracts.voices import NamingState
from control.sessions import TERMINAL

log = logging.getLogger("flowbot.follow")

SEGMENTS = "transcript_segments"
WINDOWS = "transcript_windows"
SESSIONS = "sessions"
NOTES = "meeting_notes"
SPEAKERS = "session_speakers"
NAMINGS = "voice_namings"

_DIM = "\x1b[2m"
_RESET = "\x1b[0m"


class FollowError(RuntimeError):
    """Following a session failed (unknown session, refused, or the feed stayed down)."""


def _clock(seconds: float) -> str:
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def _epoch(value: Any) -> float:
    """Epoch seconds of a number or an ISO time (Postgres ``timestamptz`` as PostgREST writes it)."""
    if isinstance(value, int | float):
        return float(value)
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return 0.0


@dataclass
class _Window:
    revision: int
    is_final: bool
    segments: list[TranscriptSegment] = field(default_factory=list)


class TranscriptRenderer:
    """Turns window updates into terminal output (see the module docstring)."""

    def __init__(self, out: TextIO, *, tty: bool | None = None) -> None:
        self.out = out
        self.tty = out.isatty() if tty is None else tty
        self.speakers: dict[str, str] = {}
        self.state: str | None = None
        self.notes: dict[str, Any] | None = None
        self._windows: dict[int, _Window] = {}
        self._printed_final: dict[tuple[int, int], str] = {}
        self._printed_interim: dict[tuple[int, int], str] = {}
        self._interim_lines = 0  # lines of the interim block drawn at the bottom (TTY)
        self._namings: dict[str, tuple[float, str, str]] = {}  # label -> (at, state, name) last shown

    # --- input ---------------------------------------------------------------

    def window(
        self,
        window_index: int,
        revision: int,
        is_final: bool,
        segments: Sequence[TranscriptSegment],
        speakers: Mapping[str, str] | None = None,
    ) -> bool:
        """Replace a window's segments; False (nothing drawn) if ``revision`` is not newer."""
        if speakers:
            self.speakers.update(speakers)
        known = self._windows.get(window_index)
        if known is not None and revision <= known.revision:
            return False
        ordered = sorted(segments, key=lambda s: s.segment_index)
        self._windows[window_index] = _Window(revision, is_final, ordered)
        self._draw(window_index)
        return True

    def segment(self, seg: TranscriptSegment) -> None:
        """One segment row changed (Realtime): merge it into its window until the window's
        own update replaces the window wholesale."""
        win = self._windows.get(seg.window_index)
        if win is None:
            win = self._windows[seg.window_index] = _Window(0, seg.is_final)
        if win.is_final and not seg.is_final:
            return  # a stale interim row never overrides final text
        win.segments = sorted(
            [s for s in win.segments if s.segment_index != seg.segment_index] + [seg],
            key=lambda s: s.segment_index,
        )
        win.is_final = win.is_final or seg.is_final
        self._draw(seg.window_index)

    def set_speakers(self, speakers: Mapping[str, str]) -> None:
        """Update display names (applies to lines printed from now on)."""
        self.speakers.update(speakers)

    def show_namings(self, session_id: str, namings: Mapping[str, Mapping[str, Any]]) -> None:
        """Speakers named by voice, and undone (the owner's: ``get_session``'s ``named_by_voice``
        or ``voice_namings`` rows): one line each time one changes.

        ``at`` (epoch seconds or ISO time) orders them: a change older than the one shown
        (a Realtime message arriving after the catch-up read that already had the next one)
        is not shown again.
        """
        lines = []
        for label, naming in sorted(namings.items()):
            at, state, name = _epoch(naming.get("at")), str(naming.get("state")), str(naming.get("name"))
            shown = self._namings.get(label)
            if shown is not None and (shown[0] > at or shown[1:] == (state, name)):
                continue
            self._namings[label] = (at, state, name)
            score = float(naming.get("score") or 0.0)
            if state == NamingState.NAMED:
                lines.append(
                    f"-- {label} named {name} by voice (score {score:.2f}); "
                    f"undo: flowbot voices undo {session_id} {label} --"
                )
            else:
                lines.append(f"-- {label}: the name {name} given by voice (score {score:.2f}) was undone --")
        if lines:
            self._permanent(lines)

    def show_state(self, view: Mapping[str, Any]) -> None:
        """A session state change."""
        state = str(view.get("state"))
        if state == self.state:
            return
        self.state = state
        reason = view.get("reason")
        self._permanent([f"-- session {state}" + (f": {reason}" if reason else "") + " --"])

    def show_notes(self, notes: Mapping[str, Any]) -> None:
        """The meeting notes, once written."""
        if self.notes == dict(notes):
            return
        self.notes = dict(notes)
        lines = ["-- notes --"]
        for key, value in notes.items():
            if isinstance(value, list):
                lines.append(f"{key}:")
                lines += [f"  - {v if isinstance(v, str) else json.dumps(v)}" for v in value]
            else:
                lines.append(f"{key}: {value if isinstance(value, str) else json.dumps(value)}")
        self._permanent(lines)

    def close(self) -> None:
        """Leave the terminal tidy (interim block stays as the last thing shown)."""
        self.out.flush()

    # --- output --------------------------------------------------------------

    def _line(self, seg: TranscriptSegment) -> str:
        who = self.speakers.get(seg.speaker, seg.speaker) if seg.speaker else None
        head = f"[{_clock(seg.start)}]"
        return f"{head} {who}: {seg.text.strip()}" if who else f"{head} {seg.text.strip()}"

    def _draw(self, window_index: int) -> None:
        win = self._windows[window_index]
        new_final: list[str] = []
        new_interim: list[str] = []
        if win.is_final:
            for seg in win.segments:
                line = self._line(seg)
                previous = self._printed_final.get((window_index, seg.segment_index))
                if previous == line:
                    continue
                self._printed_final[(window_index, seg.segment_index)] = line
                new_final.append(line if previous is None else f"{line} (revised)")
            for key in [k for k in self._printed_interim if k[0] == window_index]:
                del self._printed_interim[key]
        elif not self.tty:
            for seg in win.segments:
                line = self._line(seg)
                key = (window_index, seg.segment_index)
                if self._printed_interim.get(key) != line:
                    self._printed_interim[key] = line
                    new_interim.append(f"~ {line} (interim)")
        if self.tty:
            self._redraw_tty(new_final)
        else:
            for line in new_final + new_interim:
                self.out.write(line + "\n")
        self.out.flush()

    def _permanent(self, lines: list[str]) -> None:
        if self.tty:
            self._redraw_tty(lines)
        else:
            for line in lines:
                self.out.write(line + "\n")
        self.out.flush()

    def _redraw_tty(self, permanent: list[str]) -> None:
        # Erase the interim block, print what is now permanent, then draw the
        # interim text of every open window again (truncated to one row each so
        # the block's height is known and can be erased next time).
        if self._interim_lines:
            self.out.write(f"\x1b[{self._interim_lines}F\x1b[J")
        for line in permanent:
            self.out.write(line + "\n")
        width = max(20, shutil.get_terminal_size((100, 24)).columns - 1)
        interim = [
            self._line(seg)
            for idx in sorted(self._windows)
            if not self._windows[idx].is_final
            for seg in self._windows[idx].segments
        ]
        for line in interim:
            text = line if len(line) <= width else line[: width - 1] + "…"
            self.out.write(f"{_DIM}{text}{_RESET}\n")
        self._interim_lines = len(interim)


# --- local server (SSE) -------------------------------------------------------


def _sse_events(lines: Iterator[bytes]) -> Iterator[tuple[str, str, str | None]]:
    """(event, data, id) of each Server-Sent Event in a byte-line stream."""
    event, event_id = "message", None
    data: list[str] = []
    for raw in lines:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield event, "\n".join(data), event_id
            event, data, event_id = "message", [], None
            continue
        if line.startswith(":"):
            continue  # comment / keep-alive
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            event_id = value


def _apply_window_event(renderer: TranscriptRenderer, data: Mapping[str, Any]) -> None:
    renderer.window(
        int(data["window_index"]),
        int(data["revision"]),
        bool(data["is_final"]),
        [TranscriptSegment.from_dict(s) for s in data.get("segments") or ()],
        data.get("speakers"),
    )


def _local_namings(base_url: str, session_id: str, token: str | None) -> dict[str, Any] | None:
    """``get_session``'s ``named_by_voice`` through the server's API: the owner's only (None otherwise)."""
    body = json.dumps({"action": "get_session", "session_id": session_id}).encode()
    request = urllib.request.Request(
        f"{base_url.rstrip('/')}/api", body, {"content-type": "application/json"}, method="POST"
    )
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            named = json.loads(resp.read()).get("named_by_voice")
    except (urllib.error.URLError, OSError, ValueError) as e:
        log.debug("namings by voice unavailable", extra={"session": session_id, "error": str(e)})
        return None
    return named if isinstance(named, dict) else None


def follow_local(
    base_url: str,
    session_id: str,
    out: TextIO,
    *,
    token: str | None = None,
    renderer: TranscriptRenderer | None = None,
    reconnects: int = 5,
    read_timeout: float = 60.0,
) -> str | None:
    """Print a session from ``flowbot serve``'s live feed until it ends.

    Returns the final state (completed/partial/failed), or None if the feed
    ended without one. Raises :class:`FollowError` for an unknown session, a
    refused token, or a feed that stayed down for ``reconnects`` attempts.
    """
    view = renderer or TranscriptRenderer(out)
    url = f"{base_url.rstrip('/')}/sessions/{session_id}/events"
    last_id: str | None = None
    failures = 0
    while True:
        request = urllib.request.Request(url, headers={"Accept": "text/event-stream"})
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        if last_id is not None:
            request.add_header("Last-Event-ID", last_id)
        try:
            with urllib.request.urlopen(request, timeout=read_timeout) as resp:
                failures = 0
                for event, data, event_id in _sse_events(iter(resp.readline, b"")):
                    if event_id is not None:
                        last_id = event_id
                    payload = json.loads(data)
                    names = dict(view.speakers)
                    if event == "window":
                        _apply_window_event(view, payload)
                    elif event == "state":
                        view.show_state(payload)
                    elif event == "notes":
                        view.show_notes(payload)
                    elif event == "speakers":
                        view.set_speakers(payload)
                    if view.speakers != names:
                        # A name may have come from a voice: the owner is told so, with the score.
                        namings = _local_namings(base_url, session_id, token)
                        if namings:
                            view.show_namings(session_id, namings)
            if view.state in TERMINAL:
                view.close()
                return view.state
            reason = "feed ended before the session did"
        except urllib.error.HTTPError as e:
            if e.code in (401, 403, 404):
                detail = e.read().decode("utf-8", "replace")[:300]
                raise FollowError(f"GET {url}: HTTP {e.code}: {detail}") from None
            reason = f"HTTP {e.code}"
        except (urllib.error.URLError, OSError, json.JSONDecodeError) as e:
            reason = f"{type(e).__name__}: {e}"
        failures += 1
        if failures > reconnects:
            raise FollowError(f"live feed of {session_id} unavailable: {reason}")
        delay = min(5.0, 0.25 * 2 ** (failures - 1))
        log.warning(
            "live feed dropped, reconnecting", extra={"session": session_id, "reason": reason, "delay_s": delay}
        )
        time.sleep(delay)


# --- Supabase Realtime --------------------------------------------------------


@dataclass
class _Change:
    table: str
    type: str
    record: dict[str, Any]


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
    import httpx
    from realtime.types import RealtimePostgresChangesListenEvent as Listen

    from supabase import AsyncClientOptions, acreate_client

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
    token = settings.supabase_access_token
    view = renderer or TranscriptRenderer(out)
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
    queue: asyncio.Queue[_Change | str] = asyncio.Queue()
    flt = f"session_id=eq.{session_id}"

    def on_change(payload: Mapping[str, Any]) -> None:
        data = payload["data"]
        kind = data["type"]
        kind = str(getattr(kind, "value", kind))  # the client parses it into an enum
        record = data.get("record") or data.get("old_record") or {}
        log.debug("realtime change", extra={"session": session_id, "table": data.get("table"), "type": kind})
        queue.put_nowait(_Change(str(data["table"]), kind, dict(record)))

    statuses: list[str] = []

    def on_status(status: Any, error: Exception | None) -> None:
        statuses.append(f"{getattr(status, 'value', status)}:{error or ''}")
        queue.put_nowait(statuses[-1])

    channel = client.channel(f"flowbot-follow:{session_id}")
    channel.on_postgres_changes(Listen.All, on_change, table=WINDOWS, schema="public", filter=flt)
    channel.on_postgres_changes(Listen.All, on_change, table=SEGMENTS, schema="public", filter=flt)
    channel.on_postgres_changes(Listen.All, on_change, table=NOTES, schema="public", filter=flt)
    channel.on_postgres_changes(Listen.All, on_change, table=SPEAKERS, schema="public", filter=flt)
    channel.on_postgres_changes(Listen.All, on_change, table=NAMINGS, schema="public", filter=flt)
    channel.on_postgres_changes(Listen.Update, on_change, table=SESSIONS, schema="public", filter=f"id=eq.{session_id}")
    follower = _SupabaseFollower(client, session_id, view)
    try:
        await asyncio.wait_for(channel.subscribe(on_status), subscribe_timeout)
        status = statuses[-1] if statuses else "TIMED_OUT:"
        if not status.startswith("SUBSCRIBED"):
            raise FollowError(f"Realtime subscription for {session_id} failed: {status}")
        # Subscribed first, then read what is already there: nothing falls in between.
        if await follower.catch_up():
            return view.state
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), catch_up_seconds)
            except TimeoutError:
                if await follower.catch_up():
                    return view.state
                continue
            if isinstance(item, str):
                if item.startswith("SUBSCRIBED") and await follower.catch_up():
                    return view.state  # re-joined after a drop: read what we missed
                if item.startswith(("CHANNEL_ERROR", "TIMED_OUT")):
                    log.warning("realtime channel trouble", extra={"session": session_id, "status": item})
                continue
            if await follower.apply(item):
                return view.state
    except TimeoutError:
        raise FollowError(f"Realtime subscription for {session_id} timed out") from None
    finally:
        view.close()
        try:
            await client.remove_all_channels()
            await client.realtime.close()
            await http.aclose()
        except Exception:  # closing a dead socket must not hide the real outcome
            log.debug("realtime close failed", extra={"session": session_id}, exc_info=True)


class _SupabaseFollower:
    """State of one Supabase follow: last revision shown, and how to catch up."""

    def __init__(self, client: Any, session_id: str, view: TranscriptRenderer) -> None:
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
