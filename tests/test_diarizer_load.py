"""The diarizer loads in the background and hears the window's own VAD (issue 22: cost).

Loading the offline diarizer took ~7.5 s on 2 cores (importing pyannote.audio
~6.6 s of it) before the first window could be heard; it now loads while the
ASR model loads and decodes. A load that fails still ends the command with its
own error. The diarize stage gets the window's SpeechMap (the one VAD pass the
cut and the ASR read), and the retired full-mask embedding setting is refused.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import processor.build as build
import processor.pyannote_diarizer as pyannote_diarizer
from contracts.settings import Settings, SettingsError
from flowbot.pipeline import transcribe_file
from processor.asr import AsrResult, Transcriber
from processor.diarization import Diarization, Diarizer, SpeakerTurn
from processor.pyannote_diarizer import DiarizationUnavailable
from processor.vad import SpeechMap
from testkit.speech import say, write_wav

#: Long enough for a failure path only: a passing run never waits this long.
NEVER_S = 120.0


class RecordingDiarizer:
    """One speaker; keeps the speech map each call was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[np.ndarray, SpeechMap | None]] = []

    def diarize(self, audio: np.ndarray, speech: SpeechMap | None = None) -> Diarization:
        self.calls.append((audio, speech))
        return Diarization((SpeakerTurn(0.0, len(audio) / 16000, "S1"),))


class FirstCall:
    """Wraps the transcriber: sets ``heard`` when the first window's ASR starts."""

    def __init__(self, inner: Transcriber, heard: threading.Event) -> None:
        self.inner, self.heard = inner, heard

    def transcribe(self, audio: np.ndarray, **kwargs: object) -> AsrResult:
        self.heard.set()
        return self.inner.transcribe(audio, **kwargs)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


@pytest.fixture
def spoken(tmp_path: Path) -> Path:
    """Two short sentences (one window)."""
    pcm = np.concatenate(
        [
            np.zeros(8000, np.int16),
            say("The budget review moves to Thursday afternoon.", "slt", tmp_path),
            np.zeros(8000, np.int16),
            say("I will send the numbers before the meeting.", "awb", tmp_path),
            np.zeros(8000, np.int16),
        ]
    )
    return write_wav(tmp_path / "two.wav", pcm)


def _offline(tmp_path: Path) -> Settings:
    return Settings.from_env({}, data_dir=tmp_path / "data", diarization="offline", transcribe_batch_windows=1)


def _fake_load(monkeypatch: pytest.MonkeyPatch, load: Callable[[], Diarizer]) -> None:
    """The diarizer loader returns ``load`` (the quick checks of the real one are skipped)."""
    monkeypatch.setattr(pyannote_diarizer, "diarizer_loader", lambda settings, params=None: load)


def _heard_first(monkeypatch: pytest.MonkeyPatch, transcriber: Transcriber, heard: threading.Event) -> None:
    monkeypatch.setattr(build, "build_transcriber", lambda settings: FirstCall(transcriber, heard))


def test_the_first_window_is_heard_while_the_diarizer_loads(
    tmp_path: Path, spoken: Path, transcriber: Transcriber, monkeypatch: pytest.MonkeyPatch
) -> None:
    heard = threading.Event()
    seen: dict[str, bool] = {}
    diarizer = RecordingDiarizer()

    def slow_load() -> Diarizer:
        # Loaded in the foreground, this would block the ASR it waits for.
        seen["heard before loaded"] = heard.wait(NEVER_S)
        return diarizer

    _fake_load(monkeypatch, slow_load)
    _heard_first(monkeypatch, transcriber, heard)
    result = transcribe_file(spoken, _offline(tmp_path))
    assert seen == {"heard before loaded": True}
    assert result.state == "completed" and "budget" in " ".join(s.text for s in result.segments).lower()
    # The diarize stage got the window's own VAD: its speech map covers the window it diarized.
    assert diarizer.calls
    for audio, speech in diarizer.calls:
        assert isinstance(speech, SpeechMap)
        assert speech.samples >= len(audio)
        frames = len(audio) // 512
        assert np.allclose(speech.probs[:frames], SpeechMap.of(audio).probs[:frames], atol=1e-4)
        assert speech.has_speech(0, len(audio))


def test_a_diarizer_that_fails_to_load_ends_transcribe_with_its_error(
    tmp_path: Path, spoken: Path, transcriber: Transcriber, monkeypatch: pytest.MonkeyPatch
) -> None:
    heard = threading.Event()

    def failing_load() -> Diarizer:
        heard.wait(NEVER_S)
        raise DiarizationUnavailable("pyannote.audio cannot be imported (libc10_cuda.so)")

    _fake_load(monkeypatch, failing_load)
    _heard_first(monkeypatch, transcriber, heard)
    with pytest.raises(DiarizationUnavailable, match="libc10_cuda"):
        transcribe_file(spoken, _offline(tmp_path))


def test_quick_checks_still_fail_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="FLOWBOT_DIARIZATION_STEP"):
        build.build_engine_parts(_offline(tmp_path).replace(diarization_step=2.0))


def test_the_full_mask_embedding_setting_is_refused_as_unknown() -> None:
    """Issue 22: the full-mask reference lives in bench/diarization.py, not behind a production switch."""
    with pytest.raises(SettingsError, match="FLOWBOT_DIARIZATION_EMBEDDING is no longer a setting"):
        Settings.from_env({"FLOWBOT_DIARIZATION_EMBEDDING": "full"})
    with pytest.raises(TypeError, match="diarization_embedding"):
        Settings.from_env({}, diarization_embedding="full")
    with pytest.raises(TypeError, match="embedding"):
        pyannote_diarizer.OfflineParams(embedding="full")  # type: ignore[call-arg]
