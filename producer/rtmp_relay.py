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

This module owns the sockets and threads: accepting connections within the
connection caps, the relay and its pre-publish byte limit, the private
listener hand-off and the decoder that pushes PCM into the hub.

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
import time

import av

from producer.decode import DecodeError, pcm_chunks
from producer.hub import IngestHub, IngestTarget, PublishRevoked
from producer.rtmp_wire import HANDSHAKE_BYTES, MAX_COMMAND_BYTES, RtmpProtocolError, RtmpSniffer
from streams.base import StreamUnavailable

log = logging.getLogger(__name__)

#: The RTMP application publishers use: ``rtmp://HOST:PORT/live/STREAM_KEY``.
APP = "live"
#: Client bytes forwarded before a publish is accepted: the handshake and a few
#: commands (OBS sends about 1 KB). Anything beyond is refused, so an unauthenticated
#: client cannot make the private listener buffer its data.
MAX_UNAUTHENTICATED_BYTES = HANDSHAKE_BYTES + 4 * MAX_COMMAND_BYTES
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
            conn = _Connection(self, client, peer, source_of(str(addr[0])))
            with self._lock:
                victims = self._make_room(conn.source)
                if victims is None:
                    self.refused_connections += 1
                    total = len(self._connections)
                else:
                    for victim in victims:
                        victim.evicted = True
                    self.evicted_connections += len(victims)
                    self._connections.add(conn)
            if victims is None:
                log.warning(
                    "rtmp connection refused: every connection slot holds a publisher",
                    extra={"peer": peer, "connections": total},
                )
                with contextlib.suppress(OSError):
                    client.close()
                continue
            for victim in victims:
                log.warning(
                    "rtmp connection evicted: a newer connection needs its slot",
                    extra={"peer": victim.peer, "source": victim.source, "age_s": round(victim.age(), 1)},
                )
                victim.close()
            conn.start()

    def _make_room(self, source: str) -> list[_Connection] | None:
        """The unauthenticated connections that give way to a new one from ``source``; None = refuse it.

        Called with the lock held. The oldest goes first: it has had the longest
        to publish. Connections that published (or whose publish is being judged)
        never give way.
        """
        live = [c for c in self._connections if not c.evicted and not c.closed]
        waiting = sorted((c for c in live if c.target is None and not c.judging), key=lambda c: c.accepted_at)
        victims: list[_Connection] = []
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Connection:
    """One publisher: client socket <-> relay <-> private PyAV listener + decoder."""

    def __init__(self, relay: RtmpRelay, client: socket.socket, peer: str, source: str) -> None:
        self.relay = relay
        self.client = client
        self.peer = peer
        self.source = source
        self.accepted_at = time.monotonic()
        #: Set under the relay's lock: this connection gave way to a newer one.
        self.evicted = False
        #: Set under the relay's lock: its publish is with the hub, so it must not be evicted.
        self.judging = False
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

    @property
    def closed(self) -> bool:
        """Closed (refused, timed out, gone): its threads are finishing and it holds no slot."""
        return self._closed.is_set()

    def age(self) -> float:
        """Seconds since the connection was accepted."""
        return time.monotonic() - self.accepted_at

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
        relay = self.relay
        try:
            upstream = self._connect_upstream()
            if upstream is None:
                if self._closed.is_set():  # closed meanwhile (evicted, stopping): nothing went wrong
                    self._release_listener()
                else:
                    log.error("private rtmp listener did not come up", extra={"peer": self.peer})
                return
            upstream.settimeout(None)
            self.upstream = upstream
            if self._closed.is_set():  # closed while connecting: close() did not see this socket
                with contextlib.suppress(OSError):
                    upstream.shutdown(socket.SHUT_RDWR)
                upstream.close()
                return
            back = threading.Thread(target=self._pump_back, name=f"rtmp-back-{self.peer}", daemon=True)
            self._threads.append(back)
            back.start()
            self.client.settimeout(0.5)
            last_data = self.accepted_at
            while not self._closed.is_set():
                now = time.monotonic()
                if self.sniffer.handshake_left and now - self.accepted_at > relay.handshake_timeout:
                    self._refuse("no RTMP handshake within the timeout")
                    return
                if self.target is None and now - self.accepted_at > relay.publish_timeout:
                    self._refuse("no publish within the timeout")
                    return
                if self.target is not None and now - last_data > relay.read_timeout:
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
                    relay.hub.count_bytes(self.target, len(data))
                upstream.sendall(data)
        except OSError as exc:
            if not self._closed.is_set():
                log.info("publisher connection error", extra={"peer": self.peer, "error": str(exc)})
        finally:
            if not self.client_eof.is_set():
                self.close()

    def _release_listener(self) -> None:
        """End a private listener no client will reach: connect once and hang up.

        Otherwise its decoder thread waits out the listener's open timeout (15 s),
        and connections evicted before their relay connected would pile up threads.
        """
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and not self._listener_failed.is_set():
            try:
                socket.create_connection(("127.0.0.1", self._local_port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.02)

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
                target = self._authorize(cmd.stream_name)
                if target is None:
                    self.close()
                    return False
                self.target = target
        return True

    def _authorize(self, key: str) -> IngestTarget | None:
        """The hub's verdict on a publish of ``key``, after this front's own check of the app."""
        relay = self.relay
        hub = relay.hub
        if self.app != APP:
            hub.refuse(key, self, "unknown application", app=self.app[:64])
            return None
        with relay._lock:
            if self.evicted:
                return None  # gave way to a newer connection just now
            self.judging = True
        target = None
        try:
            target = hub.authorize(key, self)
            return target
        finally:
            with relay._lock:  # published before it stops being judged: never evicted between
                self.judging = False
                self.target = target

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
        relay = self.relay
        url = f"rtmp://127.0.0.1:{self._local_port}/{APP}/x"
        try:
            container = av.open(
                url,
                options={"listen": "1", "analyzeduration": "0", "probesize": "32"},
                timeout=(relay.publish_timeout + 5.0, relay.read_timeout),
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
                    relay.hub.push(target, self, pcm)
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
            self.relay.hub.release(self.target, self)
            self.done.set()
            s = self.relay.hub.stats(self.target.session_id)
            log.info(
                "publisher gone",
                extra={"session": s.session_id, "samples": s.samples, "frames": s.frames},
            )
        self.done.set()
        self.relay._forget(self)
