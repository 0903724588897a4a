"""`flowbot serve` end to end: ffmpeg publishes over RTMP, the transcript grows live, notes at the end."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.settings import Settings
from flowbot.serve import LiveService
from flowbot.wer import wer
from testkit.net import wait_for
from testkit.speech import Turn


def ffmpeg() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise RuntimeError("ffmpeg is not installed; run scripts/setup")
    return exe


def publish(path: Path, url: str, seconds: float | None = None) -> subprocess.Popen[bytes]:
    args = [ffmpeg(), "-hide_banner", "-loglevel", "error", "-re", "-i", str(path)]
    if seconds:
        args += ["-t", str(seconds)]
    return subprocess.Popen([*args, "-c:a", "aac", "-ar", "44100", "-f", "flv", url], stderr=subprocess.PIPE)


def post(base: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(f"{base}/api", json.dumps(body).encode(), {"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


class FeedReader(threading.Thread):
    """Reads the SSE feed, remembering when each event arrived."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.events: list[tuple[float, str, dict]] = []

    def run(self) -> None:
        with urllib.request.urlopen(self.url, timeout=300) as resp:
            event = None
            for raw in resp:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event:
                    self.events.append((time.monotonic(), event, json.loads(line[6:])))


@pytest.fixture
def service(tmp_path: Path) -> Iterator[LiveService]:
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
    svc = LiveService(settings).start()
    try:
        yield svc
    finally:
        svc.stop()


@pytest.mark.slow
def test_rtmp_meeting_appears_live_and_completes(service: LiveService, meeting: tuple[Path, list[Turn]]) -> None:
    path, turns = meeting
    status, started = post(service.url, {"action": "start_session", "meeting_id": "m", "user_id": "u", "topic": "t"})
    assert status == 200, started
    sid = started["session_id"]
    feed = FeedReader(f"{service.url}/sessions/{sid}/events")
    feed.start()
    seconds = 35.0
    good = publish(path, started["rtmp_url"], seconds)
    # A wrong key and a key of no session are refused while the real one streams.
    base = started["rtmp_url"].rsplit("/", 1)[0]
    wrong = publish(path, f"{base}/not-the-key", 5)
    assert wrong.wait(timeout=60) != 0
    assert good.wait(timeout=120) == 0, good.stderr.read() if good.stderr else ""
    streamed_until = time.monotonic()
    finals = [t for t, ev, d in feed.events if ev == "window" and d["is_final"]]
    assert finals and finals[0] < streamed_until, "a final window must reach the feed while the meeting streams"
    assert any(ev == "state" and d["state"] == "live" for _, ev, d in feed.events)
    status, ended = post(service.url, {"action": "end_session", "session_id": sid})
    assert status == 200 and ended["state"] == "processing"
    feed.join(timeout=120)
    states = [d["state"] for _, ev, d in feed.events if ev == "state"]
    assert states[-1] == "completed", states
    notes = [d for _, ev, d in feed.events if ev == "notes"]
    assert notes and notes[0]["talk_time"]
    status, got = post(service.url, {"action": "get_session", "session_id": sid})
    assert got["progress"]["processed_seconds"] == pytest.approx(seconds, abs=2.5)
    text = " ".join(s["text"] for _, ev, d in feed.events if ev == "window" for s in d["segments"] if s["is_final"])
    reference = " ".join(t.text for t in turns if t.end <= seconds - 1)
    assert wer(reference, text) < 0.3
    # Nothing from the refused publisher reached the stream: only this session's frames are there.
    keys = {r.partition_key for r in service.stream.read("shard-0", 0, 100_000)}
    assert keys == {sid}
    with urllib.request.urlopen(f"{service.url}/sessions/{sid}", timeout=10) as resp:
        assert sid in resp.read().decode()


def test_serve_refuses_public_bind_without_token(tmp_path: Path) -> None:
    settings = Settings.from_env({}, data_dir=tmp_path, host="0.0.0.0", diarization="none")
    with pytest.raises(ValueError, match="FLOWBOT_API_TOKEN"):
        LiveService(settings)


def test_unknown_pages_and_sessions(service: LiveService) -> None:
    for path, code in (("/sessions/nope", 404), ("/sessions/..%2f/events", 404), ("/nothing", 404)):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(service.url + path, timeout=10)
        assert err.value.code == code
    with urllib.request.urlopen(service.url + "/healthz", timeout=10) as resp:
        assert json.loads(resp.read()) == {"ok": True}


def published(service: LiveService, sid: str) -> None:
    """Wait until the server let go of the session's publisher: then all it sent is on the stream.

    ffmpeg exiting says only that it sent everything; the server decodes and writes the
    last second of audio after that (the hub flushes it when it releases the publisher).
    A fixed 0.5 s pause read the stream 1 s short when the decoder was held up near the end.
    """
    wait_for(lambda: (s := service.hub.stats(sid)).publishes >= 1 and not s.connected, 60, "the publisher's release")


def test_restart_keeps_open_sessions_and_their_timeline(tmp_path: Path, meeting: tuple[Path, list[Turn]]) -> None:
    settings = Settings.from_env({}, data_dir=tmp_path / "data", diarization="none", port=0, rtmp_port=0)
    first = LiveService(settings).start()
    try:
        status, started = post(first.url, {"action": "start_session", "meeting_id": "m", "user_id": "u"})
        assert status == 200
        assert publish(meeting[0], started["rtmp_url"], 3).wait(timeout=60) == 0
        published(first, started["session_id"])
    finally:
        first.stop()
    second = LiveService(settings).start()
    try:
        url = started["rtmp_url"].replace(f":{first.rtmp.port}/", f":{second.rtmp.port}/")
        assert publish(meeting[0], url, 2).wait(timeout=60) == 0
        published(second, started["session_id"])
        from contracts.frames import FrameRecord

        frames = [FrameRecord.decode(r.data) for r in second.stream.read("shard-0", 0, 10_000)]
        offsets = [(f.seq, f.sample_offset, f.end_offset) for f in frames]
        assert [s for s, _, _ in offsets] == list(range(len(offsets)))
        assert all(a[2] == b[1] for a, b in itertools.pairwise(offsets))
        assert offsets[-1][2] / 16000 == pytest.approx(5.0, abs=0.3)
        # Issue 20 #9: the restarted ingest ends the session with the secret its first run's
        # audio committed to (the end key is kept in the data directory), so the end is accepted.
        sid = started["session_id"]
        status, _ = post(second.url, {"action": "end_session", "session_id": sid})
        assert status == 200
        deadline = time.monotonic() + 60
        while not ((p := second.ctx.transcripts.load_progress(sid)) and p.stream_done):
            assert time.monotonic() < deadline, "the end of stream of the resumed session was not accepted"
            time.sleep(0.2)
        from contracts.frames import EndAuthority, FrameKind

        frames = [FrameRecord.decode(r.data) for r in second.stream.read("shard-0", 0, 10_000)]
        assert frames[-1].kind == FrameKind.END and len({f.tag for f in frames[:-1]}) == 1
        authority = EndAuthority()
        for frame in frames:
            authority.check(frame)  # raises for an end that does not open the audio's commitment
    finally:
        second.stop()
