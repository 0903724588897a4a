"""Fixtures for live captions: a scripted transcriber for scheduling tests, store helpers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from contracts.segments import Word
from processor.asr import AsrResult, AsrSegment, Transcriber
from stores.sqlite import SqliteTranscriptStore


def asr_words(text: str, start: float = 0.0, step: float = 0.3) -> AsrSegment:
    """One ASR segment whose words are ``text`` split on spaces, ``step`` s apiece."""
    words = tuple(Word(start + i * step, start + (i + 1) * step, " " + w, 0.9) for i, w in enumerate(text.split()))
    return AsrSegment(start, start + len(words) * step, text, words, -0.2, 0.01, 1.2)


class ScriptedTranscriber(Transcriber):
    """Returns the next scripted pass per call; can be held to simulate a slow pass.

    Only the scheduling and bookkeeping of the interim worker are under test with it;
    the real model runs in test_interim_engine.py.
    """

    def __init__(self, passes: list[list[AsrSegment]] | None = None) -> None:
        self.passes = list(passes or [])
        self.calls: list[tuple[int, int | None]] = []  # (audio samples, beam)
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Event()

    def transcribe(
        self,
        audio: np.ndarray,
        *,
        beam_size: int | None = None,
        initial_prompt: str | None = None,
        speech: object = None,
    ) -> AsrResult:
        self.calls.append((audio.size, beam_size))
        self.entered.set()
        assert self.hold.wait(30), "test never released the held pass"
        if self.passes:
            return AsrResult(self.passes.pop(0) if len(self.passes) > 1 else self.passes[0])
        return AsrResult()


def wait_until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``cond`` until true or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.005)
    raise AssertionError("condition not reached in time")


@pytest.fixture
def store(tmp_path: Path) -> SqliteTranscriptStore:
    """A fresh SQLite transcript store."""
    return SqliteTranscriptStore(tmp_path / "live.db")


def pcm(seconds: float) -> np.ndarray:
    """Non-silent int16 audio of the given length (content irrelevant for scripted passes)."""
    rng = np.random.default_rng(1)
    return (rng.standard_normal(int(seconds * 16000)) * 3000).astype(np.int16)


# ------------------------------------------------------------------ live service

import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import threading as _threading  # noqa: E402
import urllib.request  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from typing import Any  # noqa: E402

from contracts.settings import Settings  # noqa: E402


def require(exe: str) -> str:
    """Path of a required program; fail loudly (CI must not skip) when it is missing."""
    path = shutil.which(exe)
    if path is None:
        raise RuntimeError(f"{exe} is not installed; run scripts/setup (scripts/setup.d/60-live.sh)")
    return path


def start_session(base: str) -> dict[str, Any]:
    """start_session through the coordinator API of a LiveService."""
    body = json.dumps({"action": "start_session", "meeting_id": "m", "user_id": "u", "topic": "t"}).encode()
    req = urllib.request.Request(f"{base}/api", body, {"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return dict(json.loads(resp.read()))


class FeedReader(_threading.Thread):
    """Reads a session's SSE feed, remembering when each event arrived."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.events: list[tuple[float, str, dict[str, Any]]] = []

    def run(self) -> None:
        with urllib.request.urlopen(self.url, timeout=600) as resp:
            event = None
            for raw in resp:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event:
                    self.events.append((time.monotonic(), event, json.loads(line[6:])))

    def windows(self) -> list[dict[str, Any]]:
        """The ``window`` events so far."""
        return [d for _, ev, d in list(self.events) if ev == "window"]


@pytest.fixture
def live_service(tmp_path: Path) -> Iterator[Any]:
    """flowbot serve in-process: interim every second, 10 s windows, one speaker."""
    from flowbot.serve import LiveService

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    settings = Settings.from_env(
        {},
        data_dir=tmp_path / "data",
        diarization="none",
        port=0,
        rtmp_port=0,
        window_seconds=10.0,
        window_min_seconds=5.0,
        interim_seconds=1.0,
    )
    svc = LiveService(settings).start()
    try:
        yield svc
    finally:
        svc.stop()
