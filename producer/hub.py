"""The ingest hub: every protocol front publishes a session's audio through it.

A session is registered with its stream key (:meth:`IngestHub.register`); a
front (the RTMP relay in :mod:`producer.rtmp_relay`, WHIP in
:mod:`producer.whip`) claims the session of a key for one live publisher,
pushes that publisher's 16 kHz mono PCM, and releases it when the publisher
goes. The hub holds the rules every front shares: the key check, one live
publisher per session, counting publishes and refusals, the first-audio
notification, and ending a session (revoke the key, disconnect the publisher,
write the end-of-stream record, which carries the session's end secret so that
only this ingest can end the stream: ``contracts.frames``, "Who may end a stream").

A session's :class:`SessionFramer` lives as long as the session, not the
publisher: one that drops and comes back with the same key (over either
protocol) continues the same timeline (sample offsets and sequence numbers
carry on).

The hub owns no sockets or threads; fronts call it from theirs.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from contracts.frames import END_TAG_BYTES, validate_session_id
from producer.framer import SessionFramer, TimelinePosition
from streams.base import StreamWriter

log = logging.getLogger(__name__)


def key_fingerprint(key: str) -> str:
    """A short, non-reversible tag of a stream key for logs (never log the secret)."""
    return hashlib.sha256(key.encode()).hexdigest()[:10]


def load_end_key(path: Path) -> bytes:
    """The ingest's end key kept in ``path`` (created, owner-only, on first use).

    Sessions' end secrets derive from it, so an ingest restarted on the same data
    directory ends the sessions it resumes with the secrets their audio committed to.
    """
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_bytes()
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


@dataclass
class IngestStats:
    """What a session's ingest has done so far."""

    session_id: str
    bytes: int = 0
    frames: int = 0
    samples: int = 0
    connected: bool = False
    publishes: int = 0
    reconnects: int = 0
    refused: int = 0


class Publisher(Protocol):
    """One live publisher (an RTMP connection, a WHIP peer connection) as the hub sees it."""

    peer: str
    client_eof: threading.Event  # the client stopped sending; decoding may still drain
    done: threading.Event  # everything it sent has been pushed or dropped

    def close(self) -> None:
        """Disconnect it."""

    def join(self, timeout: float) -> None:
        """Wait for it to finish."""


class PublishRevoked(Exception):
    """The session ended or the publisher lost its claim while its audio was being pushed."""


@dataclass
class IngestTarget:
    """Where an authorised publisher's audio goes: one session's framer, for its lifetime."""

    session_id: str
    stream_key: str
    framer: SessionFramer
    lock: threading.Lock = field(default_factory=threading.Lock)
    live: Publisher | None = None
    publishes: int = 0
    bytes: int = 0
    refused: int = 0
    audio_seen: bool = False
    ended: bool = False


