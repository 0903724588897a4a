"""RTMP ingest on one port for many sessions, with a real stream-key check.

PyAV/FFmpeg can listen for one RTMP publisher, but it accepts any app and any
stream key (libav only logs "Unexpected stream"). So the public port is served
here: every TCP connection is relayed byte for byte to a private, one-shot PyAV
listener on an ephemeral loopback port, while the client->server bytes are
parsed (:mod:`producer.rtmp_wire`) to find ``connect`` and
``publish``. The chunk holding ``publish`` is only forwarded after the key was
checked, so a refused publisher never gets past ``createStream`` on the PyAV
side, and its worker has no session to write to in any case.

A session's :class:`SessionFramer` lives as long as the session, not the
connection: a publisher that drops and comes back with the same key continues
the same timeline (sample offsets and sequence numbers carry on).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import av
import numpy as np

from contracts.frames import validate_session_id
from producer.decode import DecodeError, pcm_chunks
from producer.framer import SessionFramer, TimelinePosition
from producer.rtmp_wire import HANDSHAKE_BYTES, MAX_COMMAND_BYTES, RtmpProtocolError, RtmpSniffer
from streams.base import StreamUnavailable, StreamWriter

log = logging.getLogger(__name__)

#: Client bytes forwarded before a publish is accepted: the handshake and a few
#: commands (OBS sends about 1 KB). Anything beyond is refused, so an unauthenticated
#: client cannot make the private listener buffer its data.
MAX_UNAUTHENTICATED_BYTES = HANDSHAKE_BYTES + 4 * MAX_COMMAND_BYTES

APP = "live"


def key_fingerprint(key: str) -> str:
    """A short, non-reversible tag of a stream key for logs (never log the secret)."""
    return hashlib.sha256(key.encode()).hexdigest()[:10]


# --------------------------------------------------------------------------- ingest


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
    """One live publisher connection (RTMP here, WHIP in producer.whip) as ingest sees it."""

    peer: str
    client_eof: threading.Event  # the client stopped sending; decoding may still drain
    done: threading.Event  # everything it sent has been pushed or dropped

    def close(self) -> None:
        """Disconnect it."""

    def join(self, timeout: float) -> None:
        """Wait for it to finish."""


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


class RtmpIngest:
    """An RTMP front on one port that feeds many sessions' stream records.

    ``register(session_id, stream_key)`` makes a key valid; ``end(session_id)``
    revokes it, disconnects a live publisher and writes the end-of-stream
    record. Publishes with an unknown, revoked or already-live key are refused
    before any of their audio is decoded.
    """

    def __init__(
        self,
        host: str,
        port: int,
        writer: StreamWriter,
        *,
        on_live: Callable[[str], None] | None = None,
        publish_timeout: float = 10.0,
        read_timeout: float = 10.0,
        max_connections: int = 64,
        max_unpublished: int | None = None,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.writer = writer
        self.on_live = on_live
        self.publish_timeout = publish_timeout
        self.read_timeout = read_timeout
        #: Connections at once (each costs three threads and a private listener) ...
        self.max_connections = max_connections
        #: ... of which this many may not have published yet, so clients that never
        #: publish cannot crowd out publishers.
        self.max_unpublished = max_unpublished if max_unpublished is not None else max(1, max_connections // 4)
        self.refused_connections = 0
        #: How long a reconnect waits for the previous connection's decoder to drain.
        self.drain_wait = 3.0
        self._lock = threading.Lock()
        self._by_key: dict[str, IngestTarget] = {}
        self._sessions: dict[str, IngestTarget] = {}
        self._connections: set[_Connection] = set()
        self._sock: socket.socket | None = None
        self._bound_port = 0
        self._accept_thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- lifecycle --------------------------------------------------------------
    @property
    def port(self) -> int:
        """The bound port (useful when constructed with port 0)."""
        return self._bound_port or self._requested_port

    def start(self) -> None:
        """Bind and start accepting publishers."""
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        sock.listen(64)
        sock.settimeout(0.5)
        self._sock = sock
        self._bound_port = int(sock.getsockname()[1])
        self._stopping.clear()
        self._accept_thread = threading.Thread(target=self._accept_loop, name=f"rtmp-accept-{self.port}", daemon=True)
        self._accept_thread.start()
        log.info("rtmp ingest listening", extra={"host": self.host, "port": self.port})

    def stop(self) -> None:
        """Stop accepting and disconnect every publisher (their audio so far is flushed).

        Sessions stay open: ``end`` is what closes a session's stream.
        """
        self._stopping.set()
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()
        with self._lock:
            conns = list(self._connections)
        for conn in conns:
            conn.close()
        for conn in conns:
            conn.join(timeout=10)
        log.info("rtmp ingest stopped", extra={"port": self.port})

    def __enter__(self) -> RtmpIngest:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- sessions ---------------------------------------------------------------
    def register(self, session_id: str, stream_key: str, position: TimelinePosition | None = None) -> None:
        """Accept ``stream_key`` for ``session_id`` from now on.

        ``position`` continues a timeline written before (e.g. after a restart);
        by default a new session starts at sequence 0, sample 0.
        """
        validate_session_id(session_id)
        if not stream_key or len(stream_key) > 256 or any(c in stream_key for c in "/?&# "):
            raise ValueError("stream key must be 1-256 characters without '/', '?', '&', '#' or spaces")
        with self._lock:
            owner = self._by_key.get(stream_key)
            if owner is not None and owner.session_id != session_id:
                raise ValueError("stream key already belongs to another session")
            existing = self._sessions.get(session_id)
            if existing is not None:
                if existing.ended:
                    raise ValueError(f"session {session_id} already ended")
                if existing.stream_key != stream_key:
                    self._by_key.pop(existing.stream_key, None)
                    existing.stream_key = stream_key
                self._by_key[stream_key] = existing
                return
            target = IngestTarget(session_id, stream_key, SessionFramer(self.writer, session_id, position))
            self._sessions[session_id] = target
            self._by_key[stream_key] = target
        log.info(
            "stream key registered",
            extra={"session": session_id, "key": key_fingerprint(stream_key)},
        )

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

    def authorize(self, app: str, key: str, conn: Publisher) -> IngestTarget | None:
        """Claim the session of ``key`` for ``conn`` and count the publish; None if refused.

        For a publisher that is accepted as soon as its key is (RTMP): :meth:`claim`
        then :meth:`accepted`.
        """
        target = self.claim(app, key, conn)
        if target is not None:
            self.accepted(target, conn)
        return target

    def claim(self, app: str, key: str, conn: Publisher, *, session_id: str | None = None) -> IngestTarget | None:
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
            if app != APP:
                reason = "unknown application"
            elif target is None:
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
            log.warning(
                "publish refused",
                extra={
                    "reason": reason,
                    "app": app[:64],
                    "key": key_fingerprint(key),
                    "peer": conn.peer,
                    **({"session": target.session_id} if target else {}),
                },
            )
            return None
        return target

    def accepted(self, target: IngestTarget, conn: Publisher) -> None:
        """The claiming publisher is set up: count the publish (reconnects are counted from these)."""
        with target.lock:
            if target.live is not conn:
                raise PublishRevoked()
            target.publishes += 1
            publishes = target.publishes
        log.info("publish accepted", extra={"session": target.session_id, "peer": conn.peer, "publish": publishes})

    # -- called from connection threads ----------------------------------------
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

    def release(self, target: IngestTarget, conn: Publisher) -> None:
        """The publisher is gone: flush what it sent and free the key for a reconnect."""
        with target.lock:
            if target.live is conn:
                if not target.ended:
                    target.framer.flush()
                target.live = None

    def _count_bytes(self, target: IngestTarget, n: int) -> None:
        with target.lock:
            target.bytes += n

    def _forget(self, conn: _Connection) -> None:
        with self._lock:
            self._connections.discard(conn)

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                client, addr = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                raise
            peer = f"{addr[0]}:{addr[1]}"
            with self._lock:
                total = len(self._connections)
                unpublished = sum(1 for c in self._connections if c.target is None)
                full = total >= self.max_connections or unpublished >= self.max_unpublished
                if full:
                    self.refused_connections += 1
                else:
                    conn = _Connection(self, client, peer)
                    self._connections.add(conn)
            if full:
                log.warning(
                    "rtmp connection refused: too many connections",
                    extra={"peer": peer, "connections": total, "unpublished": unpublished},
                )
                with contextlib.suppress(OSError):
                    client.close()
                continue
            conn.start()


class PublishRevoked(Exception):
    """The session ended or the connection lost its claim while decoding."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Connection:
    """One publisher: client socket <-> relay <-> private PyAV listener + decoder."""

    def __init__(self, ingest: RtmpIngest, client: socket.socket, peer: str) -> None:
        self.ingest = ingest
        self.client = client
        self.peer = peer
        self.upstream: socket.socket | None = None
        self.sniffer = RtmpSniffer()
        self.target: IngestTarget | None = None
        self.app = ""
        self._closed = threading.Event()
        self.client_eof = threading.Event()
        self.done = threading.Event()
        self._listener_failed = threading.Event()
        self._threads: list[threading.Thread] = []
        self._local_port = _free_port()

    def start(self) -> None:
        name = self.peer
        decoder = threading.Thread(target=self._decode, name=f"rtmp-decode-{name}", daemon=True)
        relay = threading.Thread(target=self._relay, name=f"rtmp-relay-{name}", daemon=True)
        self._threads = [decoder, relay]
        decoder.start()
        relay.start()

    def close(self) -> None:
        """Tear down both sockets; the decoder sees the end and flushes."""
        if self._closed.is_set():
            return
        self._closed.set()
        for sock in (self.client, self.upstream):
            if sock is None:
                continue
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def join(self, timeout: float) -> None:
        """Wait for the connection's threads to finish."""
        deadline = time.monotonic() + timeout
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(max(0.0, deadline - time.monotonic()))

    # -- relay ------------------------------------------------------------------
    def _connect_upstream(self) -> socket.socket | None:
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and not self._closed.is_set():
            if self._listener_failed.is_set():
                return None
            try:
                return socket.create_connection(("127.0.0.1", self._local_port), timeout=1.0)
            except OSError:
                time.sleep(0.01)
        return None

    def _relay(self) -> None:
        ingest = self.ingest
        try:
            upstream = self._connect_upstream()
            if upstream is None:
                log.error("private rtmp listener did not come up", extra={"peer": self.peer})
                return
            upstream.settimeout(None)
            self.upstream = upstream
            back = threading.Thread(target=self._pump_back, name=f"rtmp-back-{self.peer}", daemon=True)
            self._threads.append(back)
            back.start()
            self.client.settimeout(0.5)
            accepted_at = time.monotonic()
            last_data = accepted_at
            while not self._closed.is_set():
                now = time.monotonic()
                if self.target is None and now - accepted_at > ingest.publish_timeout:
                    self._refuse("no publish within the timeout")
                    return
                if self.target is not None and now - last_data > ingest.read_timeout:
                    log.warning(
                        "publisher stalled",
                        extra={"session": self.target.session_id, "peer": self.peer},
                    )
                    return
                try:
                    data = self.client.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    # Let the decoder read everything already sent before it sees the end;
                    # it closes the connection when done.
                    self.client_eof.set()
                    with contextlib.suppress(OSError):
                        upstream.shutdown(socket.SHUT_WR)
                    return
                last_data = now
                if not self._inspect(data):
                    return
                if self.target is not None:
                    ingest._count_bytes(self.target, len(data))
                upstream.sendall(data)
        except OSError as exc:
            if not self._closed.is_set():
                log.info("publisher connection error", extra={"peer": self.peer, "error": str(exc)})
        finally:
            if not self.client_eof.is_set():
                self.close()

    def _inspect(self, data: bytes) -> bool:
        """Parse client bytes before they are forwarded; False = connection refused."""
        try:
            commands = self.sniffer.feed(data)
        except RtmpProtocolError as exc:
            self._refuse(f"protocol error: {exc}")
            return False
        if self.target is None and self.sniffer.bytes_seen > MAX_UNAUTHENTICATED_BYTES:
            self._refuse(f"over {MAX_UNAUTHENTICATED_BYTES} bytes without an accepted publish")
            return False
        for cmd in commands:
            if cmd.name == "media":
                if self.target is None:
                    self._refuse("media before an accepted publish")
                    return False
            elif cmd.name == "connect":
                self.app = cmd.app
                log.debug("rtmp connect", extra={"peer": self.peer, "app": cmd.app[:64]})
            elif cmd.name == "play":
                self._refuse("play is not served")
                return False
            elif cmd.name == "publish":
                if self.target is not None:
                    self._refuse("second publish on one connection")
                    return False
                if not cmd.stream_name:
                    self._refuse("publish without a stream name")
                    return False
                target = self.ingest.authorize(self.app, cmd.stream_name, self)
                if target is None:
                    self.close()
                    return False
                self.target = target
        return True

    def _refuse(self, reason: str) -> None:
        log.warning("rtmp connection refused", extra={"peer": self.peer, "reason": reason})
        self.close()

    def _pump_back(self) -> None:
        assert self.upstream is not None
        try:
            while True:
                data = self.upstream.recv(65536)
                if not data:
                    break
                self.client.sendall(data)
        except OSError:
            pass
        finally:
            # The private listener is gone (its decoder finished): nothing more to relay.
            self.close()

    # -- decode -----------------------------------------------------------------
    def _decode(self) -> None:
        ingest = self.ingest
        url = f"rtmp://127.0.0.1:{self._local_port}/{APP}/x"
        try:
            container = av.open(
                url,
                options={"listen": "1", "analyzeduration": "0", "probesize": "32"},
                timeout=(ingest.publish_timeout + 5.0, ingest.read_timeout),
            )
        except Exception as exc:
            self._listener_failed.set()
            if not self._closed.is_set():
                log.info(
                    "rtmp listener ended before audio",
                    extra={"peer": self.peer, "error": str(exc)},
                )
            self.close()
            self._finish()
            return
        target = self.target
        try:
            with container:
                if target is None:
                    # Only reachable if the relay forwarded a publish it never authorised.
                    log.error("stream opened without an accepted publish", extra={"peer": self.peer})
                    return
                for pcm in pcm_chunks(container):
                    ingest.push(target, self, pcm)
        except PublishRevoked:
            pass
        except (OSError, av.error.FFmpegError, DecodeError) as exc:
            # Errno 5 is how libav reports the publisher closing the connection.
            log.info(
                "publisher disconnected",
                extra={"session": target.session_id if target else None, "detail": str(exc)},
            )
        except StreamUnavailable:
            log.exception(
                "stream unavailable; dropping publisher", extra={"session": target.session_id if target else None}
            )
        finally:
            self.close()
            self._finish()

    def _finish(self) -> None:
        if self.target is not None:
            self.ingest.release(self.target, self)
            self.done.set()
            s = self.ingest.stats(self.target.session_id)
            log.info(
                "publisher gone",
                extra={"session": s.session_id, "samples": s.samples, "frames": s.frames},
            )
        self.done.set()
        self.ingest._forget(self)
