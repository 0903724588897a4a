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

Bounded memory per viewer. A viewer has no queue and never a copy of the
backlog: :meth:`SessionFeed.take` hands it at most :data:`PIECE_BYTES` of the
shared encoded events at a time, and the next piece only once ``send``
returned, which uvicorn makes wait while the connection's write buffer is over
its high-water mark (``HttpLimits.write_buffer_bytes``). So a viewer that
never reads pins one piece plus that buffer (:data:`MAX_BUFFERED_BYTES`), not
the transcript: before, ``take`` joined every event newer than the cursor into
one ``bytes`` per viewer, and 300 non-reading viewers of a 2 h meeting cost
2.9 GB. A viewer whose ``send`` has not returned for ``stall_seconds`` is
dropped (its connection aborted); the browser reconnects with
``Last-Event-ID`` and carries on where it was. When a slow viewer resumes it
gets each changed window's *latest* state, not every intermediate interim
pass. Memory is O(transcript) per watched session plus a constant per viewer.

Idle sessions back off. A watched session's store is read every
:data:`POLL_SECONDS` while it changes; after :data:`IDLE_AFTER_SECONDS`
without a change the pause doubles up to :data:`IDLE_MAX_POLL_SECONDS`
(:class:`PollSchedule`), and the first change brings it back. 100 watched,
silent sessions took 25-33 % of a core at a steady 20 Hz, and 1-2 % backed off
(``bench/viewers.py --scenario idle``); live speech changes a window every
second or two, so captions keep the fast poll.

``Last-Event-ID`` resume: a reconnecting viewer sends the last revision it saw
and gets exactly the windows changed after it.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from contracts.frames import SAMPLE_RATE
from control.context import ControlContext
from control.sessions import TERMINAL
from flowbot.web.views import viewer_segment_dicts, viewer_session
from stores.base import SessionState

log = logging.getLogger(__name__)

#: How often a watched session's store rows are read while it changes (commit-to-viewer latency
#: is about half this plus the fan-out; bench/viewers.py measures it).
POLL_SECONDS = 0.05
#: A session unchanged this long is read less and less often ...
IDLE_AFTER_SECONDS = 5.0
#: ... down to once this often (the first change after a silence reaches viewers this much later).
IDLE_MAX_POLL_SECONDS = 1.0
#: The most of the backlog one viewer is handed at a time (a piece ends at an event boundary,
#: so it is this plus at most one window event).
PIECE_BYTES = 16 * 1024
#: What the server holds for one viewer that never reads, at most: its write buffer's
#: high-water mark (HttpLimits.write_buffer_bytes, 16 KiB) plus one piece. A window event is a
#: few KiB (7 KiB for 30 s of speech), so 64 KiB leaves room for an unusually long one.
MAX_BUFFERED_BYTES = 64 * 1024
#: The kernel send buffer of a viewer's connection (Linux doubles it): fixed, because autotuning
#: lets it grow to 4 MiB of kernel memory per viewer that does not read. 64 KiB in flight is
#: 640 KB/s at 100 ms round trip, far more than a transcript needs.
SEND_BUFFER_BYTES = 32 * 1024
#: A viewer whose send has not completed for this long is dropped (it reconnects with Last-Event-ID).
STALL_SECONDS = 30.0
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

    view: dict[str, Any]  # flowbot.web.views.viewer_session
    state: SessionState
    changes: list[tuple[int, int, bytes]]  # (window_index, revision, encoded event)
    speakers: dict[str, str]
    notes: dict[str, Any] | None


@dataclass
class PollSchedule:
    """How long a feed waits before its next store read: ``base`` while the session changes,
    doubling up to ``ceiling`` once it has been unchanged for ``idle_after`` seconds."""

    base: float = POLL_SECONDS
    idle_after: float = IDLE_AFTER_SECONDS
    ceiling: float = field(default_factory=lambda: IDLE_MAX_POLL_SECONDS)
    _interval: float = field(default=0.0, init=False)
    _changed_at: float | None = field(default=None, init=False)

    def next(self, changed: bool, now: float) -> float:
        """The pause after a read at ``now`` that found a change (``changed``) or not."""
        if changed or self._changed_at is None:
            self._changed_at = now
            self._interval = self.base
        elif now - self._changed_at >= self.idle_after:
            self._interval = min(max(self.ceiling, self.base), self._interval * 2)
        return self._interval


