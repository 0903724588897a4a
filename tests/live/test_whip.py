"""WHIP ingest with an aiortc publisher: protocol answers, captions, reconnect continuity."""

from __future__ import annotations

import asyncio
import itertools
import threading
from pathlib import Path
from typing import Any

import pytest

from flowbot.wer import wer
from producer.whip import keep_reachable_candidates
from testkit.net import wait_for
from testkit.service import start_session
from testkit.speech import Turn
from testkit.sse import FeedReader
from tests.live.whip_client import WhipPublisher, http, publish_file, wait_until

OFFER_HEAD = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


def test_loopback_pinning_drops_unreachable_candidates() -> None:
    sdp = (
        OFFER_HEAD + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
        "a=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host\r\n"
        "a=candidate:2 1 udp 2122260223 192.0.2.2 50001 typ host\r\n"
        "a=candidate:3 1 udp 2122260223 0d9c-4f.local 50002 typ host\r\n"
    )
    kept = keep_reachable_candidates(sdp, loopback_only=True)
    assert "127.0.0.1 50000" in kept and "192.0.2.2" not in kept and ".local" not in kept
    assert keep_reachable_candidates(sdp, loopback_only=False) == sdp


def test_whip_protocol_errors_are_clear(live_service: Any) -> None:
    started = start_session(live_service.url)
    sid, key = started["session_id"], started["stream_key"]
    url = f"{live_service.url}/sessions/{sid}/whip"
    sdp = {"content-type": "application/sdp"}
    audio_offer = (OFFER_HEAD + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n").encode()
    cases = [
        ({**sdp}, audio_offer, 401),  # no bearer key
        ({**sdp, "authorization": "Bearer wrong"}, audio_offer, 403),
        ({"content-type": "text/plain", "authorization": f"Bearer {key}"}, audio_offer, 415),
        ({**sdp, "authorization": f"Bearer {key}"}, (OFFER_HEAD + "m=video 9 RTP/AVP 96\r\n").encode(), 400),
        ({**sdp, "authorization": f"Bearer {key}"}, b"x" * 70000, 413),
    ]
    for headers, body, code in cases:
        status, h, payload = http("POST", url, body, headers)
        assert status == code, (code, payload)
        assert b'"error"' in payload and h["content-type"] == "application/json"
    other = start_session(live_service.url)
    status, _, _ = http(
        "POST",
        f"{live_service.url}/sessions/{other['session_id']}/whip",
        audio_offer,
        {**sdp, "authorization": f"Bearer {key}"},
    )
    assert status == 403, "a key opens only its own session"
    status, _, _ = http("DELETE", f"{url}/nope", b"", {"authorization": f"Bearer {key}"})
    assert status == 404
    # The refused attempts left the session publishable and its stream untouched.
    assert live_service.hub.stats(sid).connected is False
    assert live_service.stream.read("shard-0", 0, 1000) == []


@pytest.mark.slow
def test_whip_publish_captions_and_reconnect_continues_the_timeline(
    live_service: Any, meeting: tuple[Path, list[Turn]], monkeypatch: pytest.MonkeyPatch
) -> None:
    wav, turns = meeting
    started = start_session(live_service.url)
    sid, key = started["session_id"], started["stream_key"]
    feed = FeedReader(f"{live_service.url}/sessions/{sid}/events")
    feed.start()

    def received() -> int:
        return int(live_service.hub.stats(sid).samples)

    def interim_of_window_0() -> bool:
        return any(d["window_index"] == 0 and not d["is_final"] for d in feed.windows())

    # The client pauses below until an interim caption shows: not dropped as a stalled publisher.
    monkeypatch.setattr(live_service.whip, "read_timeout", 300.0)

    async def first_publish() -> dict[str, Any]:
        # Waits are on what the server received and showed, not on wall time: a loaded machine
        # plays the file slower than real time, and interim passes give way to final ones, so a
        # window that filled up while the interim worker was starved went final with no interim.
        publisher = WhipPublisher(live_service.url, sid, key, wav)
        try:
            out: dict[str, Any] = {"status": await publisher.offer()}
            out.update(headers=publisher.headers, body=publisher.body)
            if out["status"] != 201:
                return out
            await wait_until(lambda: received() >= 5 * 16000, 180, "5 s of audio at the server")
            await publisher.pause()  # window 0 (10 s) stays open until an interim pass has shown
            await wait_until(interim_of_window_0, 180, "an interim caption of the open window")
            await publisher.resume()
            await wait_until(lambda: received() >= 10 * 16000, 180, "10 s of audio at the server")
            out.update(state=publisher.state, delete=await publisher.delete(), sent=publisher.sent)
            return out
        finally:
            await publisher.close()

    first = asyncio.run(first_publish())
    assert first["status"] == 201, first["body"]
    assert first["headers"]["content-type"] == "application/sdp"
    assert first["headers"]["location"].startswith(f"/sessions/{sid}/whip/")
    assert first["body"].startswith(b"v=0") and b"m=audio" in first["body"]
    assert first["state"] == "connected" and first["delete"] == 200
    wait_for(lambda: not live_service.hub.stats(sid).connected, 60)
    after_first = received()
    # No more than the client sent (one 20 ms frame of resampling slack): nothing duplicated.
    assert 10 * 16000 <= after_first <= first["sent"] * 16000 + 320
    # The browser comes back (same key): the timeline carries on, it does not restart at 0.
    second = asyncio.run(publish_file(live_service.url, sid, key, wav, until=lambda: received() > after_first + 64000))
    assert second["status"] == 201 and second["delete"] == 200
    wait_for(lambda: not live_service.hub.stats(sid).connected, 60)
    stats = live_service.hub.stats(sid)
    assert stats.publishes == 2 and stats.samples > after_first + 4 * 16000
    records = live_service.stream.read("shard-0", 0, 10_000)
    from contracts.frames import FrameRecord

    frames = [FrameRecord.decode(r.data) for r in records]
    offsets = [(f.seq, f.sample_offset, f.end_offset) for f in frames]
    assert [o[0] for o in offsets] == list(range(len(offsets)))
    assert all(a[2] == b[1] for a, b in itertools.pairwise(offsets)), "contiguous timeline"
    # Interim text reached the feed before the first window was final, then was replaced in place.
    wait_for(lambda: any(d["is_final"] for d in feed.windows()), 180)
    w0 = [d for d in feed.windows() if d["window_index"] == 0]
    assert not w0[0]["is_final"] and all(not s["is_final"] for s in w0[0]["segments"])
    final0 = next(d for d in w0 if d["is_final"])
    assert all(s["is_final"] for s in final0["segments"])
    text = " ".join(s["text"] for s in final0["segments"])
    assert wer(" ".join(t.text for t in turns[:2]), text) < 0.35, text


def test_whip_hang_up_keeps_the_audio_already_received(
    live_service: Any, meeting: tuple[Path, list[Turn]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A DELETE while the server's reader is behind: what the server received is kept, not cancelled.

    On a loaded machine the media task lags the network; a hang-up that cancelled it dropped the
    frames aiortc had already decoded. The lag is made deterministic here: the first push waits
    until the hang-up has begun, so every other frame is still queued when the DELETE arrives.
    """
    wav, _ = meeting
    started = start_session(live_service.url)
    sid, key = started["session_id"], started["stream_key"]
    whip = live_service.whip
    hub = live_service.hub
    push = hub.push
    hung_up = threading.Event()

    def lagging_push(*args: Any) -> None:
        assert hung_up.wait(120), "the test never hung up"
        push(*args)

    monkeypatch.setattr(hub, "push", lagging_push)

    def server_received(receiver: Any) -> int:
        stats = asyncio.run_coroutine_threadsafe(receiver.getStats(), whip.loop).result(30)
        return sum(int(s.packetsReceived) for s in stats.values() if s.type == "inbound-rtp")

    async def publish() -> tuple[int, int]:
        publisher = WhipPublisher(live_service.url, sid, key, wav)
        try:
            assert await publisher.offer() == 201
            (conn,) = list(whip._conns.values())
            (receiver,) = conn.pc.getReceivers()
            await wait_until(lambda: publisher.sent >= 2.0, 120, "the client sent 2 s of audio")
            await publisher.pause()
            # Nothing in flight: the server has every packet sent (the last encode may still end).
            sent = -1
            while sent != server_received(receiver):
                sent = await publisher.packets_sent()
                await asyncio.sleep(0.2)
            deleted = asyncio.ensure_future(publisher.delete())
            await wait_until(conn.client_eof.is_set, 60, "the server saw the DELETE")
            hung_up.set()
            assert await deleted == 200
            return server_received(receiver), sent
        finally:
            hung_up.set()
            await publisher.close()

    received, sent = asyncio.run(publish())
    assert received == sent >= 100
    wait_for(lambda: not hub.stats(sid).connected, 60)
    # Each 20 ms packet is 320 samples at 16 kHz; aiortc's audio jitter buffer holds the last
    # few packets back (prefetch=4), so those may be missing, and resampling may round by a frame.
    assert (received - 8) * 320 <= hub.stats(sid).samples <= (received + 1) * 320
