"""The engine's shape (issue 22): one ASR input and one VAD pass per window, segment algebra in one place,
diarization placement independent of interim captions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from contracts.segments import Word
from contracts.settings import Settings
from processor.asr import AsrResult, AsrSegment
from processor.diarization import IdentityMapper, SingleSpeakerDiarizer
from processor.engine import EngineParts, ShardProcessor
from processor.segtime import keep_words, split_after, split_words, words_after
from processor.vad import SpeechMap
from processor.window import WindowJob
from processor.windowing import ASR_INPUT_SECONDS, WindowPolicy, to_float
from producer.decode import read_pcm
from producer.framer import SessionFramer
from stores.archive import LocalArchive
from stores.sqlite import SqliteTranscriptStore
from streams.embedded import EmbeddedStream
from testkit.speech import Turn

SR = 16000


def _seg(*words: tuple[float, float, str]) -> AsrSegment:
    ws = tuple(Word(a, b, t) for a, b, t in words)
    return AsrSegment(ws[0].start, ws[-1].end, "".join(w.text for w in ws).strip(), ws, -0.1, 0.0, 1.0)


def test_segment_algebra() -> None:
    a = _seg((0.2, 0.6, " one"), (0.9, 1.3, " two"))
    b = _seg((1.5, 1.8, " three."), (2.0, 2.4, " four"))
    after = words_after([a, b], 1.0)  # "two" has its middle at 1.1 s: after the boundary
    assert [s.text for s in after] == ["two", "three. four"]
    assert after[0].start == pytest.approx(0.0) and after[1].words[0].start == pytest.approx(0.5)
    assert [s.text for s in keep_words([a, b], 3)] == ["one two", "three."]
    head, tail = split_words([a, b], 1)
    assert [s.text for s in head] == ["one"] and [s.text for s in tail] == ["two", "three. four"]
    assert [s.text for s in split_after(b, [0])] == ["three.", "four"]
    assert split_after(b, [1]) == [b]  # a split after the last word is no split


def test_speech_map_answers_like_faster_whispers_vad(meeting: tuple[Path, list[Turn]]) -> None:
    """One network pass read with any pause length gives what get_speech_timestamps gives."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    audio = to_float(read_pcm(str(meeting[0])))[: 40 * SR]
    speech = SpeechMap.of(audio)
    for ms, pad in ((300, 100), (150, 100), (500, 200)):
        ref = get_speech_timestamps(audio, VadOptions(min_silence_duration_ms=ms, speech_pad_ms=pad))
        assert speech.spans(ms, pad) == [(c["start"], c["end"]) for c in ref]
    # The network is causal: a window's prefix reads like VAD of that prefix alone (the cut's input).
    head = get_speech_timestamps(audio[: 20 * SR], VadOptions(min_silence_duration_ms=300, speech_pad_ms=100))
    assert speech.spans(300, 100, 0, 20 * SR) == [(c["start"], c["end"]) for c in head]


def test_window_and_context_fit_one_whisper_input() -> None:
    """A 30 s window of speech behind 1 s of context took a second encoder pass for its last second."""
    rng = np.random.default_rng(0)
    speech = SpeechMap(np.ones(60_000 // 512 * 30, np.float32), 30 * SR)  # VAD: speech all through
    pcm = (rng.normal(0, 3000, 30 * SR)).astype(np.int16)
    job = WindowJob("s", 1, SR, pcm, pcm[:SR], False, speech)
    heard = job.heard(300)
    assert heard is not None
    audio, spans = heard
    assert len(audio) == 31 * SR
    assert sum(b - a for a, b in spans) <= ASR_INPUT_SECONDS * SR
    short = WindowJob("s", 1, SR, pcm[: 20 * SR], pcm[:SR], False, speech)
    assert short.heard(300)[1][0] == (0, 21 * SR)  # type: ignore[index]  # room: the whole context


class Recording:
    """A transcriber that records what it was asked to hear."""

    def __init__(self) -> None:
        self.heard: list[int] = []

    def transcribe(self, audio: np.ndarray, **kw: object) -> AsrResult:
        self.heard.append(len(audio) if kw.get("speech") is None else sum(b - a for a, b in kw["speech"]))  # type: ignore[attr-defined]
        return AsrResult()


@pytest.fixture
def vad_runs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts Silero VAD network passes (faster-whisper's and flowbot's alike)."""
    import faster_whisper.vad as fw_vad

    model = fw_vad.get_vad_model()
    runs: list[int] = []

    def counting(audio: np.ndarray, *args: object, **kw: object) -> np.ndarray:
        runs.append(len(audio))
        return model(audio, *args, **kw)

    monkeypatch.setattr(fw_vad, "get_vad_model", lambda: counting)
    yield runs


def _run_meeting(tmp_path: Path, pcm: np.ndarray, transcriber: object) -> EngineParts:
    store = SqliteTranscriptStore(tmp_path / "t.db")
    parts = EngineParts(
        transcriber=transcriber,  # type: ignore[arg-type]
        diarizer=SingleSpeakerDiarizer(),
        mapper_factory=lambda state: IdentityMapper(state),
        store=store,
        archive=LocalArchive(tmp_path / "archive"),
    )
    stream = EmbeddedStream(tmp_path / "s.db")
    framer = SessionFramer(stream, "m")
    framer.push(pcm)
    framer.end()
    proc = ShardProcessor(parts)
    proc.initialize("shard-0", None)
    proc.process_records(stream.read("shard-0", 0, 100_000), _NoCheckpoints())
    return parts


class _NoCheckpoints:
    def checkpoint(self, sequence_number: str | None = None) -> None:
        pass


def test_each_window_runs_vad_once_and_fits_one_asr_input(
    tmp_path: Path, meeting: tuple[Path, list[Turn]], transcriber: object, vad_runs: list[int]
) -> None:
    """Before: VAD ran for every pause length tried, for "any speech?" and inside faster-whisper."""
    pcm = read_pcm(str(meeting[0]))
    recording = Recording()
    parts = _run_meeting(tmp_path, pcm, recording)
    windows = parts.store.windows("m")
    assert len(windows) >= 3
    # One VAD pass per window, over the buffer head it is cut from.
    assert len(vad_runs) == len(windows)
    policy = WindowPolicy()
    assert max(recording.heard) <= ASR_INPUT_SECONDS * SR
    # The real model, given the window's speech, runs no VAD of its own.
    vad_runs.clear()
    real = _run_meeting(tmp_path / "real", pcm, transcriber)
    assert len(vad_runs) == len(real.store.windows("m"))
    assert max(vad_runs) <= policy.max_samples + 512
    assert any(s.text for s in real.store.segments("m"))


def test_diarization_placement_does_not_depend_on_interim_captions(tmp_path: Path) -> None:
    """Before: the diarization pool existed only with captions on, so captions changed when windows commit."""
    from processor.build import diarization_executor

    for diarization in ("offline", "pyannote"):
        on = diarization_executor(Settings.from_env({}, diarization=diarization, interim_seconds=2.0))
        off = diarization_executor(Settings.from_env({}, diarization=diarization, interim_seconds=0.0))
        assert on is not None and off is not None
        on.shutdown()
        off.shutdown()
    assert diarization_executor(Settings.from_env({}, diarization="none", interim_seconds=2.0)) is None
