"""The flowbot command line end to end, including a processor killed mid-window."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from contracts.settings import Settings
from flowbot.pipeline import transcribe_file
from flowbot.wer import wer
from stores.sqlite import SqliteTranscriptStore
from testkit.speech import Turn

ROOT = Path(__file__).resolve().parents[1]


def flowbot(*args: str, env: dict[str, str] | None = None, **kw: object) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "FLOWBOT_DIARIZATION": "none", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "flowbot.cli", *args],
        cwd=ROOT,
        env=full_env,
        text=True,
        capture_output=True,
        timeout=600,
        **kw,  # type: ignore[call-overload]
    )


@pytest.mark.slow
def test_transcribe_json_text_and_subtitles(meeting: tuple[Path, list[Turn]], tmp_path: Path) -> None:
    path, turns = meeting
    out = tmp_path / "t.json"
    proc = flowbot("transcribe", str(path), "--format", "json", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["state"] == "completed" and data["audio_seconds"] == pytest.approx(turns[-1].end + 0.5, abs=1.5)
    text = " ".join(s["text"] for s in data["segments"])
    assert wer(" ".join(t.text for t in turns), text) < 0.12
    seg = data["segments"][0]
    assert {"start", "end", "speaker", "text", "words", "is_final"} <= set(seg)
    assert all(a["start"] <= b["start"] for a, b in zip(data["segments"], data["segments"][1:], strict=False))
    assert data["notes"]["action_items"] and data["notes"]["decisions"]
    assert "elapsed" in proc.stderr  # the progress bar
    for fmt, marker in (("srt", " --> "), ("vtt", "WEBVTT")):
        p = flowbot("--data-dir", str(tmp_path / fmt), "transcribe", str(path), "--format", fmt, "-q")
        assert p.returncode == 0 and marker in p.stdout, p.stderr
    # With --data-dir the session stays and `flowbot transcript` reads it back.
    sid = json.loads(
        flowbot("--data-dir", str(tmp_path / "keep"), "transcribe", str(path), "--format", "json", "-q").stdout
    )["session_id"]
    again = flowbot("--data-dir", str(tmp_path / "keep"), "transcript", sid, "--format", "text")
    assert again.returncode == 0 and "S1:" in again.stdout
    # The notes follow the transcript, each item with its time; machine fields stay in the JSON.
    notes_text = again.stdout.split("## Summary", 1)[1]
    assert "## Action items\n- [00:" in notes_text and "offline-extractive" not in notes_text


def test_cli_errors_are_clear(tmp_path: Path) -> None:
    p = flowbot("transcribe", str(tmp_path / "missing.wav"))
    assert p.returncode == 2 and "no such file" in p.stderr
    (tmp_path / "junk.wav").write_bytes(b"this is not audio")
    p = flowbot("--data-dir", str(tmp_path), "ingest", str(tmp_path / "junk.wav"), "--session", "s1")
    assert p.returncode == 2 and "cannot open" in p.stderr
    p = flowbot("--data-dir", str(tmp_path), "transcript", "nope")
    assert p.returncode == 2 and "unknown session" in p.stderr
    p = flowbot("transcribe", "x.wav", env={"FLOWBOT_WINDOW_SECONDS": "thirty"})
    assert p.returncode == 2 and "FLOWBOT_WINDOW_SECONDS" in p.stderr


def _windows(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        try:
            return int(conn.execute("SELECT COUNT(*) FROM windows WHERE status != 'open'").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


@pytest.mark.slow
def test_processor_killed_mid_window_resumes_with_identical_transcript(
    meeting: tuple[Path, list[Turn]], tmp_path: Path
) -> None:
    path, _ = meeting
    env = {"FLOWBOT_WINDOW_SECONDS": "20", "FLOWBOT_WINDOW_MIN_SECONDS": "10"}
    data = tmp_path / "crash"
    assert flowbot("--data-dir", str(data), "ingest", str(path), "--session", "crash-1", env=env).returncode == 0
    full_env = {**os.environ, "FLOWBOT_DIARIZATION": "none", **env}
    cmd = [sys.executable, "-m", "flowbot.cli", "--data-dir", str(data), "process"]
    first = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while _windows(data / "flowbot.db") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)  # no graceful checkpoint, mid-window
    first.wait()
    store = SqliteTranscriptStore(data / "flowbot.db")
    progress = store.load_progress("crash-1")
    assert progress is not None and not progress.stream_done, "kill must land before the end"
    second = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stderr=subprocess.PIPE, text=True)
    try:
        while time.monotonic() < deadline:
            p = store.load_progress("crash-1")
            if p and p.stream_done:
                break
            time.sleep(0.2)
    finally:
        second.send_signal(signal.SIGTERM)
        _, err = second.communicate(timeout=60)
    assert "session resumed from store" in err
    resumed = store.segments("crash-1")

    # `flowbot process` decodes one window at a time; so must the reference.
    ref_settings = Settings.from_env(
        {},
        data_dir=tmp_path / "ref",
        diarization="none",
        window_seconds=20.0,
        window_min_seconds=10.0,
        transcribe_batch_windows=1,
    )
    reference = transcribe_file(path, ref_settings, session_id="crash-1").segments
    strip = lambda segs: [(s.window_index, s.segment_index, s.start, s.end, s.text) for s in segs]  # noqa: E731
    assert strip(resumed) == strip(reference)
