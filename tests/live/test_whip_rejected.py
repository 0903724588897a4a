"""A rejected WHIP offer is no publish (issue 11 #5): not logged as accepted, not counted.

Before, the key was claimed and the publish counted and logged ("publish
accepted") before aiortc looked at the offer, so an offer it then refused still
showed up as a publish (and as a reconnect after the next one).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from testkit.service import start_session
from tests.live.whip_client import http

OFFER_HEAD = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


def test_a_refused_offer_with_the_right_key_is_not_a_publish(
    live_service: Any, caplog: pytest.LogCaptureFixture
) -> None:
    started = start_session(live_service.url)
    sid, key = started["session_id"], started["stream_key"]
    # An audio section but no ICE credentials or DTLS fingerprint: aiortc refuses it.
    offer = (OFFER_HEAD + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n").encode()
    with caplog.at_level(logging.INFO):
        for _ in range(2):
            status, _, payload = http(
                "POST",
                f"{live_service.url}/sessions/{sid}/whip",
                offer,
                {"content-type": "application/sdp", "authorization": f"Bearer {key}"},
            )
            assert status == 400 and b"bad_offer" in payload
    stats = live_service.hub.stats(sid)
    assert stats.publishes == 0 and stats.reconnects == 0 and not stats.connected
    accepted = [r for r in caplog.records if "publish accepted" in r.getMessage()]
    assert accepted == []
    # The claim was given back: the key still opens the session (a second refusal was not "already live").
    assert stats.refused == 0