class Piece(NamedTuple):
    """What :meth:`SessionFeed.take` hands one viewer at a time."""

    body: bytes
    more: bool  # more of the backlog is ready right now: take again once this is sent
    finished: bool  # the stream ends after this piece


class SessionFeed:
    """The shared live state of one watched session (see the module docstring)."""

    def __init__(
        self, ctx: ControlContext, session_id: str, poll: float = POLL_SECONDS, stall_seconds: float = STALL_SECONDS
    ) -> None:
        self.ctx = ctx
        self.session_id = session_id
        self.schedule = PollSchedule(base=poll)
        self.stall_seconds = stall_seconds
        #: The cursors of the viewers watching now.
        self.cursors: set[Cursor] = set()
        #: window_index -> (revision, encoded event), kept in revision order (newest last).
        self.windows: OrderedDict[int, tuple[int, bytes]] = OrderedDict()
        #: Every change in revision order, (revision, window_index), for a bisect from a viewer's
        #: cursor; entries a later change of the same window superseded are skipped, and the
        #: log is rebuilt from ``windows`` when they outnumber the live ones.
        self._log_revisions: list[int] = []
        self._log_windows: list[int] = []
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
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # tests record the pauses

    # -- the poller ---------------------------------------------------------------------
    def start(self) -> None:
        """Start polling (on the running loop)."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"feed-{self.session_id}")

    def close(self) -> None:
        """End every viewer's stream (server shutdown); a viewer stuck in a send is dropped,
        or shutdown would wait for it to read."""
        self._closed = True
        self._signal()
        for cursor in [c for c in self.cursors if c.sending_since is not None]:
            cursor.sending_since = None
            cursor.drop()
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

    @property
    def viewers(self) -> int:
        """Viewers watching now."""
        return len(self.cursors)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        next_tick = loop.time() + KEEPALIVE_SECONDS
        while not self._closed and not self.done:
            changed = False
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
                self.ready.set()
            now = loop.time()
            wake = changed
            if now >= next_tick:
                next_tick = now + KEEPALIVE_SECONDS
                self.ticks += 1
                wake = True
            if wake:
                self._signal()
            self.drop_stalled(now)
            if self.viewers <= 0 and self.ready.is_set():
                break
            await self._sleep(self.schedule.next(changed, now))
        self._signal()
        # A finished session's viewers may still be taking its backlog: keep dropping those
        # who stall, until the last one has gone (FeedHub.leave then cancels this task).
        while self.cursors and not self._closed:
            await self._sleep(min(1.0, self.stall_seconds))
            self.drop_stalled(loop.time())

    def drop_stalled(self, now: float) -> int:
        """Drop every viewer whose send has not completed for ``stall_seconds``; how many."""
        stalled = [
            c for c in self.cursors if c.sending_since is not None and now - c.sending_since >= self.stall_seconds
        ]
        for cursor in stalled:
            # Still a viewer until its stream has ended (FeedHub.leave): the feed must not stop
            # under a viewer that joins meanwhile.
            log.info("slow viewer dropped", extra={"session": self.session_id, "stalled_s": self.stall_seconds})
            cursor.sending_since = None
            cursor.drop()
        return len(stalled)

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
                        "segments": viewer_segment_dicts(c.segments),
                        "speakers": speakers,
                    },
                    c.revision,
                ),
            )
            for c in changes
        ]
        notes = transcripts.get_notes(sid) if session.state in TERMINAL else None
        return _Read(viewer_session(session), session.state, encoded, speakers, notes)

    def _apply(self, read: _Read) -> bool:
        changed = self._apply_windows(read.changes)
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

    def _apply_windows(self, changes: list[tuple[int, int, bytes]]) -> bool:
        """Take the changed windows newer than what the feed holds; True if there were any."""
        changed = False
        for window_index, revision, event in sorted(changes, key=lambda c: c[1]):
            if revision <= self.revision:
                continue  # already applied (revisions only grow)
            self.windows[window_index] = (revision, event)
            self.windows.move_to_end(window_index)
            self._log_revisions.append(revision)
            self._log_windows.append(window_index)
            self.revision = revision
            changed = True
        if len(self._log_revisions) > 2 * len(self.windows) + 64:
            self._log_revisions = [rev for rev, _ in self.windows.values()]
            self._log_windows = list(self.windows)
        return changed

    # -- viewers ----------------------------------------------------------------------------
    def newer_than(self, cursor: int, limit: int | None = None) -> list[tuple[int, bytes]]:
        """(revision, encoded window event) after ``cursor``, oldest first; stops once ``limit`` bytes are reached."""
        out: list[tuple[int, bytes]] = []
        size = 0
        revisions, indices = self._log_revisions, self._log_windows
        for i in range(bisect.bisect_right(revisions, cursor), len(revisions)):
            revision, event = self.windows[indices[i]]
            if revision != revisions[i]:
                continue  # superseded by a later change of the same window
            out.append((revision, event))
            size += len(event)
            if limit is not None and size >= limit:
                break
        return out

    def waiter(self) -> asyncio.Future[None]:
        """A future resolved at the next change; take it *before* :meth:`take` so none is missed."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        return fut

    def take(self, cursor: Cursor) -> Piece:
        """The next piece one viewer has not been sent yet (at most about :data:`PIECE_BYTES`).

        Synchronous and allocation-light: it runs once per viewer per change. The backlog
        comes first, in pieces; speakers, state and notes once the viewer has caught up.
        """
        chunks: list[bytes] = []
        if not cursor.started:
            cursor.started = True
            chunks.append(_RETRY)
        events = self.newer_than(cursor.revision, PIECE_BYTES)
        if events:
            cursor.revision = events[-1][0]
            chunks += [event for _, event in events]
            if cursor.revision < self.revision:
                return Piece(b"".join(chunks), True, False)
        cursor.revision = max(cursor.revision, self.revision)
        if self.speakers_event is not cursor.speakers:
            cursor.speakers = self.speakers_event
            # Window events carry the names too; a separate event only for renames.
            if not events and self.speakers_event:
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
        return Piece(b"".join(chunks), False, finished)


