"""The ingest hub on its own: the rules every protocol front shares, without sockets."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from contracts.frames import SAMPLE_RATE, FrameKind
from producer.hub import IngestHub, PublishRevoked
from streams.embedded import EmbeddedStream

from .conftest import frames_of


class _Publisher:
    """A publisher as the hub sees it (producer.hub.Publisher)."""

    def __init__(self, peer: str = "test") -> None:
        self.peer = peer
        self.client_eof = threading.Event()
        self.done = threading.Event()
        self.closed = False

    def close(self) -> None:
        self.closed = True
        self.done.set()

    def join(self, timeout: float) -> None:
        self.done.wait(timeout)


def _second() -> np.ndarray:
    return np.ones(SAMPLE_RATE, dtype=np.int16)


def test_one_live_publisher_and_every_refusal_is_counted(hub: IngestHub) -> None:
    hub.register("s1", "key-1")
    hub.register("s2", "key-2")
    first, second = _Publisher("a"), _Publisher("b")
    target = hub.claim("key-1", first)
    assert target is not None and target.session_id == "s1"
    assert hub.claim("key-1", second) is None  # one live publisher per session
    assert hub.claim("key-1", second, session_id="s2") is None  # a key of another session
    assert hub.claim("nope", second) is None  # unknown: counted nowhere
    hub.refuse("key-1", second, "unknown application", app="other")  # a front's own reason
    stats = hub.stats("s1")
    assert stats.refused == 3 and stats.connected and stats.publishes == 0  # claimed, not yet a publish
    hub.accepted(target, first)
    assert hub.stats("s1").publishes == 1
    hub.release(target, first)
    assert hub.authorize("key-1", second) is not None  # the key is free again: a reconnect
    assert hub.stats("s1").reconnects == 1


def test_push_reaches_the_stream_and_a_lost_claim_is_revoked(hub: IngestHub, stream: EmbeddedStream) -> None:
    lived: list[str] = []
    hub.on_live = lived.append
    hub.register("s1", "key-1")
    conn, other = _Publisher(), _Publisher()
    target = hub.authorize("key-1", conn)
    assert target is not None
    hub.push(target, conn, _second())
    with pytest.raises(PublishRevoked):
        hub.push(target, other, _second())  # not the live publisher
    hub.end("s1")  # disconnects the live publisher and writes END
    assert conn.closed and lived == ["s1"]
    with pytest.raises(PublishRevoked):
        hub.push(target, conn, _second())
    frames = frames_of(stream, "s1")
    assert [f.kind for f in frames] == [FrameKind.AUDIO, FrameKind.END]
    assert frames[-1].sample_offset == SAMPLE_RATE
    assert hub.claim("key-1", _Publisher()) is None  # the key is revoked


def test_keys_are_validated_and_owned_by_one_session(hub: IngestHub) -> None:
    hub.register("s1", "key-1")
    with pytest.raises(ValueError, match="another session"):
        hub.register("s2", "key-1")
    with pytest.raises(ValueError, match="stream key"):
        hub.register("s3", "has/slash")
    hub.register("s1", "key-new")  # a new key replaces the old one
    assert hub.claim("key-1", _Publisher()) is None
    assert hub.claim("key-new", _Publisher()) is not None
