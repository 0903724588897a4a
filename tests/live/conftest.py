"""Fixtures for live captions: a scripted transcriber for scheduling tests, store helpers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from contracts.segments import Word
from processor.asr import AsrSegment
from stores.sqlite import SqliteTranscriptStore


def asr_words(text: str, start: float = 0.0, step: float = 0.3) -> AsrSegment:
    """One ASR segment whose words are ``text`` split on spaces, ``step`` s apiece."""
    words = tuple(
        Word(start + i * step, start + (i + 1) * step, " " + w, 0.9) for i, w in enumerate(text.split())
    )
    return AsrSegment(start, start + len(words) * step, text, words, -0.2, 0.01, 1.2)


class ScriptedTranscriber:
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
        self, audio: np.ndarray, *, beam_size: int | None = None, initial_prompt: str | None = None
    ) -> list[AsrSegment]:
        self.calls.append((audio.size, beam_size))
        self.entered.set()
        assert self.hold.wait(30), "test never released the held pass"
        if self.passes:
            return self.passes.pop(0) if len(self.passes) > 1 else self.passes[0]
        return []


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
