"""The live feed: one store poller per watched session, fanned out to every viewer.

A viewer's ``GET /sessions/<id>/events`` is a Server-Sent Events stream of
``window`` (a window's segments, replaced wholesale; ``id:`` is the store
revision), ``speakers`` (display names changed), ``state`` and, once the
session is over, ``notes``; then the stream ends.

Cost model. The old server polled the store every 200 ms *per viewer*; 1,000
viewers meant 5,000 queries a second for one session. Here a
:class:`SessionFeed` exists per session while anyone watches it: one task reads
the store every ``poll`` seconds (in a worker thread: SQLite is blocking) and
keeps, per window, the latest encoded event. Viewers never touch the store.
Each viewer holds only a cursor (the last revision it was sent) and wakes on
the feed's change signal, then takes every window newer than its cursor. Bytes
are encoded once per change and shared by all viewers.

Bounded memory. A viewer has no queue: a slow viewer whose socket is full
simply waits in ``send`` (uvicorn's flow control) and, when it resumes, gets
each changed window's *latest* state, not every intermediate interim pass.
Memory is O(transcript) per watched session plus a constant per viewer.

``Last-Event-ID`` resume: a reconnecting viewer sends the last revision it saw
and gets exactly the windows changed after it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from contracts.frames import SAMPLE_RATE
from control.context import ControlContext
from control.sessions import TERMINAL
from stores.base import SessionState

log = logging.getLogger(__name__)

#: How often a watched session's store rows are read (commit-to-viewer latency is about half this
#: plus the fan-out; bench/viewers.py measures it).
POLL_SECONDS = 0.05
#: Viewers woken per loop turn when a feed changes (other requests run between slices).
WAKE_SLICE = 50
#: An SSE comment this often keeps proxies from closing an idle stream.
KEEPALIVE_SECONDS = 15.0
#: Browsers reconnect this long after a dropped stream (SSE ``retry:``).
RETRY_MS = 2000
_RETRY = f"retry: {RETRY_MS}\n\n".encode()
_KEEPALIVE = b": keep-alive\n\n"


def sse_event(event: str, data: Any, event_id: int | None = None) -> bytes:
    """One server-sent event, encoded."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


@dataclass(frozen=True)
class _Read:
    """What one poll read from the store."""

    view: dict[str, Any]
    state: SessionState
    changes: list[tuple[int, int, bytes]]  # (window_index, revision, encoded event)
    speakers: dict[str, str]
    notes: dict[str, Any] | None


