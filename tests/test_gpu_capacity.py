"""``python -m bench.gpu_capacity`` end to end at a tiny scale on CPU, and its parts that a GPU run relies on.

The GPU command cannot run here; this runs the same code path (one live worker,
batched ASR, pyannote diarization, sessions replayed at 1x through the API and
the embedded stream, SSE feeds read) with tiny.en on CPU, so the bench is known
to work before anyone spends GPU time on it.
"""

from __future__ import annotations

import json
import math
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest

from contracts.frames import SAMPLE_RATE, FrameKind, FrameRecord
from contracts.segments import WindowRecord
from stores.base import SessionProgress
from stores.sqlite import SqliteTranscriptStore
from testkit.captions import SessionResult, SessionRun, delivered, replay, session_result, verdict, worst
from testkit.gpu import GpuSampler
from testkit.speech import write_wav
from testkit.sse import FeedReader

REPO = Path(__file__).resolve().parents[1]


def session(p95: float = 2.0, behind: float = 4.0, finals: int = 2, words: int = 30) -> SessionResult:
    return SessionResult("s", words, p95 / 2, p95, finals, behind, behind)


def test_verdict_holds_only_within_both_limits() -> None:
    limits = {"p95_limit": 5.0, "lag_limit": 15.0}
    assert verdict([session(), session(4.9, 14.9)], interim=True, **limits) == []
    assert verdict([session(), session(p95=5.5)], interim=True, **limits) == ["caption p95 5.50 s > 5 s"]
    assert verdict([session(behind=16.0)], interim=True, **limits) == ["finals 16.0 s behind > 15 s"]
    # Finals only: caption p95 is not a criterion, finals still are.
    assert verdict([session(p95=30.0)], interim=False, **limits) == []
    # A session that got no final, or no words, never holds (NaN/inf are not "within" a limit).
    assert "a session got no final" in verdict([session(), session(finals=0, behind=math.inf)], interim=True, **limits)
    assert verdict([session(p95=math.nan, words=0)], interim=True, **limits) == ["caption p95 inf s > 5 s"]
    assert verdict([], interim=True, **limits) != []
    assert worst([1.0, math.nan]) == math.inf and worst([1.0, 3.0]) == 3.0


def test_finals_behind_counts_each_window_from_its_first_arrival() -> None:
    run = SessionRun("s", FeedReader("http://127.0.0.1:9/unused"), t0=100.0, audio_end=150.0, latencies=[1.0, 2.0, 9.0])
    windows = {0: 20.0, 1: 45.0}
    # Window 0's final arrives 4 s after its audio, and again (a later revision) 60 s after: still 4 s behind.
    got = session_result(run, windows, [(124.0, 0), (150.5, 1), (180.0, 0)])
    assert got.final_windows == 2 and got.words == 3 and got.p50 == 2.0 and got.p95 == 9.0
    assert got.finals_behind == 5.5 and got.last_final_after_end == 0.5
    none = session_result(SessionRun("t", run.feed), windows, [])
    assert none.final_windows == 0 and none.finals_behind == math.inf and math.isnan(none.p50)


class HandFedFeed(FeedReader):
    """A viewer's feed that stays connected and shows what the test hands it."""

    def __init__(self) -> None:
        super().__init__("http://127.0.0.1:9/unused")
        self.hang_up = threading.Event()

    def run(self) -> None:
        self.hang_up.wait(120)

    def show_final(self, window_index: int) -> None:
        self.events.append((time.monotonic(), "window", {"window_index": window_index, "is_final": True}))


class CommitAtEnd:
    """The stream of a worker that commits the session's one window at its end record, while
    the viewer's feed shows that final ``feed_lag`` s later (a feed polling a loaded machine)."""

    def __init__(self, store: SqliteTranscriptStore, feed: HandFedFeed, feed_lag: float) -> None:
        self.store, self.feed, self.feed_lag = store, feed, feed_lag

    def put(self, records: Sequence[FrameRecord]) -> None:
        for r in records:
            if r.kind == FrameKind.END:
                end = r.sample_offset
                self.store.commit_window(
                    WindowRecord(r.session_id, 0, 0, end), [], SessionProgress(r.session_id, 1, end, end)
                )
                threading.Timer(self.feed_lag, self.feed.show_final, args=(0,)).start()

    def close(self) -> None:
        """Nothing to release."""