class IngestHub:
    """The sessions that may be published to, by stream key, feeding one stream writer.

    ``register(session_id, stream_key)`` makes a key valid; ``end(session_id)``
    revokes it, disconnects a live publisher and writes the end-of-stream
    record. Claims with an unknown, revoked or already-live key are refused
    before any of their audio is pushed.
    """

    def __init__(
        self,
        writer: StreamWriter,
        *,
        on_live: Callable[[str], None] | None = None,
        end_key: bytes | None = None,
    ) -> None:
        self.writer = writer
        # Sessions' end secrets derive from this key (:meth:`end_secret`); pass a kept one
        # (:func:`load_end_key`) where a restarted ingest resumes sessions.
        self._end_key = end_key or secrets.token_bytes(32)
        #: Called once per session with its id when its first audio arrives.
        self.on_live = on_live
        #: How long a reconnect waits for the previous publisher's decoder to drain.
        self.drain_wait = 3.0
        self._lock = threading.Lock()
        self._by_key: dict[str, IngestTarget] = {}
        self._sessions: dict[str, IngestTarget] = {}

    # -- sessions ---------------------------------------------------------------
    def register(self, session_id: str, stream_key: str, position: TimelinePosition | None = None) -> None:
        """Accept ``stream_key`` for ``session_id`` from now on.

        ``position`` continues a timeline written before (e.g. after a restart);
        by default a new session starts at sequence 0, sample 0.
        """
        validate_session_id(session_id)
        _check_stream_key(stream_key)
        with self._lock:
            owner = self._by_key.get(stream_key)
            if owner is not None and owner.session_id != session_id:
                raise ValueError("stream key already belongs to another session")
            existing = self._sessions.get(session_id)
            if existing is not None:
                self._rekey(existing, stream_key)
                return
            framer = SessionFramer(self.writer, session_id, position, end_secret=self.end_secret(session_id))
            target = IngestTarget(session_id, stream_key, framer)
            self._sessions[session_id] = target
            self._by_key[stream_key] = target
        log.info("stream key registered", extra={"session": session_id, "key": key_fingerprint(stream_key)})

    def _rekey(self, target: IngestTarget, stream_key: str) -> None:
        """A registered session's key becomes ``stream_key`` (the lock is held)."""
        if target.ended:
            raise ValueError(f"session {target.session_id} already ended")
        if target.stream_key != stream_key:
            self._by_key.pop(target.stream_key, None)
            target.stream_key = stream_key
        self._by_key[stream_key] = target

    def rotate(self, session_id: str, stream_key: str) -> None:
        """Replace a session's key: the old one is refused from now on, and a publisher that
        is live with it is disconnected (what it sent so far is kept). ``KeyError`` for an
        unknown session, ``ValueError`` for an ended one or a key that is not new."""
        with self._lock:
            target = self._sessions.get(session_id)
            if target is None:
                raise KeyError(f"unknown session {session_id}")
            if target.stream_key == stream_key:
                raise ValueError("the new stream key is the current one")
        self.register(session_id, stream_key)
        with target.lock:
            conn = target.live
        if conn is not None:
            conn.close()
        log.info("stream key rotated", extra={"session": session_id, "key": key_fingerprint(stream_key)})

    def end_secret(self, session_id: str) -> bytes:
        """The secret only this ingest can put in ``session_id``'s end of stream (contracts.frames)."""
        return hmac.new(self._end_key, session_id.encode(), hashlib.sha256).digest()[:END_TAG_BYTES]

    def end(self, session_id: str) -> None:
        """Revoke the key, disconnect a live publisher, flush and write end-of-stream."""
        with self._lock:
            target = self._sessions.get(session_id)
            if target is None:
                raise KeyError(f"unknown session {session_id}")
            self._by_key.pop(target.stream_key, None)
            with target.lock:
                already = target.ended
                target.ended = True
                conn = target.live
        if already:
            return
        if conn is not None:
            conn.close()
            conn.join(timeout=10)
        with target.lock:
            target.framer.end()
        log.info("session ingest ended", extra={"session": session_id})

    def stats(self, session_id: str) -> IngestStats:
        """Bytes, frames and samples so far, whether a publisher is connected, reconnects."""
        with self._lock:
            target = self._sessions.get(session_id)
        if target is None:
            raise KeyError(f"unknown session {session_id}")
        with target.lock:
            pos = target.framer.position
            return IngestStats(
                session_id,
                bytes=target.bytes,
                frames=pos.next_seq,
                samples=pos.next_offset,
                connected=target.live is not None,
                publishes=target.publishes,
                reconnects=max(0, target.publishes - 1),
                refused=target.refused,
            )

    # -- publishers (called from the fronts' threads) ----------------------------
    def authorize(self, key: str, conn: Publisher) -> IngestTarget | None:
        """Claim the session of ``key`` for ``conn`` and count the publish; None if refused.

        For a publisher that is accepted as soon as its key is (RTMP): :meth:`claim`
        then :meth:`accepted`.
        """
        target = self.claim(key, conn)
        if target is not None:
            self.accepted(target, conn)
        return target

    def claim(self, key: str, conn: Publisher, *, session_id: str | None = None) -> IngestTarget | None:
        """Hold the session of ``key`` for ``conn`` (one live publisher); None (and a log line) if refused.

        ``session_id``: the session the publisher asked for; a key of another
        session is refused. A claim is not a publish yet: :meth:`accepted` counts
        and logs it once the publisher is set up (WHIP: its offer answered);
        :meth:`release` gives an unaccepted claim back uncounted.

        A publisher that reconnects right after dropping may find its old
        connection still draining into the decoder; that one is waited for
        briefly instead of refusing the reconnect.
        """
        with self._lock:
            target = self._by_key.get(key)
            draining = target.live if target is not None else None
        if draining is not None and draining.client_eof.is_set():
            draining.done.wait(self.drain_wait)
        reason = ""
        with self._lock:
            target = self._by_key.get(key)
            if target is None:
                reason = "unknown or ended stream key"
            elif session_id is not None and target.session_id != session_id:
                reason = "stream key of another session"
            else:
                with target.lock:
                    if target.ended:
                        reason = "session ended"
                    elif target.live is not None:
                        reason = "a publisher is already live for this key"
                    else:
                        target.live = conn
            if reason and target is not None:
                target.refused += 1
        if reason:
            _log_refusal(reason, key, conn, target)
            return None
        return target

    def refuse(self, key: str, conn: Publisher, reason: str, **context: str) -> None:
        """A front refused a publish of ``key`` for a reason of its own protocol (e.g. RTMP's app).

        Counted against the key's session like the hub's own refusals, and logged
        with ``context`` (short, client-supplied fields are the caller's to clip).
        """
        with self._lock:
            target = self._by_key.get(key)
            if target is not None:
                target.refused += 1
        _log_refusal(reason, key, conn, target, context)

    def accepted(self, target: IngestTarget, conn: Publisher) -> None:
        """The claiming publisher is set up: count the publish (reconnects are counted from these)."""
        with target.lock:
            if target.live is not conn:
                raise PublishRevoked()
            target.publishes += 1
            publishes = target.publishes
        log.info("publish accepted", extra={"session": target.session_id, "peer": conn.peer, "publish": publishes})

    def push(self, target: IngestTarget, conn: Publisher, pcm: np.ndarray) -> None:
        """Append a publisher's PCM to its session; raises :class:`PublishRevoked` if it lost the claim."""
        first = False
        with target.lock:
            if target.ended or target.live is not conn:
                raise PublishRevoked()
            target.framer.push(pcm)
            if not target.audio_seen and pcm.size:
                target.audio_seen = first = True
        if first:
            log.info("first audio", extra={"session": target.session_id})
            if self.on_live is not None:
                try:
                    self.on_live(target.session_id)
                except Exception:
                    log.exception("on_live callback failed", extra={"session": target.session_id})

    def count_bytes(self, target: IngestTarget, n: int) -> None:
        """Add ``n`` bytes received from the session's publisher (wire bytes, for stats)."""
        with target.lock:
            target.bytes += n

    def release(self, target: IngestTarget, conn: Publisher) -> None:
        """The publisher is gone: flush what it sent and free the key for a reconnect."""
        with target.lock:
            if target.live is conn:
                if not target.ended:
                    target.framer.flush()
                target.live = None


def _log_refusal(
    reason: str, key: str, conn: Publisher, target: IngestTarget | None, context: dict[str, str] | None = None
) -> None:
    log.warning(
        "publish refused",
        extra={
            "reason": reason,
            "key": key_fingerprint(key),
            "peer": conn.peer,
            **(context or {}),
            **({"session": target.session_id} if target else {}),
        },
    )


def _check_stream_key(stream_key: str) -> None:
    """ValueError unless ``stream_key`` can stand in an RTMP URL's last part."""
    if not stream_key or len(stream_key) > 256 or any(c in stream_key for c in "/?&# "):
        raise ValueError("stream key must be 1-256 characters without '/', '?', '&', '#' or spaces")
