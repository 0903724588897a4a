"""Browser ingest over WHIP (WebRTC-HTTP Ingestion Protocol, RFC 9725) with aiortc.

``POST /sessions/<id>/whip`` with ``Content-Type: application/sdp`` and
``Authorization: Bearer <stream key>`` carries the browser's SDP offer; the
answer comes back ``201 Created`` with ``application/sdp`` and a ``Location``
for the WHIP resource; ``DELETE`` on that location ends the publish. The HTTP
side lives in the web front (:mod:`flowbot.web.app`); this module answers
offers (:meth:`WhipIngest.answer`) and hangs up (:meth:`WhipIngest.hang_up`)
on the web server's own event loop, so aiortc and the HTTP server share one
loop. Candidates are not trickled: the browser waits for ICE gathering before it POSTs, and
aiortc gathers before it answers, so one round trip sets up the call.

The received Opus track (aiortc hands out s16 stereo 48 kHz frames of 20 ms)
is resampled to 16 kHz mono s16 with ``av.AudioResampler`` and published
through the :class:`producer.hub.IngestHub` the RTMP front uses too, so the
stream key check, "one live publisher per session", first-audio notification,
ending the session and timeline continuation on reconnect (sample offsets and
sequence numbers carry on) are shared, not duplicated.
``DELETE`` ends the publish, not the session: like an RTMP disconnect, the
session stays live and a new publish continues its timeline. Audio the server
received before the ``DELETE`` is kept: the hang-up drains what aiortc has
decoded but the media task has not pushed yet (:meth:`_WhipConnection._shutdown`).

ICE addresses: aioice gathers host candidates on every interface address
except loopback, and binds a UDP socket on each. ``flowbot serve`` binds its
listeners to ``FLOWBOT_HOST`` only (127.0.0.1 by default), so the WHIP media
sockets must too: :func:`pin_ice_host_addresses` replaces aioice's
``get_host_addresses`` with a wrapper that returns the configured address for
connections gathered on this ingest's event-loop thread (and aioice's own
answer everywhere else). aioice has no option for this; the function is the
one it calls for host candidates, so the patch is one line of behaviour.
When pinned to loopback, remote candidates that cannot be reached from it
(other interfaces, and mDNS ``.local`` names, which would make aioice open a
wildcard multicast socket to resolve them) are dropped from the offer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import hmac
import ipaddress
import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import numpy as np

from contracts.errors import HttpError
from contracts.frames import SAMPLE_RATE
from producer.hub import IngestHub, IngestTarget, PublishRevoked

if TYPE_CHECKING:  # aiortc is optional (the ``live`` extra); attach() reports it missing
    import av
    from aiortc import RTCPeerConnection
    from aiortc.mediastreams import MediaStreamTrack

log = logging.getLogger(__name__)

MAX_OFFER_BYTES = 64 * 1024
_WILDCARDS = {"", "0.0.0.0", "::"}


class WhipError(HttpError):
    """A refused WHIP request (answered by the web front like any :class:`HttpError`)."""


# ----------------------------------------------------------------- ICE addresses

_pinned = threading.local()
_patch_lock = threading.Lock()


def pin_ice_host_addresses() -> None:
    """Route aioice's host-address lookup through :data:`_pinned` (idempotent)."""
    import aioice.ice

    with _patch_lock:
        original = aioice.ice.get_host_addresses
        if getattr(original, "_flowbot_pinned", False):
            return

        def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
            pinned: list[str] | None = getattr(_pinned, "addresses", None)
            if pinned is None:
                return cast(list[str], original(use_ipv4=use_ipv4, use_ipv6=use_ipv6))
            return [a for a in pinned if (use_ipv6 if ":" in a else use_ipv4)]

        host_addresses._flowbot_pinned = True  # type: ignore[attr-defined]
        aioice.ice.get_host_addresses = host_addresses


