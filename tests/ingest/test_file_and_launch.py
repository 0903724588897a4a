"""File ingest (as-fast-as-possible and real-time paced) and the embedded launcher."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.frames import SAMPLE_RATE, FrameKind
from flowbot.launch import EmbeddedLauncher
from producer.decode import DecodeError, read_pcm
from producer.file_ingest import ingest_file
from producer.hub import IngestHub
from producer.rtmp_relay import RtmpRelay
from stores.base import Session
from streams.embedded import EmbeddedStream
from testkit.net import wait_for

from .conftest import all_records, frames_of, publish, wav_seconds


def test_file_ingest_writes_every_sample_then_ends(stream: EmbeddedStream, speech_wav: Path) -> None:
    progress: list[int] = []
    total = ingest_file(speech_wav, stream, "f1", on_progress=progress.append)
    reference = read_pcm(str(speech_wav))
    assert total == reference.size
    frames = frames_of(stream, "f1")
    assert frames[-1].kind == FrameKind.END and frames[-1].sample_offset == total
    audio = b"".join(f.payload for f in frames[:-1])
    assert audio == reference.astype("<i2").tobytes()
    assert progress[-1] == total and progress == sorted(progress)


class _VirtualClock:
    """``time.monotonic``/``time.sleep`` for the pacer: sleeping advances the clock, nothing waits."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


def test_realtime_ingest_releases_each_chunk_when_it_would_have_been_heard(
    stream: EmbeddedStream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Paced at exactly 1x: never ahead of the clock, never behind it.

    A virtual clock (the pacer's only time source) makes this exact and independent of the
    machine's load, which an upper bound on wall time is not.
    """
    import subprocess

    from producer import file_ingest

    from .conftest import require

    clip = tmp_path / "tone.wav"
    subprocess.run(
        [
            require("ffmpeg"),
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=2",
            "-ar",
            "16000",
            str(clip),
        ],
        check=True,
    )
    clock = _VirtualClock()
    monkeypatch.setattr(file_ingest, "time", clock)
    started = clock.now
    seen: list[tuple[float, int]] = []

    def work(pushed: int) -> None:
        # Writing a chunk takes time too: the pacer must absorb it, not add to it.
        seen.append((clock.now - started, pushed))
        clock.now += 0.005

    total = ingest_file(clip, stream, "rt", realtime=True, on_progress=work)
    assert total == 2 * SAMPLE_RATE
    assert len(seen) > 1, "a 2 s file decodes in several chunks, each paced"
    # Each chunk is released exactly when its last sample would have been heard live.
    assert all(abs(t - n / SAMPLE_RATE) < 1e-6 for t, n in seen)
    assert clock.slept + 0.005 * (len(seen) - 1) == pytest.approx(2.0)


def test_ingest_without_realtime_never_sleeps(
    stream: EmbeddedStream, speech_wav: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from producer import file_ingest

    clock = _VirtualClock()
    monkeypatch.setattr(file_ingest, "time", clock)
    assert ingest_file(speech_wav, stream, "fast") > 0
    assert clock.slept == 0.0


def test_unreadable_file_is_refused_and_writes_nothing(stream: EmbeddedStream, tmp_path: Path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("not audio at all\n" * 50)
    with pytest.raises(DecodeError):
        ingest_file(junk, stream, "bad")
    with pytest.raises(DecodeError):
        ingest_file(tmp_path / "missing.wav", stream, "bad")
    assert all_records(stream) == 0


def test_file_ingest_rejects_bad_session_id(stream: EmbeddedStream, speech_wav: Path) -> None:
    with pytest.raises(ValueError):
        ingest_file(speech_wav, stream, "../etc")
    assert all_records(stream) == 0


@pytest.mark.slow
def test_embedded_launcher_registers_and_ends(
    hub: IngestHub, rtmp: RtmpRelay, stream: EmbeddedStream, speech_wav: Path
) -> None:
    launcher = EmbeddedLauncher(rtmp, "meet.example.org")
    session = Session("m1", "meeting", "user", "topic", stream_key="k-123")
    result = launcher.launch(session)
    assert result.rtmp_url == f"rtmp://meet.example.org:{rtmp.port}/live/k-123"
    res = publish(f"rtmp://127.0.0.1:{rtmp.port}/live/k-123", speech_wav, realtime=False)
    assert res.returncode == 0, res.stderr.decode()
    wait_for(lambda: not hub.stats("m1").connected, what="publisher to finish")
    launcher.stop(session)
    frames = frames_of(stream, "m1")
    assert frames[-1].kind == FrameKind.END
    assert abs(frames[-1].sample_offset / SAMPLE_RATE - wav_seconds(speech_wav)) < 0.2
    # The key is revoked: publishing again is refused and adds nothing.
    before = all_records(stream)
    again = publish(f"rtmp://127.0.0.1:{rtmp.port}/live/k-123", speech_wav, realtime=False)
    assert again.returncode != 0
    assert all_records(stream) == before
