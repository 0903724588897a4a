"""Added end-to-end latency of the Kinesis + KCL path over the embedded stream, same file, one run.

    .venv/bin/python -m bench.kinesis_e2e [--seconds 0] [--window 15] [--min-window 8]
                                          [--sequential]

The meeting test recording (flite voices, ~100 s; ``--seconds`` trims it) is replayed at
1x wall clock with ``producer.file_ingest.ingest_file(..., realtime=True)`` into

- (a) an embedded stream consumed in-process (EmbeddedConsumer + ShardProcessor), and
- (b) a KinesisWriter on LocalStack, consumed by the KCL MultiLangDaemon whose child runs
  the same engine (``testkit.kcl_factories:build_engine``: bundled tiny.en, beam 5,
  one speaker, S3 archive, SQLite store).

Both paths use the same engine parts (the embedded side archives to the same S3 too), so
only the stream differs. Two figures per path:

- window latency = the store's commit time (``revisions.at``) - the wall time the
  window's last sample was heard (replay start + window end sample / 16 kHz): p50/p95,
  and the per-window paired difference (same audio, so the same windows on both paths);
- frame delivery = the time a frame record reached ``process_records`` (both engines are
  wrapped in :class:`ArrivalRecorder`) - the time its last sample was heard: the stream's
  own share, without ASR.

By default the two replays run at the same time, so both see the same machine load (this
box is shared), the embedded one ``--stagger`` seconds later so the two engines' ASR
bursts mostly do not overlap; ``--sequential`` runs them one after the other.

Uses running emulators when FLOWBOT_KINESIS_ENDPOINT is set, otherwise starts them with
localstack/up and stops them after. KCL's start-up (20-80 s) is paid once, before the
replay, with a short warm-up session on both paths.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import boto3

from contracts.frames import SAMPLE_RATE, FrameRecord, MalformedRecord
from contracts.settings import Settings
from processor.asr import AsrOptions, WhisperTranscriber
from processor.diarization import IdentityMapper, SingleSpeakerDiarizer
from processor.engine import EngineParts, ShardProcessor
from processor.windowing import WindowPolicy
from producer.decode import read_pcm
from producer.file_ingest import ingest_file
from stores.s3_archive import S3Archive
from stores.sqlite import SqliteTranscriptStore
from streams.base import Checkpointer, RecordProcessor, StreamRecord, StreamWriter
from streams.embedded import EmbeddedConsumer, EmbeddedStream
from streams.kinesis.writer import KinesisWriter
from testkit.emulators import start_emulators
from testkit.speech import meeting_wav, write_wav
from testkit.stats import percentile

ROOT = Path(__file__).resolve().parents[1]

log = logging.getLogger("bench.kinesis_e2e")
FACTORY = "bench.kinesis_e2e:build_timed_engine"
ARRIVALS_ENV = "FLOWBOT_BENCH_ARRIVALS"
KCL_PROPS = {"failoverTimeMillis": 5000, "leaseAssignmentIntervalMillis": 1000, "shardSyncIntervalMillis": 5000}


class ArrivalRecorder:
    """RecordProcessor wrapper: notes when each frame reaches the processor, then delegates.

    Both paths wrap their engine in it, so "frame put -> process_records" is measured the
    same way on each (it excludes ASR except where a busy processor delays the next batch).
    """

    def __init__(self, delegate: RecordProcessor, path: Path | str) -> None:
        self.delegate = delegate
        self.db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS arrivals (session TEXT, end_sample INTEGER, at REAL)")

    def initialize(self, shard_id: str, starting_sequence_number: str | None) -> None:
        """See :class:`streams.base.RecordProcessor`."""
        self.delegate.initialize(shard_id, starting_sequence_number)

    def process_records(self, records: Sequence[StreamRecord], checkpointer: Checkpointer) -> None:
        """Note the arrival of every decodable frame, then hand the batch on."""
        now = time.time()
        rows = []
        for r in records:
            try:
                frame = FrameRecord.decode(r.data)
            except MalformedRecord:
                continue
            rows.append((frame.session_id, frame.end_offset, now))
        self.db.executemany("INSERT INTO arrivals VALUES (?,?,?)", rows)
        self.delegate.process_records(records, checkpointer)

    def lease_lost(self) -> None:
        """See :class:`streams.base.RecordProcessor`."""
        self.delegate.lease_lost()

    def shard_ended(self, checkpointer: Checkpointer) -> None:
        """See :class:`streams.base.RecordProcessor`."""
        self.delegate.shard_ended(checkpointer)

    def shutdown_requested(self, checkpointer: Checkpointer) -> None:
        """See :class:`streams.base.RecordProcessor`."""
        self.delegate.shutdown_requested(checkpointer)


def build_timed_engine(settings: Settings) -> ArrivalRecorder:
    """KCL child factory: the test engine (``testkit.kcl_factories:build_engine``), timed."""
    from testkit.kcl_factories import build_engine

    return ArrivalRecorder(build_engine(settings), os.environ[ARRIVALS_ENV])


def arrivals(path: Path, session: str) -> list[tuple[int, float]]:
    """(frame end sample, wall time it reached the processor) of a session's frames."""
    with sqlite3.connect(path, timeout=30) as db:
        return [
            (int(e), float(a))
            for e, a in db.execute("SELECT end_sample, at FROM arrivals WHERE session = ?", (session,))
        ]


