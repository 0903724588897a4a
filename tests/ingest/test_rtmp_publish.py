"""End to end: ffmpeg publishes over RTMP, frame records land on an embedded stream."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from contracts.frames import SAMPLE_RATE, FrameKind
from producer.hub import IngestHub, key_fingerprint
from producer.rtmp_relay import RtmpRelay
from streams.embedded import EmbeddedStream
from testkit.net import wait_for

from .conftest import all_records, frames_of, publish, wav_seconds

pytestmark = pytest.mark.slow

# AAC adds one priming frame (1024 samples at the source rate) plus padding to the end.
AAC_SLACK_S = 0.2


def _url(rtmp: RtmpRelay, key: str) -> str:
    return f"rtmp://127.0.0.1:{rtmp.port}/live/{key}"


def _assert_contiguous(frames: list, session_id: str) -> int:
    audio = [f for f in frames if f.kind == FrameKind.AUDIO]
    assert [f.seq for f in frames] == list(range(len(frames)))
    offset = 0
    for f in audio:
        assert f.session_id == session_id
        assert f.sample_offset == offset
        offset = f.end_offset
    return offset


def test_right_key_audio_reaches_stream(
    hub: IngestHub, rtmp: RtmpRelay, stream: EmbeddedStream, speech_wav: Path
) -> None:
    lived: list[str] = []
    hub.on_live = lived.append
    hub.register("s1", "key-one-secret")
    res = publish(_url(rtmp, "key-one-secret"), speech_wav, realtime=True)
    assert res.returncode == 0, res.stderr.decode()
    wait_for(lambda: not hub.stats("s1").connected, what="publisher to finish")
    hub.end("s1")
    frames = frames_of(stream, "s1")
    total = _assert_contiguous(frames, "s1")
    assert frames[-1].kind == FrameKind.END and frames[-1].sample_offset == total
    expected = wav_seconds(speech_wav)
    assert abs(total / SAMPLE_RATE - expected) < AAC_SLACK_S, (total / SAMPLE_RATE, expected)
    assert lived == ["s1"]
    st = hub.stats("s1")
    assert st.samples == total and st.publishes == 1 and st.reconnects == 0 and st.bytes > 0


def test_h264_and_aac_like_zoom(hub: IngestHub, rtmp: RtmpRelay, stream: EmbeddedStream, speech_wav: Path) -> None:
    hub.register("zoom", "zk")
    res = publish(_url(rtmp, "zk"), speech_wav, realtime=False, video=True)
    assert res.returncode == 0, res.stderr.decode()
    wait_for(lambda: not hub.stats("zoom").connected, what="publisher to finish")
    total = _assert_contiguous(frames_of(stream, "zoom"), "zoom")
    assert abs(total / SAMPLE_RATE - wav_seconds(speech_wav)) < AAC_SLACK_S


def test_wrong_key_is_refused_and_writes_nothing(
    hub: IngestHub, rtmp: RtmpRelay, stream: EmbeddedStream, speech_wav: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hub.register("s1", "the-right-key")
    with caplog.at_level(logging.INFO, logger="producer.hub"):
        res = publish(_url(rtmp, "the-wrong-key"), speech_wav, realtime=False)
    assert res.returncode != 0
    refusals = [r for r in caplog.records if r.getMessage() == "publish refused"]
    assert len(refusals) == 1
    assert refusals[0].key == key_fingerprint("the-wrong-key")  # type: ignore[attr-defined]
    assert all("the-wrong-key" not in r.getMessage() + str(r.__dict__) for r in caplog.records)
    assert all_records(stream) == 0
    assert hub.stats("s1").samples == 0


def test_old_key_after_end_is_refused(
    hub: IngestHub, rtmp: RtmpRelay, stream: EmbeddedStream, speech_wav: Path
) -> None:
    hub.register("old", "old-key")
    hub.end("old")
    res = publish(_url(rtmp, "old-key"), speech_wav, realtime=False)
    assert res.returncode != 0
    frames = frames_of(stream, "old")
    assert [(f.kind, f.sample_offset) for f in frames] == [(FrameKind.END, 0)]


def test_reconnect_continues_the_timeline(
    hub: IngestHub, rtmp: RtmpRelay, stream: EmbeddedStream, speech_wav: Path
) -> None:
    hub.register("rc", "rc-key")
    first = publish(_url(rtmp, "rc-key"), speech_wav, realtime=False, duration=2.5)
    assert first.returncode == 0, first.stderr.decode()
    wait_for(lambda: not hub.stats("rc").connected, what="first publisher to finish")
    after_first = hub.stats("rc").samples
    second = publish(_url(rtmp, "rc-key"), speech_wav, realtime=False, start=2.5)
    assert second.returncode == 0, second.stderr.decode()
    wait_for(lambda: not hub.stats("rc").connected, what="second publisher to finish")
    hub.end("rc")
    frames = frames_of(stream, "rc")
    total = _assert_contiguous(frames, "rc")
    # Nothing lost beyond the gap: both halves together are the whole file.
    assert abs(total / SAMPLE_RATE - wav_seconds(speech_wav)) < 2 * AAC_SLACK_S
    assert abs(after_first / SAMPLE_RATE - 2.5) < AAC_SLACK_S
    st = hub.stats("rc")
    assert st.publishes == 2 and st.reconnects == 1


def test_two_sessions_on_one_port_and_duplicate_publisher_refused(
    hub: IngestHub, rtmp: RtmpRelay, stream: EmbeddedStream, speech_wav: Path
) -> None:
    hub.register("a", "key-a")
    hub.register("b", "key-b")
    results: dict[str, object] = {}

    def run(name: str, key: str) -> None:
        results[name] = publish(_url(rtmp, key), speech_wav, realtime=True)

    pairs = (("a", "key-a"), ("b", "key-b"))
    threads = [threading.Thread(target=run, args=pair) for pair in pairs]
    for t in threads:
        t.start()
    wait_for(lambda: hub.stats("a").connected and hub.stats("b").connected, what="both live")
    dup = publish(_url(rtmp, "key-a"), speech_wav, realtime=False)
    assert dup.returncode != 0  # refused while the first publisher is live
    for t in threads:
        t.join()
    wait_for(lambda: not hub.stats("a").connected and not hub.stats("b").connected, what="both finished")
    for sid in ("a", "b"):
        hub.end(sid)
        total = _assert_contiguous(frames_of(stream, sid), sid)
        assert abs(total / SAMPLE_RATE - wav_seconds(speech_wav)) < AAC_SLACK_S, sid
    assert hub.stats("a").publishes == 1 and hub.stats("a").refused == 1