def _no_drop() -> None:
    """A cursor's default ``drop``: nothing to abort."""


@dataclass(eq=False)
class Cursor:
    """Where one viewer is: the last revision, state event and names it was sent.

    ``sending_since`` is set while a send to it is under way (see
    :meth:`SessionFeed.drop_stalled`); ``drop`` aborts its connection.
    """

    revision: int = 0
    state: bytes = b""
    speakers: bytes = b""
    tick: int = 0
    started: bool = False
    sending_since: float | None = None
    drop: Callable[[], None] = _no_drop


class FeedHub:
    """The :class:`SessionFeed` of every watched session; feeds go away with their last viewer."""

    def __init__(self, ctx: ControlContext, poll: float = POLL_SECONDS) -> None:
        self.ctx = ctx
        self.poll = poll
        #: Viewers whose sends make no progress for this long are dropped (new feeds take it).
        self.stall_seconds = STALL_SECONDS
        self.feeds: dict[str, SessionFeed] = {}
        self._closed = False

    def join(self, session_id: str, cursor: Cursor) -> SessionFeed:
        """A new viewer of ``session_id``: shares (or starts) the session's feed."""
        feed = self.feeds.get(session_id)
        if feed is None:
            feed = self.feeds[session_id] = SessionFeed(self.ctx, session_id, self.poll, self.stall_seconds)
            feed.start()
        feed.stall_seconds = self.stall_seconds
        feed.cursors.add(cursor)
        return feed

    def leave(self, feed: SessionFeed, cursor: Cursor) -> None:
        """A viewer left (or was dropped); the feed stops with its last viewer."""
        feed.cursors.discard(cursor)
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
