"""``GET /sessions/{sid}/events``: one viewer's live feed, an ASGI endpoint of its own.

Answered before Starlette's stack (:class:`flowbot.web.app.WebFront`): each event is one
``send`` per viewer, and 1,000 viewers made Starlette's send-wrapping layers a third of
the fan-out's cost. What it streams, and how memory stays bounded, is :mod:`flowbot.web.feed`.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from contracts.errors import HttpError
from flowbot.web.access import AccessPolicy
from flowbot.web.feed import SEND_BUFFER_BYTES, Cursor, FeedHub, SessionFeed
from flowbot.web.guard import ascii_number, error_response
from flowbot.web.server import CONNECTION_EXTENSION, Connection

_STREAM_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    # no-transform / X-Accel-Buffering: proxies must pass events through as they come.
    (b"cache-control", b"no-store, no-transform"),
    (b"x-accel-buffering", b"no"),
]


def feed_session(path: str) -> str | None:
    """The raw session id of a live-feed path (``/sessions/{sid}/events``), else None."""
    parts = path.split("/")
    if len(parts) == 4 and parts[1] == "sessions" and parts[3] == "events":
        return parts[2]
    return None


class LiveFeed:
    """The live-feed endpoint: access checks, then the stream until the session ends or the viewer goes."""

    def __init__(self, hub: FeedHub, policy: AccessPolicy) -> None:
        self.hub, self.policy = hub, policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            if scope["method"] != "GET":
                raise HttpError(405, "method_not_allowed", f"no route for {scope['method']} {scope['path']}")
            session, _ = await self.policy.session(request, feed_session(scope["path"]) or "")
            raw = request.headers.get("last-event-id", "").strip()
            last_id = ascii_number(raw, 18) if raw else 0
            if last_id is None:
                raise HttpError(400, "invalid_last_event_id", "Last-Event-ID must be a revision number")
        except HttpError as exc:
            await error_response(exc)(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": list(_STREAM_HEADERS)})
        await self.stream(scope, receive, send, session.session_id, Cursor(last_id))

    async def stream(self, scope: Scope, receive: Receive, send: Send, sid: str, cursor: Cursor) -> None:
        """Pieces of the feed as the viewer takes them; the end of the body when the session ends."""
        # uvicorn drops writes to a closed connection silently: a second task waits for the
        # disconnect and stops the stream, so a departed viewer's state is freed at once.
        streamer = asyncio.ensure_future(self._pieces(send, sid, cursor))
        _arrange_drop(scope, cursor, streamer)

        async def until_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            streamer.cancel()

        listener = asyncio.ensure_future(until_disconnect())
        try:
            await streamer
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not listener.done():
                raise  # the server is cancelling us, not the viewer leaving
        finally:
            listener.cancel()

    async def _pieces(self, send: Send, sid: str, cursor: Cursor) -> None:
        """Send the session's feed to one viewer until it has finished."""
        feed = self.hub.join(sid, cursor)
        try:
            await feed.ready.wait()
            while True:
                changed = feed.waiter()  # before taking: a change while sending is not missed
                if await _send_taken(feed, cursor, send):
                    return
                await changed
        finally:
            self.hub.leave(feed, cursor)


async def _send_taken(feed: SessionFeed, cursor: Cursor, send: Send) -> bool:
    """Send what the feed has for the viewer now; True once the feed has finished."""
    loop = asyncio.get_running_loop()
    while True:
        piece = feed.take(cursor)
        if piece.body:
            # The feed drops a viewer whose send stays here (its socket full) too long.
            cursor.sending_since = loop.time()
            await send({"type": "http.response.body", "body": piece.body, "more_body": True})
            cursor.sending_since = None
        if piece.finished:
            return True
        if not piece.more:
            return False


def _arrange_drop(scope: Scope, cursor: Cursor, streamer: asyncio.Future[None]) -> None:
    """How the feed drops this viewer when it stalls: abort the connection, else stop the stream."""

    def cancel_stream() -> None:
        streamer.cancel()

    connection = (scope.get("extensions") or {}).get(CONNECTION_EXTENSION)
    if isinstance(connection, Connection):  # uvicorn as flowbot.web.server runs it
        connection.limit_send_buffer(SEND_BUFFER_BYTES)
        cursor.drop = connection.abort
    else:
        cursor.drop = cancel_stream
