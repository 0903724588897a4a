"""RTMP -> Kinesis (LocalStack) -> KCL MultiLangDaemon -> engine -> SQLite, against the single-machine path.

One slow test, one daemon start (KCL's startup alone costs 20-80 s here):

- the first 40 s of the meeting are published by ffmpeg over RTMP twice at once: to an
  :class:`RtmpRelay` whose hub writes to Kinesis, and to a second one writing to an
  :class:`EmbeddedStream` that an in-process :class:`EmbeddedConsumer` runs through a
  :class:`ShardProcessor` with the same engine parts and window policy;
- the KCL daemon (a ``python`` process running ``KclDaemon``, so SIGTERM reaches it as
  in production) runs the real engine from ``testkit.kcl_factories:build_engine``;
- both paths must carry the same frames (same PCM, same framing) and produce the same
  transcript; the session ends with END on both, and SIGTERM stops KCL with exit code 0.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from contracts.frames import SAMPLE_RATE, FrameKind, FrameRecord
from contracts.settings import Settings
from processor.diarization import IdentityMapper, SingleSpeakerDiarizer
from processor.engine import EngineParts, ShardProcessor
from processor.windowing import WindowPolicy
from producer.hub import IngestHub
from producer.rtmp_relay import RtmpRelay
from stores.s3_archive import S3Archive
from stores.sqlite import SqliteTranscriptStore
from streams.embedded import EmbeddedConsumer, EmbeddedStream
from streams.kinesis.writer import KinesisWriter
from testkit.net import wait_for
from testkit.speech import Turn
from tests.aws.conftest import read_stream

ROOT = Path(__file__).resolve().parents[2]
FACTORY = "testkit.kcl_factories:build_engine"
FAST = {"failoverTimeMillis": 5000, "leaseAssignmentIntervalMillis": 1000, "shardSyncIntervalMillis": 5000}
PUBLISH_SECONDS = 40
#: Short windows so 40 s of audio makes several (cut at a pause between 8 and 15 s).
WINDOW = {"window_seconds": 15.0, "window_min_seconds": 8.0}

Row = tuple[int, int, float, float, str]


def _require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        message = f"{binary} is not installed (scripts/setup.d/10-ingest.sh installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def _publish(path: Path, url: str) -> subprocess.Popen[bytes]:
    """ffmpeg publishing the first PUBLISH_SECONDS of ``path`` in real time, AAC in FLV."""
    return subprocess.Popen(
        [
            _require("ffmpeg"),
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-re",
            "-i",
            str(path),
            "-t",
            str(PUBLISH_SECONDS),
            "-c:a",
            "aac",
            "-ar",
            "44100",
            "-f",
            "flv",
            url,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _rows(store: SqliteTranscriptStore, session: str) -> list[Row]:
    return [(s.window_index, s.segment_index, s.start, s.end, s.text) for s in store.segments(session)]


def _done(store: SqliteTranscriptStore, session: str) -> bool:
    progress = store.load_progress(session)
    return bool(progress and progress.stream_done)


def _layout(frames: list[FrameRecord]) -> list[tuple[int, int, int, FrameKind]]:
    return [(f.seq, f.sample_offset, f.num_samples, f.kind) for f in frames]


def _pcm(frames: list[FrameRecord]) -> np.ndarray:
    return np.frombuffer(b"".join(f.payload for f in frames if f.kind == FrameKind.AUDIO), dtype="<i2")


def _embedded_frames(stream: EmbeddedStream, session: str) -> list[FrameRecord]:
    out: list[FrameRecord] = []
    for shard in stream.shard_ids:
        after = 0
        while batch := stream.read(shard, after, 500):
            after = batch[-1].seq
            out += [FrameRecord.decode(r.data) for r in batch if r.partition_key == session]
    return out


def _daemon_env(settings: Settings, store_path: Path) -> dict[str, str]:
    """Environment of the daemon process: the emulators, the stream, the test store."""
    env = dict(os.environ)
    env.update(
        {
            f"FLOWBOT_{k.upper()}": str(v)
            for k, v in {
                "kinesis_stream_name": settings.kinesis_stream_name,
                "kcl_application_name": settings.kcl_application_name,
                "kinesis_endpoint": settings.kinesis_endpoint,
                "dynamodb_endpoint": settings.dynamodb_endpoint,
                "s3_endpoint": settings.s3_endpoint,
                "cloudwatch_endpoint": settings.cloudwatch_endpoint,
                "archive_bucket": settings.archive_bucket,
                "aws_region": settings.aws_region,
                "window_seconds": settings.window_seconds,
                "window_min_seconds": settings.window_min_seconds,
                "window_min_silence_ms": settings.window_min_silence_ms,
                "cpu_threads": settings.cpu_threads,
                "log_level": "INFO",
            }.items()
        }
    )
    env.update(
        FLOWBOT_TEST_STORE=str(store_path),
        OMP_WAIT_POLICY="PASSIVE",
        AWS_ACCESS_KEY_ID=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        AWS_SECRET_ACCESS_KEY=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
    )
    return env


def _start_daemon(env: dict[str, str], workdir: Path, log_path: Path) -> subprocess.Popen[bytes]:
    script = (
        "import sys; from pathlib import Path; from contracts.logs import configure_logging;"
        "from contracts.settings import Settings; from streams.kinesis.daemon import KclDaemon;"
        "from streams.thread import run_until_signalled; configure_logging();"
        f"sys.exit(run_until_signalled(KclDaemon(Settings.from_env(), {FACTORY!r}, "
        f"extra_properties={FAST!r}, workdir=Path({str(workdir)!r}))))"
    )
    with log_path.open("wb") as log_file:
        return subprocess.Popen(
            [sys.executable, "-c", script], cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT
        )


@pytest.mark.slow
def test_rtmp_to_kinesis_kcl_equals_the_single_machine_path(
    tmp_path: Path,
    aws_settings: Settings,
    make_stream: Callable[..., str],
    meeting: tuple[Path, list[Turn]],
    transcriber: object,
) -> None:
    path, _turns = meeting
    stream_name = make_stream(shards=1)
    settings = aws_settings.replace(
        kinesis_stream_name=stream_name,
        kcl_application_name=f"flowbot-e2e-{uuid.uuid4().hex[:8]}",
        archive_bucket=aws_settings.archive_bucket or "flowbot-archive",
        **WINDOW,
    )
    policy = WindowPolicy(settings.window_seconds, settings.window_min_seconds, settings.window_min_silence_ms)
    kcl_store_path = tmp_path / "kcl-store.db"
    kcl_store = SqliteTranscriptStore(kcl_store_path)
    log_path = tmp_path / "daemon.log"

    # The daemon starts first: its 20-80 s start-up overlaps the 40 s publish, and
    # TRIM_HORIZON means it reads everything put before it held the lease.
    daemon = _start_daemon(_daemon_env(settings, kcl_store_path), tmp_path / "kcl", log_path)

    # -- the single-machine path: embedded stream, in-process consumer, same engine parts --
    local_stream = EmbeddedStream(tmp_path / "stream.db")
    local_store = SqliteTranscriptStore(tmp_path / "local-store.db")
    parts = EngineParts(
        transcriber=transcriber,  # type: ignore[arg-type]
        diarizer=SingleSpeakerDiarizer(),
        mapper_factory=lambda state: IdentityMapper(state),
        store=local_store,
        archive=S3Archive(settings),
        policy=policy,
    )
    consumer = EmbeddedConsumer(local_stream, "e2e", lambda: ShardProcessor(parts))
    consumer_thread = threading.Thread(target=consumer.run, name="embedded-consumer", daemon=True)
    consumer_thread.start()

    writer = KinesisWriter(settings)
    kinesis_hub, local_hub = IngestHub(writer), IngestHub(local_stream)
    via_kinesis = RtmpRelay(kinesis_hub, "127.0.0.1", 0, publish_timeout=15, read_timeout=15)
    via_local = RtmpRelay(local_hub, "127.0.0.1", 0, publish_timeout=15, read_timeout=15)
    kin_sid, loc_sid = "e2e-kinesis", "e2e-local"
    try:
        via_kinesis.start()
        via_local.start()
        kinesis_hub.register(kin_sid, "key-kinesis")
        local_hub.register(loc_sid, "key-local")
        publishers = [
            _publish(path, f"rtmp://127.0.0.1:{via_kinesis.port}/live/key-kinesis"),
            _publish(path, f"rtmp://127.0.0.1:{via_local.port}/live/key-local"),
        ]
        for pub in publishers:
            _, err = pub.communicate(timeout=PUBLISH_SECONDS + 60)
            assert pub.returncode == 0, err.decode(errors="replace")
        # ffmpeg exits once its bytes are sent; the ingest decodes what is still in flight.
        wait_for(
            lambda: not kinesis_hub.stats(kin_sid).connected and not local_hub.stats(loc_sid).connected,
            30,
            what="both publishers drained",
            every=0.25,
        )
        kinesis_hub.end(kin_sid)
        local_hub.end(loc_sid)
        writer.close()  # flush: every record, END included, is on Kinesis

        wait_for(lambda: _done(local_store, loc_sid), 240, what="the single-machine path to finish", every=0.25)
        consumer.stop()
        consumer_thread.join(timeout=60)
        wait_for(lambda: _done(kcl_store, kin_sid), 360, what="the KCL path to finish", every=0.25)
        assert daemon.poll() is None, log_path.read_text(errors="replace")[-4000:]
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=90)
    finally:
        via_kinesis.stop()
        via_local.stop()
        consumer.stop()
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    log_text = log_path.read_text(errors="replace")
    assert code == 0, log_text[-4000:]
    assert "kcl shutdown requested" in log_text or "shutdown checkpoint taken" in log_text, log_text[-4000:]

    # -- the same frames went down both paths ------------------------------------------
    kin_frames = [FrameRecord.decode(r["Data"]) for r in read_stream(settings, stream_name)]
    assert {f.session_id for f in kin_frames} == {kin_sid}
    loc_frames = _embedded_frames(local_stream, loc_sid)
    kin_pcm, loc_pcm = _pcm(kin_frames), _pcm(loc_frames)
    # ffmpeg's AAC encoder and PyAV's decoder + resampler are deterministic for the same
    # input, and framing is by sample count, so both streams carry identical records.
    assert kin_pcm.size == loc_pcm.size, (kin_pcm.size, loc_pcm.size)
    assert np.array_equal(kin_pcm, loc_pcm)
    assert _layout(kin_frames) == _layout(loc_frames)
    assert kin_frames[-1].kind == FrameKind.END
    assert abs(kin_pcm.size / SAMPLE_RATE - PUBLISH_SECONDS) < 0.2  # AAC priming/padding
    assert float(np.abs(kin_pcm.astype(np.float32)).mean()) > 100  # speech, not silence

    # -- the same transcript ---------------------------------------------------------------
    got, want = _rows(kcl_store, kin_sid), _rows(local_store, loc_sid)
    assert got == want
    windows = kcl_store.windows(kin_sid)
    assert len(windows) >= 3, windows
    assert [(w.start_sample, w.end_sample) for w in windows] == [
        (w.start_sample, w.end_sample) for w in local_store.windows(loc_sid)
    ]
    assert windows[-1].end_sample == kin_pcm.size
    assert all(w.status == "done" for w in windows)
    assert "weekly planning meeting" in " ".join(r[4] for r in got).lower()
