"""The RTMP wire reader: the client->server half of a connection, parsed as it arrives.

Pure parsing, no sockets: :class:`RtmpSniffer` is fed the bytes a client sent
and returns the commands it completed (``connect``, ``publish``, ...) and where
the first media message began, so the relay (:mod:`producer.rtmp_relay`) can
judge a publish before it forwards the bytes that carry it. The AMF0 reader
knows just enough to read command names and their string arguments.

Every bound on what a client can make this parser hold is here
(:data:`MAX_COMMAND_BYTES`, :data:`MAX_AMF_DEPTH`, :data:`MAX_CHUNK_STREAMS`,
:data:`MAX_MESSAGE_BYTES_IN_FLIGHT`); the only exception it raises is
:class:`RtmpProtocolError`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

#: C0 + C1 (1 + 1536 bytes) then C2 (1536 bytes) precede the chunk stream.
HANDSHAKE_BYTES = 1 + 1536 + 1536
RTMP_VERSION = 3
DEFAULT_CHUNK_SIZE = 128
#: Commands are small; a larger "command" is an attack or garbage.
MAX_COMMAND_BYTES = 64 * 1024
#: AMF0 objects nest this deep at most (OBS and FFmpeg send 2); deeper is an attack.
MAX_AMF_DEPTH = 16
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


#: An AMF0 value as this reader returns it (dates read as their number, undefined as None).
AmfValue = float | bool | str | None | dict[str, "AmfValue"] | list["AmfValue"]


class RtmpProtocolError(ValueError):
    """The client's bytes are not an RTMP stream this front can follow."""


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

    def _pairs(self, depth: int) -> dict[str, AmfValue]:
        out: dict[str, AmfValue] = {}
        while True:
            name = self._key()
            if not name and self.data[self.pos : self.pos + 1] == b"\x09":
                self.pos += 1
                return out
            out[name] = self.value(depth + 1)

    def value(self, depth: int = 0) -> AmfValue:
        """Read one value; nesting deeper than :data:`MAX_AMF_DEPTH` is a protocol error."""
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


def decode_amf0_command(payload: bytes) -> tuple[str, list[AmfValue]]:
    """Split an AMF0 command message into its name and the values after it."""
    reader = _Amf0Reader(payload)
    name = reader.value()
    if not isinstance(name, str):
        raise RtmpProtocolError("command message does not start with a name")
    args: list[AmfValue] = []
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
        basic = _basic_header(buf, pos)
        if basic is None:
            return None
        fmt, csid, at = basic
        size = (11, 7, 3, 0)[fmt]
        if at + size > len(buf):
            return None
        cs = self._stream_for(fmt, csid)
        ts_field = int.from_bytes(buf[at : at + 3], "big") if fmt < 3 else 0
        extended = ts_field == 0xFFFFFF if fmt < 3 else cs.extended
        if extended and at + size + 4 > len(buf):
            return None
        # All bytes are there: commit.
        if fmt < 3 and cs.received:
            raise RtmpProtocolError(f"new message header inside a message on chunk stream {csid}")
        _read_message_header(cs, fmt, buf[at : at + size])
        ts_field, at = _extended_timestamp(buf, at + size, ts_field, extended)
        cs.extended = extended
        self._continue_on(csid, cs, fmt, ts_field)
        return at - pos

    def _continue_on(self, csid: int, cs: _ChunkStream, fmt: int, ts_field: int) -> None:
        """Chunk data that follows belongs to ``cs`` (a message starts on it unless one is under way)."""
        if cs.received == 0:
            self._begin_message(cs, fmt, ts_field)
        self._streams[csid] = cs
        self._current = cs
        self._chunk_left = min(self.chunk_size, cs.length - cs.received)

    def _stream_for(self, fmt: int, csid: int) -> _ChunkStream:
        """The chunk stream a header continues, or a new one (which must start with a full header)."""
        cs = self._streams.get(csid)
        if cs is not None:
            return cs
        if fmt != 0:
            raise RtmpProtocolError(f"chunk stream {csid} starts without a full header")
        if len(self._streams) >= MAX_CHUNK_STREAMS:
            raise RtmpProtocolError(f"more than {MAX_CHUNK_STREAMS} chunk streams")
        return _ChunkStream()

    def _begin_message(self, cs: _ChunkStream, fmt: int, ts_field: int) -> None:
        """A message starts on ``cs``: its timestamp, its size within the limits, and whether to keep it."""
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

    def _complete(self, cs: _ChunkStream, commands: list[RtmpCommand]) -> None:
        payload = bytes(cs.payload or b"")
        self.in_flight -= cs.length
        cs.received = 0
        cs.payload = None
        self._chunk_left = 0
        if cs.type_id in (MSG_AUDIO, MSG_VIDEO):
            self.media_messages += 1
        elif cs.type_id == MSG_SET_CHUNK_SIZE:
            self.chunk_size = _chunk_size(payload)
        elif cs.type_id == MSG_ABORT and len(payload) >= 4:
            self._abort(int.from_bytes(payload[:4], "big"))
        elif cs.type_id in (MSG_AMF0_COMMAND, MSG_AMF3_COMMAND):
            if cs.type_id == MSG_AMF3_COMMAND:
                payload = payload[1:]  # AMF3 command messages carry AMF0 after a format byte
            command = _command(payload)
            if command is not None:
                commands.append(command)

    def _abort(self, csid: int) -> None:
        """Abort Message: drop the partly received message on chunk stream ``csid``."""
        aborted = self._streams.get(csid)
        if aborted is not None and aborted.received:
            self.in_flight -= aborted.length
            aborted.received, aborted.payload = 0, None


def _chunk_size(payload: bytes) -> int:
    """The chunk size a Set Chunk Size message sets."""
    if len(payload) < 4:
        raise RtmpProtocolError("short Set Chunk Size message")
    size = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
    if size < 1:
        raise RtmpProtocolError("chunk size 0")
    return size


def _basic_header(buf: bytearray, pos: int) -> tuple[int, int, int] | None:
    """(format, chunk stream id, position after it) of the basic header at ``pos``; None if incomplete."""
    if pos >= len(buf):
        return None
    fmt, csid = buf[pos] >> 6, buf[pos] & 0x3F
    pos += 1
    extra = {0: 1, 1: 2}.get(csid, 0)  # ids 64-319 take one more byte, 64-65599 two
    if pos + extra > len(buf):
        return None
    if csid == 0:
        csid = 64 + buf[pos]
    elif csid == 1:
        csid = 64 + buf[pos] + 256 * buf[pos + 1]
    return fmt, csid, pos + extra


def _extended_timestamp(buf: bytearray, at: int, ts_field: int, extended: bool) -> tuple[int, int]:
    """The timestamp (the 4-byte extended one at ``at`` when there is one) and the position after it."""
    if not extended:
        return ts_field, at
    return int.from_bytes(buf[at : at + 4], "big"), at + 4


def _read_message_header(cs: _ChunkStream, fmt: int, header: bytearray) -> None:
    """The message length and type (formats 0 and 1) and stream id (format 0) from a message header."""
    if fmt <= 1:
        cs.length = int.from_bytes(header[3:6], "big")
        cs.type_id = header[6]
    if fmt == 0:
        cs.stream_id = int.from_bytes(header[7:11], "little")


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
