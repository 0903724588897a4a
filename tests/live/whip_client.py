"""A WHIP publisher in Python (aiortc), for tests that do not need a browser."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from producer.whip import _pinned, pin_ice_host_addresses


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


async def publish_file(base: str, session_id: str, key: str, wav: Path, seconds: float) -> dict[str, Any]:
    """Offer, stream ``wav`` in real time for ``seconds``, then DELETE. Returns what happened."""
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.contrib.media import MediaPlayer

    pin_ice_host_addresses()
    _pinned.addresses = ["127.0.0.1"]  # this thread gathers on loopback only
    player = MediaPlayer(str(wav))
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    assert player.audio is not None
    pc.addTransceiver(player.audio, direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    headers = {"content-type": "application/sdp", "authorization": f"Bearer {key}"}
    loop = asyncio.get_running_loop()
    status, resp_headers, body = await loop.run_in_executor(
        None, http, "POST", f"{base}/sessions/{session_id}/whip", pc.localDescription.sdp.encode(), headers
    )
    out: dict[str, Any] = {"status": status, "headers": resp_headers, "body": body}
    if status != 201:
        await pc.close()
        return out
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body.decode(), type="answer"))
    await asyncio.sleep(seconds)
    out["state"] = pc.connectionState
    location = resp_headers["location"]
    auth = {"authorization": f"Bearer {key}"}
    out["delete"] = (await loop.run_in_executor(None, http, "DELETE", base + location, b"", auth))[0]
    await pc.close()
    if player.audio is not None:
        player.audio.stop()
    return out
