"""RTMP ingest on one port for many sessions, with a real stream-key check.

PyAV/FFmpeg can listen for one RTMP publisher, but it accepts any app and any
stream key (libav only logs "Unexpected stream"). So the public port is served
here: every TCP connection is relayed byte for byte to a private, one-shot PyAV
listener on an ephemeral loopback port, while the client->server bytes are
parsed (handshake, chunk stream, AMF0 commands) to find ``connect`` and
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
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import av
import numpy as np

from contracts.frames import validate_session_id
from producer.decode import DecodeError, pcm_chunks
from producer.framer import SessionFramer, TimelinePosition
from streams.base import StreamUnavailable, StreamWriter

log = logging.getLogger(__name__)

#: C0 + C1 (1 + 1536 bytes) then C2 (1536 bytes) precede the chunk stream.
HANDSHAKE_BYTES = 1 + 1536 + 1536
RTMP_VERSION = 3
DEFAULT_CHUNK_SIZE = 128
#: Commands are small; a larger "command" is an attack or garbage.
MAX_COMMAND_BYTES = 64 * 1024
#: AMF0 objects nest this deep at most (OBS and FFmpeg send 2); deeper is an attack.
MAX_AMF_DEPTH = 16
#: Client bytes forwarded before a publish is accepted: the handshake and a few
#: commands (OBS sends about 1 KB). Anything beyond is refused, so an unauthenticated
#: client cannot make the private listener buffer its data.
MAX_UNAUTHENTICATED_BYTES = HANDSHAKE_BYTES + 4 * MAX_COMMAND_BYTES
#: Chunk streams one connection may use (clients use a handful: 2-8).
MAX_CHUNK_STREAMS = 64
#: Declared sizes of the messages in flight on all chunk streams together: what the
#: private listener (or this parser, for commands) may have to buffer per connection.
#: A 1080p keyframe is well under 1 MiB.
MAX_MESSAGE_BYTES_IN_FLIGHT = 8 * 1024 * 1024

MSG_SET_CHUNK_SIZE = 1
MSG_ABORT = 2
MSG_ACK = 3
MSG_USER_CONTROL = 4
MSG_WINDOW_ACK_SIZE = 5
MSG_SET_PEER_BANDWIDTH = 6
MSG_AUDIO = 8
MSG_VIDEO = 9
MSG_AMF3_COMMAND = 17
MSG_AMF0_COMMAND = 20
#: What a client may send before its publish is accepted: protocol control and
#: commands. Anything else (audio, video, data, aggregates, unknown types) is media.
CONTROL_TYPES = frozenset(
    {
        MSG_SET_CHUNK_SIZE,
        MSG_ABORT,
        MSG_ACK,
        MSG_USER_CONTROL,
        MSG_WINDOW_ACK_SIZE,
        MSG_SET_PEER_BANDWIDTH,
        MSG_AMF3_COMMAND,
        MSG_AMF0_COMMAND,
    }
)

APP = "live"


class RtmpProtocolError(ValueError):
    """The client's bytes are not an RTMP stream this front can follow."""


def key_fingerprint(key: str) -> str:
    """A short, non-reversible tag of a stream key for logs (never log the secret)."""
    return hashlib.sha256(key.encode()).hexdigest()[:10]


def _strip_query(value: str) -> str:
    return value.split("?", 1)[0]


# --------------------------------------------------------------------------- AMF0