def commits(store_path: Path, session: str) -> dict[int, tuple[int, float]]:
    """window index -> (end sample, wall time of its commit) from the SQLite store."""
    if not store_path.exists():
        return {}
    with sqlite3.connect(store_path, timeout=30) as db:
        try:
            rows = db.execute(
                "SELECT w.window_index, w.end_sample, r.at FROM windows w "
                "JOIN revisions r ON r.id = w.revision WHERE w.session_id = ?",
                (session,),
            ).fetchall()
        except sqlite3.OperationalError:  # the child has not created the schema yet
            return {}
    return {int(i): (int(end), float(at)) for i, end, at in rows}


def stream_done(store_path: Path, session: str) -> bool:
    """True once the processor has handled the session's end-of-stream record."""
    if not store_path.exists():
        return False
    with sqlite3.connect(store_path, timeout=30) as db:
        try:
            row = db.execute(
                "SELECT ended_sample, committed_sample FROM progress WHERE session_id = ?", (session,)
            ).fetchone()
        except sqlite3.OperationalError:
            return False
    return bool(row and row[0] is not None and row[1] >= row[0])


def wait(what: str, cond: Callable[[], bool], timeout: float, daemon: subprocess.Popen[bytes]) -> None:
    """Poll ``cond`` until true; exit with a message on timeout or daemon death."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        if daemon.poll() is not None:
            raise SystemExit(f"KCL daemon exited ({daemon.returncode}) while waiting for {what}")
        time.sleep(0.1)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def replay(path: Path, writer: StreamWriter, session: str, starts: dict[str, float], delay: float = 0.0) -> None:
    """Real-time replay after ``delay`` seconds; records the wall time it started."""
    time.sleep(delay)
    starts[session] = time.time()
    ingest_file(path, writer, session, realtime=True)


def main() -> None:
    """Run both paths on the same file and print the latency figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=0.0, help="replay only the first SECONDS of the meeting (0 = all, ~100 s)"
    )
    parser.add_argument("--window", type=float, default=15.0, help="FLOWBOT_WINDOW_SECONDS")
    parser.add_argument("--min-window", type=float, default=8.0, help="FLOWBOT_WINDOW_MIN_SECONDS")
    parser.add_argument(
        "--stagger", type=float, default=7.5, help="start the embedded replay this many seconds after the Kinesis one"
    )
    parser.add_argument(
        "--sequential", action="store_true", help="replay the paths one after the other instead of together"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    started_env: dict[str, str] | None = None
    with tempfile.TemporaryDirectory(prefix="flowbot-bench-e2e-") as tmp_name:
        tmp = Path(tmp_name)
        exports: dict[str, str] = {}
        if os.environ.get("FLOWBOT_KINESIS_ENDPOINT"):
            env = dict(os.environ)
        else:
            exports, started_env = start_emulators(tmp / "run")
            env = dict(started_env, **exports)
        os.environ.update({k: v for k, v in exports.items() if k.startswith("AWS_")})
        try:
            result = run(tmp, env, args)
        finally:
            if started_env is not None:
                subprocess.run([str(ROOT / "localstack" / "down")], env=started_env, check=False, capture_output=True)
    report(result, args)


def run(tmp: Path, env: dict[str, str], args: argparse.Namespace) -> dict[str, object]:
    """Both replays; returns per-path window latencies and context for the report."""
    base = Settings.from_env(env)
    stream_name = f"bench-e2e-{uuid.uuid4().hex[:8]}"
    settings = base.replace(
        kinesis_stream_name=stream_name,
        kcl_application_name=f"bench-e2e-{uuid.uuid4().hex[:8]}",
        archive_bucket=base.archive_bucket or "flowbot-archive",
        window_seconds=args.window,
        window_min_seconds=args.min_window,
    )
    kinesis = boto3.client("kinesis", endpoint_url=settings.kinesis_endpoint, region_name=settings.aws_region)
    kinesis.create_stream(StreamName=stream_name, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream_name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 300})

    # The test recording, made on the spot with flite (never stored in git).
    full, _turns = meeting_wav(tmp / "speech")
    pcm = read_pcm(str(full))
    if args.seconds:
        pcm = pcm[: int(args.seconds * SAMPLE_RATE)]
    audio = write_wav(tmp / "replay.wav", pcm)
    warm = write_wav(tmp / "warm.wav", pcm[: 3 * SAMPLE_RATE])

    # (b) KCL daemon in its own process (as deployed), the engine in its child.
    kcl_store = tmp / "kcl-store.db"
    child_env = dict(env)
    child_env.update(
        {
            f"FLOWBOT_{k.upper()}": str(v)
            for k, v in {
                "kinesis_stream_name": stream_name,
                "kcl_application_name": settings.kcl_application_name,
                "archive_bucket": settings.archive_bucket,
                "window_seconds": settings.window_seconds,
                "window_min_seconds": settings.window_min_seconds,
                "log_level": "WARNING",
            }.items()
        }
    )
    kcl_arrivals = tmp / "kcl-arrivals.db"
    child_env.update(
        {"FLOWBOT_TEST_STORE": str(kcl_store), ARRIVALS_ENV: str(kcl_arrivals), "OMP_WAIT_POLICY": "PASSIVE"}
    )
    child_env.setdefault("AWS_ACCESS_KEY_ID", "test")
    child_env.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    script = (
        "import sys; from pathlib import Path; from contracts.logs import configure_logging;"
        "from contracts.settings import Settings; from streams.kinesis.daemon import KclDaemon;"
        "from streams.thread import run_until_signalled; configure_logging('WARNING');"
        f"sys.exit(run_until_signalled(KclDaemon(Settings.from_env().replace(log_level='INFO'), "
        f"{FACTORY!r}, extra_properties={KCL_PROPS!r}, "
        f"workdir=Path({str(tmp / 'kcl')!r}))))"
    )
    daemon_log = tmp / "daemon.log"
    with daemon_log.open("wb") as out:
        daemon = subprocess.Popen(
            [sys.executable, "-c", script], cwd=ROOT, env=child_env, stdout=out, stderr=subprocess.STDOUT
        )
    t_daemon = time.monotonic()

    # (a) embedded stream + in-process consumer, same engine parts as the KCL child.
    local_store = tmp / "local-store.db"
    local_stream = EmbeddedStream(tmp / "stream.db")
    parts = EngineParts(
        transcriber=WhisperTranscriber(
            "bundled:tiny.en", device="cpu", cpu_threads=settings.cpu_threads, options=AsrOptions(beam_size=5)
        ),
        diarizer=SingleSpeakerDiarizer(),
        mapper_factory=lambda state: IdentityMapper(state),
        store=SqliteTranscriptStore(local_store),
        archive=S3Archive(settings),
        policy=WindowPolicy(settings.window_seconds, settings.window_min_seconds, settings.window_min_silence_ms),
    )
    local_arrivals = tmp / "local-arrivals.db"
    consumer = EmbeddedConsumer(local_stream, "bench", lambda: ArrivalRecorder(ShardProcessor(parts), local_arrivals))
    consumer_thread = threading.Thread(target=consumer.run, name="embedded", daemon=True)
    consumer_thread.start()
    writer = KinesisWriter(settings)
    paths: dict[str, tuple[StreamWriter, Path]] = {
        "kinesis": (writer, kcl_store),
        "embedded": (local_stream, local_store),
    }
    arrival_dbs = {"kinesis": kcl_arrivals, "embedded": local_arrivals}
    try:
        # Warm-up: the KCL lease is held, both models are loaded and have run once.
        for name, (w, _store) in paths.items():
            ingest_file(warm, w, f"warm-{name}")
        for name, (_w, store) in paths.items():
            wait(f"warm-up of the {name} path", partial(stream_done, store, f"warm-{name}"), 300, daemon)
        kcl_ready_s = time.monotonic() - t_daemon

        starts: dict[str, float] = {}
        # Staggered by half a window, the two engines' ASR bursts mostly do not overlap.
        stagger = 0.0 if args.sequential else args.stagger
        threads = [
            threading.Thread(target=replay, args=(audio, w, f"run-{name}", starts, i * stagger), name=f"replay-{name}")
            for i, (name, (w, _s)) in enumerate(paths.items())
        ]
        for t in threads:
            t.start()
            if args.sequential:
                t.join()
                name = t.name.removeprefix("replay-")
                wait(f"{name} path to finish", partial(stream_done, paths[name][1], f"run-{name}"), 300, daemon)
        for t in threads:
            t.join()
        for name, (_w, store) in paths.items():
            wait(f"{name} path to finish", partial(stream_done, store, f"run-{name}"), 300, daemon)
        writer.close()
    finally:
        consumer.stop()
        consumer_thread.join(timeout=60)
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=90)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
    if daemon.returncode != 0:
        sys.stderr.write(daemon_log.read_text(errors="replace")[-4000:])
        raise SystemExit(f"KCL daemon exit code {daemon.returncode}")

    latencies: dict[str, dict[int, float]] = {}
    delivery: dict[str, list[float]] = {}
    ends: dict[str, list[int]] = {}
    for name, (_w, store) in paths.items():
        session = f"run-{name}"
        rows = commits(store, session)
        t0 = starts[session]
        latencies[name] = {i: at - (t0 + end / SAMPLE_RATE) for i, (end, at) in rows.items()}
        ends[name] = [end for _i, (end, _at) in sorted(rows.items())]
        delivery[name] = [at - (t0 + end / SAMPLE_RATE) for end, at in arrivals(arrival_dbs[name], session)]
    if ends["embedded"] != ends["kinesis"]:
        raise SystemExit(f"the paths cut different windows: {ends}")
    return {
        "latencies": latencies,
        "delivery": delivery,
        "seconds": pcm.size / SAMPLE_RATE,
        "kcl_ready_s": kcl_ready_s,
        "windows": len(ends["kinesis"]),
    }


