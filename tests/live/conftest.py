"""Fixtures for live captions: a scripted transcriber for scheduling tests, store helpers, a live service."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from contracts.segments import Word
from processor.asr import AsrResult, AsrSegment, Transcriber
from producer.decode import read_pcm
from producer.framer import SessionFramer
from stores.sqlite import SqliteTranscriptStore
from streams.base import StreamRecord
from streams.embedded import EmbeddedStream
from testkit.service import live_service as testkit_live_service
from testkit.service import live_settings
from testkit.speech import Turn

if TYPE_CHECKING:
    from flowbot.serve import LiveService


def asr_words(text: str, start: float = 0.0, step: float = 0.3) -> AsrSegment:
    """One ASR segment whose words are ``text`` split on spaces, ``step`` s apiece."""
    words = tuple(Word(start + i * step, start + (i + 1) * step, " " + w, 0.9) for i, w in enumerate(text.split()))
    return AsrSegment(start, start + len(words) * step, text, words, -0.2, 0.01, 1.2)


class ScriptedTranscriber(Transcriber):
    """Returns the next scripted pass per call; can be held to simulate a slow pass.

    Only the scheduling and bookkeeping of the interim worker are under test with it;
    the real model runs in test_interim_engine.py.
    """

    def __init__(self, passes: list[list[AsrSegment]] | None = None, on_call: Callable[[], None] | None = None) -> None:
        self.passes = list(passes or [])
        self.calls: list[tuple[int, int | None]] = []  # (audio samples, beam)
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Event()
        #: Runs at the start of every call (what else had happened by then).
        self.on_call = on_call

    def transcribe(
        self,
        audio: np.ndarray,
        *,
        beam_size: int | None = None,
        initial_prompt: str | None = None,
        speech: object = None,
    ) -> AsrResult:
        self.calls.append((audio.size, beam_size))
        if self.on_call is not None:
            self.on_call()
        self.entered.set()
        assert self.hold.wait(30), "test never released the held pass"
        if self.passes:
            return AsrResult(self.passes.pop(0) if len(self.passes) > 1 else self.passes[0])
        return AsrResult()


@pytest.fixture
def store(tmp_path: Path) -> SqliteTranscriptStore:
    """A fresh SQLite transcript store."""
    return SqliteTranscriptStore(tmp_path / "live.db")


def pcm(seconds: float) -> np.ndarray:
    """Non-silent int16 audio of the given length (content irrelevant for scripted passes)."""
    rng = np.random.default_rng(1)
    return (rng.standard_normal(int(seconds * 16000)) * 3000).astype(np.int16)


def require(exe: str) -> str:
    """Path of a required program; fail loudly (CI must not skip) when it is missing."""
    path = shutil.which(exe)
    if path is None:
        raise RuntimeError(f"{exe} is not installed; run scripts/setup (scripts/setup.d/60-live.sh)")
    return path


@pytest.fixture
def live_service(tmp_path: Path) -> Iterator[LiveService]:
    """flowbot serve in-process: interim every second, 10 s windows, one speaker."""
    settings = live_settings(tmp_path / "data", window_seconds=10.0, window_min_seconds=5.0, interim_seconds=1.0)
    with testkit_live_service(settings) as svc:
        yield svc


@pytest.fixture
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where page screenshots go (kept after the run): ``$FLOWBOT_TEST_ARTIFACTS`` or the run's temp folder."""
    root = os.environ.get("FLOWBOT_TEST_ARTIFACTS")
    path = Path(root) if root else tmp_path_factory.getbasetemp() / "artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def quiet_service(tmp_path: Path) -> Iterator[LiveService]:
    """flowbot serve without interim captions (nothing loads a model)."""
    settings = live_settings(tmp_path / "data", interim_seconds=0.0)
    with testkit_live_service(settings) as svc:
        yield svc


@pytest.fixture
def records(tmp_path: Path, meeting: tuple[Path, list[Turn]]) -> list[StreamRecord]:
    """25 s of speech with pauses, in 1 s records, and the end of stream."""
    stream = EmbeddedStream(tmp_path / "s.db")
    framer = SessionFramer(stream, "s")
    framer.push(read_pcm(str(meeting[0]))[: 25 * 16000])
    framer.end()
    return stream.read("shard-0", 0, 100_000)


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    """The engine's one-thread diarization pool."""
    executor = ThreadPoolExecutor(max_workers=1)
    yield executor
    executor.shutdown(wait=False, cancel_futures=True)
