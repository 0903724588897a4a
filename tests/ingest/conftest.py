"""Fixtures for ingest tests: real ffmpeg publishers, flite speech, an embedded stream."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.frames import FrameRecord
from producer.hub import IngestHub
from producer.rtmp_relay import RtmpRelay
from streams.embedded import EmbeddedStream

SPEECH = (
    "Good morning everyone. This is the weekly planning meeting. "
    "We will review the release schedule and then talk about hiring."
)


def require(binary: str) -> str:
    """Path of ``binary``; a missing tool fails loudly in CI and skips elsewhere."""
    # nginx lives in /usr/sbin, which is not on every user's PATH.
    path = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/sbin")
    if path is None:
        message = f"{binary} is not installed (scripts/setup.d/10-ingest.sh installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few seconds of synthetic speech (Debian flite, voice slt)."""
    flite = require("flite")
    out = tmp_path_factory.mktemp("speech") / "speech.wav"
    subprocess.run([flite, "-voice", "slt", "-t", SPEECH, "-o", str(out)], check=True)
    return out


def wav_seconds(path: Path) -> float:
    """Duration of a WAV file from its header."""
    import wave

    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


@pytest.fixture
def stream(tmp_path: Path) -> Iterator[EmbeddedStream]:
    """A fresh embedded stream."""
    s = EmbeddedStream(tmp_path / "stream.db")
    yield s
    s.close()


@pytest.fixture
def hub(stream: EmbeddedStream) -> IngestHub:
    """An ingest hub writing to ``stream``."""
    return IngestHub(stream)


@pytest.fixture
def rtmp(hub: IngestHub) -> Iterator[RtmpRelay]:
    """An RTMP relay on an ephemeral loopback port publishing through ``hub``."""
    relay = RtmpRelay(hub, "127.0.0.1", 0, publish_timeout=5.0, read_timeout=5.0)
    relay.start()
    yield relay
    relay.stop()


def ffmpeg_publish_cmd(
    url: str,
    wav: Path,
    *,
    realtime: bool = True,
    video: bool = False,
    start: float | None = None,
    duration: float | None = None,
) -> list[str]:
    """ffmpeg arguments that publish ``wav`` (AAC, optionally with H.264 video) to ``url``."""
    cmd = [require("ffmpeg"), "-hide_banner", "-loglevel", "error", "-nostdin"]
    if start is not None:
        cmd += ["-ss", str(start)]
    if duration is not None:
        cmd += ["-t", str(duration)]
    if realtime:
        cmd += ["-re"]
    cmd += ["-i", str(wav)]
    if video:
        cmd += [
            "-f",
            "lavfi",
            "-i",
            "color=c=blue:s=320x240:r=15",
            "-map",
            "0:a",
            "-map",
            "1:v",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-pix_fmt",
            "yuv420p",
            "-shortest",
        ]
    cmd += ["-c:a", "aac", "-f", "flv", url]
    return cmd


def publish(url: str, wav: Path, **kw: object) -> subprocess.CompletedProcess[bytes]:
    """Run one ffmpeg publish to the end (or until the server closes it)."""
    return subprocess.run(
        ffmpeg_publish_cmd(url, wav, **kw),  # type: ignore[arg-type]
        capture_output=True,
        timeout=120,
    )


def frames_of(stream: EmbeddedStream, session_id: str) -> list[FrameRecord]:
    """Every frame record of a session, in stream order."""
    out: list[FrameRecord] = []
    for shard in stream.shard_ids:
        after = 0
        while True:
            batch = stream.read(shard, after, 500)
            if not batch:
                break
            after = batch[-1].seq
            out += [FrameRecord.decode(r.data) for r in batch if r.partition_key == session_id]
    return out


def all_records(stream: EmbeddedStream) -> int:
    """How many records the stream holds in total."""
    return sum(stream.latest_seq(s) for s in stream.shard_ids)
