"""A WHIP publisher in Python (aiortc), for tests that do not need a browser."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from producer.whip import _pinned, pin_ice_host_addresses

if TYPE_CHECKING:
    from aiortc import RTCPeerConnection, RTCRtpSender
    from aiortc.contrib.media import MediaPlayer
    from aiortc.mediastreams import MediaStreamTrack


def http(
    method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request; (status, lower-cased headers, body), HTTP errors included."""
    req = urllib.request.Request(url, body or None, headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


async def wait_until(ready: Callable[[], bool], deadline: float, what: str) -> None:
    """Poll ``ready`` on the running loop until it holds; fail after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while not ready():
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not within {deadline} s")
        await asyncio.sleep(0.05)


class WhipPublisher:
    """One publish of a file: offer, stream, pause and resume, hang up (on the caller's event loop).

    ``sent`` counts the seconds of audio handed to the encoder: a loaded machine plays a
    file slower than real time (5.5 s in 14 s with the 2 cores busy), so tests wait for
    audio, not for wall time.
    """

    def __init__(self, base: str, session_id: str, key: str, wav: Path) -> None:
        self.base, self.session_id, self.key, self.wav = base, session_id, key, wav
        self.sent = 0.0
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""
        self._pc: RTCPeerConnection | None = None
        self._player: MediaPlayer | None = None
        self._sender: RTCRtpSender | None = None
        self._track: MediaStreamTrack | None = None

    async def offer(self) -> int:
        """POST the offer; the answer's status (201 when publishing)."""
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
        from aiortc.contrib.media import MediaPlayer

        pin_ice_host_addresses()
        _pinned.addresses = ["127.0.0.1"]  # this thread gathers on loopback only
        self._player = MediaPlayer(str(self.wav))
        self._pc = pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        assert self._player.audio is not None
        self._track = _counting(self, self._player.audio)
        self._sender = pc.addTransceiver(self._track, direction="sendonly").sender
        await pc.setLocalDescription(await pc.createOffer())
        headers = {"content-type": "application/sdp", "authorization": f"Bearer {self.key}"}
        url = f"{self.base}/sessions/{self.session_id}/whip"
        self.status, self.headers, self.body = await asyncio.get_running_loop().run_in_executor(
            None, http, "POST", url, pc.localDescription.sdp.encode(), headers
        )
        if self.status == 201:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=self.body.decode(), type="answer"))
        return self.status

    @property
    def state(self) -> str:
        """The peer connection's state."""
        assert self._pc is not None
        return str(self._pc.connectionState)

    async def packets_sent(self) -> int:
        """RTP packets sent so far (the sender's outbound statistics)."""
        assert self._sender is not None
        stats = await self._sender.getStats()
        return sum(int(getattr(s, "packetsSent", 0)) for s in stats.values() if s.type == "outbound-rtp")

    async def pause(self) -> None:
        """Stop sending audio (the connection stays up)."""
        assert self._sender is not None
        self._sender.replaceTrack(None)

    async def resume(self) -> None:
        """Send the file on from where :meth:`pause` stopped it."""
        assert self._sender is not None and self._track is not None
        self._sender.replaceTrack(self._track)

    async def delete(self) -> int:
        """DELETE the WHIP resource; its status."""
        auth = {"authorization": f"Bearer {self.key}"}
        url = self.base + self.headers["location"]
        return (await asyncio.get_running_loop().run_in_executor(None, http, "DELETE", url, b"", auth))[0]

    async def close(self) -> None:
        """Close the peer connection and the file."""
        if self._pc is not None:
            await self._pc.close()
        if self._player is not None and self._player.audio is not None:
            self._player.audio.stop()


def _counting(publisher: WhipPublisher, source: MediaStreamTrack) -> MediaStreamTrack:
    """A track passing ``source``'s frames on, adding their duration to ``publisher.sent``."""
    import av
    from aiortc.mediastreams import MediaStreamTrack

    class Counting(MediaStreamTrack):
        kind = "audio"

        async def recv(self) -> Any:
            frame = await source.recv()
            if isinstance(frame, av.AudioFrame):
                publisher.sent += frame.samples / frame.sample_rate
            return frame

    return Counting()


async def publish_file(
    base: str, session_id: str, key: str, wav: Path, until: Callable[[], bool], deadline: float = 180.0
) -> dict[str, Any]:
    """Offer, stream ``wav`` until ``until()`` holds (within ``deadline`` s), then DELETE.

    Returns what happened: status, headers, body, connection state, the DELETE's status
    and ``sent`` (seconds of audio handed to the encoder).
    """
    publisher = WhipPublisher(base, session_id, key, wav)
    try:
        status = await publisher.offer()
        out: dict[str, Any] = {"status": status, "headers": publisher.headers, "body": publisher.body}
        if status != 201:
            return out
        await wait_until(until, deadline, "the server did not receive the audio the test waits for")
        out["state"] = publisher.state
        out["delete"] = await publisher.delete()
        out["sent"] = publisher.sent
        return out
    finally:
        await publisher.close()
