"""Clients that never publish, send media early or speak something else: cut off, no records."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from producer.hub import IngestHub
from producer.rtmp_relay import RtmpRelay
from streams.embedded import EmbeddedStream
from testkit.net import wait_for

from .conftest import all_records
from .rtmp_wire import chunk_message, command, handshake_c0c1


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
    sock.sendall(s0s1s2[1:1537])  # C2 echoes S1
    return sock


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return False


@pytest.fixture
def strict_rtmp(hub: IngestHub) -> Iterator[RtmpRelay]:
    relay = RtmpRelay(hub, "127.0.0.1", 0, publish_timeout=1.5, read_timeout=2.0)
    relay.start()
    hub.register("s1", "good-key")
    yield relay
    relay.stop()


def test_publisher_that_never_publishes_is_dropped(strict_rtmp: RtmpRelay) -> None:
    sock = _handshaken(strict_rtmp.port)
    sock.sendall(chunk_message(command("connect", 1, {"app": "live"}), type_id=20))
    started = time.monotonic()
    assert _closed_by_server(sock, within=6.0)
    assert 1.0 < time.monotonic() - started < 5.0
    sock.close()


def test_media_before_publish_is_refused(strict_rtmp: RtmpRelay, stream: EmbeddedStream) -> None:
    sock = _handshaken(strict_rtmp.port)
    sock.sendall(chunk_message(command("connect", 1, {"app": "live"}), type_id=20))
    sock.sendall(chunk_message(b"\xaf\x01" + bytes(300), type_id=8, csid=4, stream_id=1))
    assert _closed_by_server(sock, within=3.0)
    sock.close()
    assert all_records(stream) == 0


def test_play_is_refused(strict_rtmp: RtmpRelay) -> None:
    sock = _handshaken(strict_rtmp.port)
    sock.sendall(chunk_message(command("connect", 1, {"app": "live"}), type_id=20))
    sock.sendall(chunk_message(command("play", 2, None, "good-key"), type_id=20, csid=8))
    assert _closed_by_server(sock, within=3.0)
    sock.close()


def test_not_rtmp_is_dropped_and_the_port_keeps_serving(strict_rtmp: RtmpRelay) -> None:
    sock = socket.create_connection(("127.0.0.1", strict_rtmp.port), timeout=5)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert _closed_by_server(sock, within=3.0)
    sock.close()
    # A real client still gets a handshake afterwards.
    good = _handshaken(strict_rtmp.port)
    good.close()
    wait_for(lambda: not strict_rtmp._connections, timeout=10, what="connections to finish")
