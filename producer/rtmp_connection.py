"""One RTMP publisher's connection: client socket <-> relay <-> private PyAV listener + decoder.

The public front (:class:`producer.rtmp_relay.RtmpRelay`) accepts the socket and
decides which connections may stay; each connection then runs three threads:

- the relay reads the client's bytes, parses them as they pass
  (:class:`producer.rtmp_wire.RtmpSniffer`) and forwards them to the private
  listener, holding back a ``publish`` until the hub accepted its key, and
  enforces the handshake, publish and read timeouts and the pre-publish byte limit;
- the pump sends the listener's replies back to the client;
- the decoder opens the private one-shot PyAV listener and pushes the decoded PCM
  into the :class:`producer.hub.IngestHub`.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from typing import Protocol

import av

from producer.decode import DecodeError, pcm_chunks
from producer.hub import IngestHub, IngestTarget, PublishRevoked
from producer.rtmp_wire import HANDSHAKE_BYTES, MAX_COMMAND_BYTES, RtmpCommand, RtmpProtocolError, RtmpSniffer
from streams.base import StreamUnavailable

log = logging.getLogger("producer.rtmp_relay")  # one logger for the whole RTMP front

#: The RTMP application publishers use: ``rtmp://HOST:PORT/live/STREAM_KEY``.
APP = "live"
#: Client bytes forwarded before a publish is accepted: the handshake and a few
#: commands (OBS sends about 1 KB). Anything beyond is refused, so an unauthenticated
#: client cannot make the private listener buffer its data.
MAX_UNAUTHENTICATED_BYTES = HANDSHAKE_BYTES + 4 * MAX_COMMAND_BYTES


class RelayFront(Protocol):
    """What a connection needs from the front that accepted it (:class:`producer.rtmp_relay.RtmpRelay`)."""

    hub: IngestHub
    handshake_timeout: float
    publish_timeout: float
    read_timeout: float

    def start_judging(self, conn: RtmpConnection) -> bool:
        """Mark ``conn``'s publish as being judged (never evicted meanwhile); False if it was evicted."""

    def end_judging(self, conn: RtmpConnection, target: IngestTarget | None) -> None:
        """Record the verdict (the target, None if refused) and end the judging, atomically."""

    def forget(self, conn: RtmpConnection) -> None:
        """``conn`` is finished: it holds no slot any more."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RtmpConnection:
    """One publisher: client socket <-> relay <-> private PyAV listener + decoder."""

    def __init__(self, relay: RelayFront, client: socket.socket, peer: str, source: str) -> None:
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
        try:
            upstream = self._open_upstream()
            if upstream is None:
                return
            back = threading.Thread(target=self._pump_back, name=f"rtmp-back-{self.peer}", daemon=True)
            self._threads.append(back)
            back.start()
            self._forward(upstream)
        except OSError as exc:
            if not self._closed.is_set():
                log.info("publisher connection error", extra={"peer": self.peer, "error": str(exc)})
        finally:
            if not self.client_eof.is_set():
                self.close()

    def _open_upstream(self) -> socket.socket | None:
        """The socket to the private listener, or None when the connection is over before it."""
        upstream = self._connect_upstream()
        if upstream is None:
            if self._closed.is_set():  # closed meanwhile (evicted, stopping): nothing went wrong
                self._release_listener()
            else:
                log.error("private rtmp listener did not come up", extra={"peer": self.peer})
            return None
        upstream.settimeout(None)
        self.upstream = upstream
        if self._closed.is_set():  # closed while connecting: close() did not see this socket
            with contextlib.suppress(OSError):
                upstream.shutdown(socket.SHUT_RDWR)
            upstream.close()
            return None
        return upstream

    def _forward(self, upstream: socket.socket) -> None:
        """Relay the client's bytes, each inspected first, until it ends, stalls or is refused."""
        self.client.settimeout(0.5)
        last_data = self.accepted_at
        while not self._closed.is_set():
            now = time.monotonic()
            if self._out_of_time(now, last_data):
                return
            try:
                data = self.client.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                self._client_ended(upstream)
                return
            last_data = now
            if not self._pass_on(data, upstream):
                return

    def _pass_on(self, data: bytes, upstream: socket.socket) -> bool:
        """Forward client bytes once inspected; False = connection refused."""
        if not self._inspect(data):
            return False
        if self.target is not None:
            self.relay.hub.count_bytes(self.target, len(data))
        upstream.sendall(data)
        return True

    def _client_ended(self, upstream: socket.socket) -> None:
        """The client hung up: pass the end on to the listener, leaving the connection open.

        The decoder reads everything already sent before it sees the end; it closes the
        connection when done.
        """
        self.client_eof.set()
        with contextlib.suppress(OSError):
            upstream.shutdown(socket.SHUT_WR)

    def _out_of_time(self, now: float, last_data: float) -> bool:
        """True (the connection is over) past the handshake or publish timeout, or a stalled publisher."""
        relay = self.relay
        if self.sniffer.handshake_left and now - self.accepted_at > relay.handshake_timeout:
            self._refuse("no RTMP handshake within the timeout")
            return True
        if self.target is None and now - self.accepted_at > relay.publish_timeout:
            self._refuse("no publish within the timeout")
            return True
        if self.target is not None and now - last_data > relay.read_timeout:
            log.warning("publisher stalled", extra={"session": self.target.session_id, "peer": self.peer})
            return True
        return False

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
        return all(self._on_command(cmd) for cmd in commands)

    def _on_command(self, cmd: RtmpCommand) -> bool:
        """Act on one client command before it is forwarded; False = connection refused."""
        if cmd.name == "media" and self.target is None:
            self._refuse("media before an accepted publish")
            return False
        if cmd.name == "connect":
            self.app = cmd.app
            log.debug("rtmp connect", extra={"peer": self.peer, "app": cmd.app[:64]})
        elif cmd.name == "play":
            self._refuse("play is not served")
            return False
        elif cmd.name == "publish":
            return self._on_publish(cmd)
        return True

    def _on_publish(self, cmd: RtmpCommand) -> bool:
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
        hub = self.relay.hub
        if self.app != APP:
            hub.refuse(key, self, "unknown application", app=self.app[:64])
            return None
        if not self.relay.start_judging(self):
            return None
        target = None
        try:
            target = hub.authorize(key, self)
            return target
        finally:
            self.relay.end_judging(self, target)

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
        container = self._open_listener()
        if container is None:
            self.close()
            self._finish()
            return
        try:
            self._push_audio(container)
        finally:
            self.close()
            self._finish()

    def _open_listener(self) -> av.container.InputContainer | None:
        """Wait on the private listener for the relayed publisher; None when it ended before audio."""
        relay = self.relay
        url = f"rtmp://127.0.0.1:{self._local_port}/{APP}/x"
        try:
            return av.open(
                url,
                options={"listen": "1", "analyzeduration": "0", "probesize": "32"},
                timeout=(relay.publish_timeout + 5.0, relay.read_timeout),
            )
        except Exception as exc:
            self._listener_failed.set()
            if not self._closed.is_set():
                log.info("rtmp listener ended before audio", extra={"peer": self.peer, "error": str(exc)})
            return None

    def _push_audio(self, container: av.container.InputContainer) -> None:
        """Decode the publisher's audio into the hub until it ends, is revoked or fails."""
        target = self.target
        session = target.session_id if target else None
        try:
            with container:
                if target is None:
                    # Only reachable if the relay forwarded a publish it never authorised.
                    log.error("stream opened without an accepted publish", extra={"peer": self.peer})
                    return
                for pcm in pcm_chunks(container):
                    self.relay.hub.push(target, self, pcm)
        except PublishRevoked:
            pass
        except (OSError, av.error.FFmpegError, DecodeError) as exc:
            # Errno 5 is how libav reports the publisher closing the connection.
            log.info("publisher disconnected", extra={"session": session, "detail": str(exc)})
        except StreamUnavailable:
            log.exception("stream unavailable; dropping publisher", extra={"session": session})

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
        self.relay.forget(self)
