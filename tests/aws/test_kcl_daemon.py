"""The processor under the real KCL MultiLangDaemon, against LocalStack Kinesis + moto DynamoDB.

One slow test carries the whole story, because every daemon start costs 20-80 s
(KCL's random wait on an empty lease table, leader election):

1. daemon #1 (in a thread, via ``KclDaemon.run``) runs the real engine (bundled tiny.en);
   the first 45 s of a meeting are put on Kinesis with ``KinesisWriter``;
2. once window 0 is committed, java and its Python child are SIGKILLed mid-window 1;
3. the rest of the meeting, a poison record and the end-of-stream record are put;
4. daemon #2 (a separate ``python`` process running ``KclDaemon``) resumes from the
   checkpoint; the transcript must equal a single-machine run of the same audio:
   no duplicate, no gap, same windows, same text; window audio is on S3;
   pyannote's real two-speaker sample, put after the meeting, comes out with
   exactly two speakers, every word whole-file Whisper finds, and RTTM DER <= 10 %
   (both daemons diarize with the offline pyannote pipeline);
5. SIGTERM to daemon #2's Python reaches java only, KCL shuts down gracefully
   (``shutdown_requested``) and the exit code is 0.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import boto3
import numpy as np
import pytest

from contracts.settings import Settings
from processor.engine import EngineParts, ShardProcessor
from processor.rttm import parse_rttm, segments_to_rttm, window_turns
from processor.windowing import WindowPolicy
from producer.decode import read_pcm
from producer.framer import SessionFramer
from stores.archive import NoArchive
from stores.s3_archive import S3Archive
from stores.sqlite import SqliteTranscriptStore
from streams.embedded import EmbeddedStream
from streams.kinesis.daemon import KclDaemon
from streams.kinesis.writer import KinesisWriter
from testkit.corpus import sample_recording
from testkit.evaluate import der, missing_words, segment_words, whole_file_asr, whole_file_run
from testkit.net import wait_for
from testkit.speech import Turn

ROOT = Path(__file__).resolve().parents[2]
FACTORY = "testkit.kcl_factories:build_diarized_engine"
#: Short lease timings so a killed worker's shard is taken over quickly.
FAST = {"failoverTimeMillis": 5000, "leaseAssignmentIntervalMillis": 1000, "shardSyncIntervalMillis": 5000}


def _reference(tmp: Path, pcm: np.ndarray, transcriber: object, policy: WindowPolicy, settings: Settings) -> list:
    """The single-machine run of the same audio: embedded stream, same engine."""
    from processor.build import build_diarizer, mapper_factory

    stream = EmbeddedStream(tmp / "ref-stream.db")
    framer = SessionFramer(stream, "meet-1")
    framer.push(pcm)
    framer.end()
    store = SqliteTranscriptStore(tmp / "ref.db")
    proc = ShardProcessor(
        EngineParts(
            transcriber=transcriber,  # type: ignore[arg-type]
            diarizer=build_diarizer(settings),
            mapper_factory=mapper_factory(settings),
            store=store,
            archive=NoArchive(),
            policy=policy,
        )
    )
    proc.initialize("shard-0", None)

    class _Nothing:
        def checkpoint(self, sequence_number: str | None = None) -> None:
            pass

    proc.process_records(stream.read("shard-0", 0, 100_000), _Nothing())
    return [(s.window_index, s.segment_index, s.start, s.end, s.text) for s in store.segments("meet-1")]


@pytest.mark.slow
def test_kcl_daemon_kill_restart_gives_the_single_machine_transcript(
    tmp_path: Path,
    aws_settings: Settings,
    make_stream: Callable[..., str],
    meeting: tuple[Path, list[Turn]],
    transcriber: object,
) -> None:
    path, _turns = meeting
    pcm = read_pcm(str(path))
    stream = make_stream(shards=1)
    store_path = tmp_path / "kcl-store.db"
    settings = aws_settings.replace(
        kinesis_stream_name=stream,
        kcl_application_name=f"flowbot-test-{uuid.uuid4().hex[:8]}",
        archive_bucket=aws_settings.archive_bucket or "flowbot-archive",
        log_level="INFO",
        diarization="offline",
    )
    policy = WindowPolicy(settings.window_seconds, settings.window_min_seconds, settings.window_min_silence_ms)
    env = dict(os.environ)
    env.update(
        {
            f"FLOWBOT_{k.upper()}": str(v)
            for k, v in {
                "kinesis_stream_name": stream,
                "kcl_application_name": settings.kcl_application_name,
                "kinesis_endpoint": settings.kinesis_endpoint,
                "dynamodb_endpoint": settings.dynamodb_endpoint,
                "s3_endpoint": settings.s3_endpoint,
                "cloudwatch_endpoint": settings.cloudwatch_endpoint,
                "archive_bucket": settings.archive_bucket,
                "aws_region": settings.aws_region,
                "diarization": settings.diarization,
            }.items()
        }
    )
    env.update(
        FLOWBOT_TEST_STORE=str(store_path),
        OMP_WAIT_POLICY="PASSIVE",
        AWS_ACCESS_KEY_ID=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        AWS_SECRET_ACCESS_KEY=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
    )
    store = SqliteTranscriptStore(store_path)

    # -- daemon #1 --------------------------------------------------------------------
    procs: list[subprocess.Popen[bytes]] = []
    codes: list[int] = []
    first = threading.Thread(
        target=lambda: codes.append(
            KclDaemon(
                settings,
                FACTORY,
                extra_properties=FAST,
                workdir=tmp_path / "kcl1",
                env=env,
                on_start=procs.append,
            ).run()
        ),
        daemon=True,
    )
    first.start()
    writer = KinesisWriter(settings)
    framer = SessionFramer(writer, "meet-1")
    split = 45 * 16_000
    try:
        framer.push(pcm[:split])
        framer.flush()
        writer.flush()
        wait_for(lambda: len(store.windows("meet-1")) >= 1, 240, what="window 0 committed by daemon #1", every=0.5)
        time.sleep(1.0)  # window 1 is open: its records are delivered, not committed
        windows_before_kill = len(store.windows("meet-1"))
    finally:
        if procs and procs[0].poll() is None:
            os.killpg(procs[0].pid, signal.SIGKILL)  # java and its Python child, no goodbye
        first.join(timeout=30)
    assert codes and codes[0] == -signal.SIGKILL
    assert windows_before_kill < 4, "the kill came too late to be mid-meeting"

    # -- the rest, a poison record, the end ---------------------------------------------
    kinesis = boto3.client("kinesis", endpoint_url=settings.kinesis_endpoint, region_name=settings.aws_region)
    kinesis.put_record(StreamName=stream, PartitionKey="meet-1", Data=b"\x00garbage, not a frame")
    framer.push(pcm[split:])
    framer.end()
    sample = sample_recording()
    sample_pcm = read_pcm(str(sample.path))
    sample_framer = SessionFramer(writer, "sample-1")
    sample_framer.push(sample_pcm)
    sample_framer.end()
    writer.close()

    # -- daemon #2 in its own process; SIGTERM at the end ----------------------------------
    log_path = tmp_path / "daemon2.log"
    script = (
        "import sys; from pathlib import Path; from contracts.logs import configure_logging;"
        "from contracts.settings import Settings; from streams.kinesis.daemon import KclDaemon;"
        "from streams.thread import run_until_signalled; configure_logging();"
        f"sys.exit(run_until_signalled(KclDaemon(Settings.from_env(), {FACTORY!r}, "
        f"extra_properties={FAST!r}, workdir=Path({str(tmp_path / 'kcl2')!r}))))"
    )
    with log_path.open("wb") as log_file:
        second = subprocess.Popen(
            [sys.executable, "-c", script], cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
        try:
            wait_for(
                lambda: all((p := store.load_progress(sid)) and p.stream_done for sid in ("meet-1", "sample-1")),
                600,
                what="sessions finished by daemon #2",
                every=0.5,
            )
            second.send_signal(signal.SIGTERM)
            code = second.wait(timeout=60)
        finally:
            if second.poll() is None:
                second.kill()
                second.wait()
    log_text = log_path.read_text(errors="replace")
    assert code == 0, log_text[-4000:]
    assert "malformed record skipped" in log_text
    assert "shutdown checkpoint taken" in log_text or "kcl shutdown requested" in log_text

    # -- same transcript as one machine, no gap, no duplicate ----------------------------------
    got = [(s.window_index, s.segment_index, s.start, s.end, s.text) for s in store.segments("meet-1")]
    assert got == _reference(tmp_path, pcm, transcriber, policy, settings)
    windows = store.windows("meet-1")
    assert [w.window_index for w in windows] == list(range(len(windows)))
    assert windows[0].start_sample == 0 and windows[-1].end_sample == len(pcm)
    assert all(a.end_sample == b.start_sample for a, b in itertools.pairwise(windows))
    assert "weekly planning meeting" in " ".join(g[4] for g in got).lower()
    # Window audio went to S3 and reads back sample-exact.
    archive = S3Archive(settings)
    w1 = windows[1]
    assert w1.audio_uri and w1.audio_uri.startswith(f"s3://{settings.archive_bucket}/")
    assert np.array_equal(archive.get(w1.audio_uri), pcm[w1.start_sample : w1.end_sample])

    # -- real conversation through KCL: two speakers, every word, RTTM from the stored turns --------
    segments = store.segments("sample-1")
    assert {s.speaker for s in segments} | {w.speaker for s in segments for w in s.words} == {"S1", "S2"}
    whole = whole_file_run(whole_file_asr(sample, transcriber))  # type: ignore[arg-type]
    assert missing_words(sample.text, whole.words, segment_words(segments)) == []
    rttm = parse_rttm(segments_to_rttm("sample-1", segments, turns=window_turns(store.windows("sample-1"))))
    assert der(sample.reference_turns(), [(t.start, t.end, t.speaker) for t in rttm])["der"] <= 0.10
