"""A crash never strands a session (issue 11 #3): a restart carries every non-terminal state on.

Before, a restart resumed only starting/live sessions: a session caught in
``processing`` (SIGKILL 0.3 s after ``end_session``) stayed there with no notes,
and a second ``end_session`` answered 409.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from contracts.frames import FrameKind, FrameRecord
from contracts.settings import Settings
from flowbot.serve import LiveService
from stores.base import SessionState
from testkit.speech import Turn

TERMINAL = {SessionState.COMPLETED, SessionState.PARTIAL, SessionState.FAILED}


def _post(url: str, body: dict[str, object]) -> dict[str, object]:
    req = urllib.request.Request(f"{url}/api", json.dumps(body).encode(), {"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


class _Publisher:
    """Stands in for a connected RTMP/WHIP publisher (producer.hub.Publisher)."""

    peer = "test"

    def __init__(self) -> None:
        self.client_eof = threading.Event()
        self.done = threading.Event()

    def close(self) -> None:
        self.done.set()

    def join(self, timeout: float) -> None:
        pass


@pytest.mark.parametrize("crash", ["ending, no end-of-stream yet", "ending, end-of-stream written", "processing"])
def test_a_restart_finishes_sessions_a_crash_left_ending_or_processing(
    tmp_path: Path, meeting: tuple[Path, list[Turn]], crash: str
) -> None:
    from producer.decode import read_pcm

    settings = Settings.from_env(
        {},
        data_dir=tmp_path / "data",
        diarization="none",
        port=0,
        rtmp_port=0,
        window_seconds=10.0,
        window_min_seconds=5.0,
        interim_seconds=0.0,
    )
    pcm = read_pcm(str(meeting[0]))[: 12 * 16000]
    first = LiveService(settings).start()
    try:
        started = _post(first.url, {"action": "start_session", "meeting_id": "m", "user_id": "u"})
        sid, key = str(started["session_id"]), str(started["stream_key"])
        conn = _Publisher()
        target = first.hub.authorize(key, conn)
        assert target is not None
        first.hub.push(target, conn, pcm)
        first.hub.release(target, conn)
        # end_session's steps, cut off where the crash came.
        sessions = first.ctx.sessions
        sessions.transition(sid, [SessionState.STARTING, SessionState.LIVE], SessionState.ENDING)
        if crash != "ending, no end-of-stream yet":
            first.hub.end(sid)
        if crash == "processing":
            sessions.transition(sid, [SessionState.ENDING], SessionState.PROCESSING)
    finally:
        first.stop()  # the workflow never started: as if the process had died here
    assert first.ctx.sessions.get(sid).state in (SessionState.ENDING, SessionState.PROCESSING)

    second = LiveService(settings).start()
    try:
        deadline = time.monotonic() + 120
        while second.ctx.sessions.get(sid).state not in TERMINAL and time.monotonic() < deadline:
            time.sleep(0.2)
        got = _post(second.url, {"action": "get_session", "session_id": sid})
    finally:
        second.stop()
    assert got["state"] == "completed", got
    assert got["notes"] is not None
    assert "weekly planning meeting" in " ".join(s.text for s in second.ctx.transcripts.segments(sid)).lower()
    # Exactly one end-of-stream record, at the end of the audio.
    frames = [FrameRecord.decode(r.data) for r in second.stream.read("shard-0", 0, 10_000)]
    ends = [f for f in frames if f.kind == FrameKind.END]
    assert [(e.seq, e.sample_offset) for e in ends] == [(len(frames) - 1, len(pcm))]
