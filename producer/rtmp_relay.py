"""The RTMP front: one public port for many sessions, relayed to private PyAV listeners.

PyAV/FFmpeg can listen for one RTMP publisher, but it accepts any app and any
stream key (libav only logs "Unexpected stream"). So the public port is served
here: every TCP connection is relayed byte for byte to a private, one-shot PyAV
listener on an ephemeral loopback port, while the client->server bytes are
parsed (:class:`producer.rtmp_wire.RtmpSniffer`) to find ``connect`` and
``publish``. The chunk holding ``publish`` is only forwarded after the key was
checked with the :class:`producer.hub.IngestHub`, so a refused publisher never
gets past ``createStream`` on the PyAV side, and its decoder has no session to
push to in any case.

This module owns the public socket: accepting connections within the connection
caps. Each accepted connection (the relay and its pre-publish byte limit, the
private listener hand-off and the decoder that pushes PCM into the hub) is a
:class:`producer.rtmp_connection.RtmpConnection`.

Before a publish is accepted a connection is unauthenticated, and the limits on
those are fair rather than first come, first served (issue 20: 16 idle sockets
from one peer that sent one byte each locked every publisher out):

- each source address (an IPv4 address, an IPv6 /64) holds at most
  ``max_unpublished_per_source`` of them; its next one replaces its oldest;
- when ``max_unpublished`` (or ``max_connections``) is reached, the oldest
  unauthenticated connection gives way to the new one, so a new publisher always
  gets its chance; only connections that published are never pushed out;
- the RTMP handshake must complete within ``handshake_timeout`` and the publish
  be accepted within ``publish_timeout``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import threading

from producer.hub import IngestHub, IngestTarget
from producer.rtmp_connection import APP, MAX_UNAUTHENTICATED_BYTES, RtmpConnection

__all__ = ["APP", "MAX_UNAUTHENTICATED_BYTES", "RtmpRelay", "source_of"]

log = logging.getLogger(__name__)

#: Unauthenticated connections one source address may hold. A publisher needs one;
#: a few allow a retry or a second encoder from the same NAT while the first waits.
MAX_UNPUBLISHED_PER_SOURCE = 4
#: Seconds to complete the RTMP handshake (C0 C1 C2, 3,073 bytes): one and a half round
#: trips for a real client, so 5 s leaves room for a slow link and none for a socket
#: that sent one byte and went quiet.
HANDSHAKE_TIMEOUT = 5.0


def source_of(host: str) -> str:
    """The source a peer address counts against: the IPv4 address, or the IPv6 /64.

    One IPv6 host commonly owns a whole /64, so its single addresses are not a limit.
    """
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class RtmpRelay:
    """The RTMP port: publishers of every registered session connect here.

    Sessions and keys are the :class:`IngestHub`'s; this front checks a
    ``publish`` with it before forwarding it, and pushes the decoded audio
    into it. Publishes with an app other than :data:`APP` are refused here;
    the hub refuses unknown, revoked or already-live keys.
    """

    def __init__(
        self,
        hub: IngestHub,
        host: str,
        port: int,
        *,
        publish_timeout: float = 10.0,
        read_timeout: float = 10.0,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        max_connections: int = 64,
        max_unpublished: int | None = None,
        max_unpublished_per_source: int = MAX_UNPUBLISHED_PER_SOURCE,
    ) -> None:
        self.hub = hub
        self.host = host
        self._requested_port = port
        self.publish_timeout = publish_timeout
        self.read_timeout = read_timeout
        self.handshake_timeout = handshake_timeout
        #: Connections at once (each costs three threads and a private listener) ...
        self.max_connections = max_connections
        #: ... of which this many may not have published yet, so clients that never
        #: publish cannot crowd out publishers (the oldest gives way to a new one) ...
        self.max_unpublished = max_unpublished if max_unpublished is not None else max(1, max_connections // 4)
        #: ... and this many per source address (its oldest gives way to its new one).
        self.max_unpublished_per_source = max(1, max_unpublished_per_source)
        #: Connections refused because every slot is held by a publisher.
        self.refused_connections = 0
        #: Unauthenticated connections closed to make room for a newer one.
        self.evicted_connections = 0
        self._lock = threading.Lock()
        self._connections: set[RtmpConnection] = set()
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

        Sessions stay open: the hub's ``end`` is what closes a session's stream.
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

    def __enter__(self) -> RtmpRelay:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def forget(self, conn: RtmpConnection) -> None:
        """``conn`` is finished: it holds no slot any more."""
        with self._lock:
            self._connections.discard(conn)

    def start_judging(self, conn: RtmpConnection) -> bool:
        """Mark ``conn``'s publish as being judged (never evicted meanwhile); False if it was evicted."""
        with self._lock:
            if conn.evicted:
                return False  # gave way to a newer connection just now
            conn.judging = True
            return True

    def end_judging(self, conn: RtmpConnection, target: IngestTarget | None) -> None:
        """Record the verdict and end the judging at once: published before it stops being judged."""
        with self._lock:
            conn.judging = False
            conn.target = target

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
            self._admit(client, f"{addr[0]}:{addr[1]}", source_of(str(addr[0])))

    def _admit(self, client: socket.socket, peer: str, source: str) -> None:
        """Start a connection for ``client``, evicting what gives way to it, or refuse it."""
        conn = RtmpConnection(self, client, peer, source)
        victims = self._claim_slot(conn)
        if victims is None:
            with contextlib.suppress(OSError):
                client.close()
            return
        for victim in victims:
            log.warning(
                "rtmp connection evicted: a newer connection needs its slot",
                extra={"peer": victim.peer, "source": victim.source, "age_s": round(victim.age(), 1)},
            )
            victim.close()
        conn.start()

    def _claim_slot(self, conn: RtmpConnection) -> list[RtmpConnection] | None:
        """Give ``conn`` a slot and return the connections evicted for it; None = refused."""
        with self._lock:
            victims = self._make_room(conn.source)
            if victims is None:
                self.refused_connections += 1
                log.warning(
                    "rtmp connection refused: every connection slot holds a publisher",
                    extra={"peer": conn.peer, "connections": len(self._connections)},
                )
                return None
            for victim in victims:
                victim.evicted = True
            self.evicted_connections += len(victims)
            self._connections.add(conn)
            return victims

    def _make_room(self, source: str) -> list[RtmpConnection] | None:
        """The unauthenticated connections that give way to a new one from ``source``; None = refuse it.

        Called with the lock held. The oldest goes first: it has had the longest
        to publish. Connections that published (or whose publish is being judged)
        never give way.
        """
        live = [c for c in self._connections if not c.evicted and not c.closed]
        waiting = sorted((c for c in live if c.target is None and not c.judging), key=lambda c: c.accepted_at)
        victims: list[RtmpConnection] = []
        same_source = [c for c in waiting if c.source == source]
        if len(same_source) >= self.max_unpublished_per_source:
            victims.append(same_source[0])
        elif len(waiting) >= self.max_unpublished:
            victims.append(waiting[0])
        if len(live) - len(victims) >= self.max_connections:
            rest = [c for c in waiting if c not in victims]
            if not rest:
                return None
            victims.append(rest[0])
        return victims