class SessionFeed:
    """The shared live state of one watched session (see the module docstring)."""

    def __init__(self, ctx: ControlContext, session_id: str, poll: float = POLL_SECONDS) -> None:
        self.ctx = ctx
        self.session_id = session_id
        self.poll = poll
        self.viewers = 0
        #: window_index -> (revision, encoded event), kept in revision order (newest last).
        self.windows: OrderedDict[int, tuple[int, bytes]] = OrderedDict()
        self.revision = 0
        self.state: SessionState | None = None
        self.state_event = b""
        self.speakers: dict[str, str] = {}
        self.speakers_event = b""
        self.notes_event = b""
        self.done = False
        self.ticks = 0  # keep-alive ticks so far
        self.ready = asyncio.Event()
        self._waiters: list[asyncio.Future[None]] = []
        self._fanout: asyncio.Task[None] | None = None
        self._again = False
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    # -- the poller ---------------------------------------------------------------------
    def start(self) -> None:
        """Start polling (on the running loop)."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"feed-{self.session_id}")

    def close(self) -> None:
        """End every viewer's stream (server shutdown)."""
        self._closed = True
        self._signal()
        if self._task is not None:
            self._task.cancel()

    def _signal(self) -> None:
        """Wake every waiting viewer, a slice at a time (see :meth:`_wake_all`)."""
        self._again = True
        if self._fanout is None or self._fanout.done():
            self._fanout = asyncio.get_running_loop().create_task(self._wake_all())

    async def _wake_all(self) -> None:
        # Waking 1,000 viewers at once would queue 1,000 task steps ahead of everything
        # else on the loop (an API call waited behind all of them: p95 318 ms in
        # bench/viewers.py). Waking WAKE_SLICE at a time lets other work in between.
        while self._again:
            self._again = False
            waiters, self._waiters = self._waiters, []
            for i, fut in enumerate(waiters, 1):
                if not fut.done():
                    fut.set_result(None)
                if i % WAKE_SLICE == 0:
                    await asyncio.sleep(0)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        next_tick = loop.time() + KEEPALIVE_SECONDS
        while not self._closed and not self.done:
            try:
                read = await loop.run_in_executor(None, self._read, self.revision, self.state)
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                log.warning("live feed read failed", extra={"session": self.session_id}, exc_info=failures == 1)
            else:
                failures = 0
                changed = self._apply(read)
                if loop.time() >= next_tick:
                    next_tick = loop.time() + KEEPALIVE_SECONDS
                    self.ticks += 1
                    changed = True
                if changed:
                    self._signal()
                self.ready.set()
            if self.viewers <= 0 and self.ready.is_set():
                break
            await asyncio.sleep(self.poll)
        self._signal()

    def _read(self, since: int, known_state: SessionState | None) -> _Read:
        """Runs in a worker thread: everything the feed needs from the stores."""
        sid = self.session_id
        session = self.ctx.sessions.get(sid)
        transcripts = self.ctx.transcripts
        changes = transcripts.changes_since(sid, since)
        speakers = transcripts.speakers(sid)
        starts: dict[int, float] = {}
        if any(c.is_final for c in changes):
            # Window start times let a page play a final segment from the window's archived audio.
            starts = {w.window_index: w.start_sample / SAMPLE_RATE for w in transcripts.windows(sid)}
        encoded = [
            (
                c.window_index,
                c.revision,
                sse_event(
                    "window",
                    {
                        "window_index": c.window_index,
                        "revision": c.revision,
                        "is_final": c.is_final,
                        "start": starts.get(c.window_index),
                        "segments": [s.to_dict() for s in c.segments],
                        "speakers": speakers,
                    },
                    c.revision,
                ),
            )
            for c in changes
        ]
        notes = transcripts.get_notes(sid) if session.state in TERMINAL else None
        return _Read(session.public_view(), session.state, encoded, speakers, notes)

    def _apply(self, read: _Read) -> bool:
        changed = False
        for window_index, revision, event in read.changes:
            self.windows[window_index] = (revision, event)
            self.windows.move_to_end(window_index)
            self.revision = max(self.revision, revision)
            changed = True
        if read.speakers != self.speakers:
            self.speakers = read.speakers
            self.speakers_event = sse_event("speakers", read.speakers)
            changed = True
        if read.state != self.state:
            self.state = read.state
            self.state_event = sse_event("state", read.view)
            changed = True
        if read.state in TERMINAL:
            if read.notes is not None:
                self.notes_event = sse_event("notes", read.notes)
            self.done = True
            changed = True
        return changed

    # -- viewers ----------------------------------------------------------------------------
    def newer_than(self, cursor: int) -> list[bytes]:
        """Encoded window events with a revision after ``cursor``, oldest first."""
        out: list[bytes] = []
        for revision, event in reversed(self.windows.values()):
            if revision <= cursor:
                break
            out.append(event)
        out.reverse()
        return out

    def waiter(self) -> asyncio.Future[None]:
        """A future resolved at the next change; take it *before* :meth:`take` so none is missed."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        return fut

    def take(self, cursor: Cursor) -> tuple[bytes, bool]:
        """What one viewer has not been sent yet, and whether its stream is finished.

        Synchronous and allocation-light: it runs once per viewer per change.
        """
        chunks = self.newer_than(cursor.revision)
        cursor.revision = max(cursor.revision, self.revision)
        if not cursor.started:
            cursor.started = True
            chunks.insert(0, _RETRY)
        if self.speakers_event is not cursor.speakers:
            cursor.speakers = self.speakers_event
            # Window events carry the names too; a separate event only for renames.
            if not chunks and self.speakers_event:
                chunks.append(self.speakers_event)
        if self.state_event is not cursor.state:
            cursor.state = self.state_event
            chunks.append(self.state_event)
        finished = self.done or self._closed
        if self.done and self.notes_event:
            chunks.append(self.notes_event)
        # No per-viewer timer: the poller's keep-alive tick wakes everyone (1,000 wait_for
        # timers cost more than the fan-out itself).
        if not chunks and cursor.tick != self.ticks and not finished:
            chunks.append(_KEEPALIVE)
        cursor.tick = self.ticks
        return b"".join(chunks), finished


@dataclass
class Cursor:
    """Where one viewer is: the last revision, state event and names it was sent."""

    revision: int = 0
    state: bytes = b""
    speakers: bytes = b""
    tick: int = 0
    started: bool = False


class FeedHub:
    """The :class:`SessionFeed` of every watched session; feeds go away with their last viewer."""

    def __init__(self, ctx: ControlContext, poll: float = POLL_SECONDS) -> None:
        self.ctx = ctx
        self.poll = poll
        self.feeds: dict[str, SessionFeed] = {}
        self._closed = False

    def join(self, session_id: str) -> SessionFeed:
        """A new viewer of ``session_id``: shares (or starts) the session's feed."""
        feed = self.feeds.get(session_id)
        if feed is None:
            feed = self.feeds[session_id] = SessionFeed(self.ctx, session_id, self.poll)
            feed.start()
        feed.viewers += 1
        return feed

    def leave(self, feed: SessionFeed) -> None:
        """A viewer left; the feed stops with its last viewer."""
        feed.viewers -= 1
        if feed.viewers == 0 and self.feeds.get(feed.session_id) is feed:
            del self.feeds[feed.session_id]
            if feed._task is not None:
                feed._task.cancel()

    def viewers(self) -> int:
        """Viewers connected right now, all sessions."""
        return sum(f.viewers for f in self.feeds.values())

    def close(self) -> None:
        """End every stream (server shutdown)."""
        self._closed = True
        for feed in list(self.feeds.values()):
            feed.close()
