"""Shared fixtures: settings in a temp folder, the local coordinator, generated speech, one ASR model per run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")

from contracts.settings import Settings
from testkit.speech import Turn, meeting_wav

if TYPE_CHECKING:
    from control.api import Coordinator


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Embedded-mode settings in a fresh folder, one speaker, short windows off."""
    return Settings.from_env({}, data_dir=tmp_path / "data", diarization="none")


@pytest.fixture
def api(settings: Settings) -> Iterator[Coordinator]:
    """The single-machine coordinator on ``settings``, launching producers on a loopback RTMP relay."""
    from control.api import Coordinator
    from control.context import build_local_context
    from flowbot.launch import EmbeddedLauncher
    from producer.hub import IngestHub
    from producer.rtmp_relay import RtmpRelay
    from streams.embedded import EmbeddedStream

    rtmp = RtmpRelay(IngestHub(EmbeddedStream(settings.data_dir / "stream.db")), "127.0.0.1", 0)
    rtmp.start()
    try:
        yield Coordinator(build_local_context(settings, EmbeddedLauncher(rtmp, "127.0.0.1")))
    finally:
        rtmp.stop()


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of generated utterances shared by the run."""
    return tmp_path_factory.mktemp("speech")


@pytest.fixture(scope="session")
def meeting(speech_dir: Path) -> tuple[Path, list[Turn]]:
    """A ~100 s three-voice planning meeting and its reference turns."""
    return meeting_wav(speech_dir, repeat=1)


@pytest.fixture(scope="session")
def long_meeting(speech_dir: Path) -> tuple[Path, list[Turn]]:
    """The meeting three times over (~5 minutes), for windowing across many joins."""
    return meeting_wav(speech_dir, repeat=3)


@pytest.fixture(scope="session")
def transcriber() -> Iterator[object]:
    """The bundled tiny.en model, loaded once."""
    from processor.asr import AsrOptions, WhisperTranscriber

    yield WhisperTranscriber("bundled:tiny.en", device="cpu", cpu_threads=2, options=AsrOptions(beam_size=5))
