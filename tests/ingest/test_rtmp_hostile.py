"""Hostile RTMP clients (issue 11 #4): no memory before authentication, capped connections.

Before: media sent before any ``publish`` was forwarded to the private FFmpeg
listener, which buffered it until its timeout (255 MB sent without a key raised
RSS by 258 MB); connections were not capped; a 20,000-deep AMF nesting raised
RecursionError out of the relay thread.
"""

from __future__ import annotations

import resource
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from producer.hub import IngestHub
from producer.rtmp_relay import RtmpRelay
from producer.rtmp_wire import MAX_CHUNK_STREAMS, RtmpProtocolError, RtmpSniffer, decode_amf0_command
from streams.embedded import EmbeddedStream

from .conftest import all_records
from .rtmp_wire import basic_header, chunk_message, command, handshake_c0c1, set_chunk_size

C2 = bytes(1536)
CONNECT = chunk_message(command("connect", 1, {"app": "live"}), type_id=20)


def _nested(depth: int, closed: bool = True) -> bytes:
    """An AMF0 command whose argument is ``depth`` objects inside each other."""
    name = b"\x02\x00\x07connect"
    # Each level: an object marker and an empty key, whose value is the next level (3 bytes).
    closers = b"\x00\x00\x09" * depth if closed else b""
    return name + b"\x00" + bytes(8) + b"\x03\x00\x00" * depth + b"\x05" + closers


def test_deep_amf_nesting_is_a_protocol_error_not_a_recursion_error() -> None:
    # The unreadable argument is dropped like any unreadable trailing value: a connect without an app.
    events = RtmpSniffer().feed(handshake_c0c1() + C2 + chunk_message(_nested(20_000, closed=False), type_id=20))
    assert [(e.name, e.app) for e in events] == [("connect", "")]
    with pytest.raises(RtmpProtocolError, match="nested deeper"):
        decode_amf0_command(b"\x03\x00\x00" * 20_000)  # the nesting as the command name itself
    # Ordinary nesting still reads.
    name, args = decode_amf0_command(_nested(3))
    assert name == "connect" and args[1] == {"": {"": {"": None}}}


def test_media_is_reported_at_its_first_chunk_header_in_order() -> None:
    sniffer = RtmpSniffer()
    header = basic_header(0, 4) + bytes(3) + (1024 * 1024).to_bytes(3, "big") + b"\x08" + bytes(4)
    events = sniffer.feed(handshake_c0c1() + C2 + CONNECT + header + bytes(100))
    assert [e.name for e in events] == ["connect", "media"]


def test_chunk_streams_and_bytes_in_flight_are_bounded() -> None:
    sniffer = RtmpSniffer()
    sniffer.feed(handshake_c0c1() + C2)
    # Many chunk streams, each with a half-sent command held in the parser.
    with pytest.raises(RtmpProtocolError, match="chunk streams"):
        for csid in range(3, 3 + MAX_CHUNK_STREAMS + 1):
            first_chunk = len(basic_header(0, csid)) + 11 + 128
            sniffer.feed(chunk_message(command("x", 1, "y" * 60_000), type_id=20, csid=csid)[:first_chunk])
    sniffer = RtmpSniffer()
    sniffer.feed(handshake_c0c1() + C2)
    with pytest.raises(RtmpProtocolError, match="in flight"):
        for csid in range(3, 40):
            header = basic_header(0, csid) + bytes(3) + (1 << 23).to_bytes(3, "big") + b"\x09" + bytes(4)
            sniffer.feed(header + bytes(128))


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        part = sock.recv(n - len(out))
        if not part:
            raise ConnectionError("closed during handshake")
        out += part
    return out


def _handshaken(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(handshake_c0c1())
    s0s1s2 = _recv_exact(sock, 1 + 1536 + 1536)
    sock.sendall(s0s1s2[1:1537])
    return sock


def _send_until_refused(
    sock: socket.socket, chunks: Iterator[bytes], limit: int, within: float = 10.0
) -> tuple[int, float]:
    """Send until the server cuts us off; returns (bytes sent, seconds until cut off, or ``within``)."""
    sent = 0
    started = time.monotonic()
    sock.settimeout(0.5)
    data = b""
    while time.monotonic() - started < within:
        try:
            if not data and sent < limit:
                data = next(chunks, b"")
            if data:
                n = sock.send(data)
                sent, data = sent + n, data[n:]
            elif not sock.recv(65536):
                break  # the server closed the connection
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
    return sent, time.monotonic() - started


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


@pytest.fixture
def hostile_rtmp(hub: IngestHub) -> Iterator[RtmpRelay]:
    relay = RtmpRelay(hub, "127.0.0.1", 0, publish_timeout=30.0, read_timeout=30.0)
    relay.start()
    hub.register("s1", "good-key")
    yield relay
    relay.stop()


def _interleaved_media(streams: int, chunk: int) -> Iterator[bytes]:
    """Video messages of the largest size RTMP allows on many chunk streams, never completed."""
    yield set_chunk_size(chunk)
    length = (1 << 24) - 1
    for csid in range(4, 4 + streams):
        header = bytes(3) + length.to_bytes(3, "big") + b"\x09" + struct.pack("<I", 1)
        yield basic_header(0, csid) + header + bytes(chunk)
    body = bytes(chunk)
    while True:
        yield b"".join(basic_header(3, csid) + body for csid in range(4, 4 + streams))


def test_media_without_a_publish_is_cut_off_before_it_is_buffered(
    hostile_rtmp: RtmpRelay, stream: EmbeddedStream
) -> None:
    before = _rss_mib()
    sock = _handshaken(hostile_rtmp.port)
    sock.sendall(CONNECT)
    sent, took = _send_until_refused(sock, _interleaved_media(16, 65536), limit=256 * 1024 * 1024, within=20)
    grew = _rss_mib() - before
    sock.close()
    assert took < 10, f"not cut off ({sent >> 20} MiB sent in {took:.0f} s)"
    assert grew < 32, f"RSS grew by {grew:.0f} MiB"
    assert all_records(stream) == 0


def test_commands_without_a_publish_are_capped(hostile_rtmp: RtmpRelay) -> None:
    sock = _handshaken(hostile_rtmp.port)
    sock.sendall(CONNECT)
    chatter = chunk_message(command("releaseStream", 2, None, "x" * 3000), type_id=20, csid=5)
    sent, took = _send_until_refused(sock, iter([chatter] * 1000), limit=10**9, within=20)
    sock.close()
    assert took < 10, f"not cut off ({sent} bytes sent in {took:.0f} s)"


def test_amf_bomb_over_the_wire_raises_nothing_out_of_the_relay(hostile_rtmp: RtmpRelay) -> None:
    escaped: list[threading.ExceptHookArgs] = []
    previous = threading.excepthook
    threading.excepthook = escaped.append
    try:
        sock = _handshaken(hostile_rtmp.port)
        sock.sendall(chunk_message(_nested(20_000, closed=False), type_id=20))
        # The relay still follows the connection: the publish is judged (no app: refused).
        sock.sendall(chunk_message(command("publish", 5, None, "good-key", "live"), type_id=20, csid=8))
        _sent, took = _send_until_refused(sock, iter(()), limit=0, within=20)
        sock.close()
        assert took < 10
        assert not escaped, [a.exc_type for a in escaped]
        assert hostile_rtmp.hub.stats("s1").refused == 1
    finally:
        threading.excepthook = previous