def _summary(ms: list[float]) -> str:
    return f"p50={percentile(ms, 50):6.0f} ms  p95={percentile(ms, 95):6.0f} ms  max={max(ms):6.0f} ms"


def report(result: dict[str, object], args: argparse.Namespace) -> None:
    """Print the figures."""
    lat: dict[str, dict[int, float]] = result["latencies"]  # type: ignore[assignment]
    dlv: dict[str, list[float]] = result["delivery"]  # type: ignore[assignment]
    mode = "one after the other" if args.sequential else f"at the same time (embedded {args.stagger:g} s behind)"
    print(
        f"{result['seconds']:.1f} s meeting replayed at 1x on both paths {mode}; "
        f"windows {args.window:g} s (cut >= {args.min_window:g} s): "
        f"{result['windows']} windows per path; "
        f"KCL daemon start to warm-up done: {result['kcl_ready_s']:.0f} s (not in the figures)"
    )
    print("latency = window commit time - wall time its last sample was heard:")
    for name in ("embedded", "kinesis"):
        ms = [v * 1000 for v in lat[name].values()]
        print(f"  {name:<9} n={len(ms):2d} {_summary(ms)}")
    diffs = [(lat["kinesis"][i] - lat["embedded"][i]) * 1000 for i in lat["kinesis"]]
    p50_add = percentile([v * 1000 for v in lat["kinesis"].values()], 50) - percentile(
        [v * 1000 for v in lat["embedded"].values()], 50
    )
    p95_add = percentile([v * 1000 for v in lat["kinesis"].values()], 95) - percentile(
        [v * 1000 for v in lat["embedded"].values()], 95
    )
    print(
        f"added by Kinesis + KCL: p50 {p50_add:+.0f} ms, p95 {p95_add:+.0f} ms; "
        f"per window (paired) median {percentile(diffs, 50):+.0f} ms, "
        f"min {min(diffs):+.0f} ms, max {max(diffs):+.0f} ms"
    )
    print("frame delivery = record reaches process_records - wall time its last sample was heard (no ASR in it):")
    for name in ("embedded", "kinesis"):
        ms = [v * 1000 for v in dlv[name]]
        print(f"  {name:<9} n={len(ms):3d} {_summary(ms)}")
    kinesis_ms, embedded_ms = [v * 1000 for v in dlv["kinesis"]], [v * 1000 for v in dlv["embedded"]]
    print(
        f"added by Kinesis + KCL: p50 "
        f"{percentile(kinesis_ms, 50) - percentile(embedded_ms, 50):+.0f} ms, "
        f"p95 {percentile(kinesis_ms, 95) - percentile(embedded_ms, 95):+.0f} ms"
    )


if __name__ == "__main__":
    main()
