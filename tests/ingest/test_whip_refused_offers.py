"""Refused WHIP offers leave no trace of a publisher (issue 20 #9).

Before, each offer that aiortc refused (with the right key) logged "whip
publisher gone" when its claim was given back, for a publisher that never was.
The offer goes straight to :class:`producer.whip.WhipIngest` on an event loop of
this test; the web front in front of it is tested in ``tests/live``.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from producer.hub import IngestHub
from producer.whip import WhipError, WhipIngest

OFFER_HEAD = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
#: An audio section but no ICE credentials or DTLS fingerprint: aiortc refuses it.
REFUSED_OFFER = (OFFER_HEAD + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n").encode()


def test_a_refused_offer_logs_no_publisher_gone(hub: IngestHub, caplog: pytest.LogCaptureFixture) -> None:
    hub.register("s1", "good-key")
    whip = WhipIngest(hub, "127.0.0.1", connect_timeout=10)

    async def offers() -> list[int]:
        await whip.attach()
        statuses = []
        for _ in range(3):
            try:
                await whip.answer("s1", "good-key", REFUSED_OFFER, "127.0.0.1:5000")
            except WhipError as exc:
                statuses.append(exc.status)
        return statuses

    with caplog.at_level(logging.INFO):
        statuses = asyncio.run(offers())
        whip.stop()
    assert statuses == [400, 400, 400]
    lines = [r.getMessage() for r in caplog.records]
    assert not [m for m in lines if "publisher gone" in m], lines
    assert not [m for m in lines if "publish accepted" in m], lines
    stats = hub.stats("s1")
    assert stats.publishes == 0 and not stats.connected and stats.refused == 0
