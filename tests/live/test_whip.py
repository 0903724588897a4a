"""WHIP ingest with an aiortc publisher: protocol answers, captions, reconnect continuity."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import pytest

from flowbot.wer import wer
from producer.whip import keep_reachable_candidates
from testkit.net import wait_for
from testkit.service import start_session
from testkit.speech import Turn
from testkit.sse import FeedReader
from tests.live.whip_client import http, publish_file

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
    live_service: Any, meeting: tuple[Path, list[Turn]]
) -> None:
    wav, turns = meeting
    started = start_session(live_service.url)
    sid, key = started["session_id"], started["stream_key"]
    feed = FeedReader(f"{live_service.url}/sessions/{sid}/events")
    feed.start()
    first = asyncio.run(publish_file(live_service.url, sid, key, wav, 14.0))
    assert first["status"] == 201, first["body"]
    assert first["headers"]["content-type"] == "application/sdp"
    assert first["headers"]["location"].startswith(f"/sessions/{sid}/whip/")
    assert first["body"].startswith(b"v=0") and b"m=audio" in first["body"]
    assert first["state"] == "connected" and first["delete"] == 200
    wait_for(lambda: not live_service.hub.stats(sid).connected, 10)
    after_first = live_service.hub.stats(sid).samples
    # aiortc's file player may send ahead of the wall clock; what matters is that audio arrived.
    assert 10 * 16000 < after_first < 40 * 16000
    # The browser comes back (same key): the timeline carries on, it does not restart at 0.
    second = asyncio.run(publish_file(live_service.url, sid, key, wav, 6.0))
    assert second["status"] == 201 and second["delete"] == 200
    wait_for(lambda: not live_service.hub.stats(sid).connected, 10)
    stats = live_service.hub.stats(sid)
    assert stats.publishes == 2 and stats.samples > after_first + 4 * 16000
    records = live_service.stream.read("shard-0", 0, 10_000)
    from contracts.frames import FrameRecord

    frames = [FrameRecord.decode(r.data) for r in records]
    offsets = [(f.seq, f.sample_offset, f.end_offset) for f in frames]
    assert [o[0] for o in offsets] == list(range(len(offsets)))
    assert all(a[2] == b[1] for a, b in itertools.pairwise(offsets)), "contiguous timeline"
    # Interim text reached the feed before the first window was final, then was replaced in place.
    wait_for(lambda: any(d["is_final"] for d in feed.windows()), 60)
    w0 = [d for d in feed.windows() if d["window_index"] == 0]
    assert not w0[0]["is_final"] and all(not s["is_final"] for s in w0[0]["segments"])
    final0 = next(d for d in w0 if d["is_final"])
    assert all(s["is_final"] for s in final0["segments"])
    text = " ".join(s["text"] for s in final0["segments"])
    assert wer(" ".join(t.text for t in turns[:2]), text) < 0.35, text