def ice_addresses_for(host: str) -> list[str] | None:
    """ICE host addresses for a bind address: that address, or None (all) for a wildcard."""
    if host in _WILDCARDS:
        return None
    if host == "localhost":
        return ["127.0.0.1"]
    return [host]


_CANDIDATE = re.compile(r"^a=candidate:\S+ \d+ \S+ \d+ (\S+) \d+ typ ", re.IGNORECASE)


def keep_reachable_candidates(sdp: str, loopback_only: bool) -> str:
    """Drop remote candidates a loopback-pinned agent cannot use (see module doc)."""
    if not loopback_only:
        return sdp
    lines = []
    for line in sdp.splitlines():
        m = _CANDIDATE.match(line)
        if m:
            try:
                if not ipaddress.ip_address(m.group(1)).is_loopback:
                    continue
            except ValueError:
                continue  # an mDNS name
        lines.append(line)
    return "\r\n".join(lines) + "\r\n"


# ------------------------------------------------------------------- connections


@dataclass
class _WhipConnection:
    """One WHIP publish: a :class:`producer.hub.Publisher` of its session."""

    ingest: WhipIngest
    session_id: str
    key: str
    peer: str
    resource: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    client_eof: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    pc: RTCPeerConnection | None = None
    target: IngestTarget | None = None
    task: asyncio.Task[None] | None = None
    samples: int = 0
    #: The offer was answered and counted as a publish (a refused offer is no publisher).
    accepted: bool = False
    _closing: bool = False

    def close(self) -> None:
        """Hang up (from any thread); the audio received so far is flushed to the stream."""
        loop = self.ingest.loop
        if loop is None or loop.is_closed():
            self.done.set()
            return
        if threading.current_thread() is self.ingest.thread:
            loop.create_task(self._shutdown())
        else:
            loop.call_soon_threadsafe(lambda: loop.create_task(self._shutdown()))

    def join(self, timeout: float) -> None:
        """Wait until the connection has released its session."""
        self.done.wait(timeout)

    async def _shutdown(self, *, drain: float = 0.0) -> None:
        """End the publish and release its session (once; later calls return at once).

        ``drain`` > 0 (a hang-up): the peer connection closes first, which makes aiortc's
        decoder hand its backlog to the track and then end it; the media task pushes every
        frame already received before the session is released (it is cancelled after
        ``drain`` seconds). Cancelling it straight away dropped the frames it had not read
        yet: on a loaded machine the reader lags (10 frames, 0.2 s, were waiting at one
        hang-up with the 2 cores busy). Otherwise (a failed or refused offer, a lost peer) the
        media task is cancelled.
        """
        if self._closing:
            return
        self._closing = True
        task = self.task if self.task is not asyncio.current_task() else None
        if task is not None:
            if drain > 0 and self.pc is not None:
                await self.pc.close()
                await asyncio.wait({task}, timeout=drain)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.pc is not None:
            await self.pc.close()
        self.ingest._finish(self)