def test_replay_waits_until_the_feed_showed_every_final(tmp_path: Path) -> None:
    """The flake "a session got no final": the session was done in the store, but the live feed
    (backing off to a read a second while a window's final pass runs) had not shown the final yet
    when the figures were taken. Taken 0.5 s after the commit, a final 2 s late was never seen."""
    store = SqliteTranscriptStore(tmp_path / "t.db")
    feed = HandFedFeed()
    feed.start()
    run = SessionRun("sess-1", feed)
    svc = SimpleNamespace(stream=CommitAtEnd(store, feed, feed_lag=2.0), ctx=SimpleNamespace(transcripts=store))
    wav = write_wav(tmp_path / "a.wav", np.zeros(SAMPLE_RATE // 2, np.int16))
    try:
        replay(cast(Any, svc), wav, [run], stagger=0.0, drain_timeout=60)
        progress = store.load_progress("sess-1")
        assert progress is not None and progress.stream_done
        assert [d["window_index"] for _, d in feed.timed() if d["is_final"]] == [0], "measured before the final arrived"
    finally:
        feed.hang_up.set()
    # A feed whose connection ended shows nothing more: the wait for it ends (the figures then say "no final").
    store.commit_window(WindowRecord("sess-2", 0, 0, 8000), [], SessionProgress("sess-2", 1, 8000, 8000))
    gone = SessionRun("sess-2", FeedReader("http://127.0.0.1:9/unused"))  # nothing listens on port 9
    gone.feed.start()
    gone.feed.join(30)
    assert gone.feed.error is not None and delivered(store, gone)


def test_gpu_sampler_reads_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without NVML the sampler falls back to nvidia-smi's CSV (a stand-in prints what the real one does)."""
    fake = tmp_path / "nvidia-smi"
    fake.write_text('#!/bin/sh\necho "$@" >> "$(dirname "$0")/args"\necho "1234, 56"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setitem(sys.modules, "pynvml", None)  # no NVML bindings
    assert GpuSampler.available()
    sampler = GpuSampler(period=0.05)
    sampler.start()
    deadline = time.monotonic() + 10
    while len(sampler.samples) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    sampler.stop()
    assert sampler.source == "nvidia-smi"
    assert sampler.take()[:2] == [(1234.0, 56.0), (1234.0, 56.0)]
    assert "--query-gpu=memory.used,utilization.gpu" in (tmp_path / "args").read_text()


@pytest.mark.slow
def test_tiny_cpu_run_end_to_end(tmp_path: Path) -> None:
    """Two levels, real speech (pyannote's sample), offline pyannote, batched ASR forced on CPU.

    The issue's limits (caption p95 <= 5 s, finals <= 15 s behind) are not what a
    shared 2-core box meets with diarization on (docs/gpu.md has the figures), so
    the test holds the run to loose limits (120 s / 180 s; at load average 8-10 this
    box measured 35 s / 33 s at about this scale) and checks that every figure is real.
    """
    out = tmp_path / "report.json"
    cmd = [
        sys.executable,
        "-m",
        "bench.gpu_capacity",
        "--device",
        "cpu",
        "--sessions",
        "1,2",
        "--seconds",
        "20",
        "--audio",
        "sample",
        "--stagger",
        "3",
        "--p95-limit",
        "120",
        "--lag-limit",
        "180",
        "--json",
        str(out),
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert "sessions held (caption p95 <= 120 s, finals <= 180 s behind): 2" in proc.stdout, proc.stdout

    assert report["device"] == "cpu" and report["model"] == "bundled:tiny.en" and report["compute_type"] == "int8"
    assert report["batched_asr"] is True, "the bench must exercise the batched (GPU) ASR path"
    assert report["diarization"].startswith(("offline", "pyannote/")), report["diarization"]
    assert report["seconds_per_session"] == pytest.approx(20.0, abs=0.01)
    assert report["held"] == 2 and [lv["sessions"] for lv in report["levels"]] == [1, 2]
    for level in report["levels"]:
        n = level["sessions"]
        assert level["holds"] and level["why"] == "holds"
        assert len(level["per_session"]) == n and len({s["session_id"] for s in level["per_session"]}) == n
        for s in level["per_session"]:
            assert s["final_windows"] >= 1, "finals arrive"
            assert s["words"] >= 20, "the sample's words were transcribed and seen in the feed"
            assert 0 < s["p50"] <= s["p95"] < 120
            assert 0 < s["finals_behind"] < 180 and s["last_final_after_end"] > 0
        assert level["worst_p95"] == max(s["p95"] for s in level["per_session"])
        assert level["wall_seconds"] >= 20 + (n - 1) * 3
        # One process does the work of every session: some CPU per audio second, not absurdly much.
        assert 0.01 < level["cpu_seconds_per_audio_second"] < 10
        assert level["asr_calls"] >= 1 and level["asr_clips"] >= level["asr_calls"]
        assert level["gpu_memory_peak_mib"] is None and level["gpu_torch_peak_mib"] is None
