"""Fair limits on unauthenticated RTMP connections (issue 20 #3).

Before: one peer holding 16 sockets that had sent a single byte (renewed as they
timed out) made every publisher fail at once, logging ``rtmp connection refused:
too many connections ... unpublished=16``. No key was needed and there was no
per-peer cap. Now each source address holds at most a few unauthenticated
connections, the oldest one gives way to a new one when the caps are reached,
and a connection that does not complete the handshake is closed early.

Attackers bind other loopback addresses (127.0.0.2, ...: Linux routes all of
127/8 to ``lo``) so they are other sources than the publisher on 127.0.0.1.
Every loop is bounded in count and time.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from producer.hub import IngestHub
from producer.rtmp_relay import RtmpRelay, source_of
from streams.embedded import EmbeddedStream
from testkit.net import wait_for

from .conftest import frames_of, publish, wav_seconds
from .rtmp_wire import chunk_message, command, handshake_c0c1
from .test_rtmp_hostile import CONNECT, _handshaken


def _idle_socket(source: str, port: int) -> socket.socket:
    """A connection from ``source`` that sends one byte (the start of a handshake) and goes quiet."""
    sock = socket.socket()
    sock.bind((source, 0))
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"\x03")
    return sock


def _closed_by_server(sock: socket.socket, within: float = 20.0) -> bool:
    """Whether the server closes ``sock`` within ``within`` s (what it sent before, S0 S1..., is read past)."""
    deadline = time.monotonic() + within
    try:
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            if not sock.recv(65536):
                return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return False


def _published(hub: IngestHub, session_id: str) -> bool:
    return hub.stats(session_id).publishes == 1


def _unpublished_from(relay: RtmpRelay, source: str) -> int:
    with relay._lock:
        return sum(1 for c in relay._connections if c.source == source and c.target is None and not c.evicted)


@pytest.fixture
def relay(hub: IngestHub) -> Iterator[RtmpRelay]:
    """The relay with its production limits (64 connections, 16 waiting, 4 per source)."""
    ing = RtmpRelay(hub, "127.0.0.1", 0)
    ing.start()
    hub.register("s1", "good-key")
    yield ing
    ing.stop()


def test_a_publisher_gets_in_beside_100_idle_sockets_from_one_peer(
    relay: RtmpRelay, stream: EmbeddedStream, speech_wav: Path
) -> None:
    idle: list[socket.socket] = []
    stop = threading.Event()

    def renew() -> None:
        # The attack goes on during the publish: a new idle socket every 20 ms (at most 150).
        for _ in range(150):
            if stop.wait(0.02):
                return
            with contextlib.suppress(OSError):  # refused or reset: the attacker's problem
                idle.append(_idle_socket("127.0.0.2", relay.port))

    try:
        for _ in range(100):
            idle.append(_idle_socket("127.0.0.2", relay.port))
        for s in idle:  # each handled by the server: its C0 answered (S0) or the socket closed
            with contextlib.suppress(OSError):
                s.recv(1)
        attacker = threading.Thread(target=renew, daemon=True)
        attacker.start()
        done = publish(f"rtmp://127.0.0.1:{relay.port}/live/good-key", speech_wav, realtime=False)
        stop.set()
        attacker.join(10)
        assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
        wait_for(lambda: not relay.hub.stats("s1").connected, timeout=15, what="the publisher to finish")
        stats = relay.hub.stats("s1")
        assert stats.publishes == 1 and stats.refused == 0
        # The whole recording arrived (AAC priming and framing cost a few hundredths of a second).
        assert abs(stats.samples / 16_000 - wav_seconds(speech_wav)) < 0.5
        assert frames_of(stream, "s1")
        # The peer never held more than its share of the waiting slots.
        assert _unpublished_from(relay, "127.0.0.2") <= relay.max_unpublished_per_source
        assert relay.refused_connections == 0 and relay.evicted_connections >= 96
    finally:
        stop.set()
        for s in idle:
            s.close()


def test_when_the_waiting_slots_are_full_the_oldest_gives_way_and_publishers_stay(hub: IngestHub) -> None:
    ing = RtmpRelay(hub, "127.0.0.1", 0, publish_timeout=60, max_connections=4, max_unpublished=2)
    ing.start()
    hub.register("s1", "good-key")
    socks: list[socket.socket] = []
    try:
        # A publisher whose publish was accepted holds a slot no newcomer can take.
        publisher = _handshaken(ing.port)
        socks.append(publisher)
        publisher.sendall(CONNECT)
        publisher.sendall(chunk_message(command("publish", 5, None, "good-key", "live"), type_id=20, csid=8))
        wait_for(lambda: hub.stats("s1").publishes == 1, timeout=15, what="the publish to be accepted")
        # Three sources in turn: the third takes the slot of the first, the oldest waiting.
        first, second, third = (_idle_socket(f"127.0.0.{i}", ing.port) for i in (2, 3, 4))
        socks += [first, second, third]
        assert _closed_by_server(first), "the oldest waiting connection did not give way"
        assert ing.evicted_connections == 1
        # Connections: the publisher and two waiting, of four; a fourth source evicts the second.
        fourth = _idle_socket("127.0.0.5", ing.port)
        socks.append(fourth)
        assert _closed_by_server(second)
        assert hub.stats("s1").connected, "the publisher was pushed out"
        with ing._lock:
            waiting = sorted(c.source for c in ing._connections if c.target is None and not c.evicted)
        assert waiting == ["127.0.0.4", "127.0.0.5"]
        assert ing.refused_connections == 0
    finally:
        for s in socks:
            s.close()
        ing.stop()


def test_only_publishers_in_every_slot_refuse_a_newcomer(hub: IngestHub) -> None:
    ing = RtmpRelay(hub, "127.0.0.1", 0, publish_timeout=60, max_connections=2)
    ing.start()
    socks: list[socket.socket] = []
    try:
        for i in range(2):
            hub.register(f"s{i}", f"key-{i}")
            sock = _handshaken(ing.port)
            socks.append(sock)
            sock.sendall(CONNECT)
            sock.sendall(chunk_message(command("publish", 5, None, f"key-{i}", "live"), type_id=20, csid=8))
            wait_for(partial(_published, hub, f"s{i}"), timeout=15, what=f"publish {i}")
        newcomer = _idle_socket("127.0.0.2", ing.port)
        socks.append(newcomer)
        assert _closed_by_server(newcomer)
        assert ing.refused_connections == 1 and ing.evicted_connections == 0
        assert hub.stats("s0").connected and hub.stats("s1").connected
    finally:
        for s in socks:
            s.close()
        ing.stop()


def test_a_connection_that_does_not_finish_the_handshake_is_closed_at_the_handshake_deadline(
    hub: IngestHub,
) -> None:
    # The publish deadline is a minute; the handshake one a second.
    ing = RtmpRelay(hub, "127.0.0.1", 0, publish_timeout=60, handshake_timeout=1.0)
    ing.start()
    try:
        sock = _idle_socket("127.0.0.1", ing.port)
        assert _closed_by_server(sock, within=30), "an idle half-handshake outlived the handshake deadline"
        sock.close()
        # A client that finished its handshake is held to the publish deadline only.
        ok = socket.create_connection(("127.0.0.1", ing.port), timeout=10)
        ok.sendall(handshake_c0c1())
        got = b""
        while len(got) < 1 + 2 * 1536:
            part = ok.recv(65536)
            assert part, "closed during the handshake"
            got += part
        ok.sendall(got[1:1537])
        ok.settimeout(3)
        with pytest.raises(TimeoutError):
            ok.recv(1)  # still open well after the handshake deadline
        ok.close()
    finally:
        ing.stop()


def test_sources_are_addresses_and_ipv6_prefixes() -> None:
    assert source_of("192.0.2.7") == "192.0.2.7"
    assert source_of("2001:db8:1:2:aaaa::1") == source_of("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert source_of("2001:db8:1:3::1") != source_of("2001:db8:1:2::1")
    assert source_of("::ffff:192.0.2.7") == "192.0.2.7"