class _Amf0Reader:
    """Just enough AMF0 to read command names and their string arguments."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise RtmpProtocolError("truncated AMF0 value")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def _key(self, wide: bool = False) -> str:
        (n,) = struct.unpack(">I" if wide else ">H", self._take(4 if wide else 2))
        return self._take(n).decode("utf-8", "replace")

    def _pairs(self, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        while True:
            name = self._key()
            if not name and self.data[self.pos : self.pos + 1] == b"\x09":
                self.pos += 1
                return out
            out[name] = self.value(depth + 1)

    def value(self, depth: int = 0) -> Any:
        if depth > MAX_AMF_DEPTH:
            raise RtmpProtocolError(f"AMF0 values nested deeper than {MAX_AMF_DEPTH}")
        marker = self._take(1)[0]
        if marker == 0x00:
            return struct.unpack(">d", self._take(8))[0]
        if marker == 0x01:
            return self._take(1)[0] != 0
        if marker == 0x02:
            return self._key()
        if marker == 0x03:
            return self._pairs(depth)
        if marker in (0x05, 0x06):
            return None
        if marker == 0x08:
            self._take(4)  # ECMA array count is advisory; the end marker ends it
            return self._pairs(depth)
        if marker == 0x0A:
            (n,) = struct.unpack(">I", self._take(4))
            return [self.value(depth + 1) for _ in range(n)]
        if marker == 0x0B:
            return struct.unpack(">d", self._take(8))[0]  # date; time zone follows
        if marker == 0x0C:
            return self._key(wide=True)
        raise RtmpProtocolError(f"unsupported AMF0 marker 0x{marker:02x}")

    def values(self) -> list[Any]:
        out: list[Any] = []
        while self.pos < len(self.data):
            out.append(self.value())
        return out


def decode_amf0_command(payload: bytes) -> tuple[str, list[Any]]:
    """Split an AMF0 command message into its name and the values after it."""
    reader = _Amf0Reader(payload)
    name = reader.value()
    if not isinstance(name, str):
        raise RtmpProtocolError("command message does not start with a name")
    args: list[Any] = []
    try:
        while reader.pos < len(payload):
            args.append(reader.value())
    except RtmpProtocolError:
        # Trailing values we cannot read do not matter for the commands we act on;
        # publish's stream name is checked for presence by the caller.
        pass
    return name, args


# --------------------------------------------------------------------- chunk stream


@dataclass(frozen=True)
class RtmpCommand:
    """A command the client sent, reduced to what ingest acts on.

    ``name`` ``"media"`` is not a command: it marks where the first media message began.
    """

    name: str
    app: str = ""
    tc_url: str = ""
    stream_name: str = ""


@dataclass
class _ChunkStream:
    timestamp: int = 0
    delta: int = 0
    length: int = 0
    type_id: int = 0
    stream_id: int = 0
    extended: bool = False
    received: int = 0
    payload: bytearray | None = None


class RtmpSniffer:
    """Incremental parser of the client->server half of an RTMP connection.

    It consumes the handshake, follows the chunk stream (basic headers with
    1-3 byte chunk stream ids, message headers of 11/7/3/0 bytes, extended
    timestamps, Set Chunk Size and Abort from the client) and returns the
    commands it sees. Media payloads are counted and skipped, not kept.

    The first message that is not protocol control or a command is reported
    as a ``media`` pseudo-command, in order with the commands, as soon as its
    header arrives (not when it completes), so the caller can refuse media
    before an accepted publish before any of it is forwarded.

    Memory is bounded whatever the client sends: at most
    :data:`MAX_CHUNK_STREAMS` chunk streams, and the declared sizes of the
    messages in flight at most :data:`MAX_MESSAGE_BYTES_IN_FLIGHT`; anything
    outside raises :class:`RtmpProtocolError` (the only exception it raises).
    """

    def __init__(self) -> None:
        self.handshake_left = HANDSHAKE_BYTES
        self.chunk_size = DEFAULT_CHUNK_SIZE
        self.media_messages = 0
        self.media_started = False
        self.in_flight = 0
        self.bytes_seen = 0
        self._buf = bytearray()
        self._streams: dict[int, _ChunkStream] = {}
        self._current: _ChunkStream | None = None
        self._chunk_left = 0
        self._events: list[RtmpCommand] = []

    @property
    def buffered_bytes(self) -> int:
        """Client bytes this parser holds now: a partial chunk header and partial commands."""
        return len(self._buf) + sum(len(cs.payload or b"") for cs in self._streams.values())

    @property
    def chunk_streams(self) -> int:
        """Chunk streams the client has opened."""
        return len(self._streams)

    def feed(self, data: bytes) -> list[RtmpCommand]:
        """Parse more client bytes; returns the commands completed by them."""
        self.bytes_seen += len(data)
        if self.handshake_left:
            if self.handshake_left == HANDSHAKE_BYTES and data and data[0] != RTMP_VERSION:
                raise RtmpProtocolError(f"not plain RTMP (C0 version byte {data[0]})")
            take = min(self.handshake_left, len(data))
            self.handshake_left -= take
            data = data[take:]
        self._buf += data
        commands = self._events = []
        buf = self._buf
        pos = 0
        while pos < len(buf):
            if self._chunk_left:
                assert self._current is not None
                n = min(self._chunk_left, len(buf) - pos)
                cs = self._current
                if cs.payload is not None:
                    cs.payload += buf[pos : pos + n]
                pos += n
                cs.received += n
                self._chunk_left -= n
                if cs.received == cs.length:
                    self._complete(cs, commands)
                continue
            used = self._header(buf, pos)
            if used is None:
                break
            pos += used
            assert self._current is not None
            if self._current.length == 0:
                self._complete(self._current, commands)
        del buf[:pos]
        return commands

    def _header(self, buf: bytearray, pos: int) -> int | None:
        """Parse one chunk header at ``pos``; None if it is not all there yet."""
        start = pos
        end = len(buf)
        if pos >= end:
            return None
        first = buf[pos]
        fmt, csid = first >> 6, first & 0x3F
        pos += 1
        if csid == 0:
            if pos + 1 > end:
                return None
            csid = 64 + buf[pos]
            pos += 1
        elif csid == 1:
            if pos + 2 > end:
                return None
            csid = 64 + buf[pos] + 256 * buf[pos + 1]
            pos += 2
        size = (11, 7, 3, 0)[fmt]
        if pos + size > end:
            return None
        cs = self._streams.get(csid)
        if cs is None:
            if fmt != 0:
                raise RtmpProtocolError(f"chunk stream {csid} starts without a full header")
            if len(self._streams) >= MAX_CHUNK_STREAMS:
                raise RtmpProtocolError(f"more than {MAX_CHUNK_STREAMS} chunk streams")
            cs = _ChunkStream()
        ts_field = int.from_bytes(buf[pos : pos + 3], "big") if fmt < 3 else 0
        extended = ts_field == 0xFFFFFF if fmt < 3 else cs.extended
        if extended and pos + size + 4 > end:
            return None
        # All bytes are there: commit.
        if fmt < 3 and cs.received:
            raise RtmpProtocolError(f"new message header inside a message on chunk stream {csid}")
        if fmt <= 1:
            cs.length = int.from_bytes(buf[pos + 3 : pos + 6], "big")
            cs.type_id = buf[pos + 6]
        if fmt == 0:
            cs.stream_id = int.from_bytes(buf[pos + 7 : pos + 11], "little")
        pos += size
        if extended:
            ts_field = int.from_bytes(buf[pos : pos + 4], "big")
            pos += 4
        cs.extended = extended
        if cs.received == 0:
            if fmt == 0:
                cs.timestamp = ts_field
            elif fmt in (1, 2):
                cs.delta = ts_field
                cs.timestamp += ts_field
            else:
                cs.timestamp += cs.delta
            keep = cs.type_id in (MSG_SET_CHUNK_SIZE, MSG_ABORT, MSG_AMF0_COMMAND, MSG_AMF3_COMMAND)
            if keep and cs.length > MAX_COMMAND_BYTES:
                raise RtmpProtocolError(f"command message of {cs.length} bytes")
            if self.in_flight + cs.length > MAX_MESSAGE_BYTES_IN_FLIGHT:
                raise RtmpProtocolError(f"more than {MAX_MESSAGE_BYTES_IN_FLIGHT} bytes of messages in flight")
            self.in_flight += cs.length
            cs.payload = bytearray() if keep else None
            if cs.type_id not in CONTROL_TYPES and not self.media_started:
                self.media_started = True
                self._events.append(RtmpCommand("media"))
        self._streams[csid] = cs
        self._current = cs
        self._chunk_left = min(self.chunk_size, cs.length - cs.received)
        return pos - start

    def _complete(self, cs: _ChunkStream, commands: list[RtmpCommand]) -> None:
        payload = bytes(cs.payload or b"")
        self.in_flight -= cs.length
        cs.received = 0
        cs.payload = None
        self._chunk_left = 0
        if cs.type_id in (MSG_AUDIO, MSG_VIDEO):
            self.media_messages += 1
        elif cs.type_id == MSG_SET_CHUNK_SIZE:
            if len(payload) < 4:
                raise RtmpProtocolError("short Set Chunk Size message")
            size = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
            if size < 1:
                raise RtmpProtocolError("chunk size 0")
            self.chunk_size = size
        elif cs.type_id == MSG_ABORT and len(payload) >= 4:
            aborted = self._streams.get(int.from_bytes(payload[:4], "big"))
            if aborted is not None and aborted.received:
                self.in_flight -= aborted.length
                aborted.received, aborted.payload = 0, None
        elif cs.type_id in (MSG_AMF0_COMMAND, MSG_AMF3_COMMAND):
            if cs.type_id == MSG_AMF3_COMMAND:
                payload = payload[1:]  # AMF3 command messages carry AMF0 after a format byte
            command = _command(payload)
            if command is not None:
                commands.append(command)


def _command(payload: bytes) -> RtmpCommand | None:
    name, args = decode_amf0_command(payload)
    if name == "connect":
        obj = args[1] if len(args) > 1 and isinstance(args[1], dict) else {}
        app = obj.get("app", "")
        tc_url = obj.get("tcUrl", "")
        return RtmpCommand(
            name,
            app=_strip_query(app if isinstance(app, str) else "").strip("/"),
            tc_url=tc_url if isinstance(tc_url, str) else "",
        )
    if name in ("publish", "FCPublish", "releaseStream", "play"):
        # [transaction id, null command object, stream name, ...]
        stream = args[2] if len(args) > 2 and isinstance(args[2], str) else ""
        return RtmpCommand(name, stream_name=_strip_query(stream))
    return None


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
