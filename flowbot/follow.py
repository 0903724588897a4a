"""``flowbot follow SESSION``: print a session's transcript live as it is written.

Two sources, one renderer (:class:`flowbot.follow_view.TranscriptRenderer`):

* :func:`follow_local` reads the local server's Server-Sent Events feed
  ``GET {base_url}/sessions/{id}/events`` (``window``, ``state`` and ``notes``
  events; reconnects with ``Last-Event-ID`` if the connection drops). When
  names change it asks the API which were given by voice (the owner may; a
  view token may not, and is shown the names only).
* :func:`follow_supabase` (:mod:`flowbot.follow_realtime`) subscribes with the async
  supabase-py Realtime client to ``postgres_changes`` of the session's rows. Row-level
  security applies to what Realtime sends and to the catch-up reads, so a user only
  ever follows their own meetings.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from contracts.segments import TranscriptSegment
from control.sessions import TERMINAL
from flowbot.follow_realtime import follow_supabase
from flowbot.follow_view import FollowError, TranscriptRenderer

__all__ = ["FollowError", "TranscriptRenderer", "follow_local", "follow_supabase"]

log = logging.getLogger("flowbot.follow")


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


#: What each event of the feed does to the view; other events are ignored.
_EVENTS: dict[str, Callable[[TranscriptRenderer, Any], None]] = {
    "window": _apply_window_event,
    "state": TranscriptRenderer.show_state,
    "notes": TranscriptRenderer.show_notes,
    "speakers": TranscriptRenderer.set_speakers,
}


@dataclass
class _Feed:
    """One session's event feed on the local server, and the last event shown from it."""

    base_url: str
    session_id: str
    token: str | None
    last_id: str | None = None

    @property
    def url(self) -> str:
        """The session's feed on the server."""
        return f"{self.base_url}/sessions/{self.session_id}/events"

    def request(self) -> urllib.request.Request:
        """The next GET: resuming after the last event shown, if any."""
        request = urllib.request.Request(self.url, headers={"Accept": "text/event-stream"})
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        if self.last_id is not None:
            request.add_header("Last-Event-ID", self.last_id)
        return request

    def show(self, lines: Iterator[bytes], view: TranscriptRenderer) -> None:
        """Draw each event of a response until it ends, remembering how far it got."""
        for event, data, event_id in _sse_events(lines):
            if event_id is not None:
                self.last_id = event_id
            payload = json.loads(data)
            names = dict(view.speakers)
            if event in _EVENTS:
                _EVENTS[event](view, payload)
            if view.speakers != names:
                # A name may have come from a voice: the owner is told so, with the score.
                self.show_namings(view)

    def show_namings(self, view: TranscriptRenderer) -> None:
        """``get_session``'s ``named_by_voice`` through the server's API: the owner's only."""
        session_id = self.session_id
        body = json.dumps({"action": "get_session", "session_id": session_id}).encode()
        headers = {"content-type": "application/json"}
        request = urllib.request.Request(f"{self.base_url}/api", body, headers, method="POST")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                named = json.loads(resp.read()).get("named_by_voice")
        except (urllib.error.URLError, OSError, ValueError) as e:
            log.debug("namings by voice unavailable", extra={"session": session_id, "error": str(e)})
            return
        if isinstance(named, dict) and named:
            view.show_namings(session_id, named)


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
    feed = _Feed(base_url.rstrip("/"), session_id, token)
    failures = 0
    while True:
        try:
            with urllib.request.urlopen(feed.request(), timeout=read_timeout) as resp:
                failures = 0
                feed.show(iter(resp.readline, b""), view)
            if view.state in TERMINAL:
                view.close()
                return view.state
            reason = "feed ended before the session did"
        except urllib.error.HTTPError as e:
            reason = _http_failure(feed.url, e)
        except (urllib.error.URLError, OSError, json.JSONDecodeError) as e:
            reason = f"{type(e).__name__}: {e}"
        failures += 1
        if failures > reconnects:
            raise FollowError(f"live feed of {session_id} unavailable: {reason}")
        _pause_before_reconnect(session_id, reason, failures)


def _http_failure(url: str, e: urllib.error.HTTPError) -> str:
    """Why a GET failed, to retry; :class:`FollowError` when retrying cannot help."""
    if e.code in (401, 403, 404):
        detail = e.read().decode("utf-8", "replace")[:300]
        raise FollowError(f"GET {url}: HTTP {e.code}: {detail}") from None
    return f"HTTP {e.code}"


def _pause_before_reconnect(session_id: str, reason: str, failures: int) -> None:
    delay = min(5.0, 0.25 * 2 ** (failures - 1))
    log.warning("live feed dropped, reconnecting", extra={"session": session_id, "reason": reason, "delay_s": delay})
    time.sleep(delay)