class WhipIngest:
    """The WHIP endpoint of ``flowbot serve``; publishes sessions' audio through an :class:`IngestHub`."""

    def __init__(
        self,
        hub: IngestHub,
        host: str,
        *,
        connect_timeout: float = 15.0,
        read_timeout: float = 10.0,
        drain_timeout: float = 10.0,
    ) -> None:
        self.hub = hub
        self.ice_addresses = ice_addresses_for(host)
        self.loopback_only = bool(self.ice_addresses) and all(
            ipaddress.ip_address(a).is_loopback for a in self.ice_addresses or ()
        )
        self.connect_timeout = connect_timeout
        #: A publisher silent this long is dropped (the RTMP front's default too).
        self.read_timeout = read_timeout
        #: On hang-up, the audio already received is pushed for at most this long.
        self.drain_timeout = drain_timeout
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.unavailable: str | None = None
        self._conns: dict[str, _WhipConnection] = {}
        self._lock = threading.Lock()
        # Stream writes (SQLite, Kinesis) must not stall the event loop; one thread keeps order.
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="whip-push")

    # -- lifecycle ------------------------------------------------------------------
    async def attach(self) -> WhipIngest:
        """Run on the calling event loop (the web server's); WHIP answers 501 without aiortc."""
        try:
            import aiortc  # noqa: F401
        except ImportError:
            self.unavailable = "WHIP needs aiortc: pip install 'flow-ai-bot[live]'"
            log.warning("whip ingest unavailable", extra={"why": self.unavailable})
            return self
        pin_ice_host_addresses()
        # aioice gathers on this thread: pin its host candidates to the bind address.
        _pinned.addresses = self.ice_addresses
        self.loop = asyncio.get_running_loop()
        self.thread = threading.current_thread()
        log.info("whip ingest ready", extra={"ice_addresses": self.ice_addresses or "all"})
        return self

    def stop(self) -> None:
        """Hang up every publisher (audio so far is flushed); call from outside the loop."""
        with self._lock:
            conns = list(self._conns.values())
        for conn in conns:
            conn.close()
        for conn in conns:
            conn.join(10)
        self._writer.shutdown(wait=True)

    def connections(self) -> int:
        """Publishes in progress."""
        with self._lock:
            return len(self._conns)

    # -- offers and hang-ups (called by the web front on this ingest's loop) --------------
    async def answer(self, session_id: str, key: str, body: bytes, peer: str) -> tuple[str, str]:
        """Answer one SDP offer: ``(location, answer SDP)``, or :class:`WhipError`."""
        if self.unavailable or self.loop is None:
            raise WhipError(501, "whip_unavailable", self.unavailable or "WHIP ingest not started")
        if len(body) > MAX_OFFER_BYTES:
            raise WhipError(413, "offer_too_large", f"SDP offers are limited to {MAX_OFFER_BYTES} bytes")
        try:
            offer = body.decode("utf-8")
        except UnicodeDecodeError:
            raise WhipError(400, "bad_offer", "the SDP offer is not UTF-8") from None
        if not offer.startswith("v=0") or "\nm=audio " not in offer.replace("\r\n", "\n"):
            raise WhipError(400, "bad_offer", "the SDP offer has no audio media section")
        conn = _WhipConnection(self, session_id, key, peer)
        # The key check, "one publisher at a time" and the reconnect drain wait are the hub's;
        # a claim may wait for a previous publisher's drain, so not on the loop.
        # Claimed, not yet a publish: only an answered offer counts (and logs) as one.
        claim = functools.partial(self.hub.claim, key, conn, session_id=session_id)
        target = await asyncio.get_running_loop().run_in_executor(None, claim)
        if target is None:
            raise WhipError(403, "forbidden", "stream key refused (unknown, another session's, ended, or live)")
        conn.target = target
        try:
            answer = await asyncio.wait_for(self._answer_offer(conn, offer), self.connect_timeout)
        except Exception as exc:
            await conn._shutdown()
            await asyncio.get_running_loop().run_in_executor(None, conn.join, 5.0)
            if isinstance(exc, WhipError):
                raise
            log.warning("whip offer failed", extra={"session": session_id, "error": repr(exc)})
            raise WhipError(400, "bad_offer", f"could not answer the offer: {exc}") from exc
        try:
            self.hub.accepted(target, conn)
        except PublishRevoked:  # the session ended while the offer was answered
            await conn._shutdown()
            await asyncio.get_running_loop().run_in_executor(None, conn.join, 5.0)
            raise WhipError(409, "session_ended", "the session ended while the offer was answered") from None
        conn.accepted = True
        with self._lock:
            self._conns[conn.resource] = conn
        log.info("whip publish accepted", extra={"session": session_id, "peer": peer, "resource": conn.resource})
        return f"/sessions/{session_id}/whip/{conn.resource}", answer

    async def hang_up(self, session_id: str, resource: str, key: str) -> None:
        """End the publish at ``resource`` (its audio so far is flushed), or :class:`WhipError`."""
        with self._lock:
            conn = self._conns.get(resource)
        if conn is None or conn.session_id != session_id:
            raise WhipError(404, "not_found", "no such WHIP resource")
        if not hmac.compare_digest(conn.key.encode(), key.encode()):
            raise WhipError(403, "forbidden", "stream key does not match this resource")
        conn.client_eof.set()
        await conn._shutdown(drain=self.drain_timeout)
        await asyncio.get_running_loop().run_in_executor(None, conn.join, 10.0)

    # -- media --------------------------------------------------------------------------
    async def _answer_offer(self, conn: _WhipConnection, offer: str) -> str:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        # No STUN/TURN: the default configuration points at a public STUN server.
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        conn.pc = pc

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio" and conn.task is None:
                conn.task = asyncio.ensure_future(self._consume(conn, track))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            log.debug("whip connection state", extra={"session": conn.session_id, "state": pc.connectionState})
            if pc.connectionState in ("failed", "closed"):
                await conn._shutdown()

        sdp = keep_reachable_candidates(offer, self.loopback_only)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        except Exception as exc:
            raise WhipError(400, "bad_offer", f"the SDP offer was not accepted: {exc}") from exc
        for t in pc.getTransceivers():
            if t.kind == "audio":
                t.direction = "recvonly"
        await pc.setLocalDescription(await pc.createAnswer())
        return cast(str, pc.localDescription.sdp)

    async def _consume(self, conn: _WhipConnection, track: MediaStreamTrack) -> None:
        import av
        from aiortc.mediastreams import MediaStreamError

        assert conn.target is not None
        loop = asyncio.get_running_loop()
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        started = time.monotonic()
        frames = 0
        try:
            while True:
                try:
                    timeout = self.connect_timeout if frames == 0 else self.read_timeout
                    frame = await asyncio.wait_for(track.recv(), timeout)
                except MediaStreamError:
                    break
                except TimeoutError:
                    log.warning("whip publisher stalled", extra={"session": conn.session_id, "peer": conn.peer})
                    break
                if not isinstance(frame, av.AudioFrame):
                    continue  # an audio track yields audio frames only; this keeps the types honest
                frames += 1
                for out in resampler.resample(frame):
                    await self._push(loop, conn, out)
            for out in resampler.resample(None):
                await self._push(loop, conn, out)
        except PublishRevoked:
            pass  # the session ended or another publisher took over
        except Exception:
            log.exception("whip media failed", extra={"session": conn.session_id})
        finally:
            log.info(
                "whip media ended",
                extra={
                    "session": conn.session_id,
                    "frames": frames,
                    "seconds": round(conn.samples / SAMPLE_RATE, 2),
                    "took_s": round(time.monotonic() - started, 2),
                },
            )
            conn.task = None
            await conn._shutdown()

    async def _push(self, loop: asyncio.AbstractEventLoop, conn: _WhipConnection, frame: av.AudioFrame) -> None:
        pcm = np.asarray(frame.to_ndarray(), dtype=np.int16).reshape(-1)
        if not pcm.size:
            return
        assert conn.target is not None
        await loop.run_in_executor(self._writer, self.hub.push, conn.target, conn, pcm)
        conn.samples += pcm.size

    def _finish(self, conn: _WhipConnection) -> None:
        with self._lock:
            self._conns.pop(conn.resource, None)
        if conn.target is not None and not conn.done.is_set():
            # Flush happens on the writer thread so it cannot overtake queued pushes.
            self._writer.submit(self._release, conn).add_done_callback(lambda _f: conn.done.set())
        else:
            conn.done.set()

    def _release(self, conn: _WhipConnection) -> None:
        assert conn.target is not None
        self.hub.release(conn.target, conn)
        if conn.accepted:  # a refused offer gives its claim back without a publisher to report
            log.info("whip publisher gone", extra={"session": conn.session_id, "samples": conn.samples})
