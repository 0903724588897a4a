"""Kinesis on LocalStack: put -> process_records latency under KCL, and producer throughput.

    python -m bench.kinesis_latency [--seconds 30] [--sessions 32]

Uses running emulators when FLOWBOT_KINESIS_ENDPOINT is set, otherwise starts them with
localstack/up (and stops them after). Prints, from one run:

- latency from the PutRecords call to the record arriving in our RecordProcessor's
  process_records under the real KCL MultiLangDaemon (POLLING, idle 250 ms): p50/p95;
- frames/s and bytes/s one KinesisWriter sustains into ONE shard, as ratios of the
  shard limits (1,000 records/s, 1 MiB/s), for 1 s frames (the real size, 32 KB) and
  for 0.1 s frames (records/s-bound).

LocalStack's kinesis-mock does not enforce the per-shard limits, so throughput above
1.0x means "the producer is not the bottleneck", not that AWS would accept it.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import boto3
import numpy as np

from contracts.frames import FrameRecord
from contracts.settings import Settings
from streams.kinesis.daemon import KclDaemon
from streams.kinesis.writer import (
    SHARD_BYTES_PER_SECOND,
    SHARD_RECORDS_PER_SECOND,
    KinesisWriter,
)
from testkit.emulators import start_emulators
from testkit.stats import percentile

ROOT = Path(__file__).resolve().parents[1]


def throughput(settings: Settings, sessions: int, frame_s: float, seconds: float) -> dict[str, float]:
    """Push frames of ``sessions`` sessions into a fresh 1-shard stream as fast as accepted."""
    client = boto3.client("kinesis", endpoint_url=settings.kinesis_endpoint, region_name=settings.aws_region)
    stream = f"bench-{uuid.uuid4().hex[:8]}"
    client.create_stream(StreamName=stream, ShardCount=1)
    client.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.2, "MaxAttempts": 300})
    samples = int(16_000 * frame_s)
    payload = np.zeros(samples, np.int16).tobytes()
    writer = KinesisWriter(settings, stream, buffer_seconds=1e6)
    seq = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        # Keep a bounded backlog so the sender always has a full batch ready.
        if writer.pending() < 4 * sessions:
            writer.put([FrameRecord(f"s{i}", seq, seq * samples, payload=payload) for i in range(sessions)])
            seq += 1
        else:
            time.sleep(0.001)
    writer.flush(timeout=120)
    elapsed = time.perf_counter() - t0
    writer.close()
    client.delete_stream(StreamName=stream)
    return {
        "records_per_s": writer.stats.records_sent / elapsed,
        "bytes_per_s": writer.stats.bytes_sent / elapsed,
        "calls_per_s": writer.stats.calls / elapsed,
    }


def latency(settings: Settings, env: dict[str, str], seconds: float, workdir: Path) -> list[float]:
    """put() -> process_records latencies (ms) under the KCL daemon with a recording processor."""
    client = boto3.client("kinesis", endpoint_url=settings.kinesis_endpoint, region_name=settings.aws_region)
    stream = f"bench-lat-{uuid.uuid4().hex[:8]}"
    client.create_stream(StreamName=stream, ShardCount=1)
    client.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.2, "MaxAttempts": 300})
    settings = settings.replace(kinesis_stream_name=stream, kcl_application_name=f"bench-{uuid.uuid4().hex[:8]}")
    sink = workdir / "sink.db"
    child_env = dict(
        env,
        FLOWBOT_TEST_SINK=str(sink),
        **{
            "FLOWBOT_KINESIS_STREAM_NAME": stream,
            "FLOWBOT_KCL_APPLICATION_NAME": settings.kcl_application_name,
        },
    )
    procs: list[subprocess.Popen[bytes]] = []
    kcl = KclDaemon(
        settings,
        "testkit.kcl_factories:build_recorder",
        env=child_env,
        workdir=workdir / "kcl",
        on_start=procs.append,
        extra_properties={"failoverTimeMillis": 5000, "leaseAssignmentIntervalMillis": 1000},
    )
    daemon = threading.Thread(target=kcl.run, daemon=True)
    daemon.start()
    writer = KinesisWriter(settings, stream)
    payload = np.zeros(16_000, np.int16).tobytes()

    def received(session: str) -> dict[int, float]:
        if not sink.exists():
            return {}
        with sqlite3.connect(sink, timeout=30) as db:
            try:
                rows = db.execute("SELECT frame_seq, received FROM records WHERE session = ?", (session,)).fetchall()
            except sqlite3.OperationalError:
                return {}
        return {int(s): float(r) for s, r in rows}

    # Warm-up: wait until the daemon holds the lease and delivers.
    writer.put([FrameRecord("warm", 0, 0, payload=payload)])
    deadline = time.time() + 240
    while not received("warm"):
        if time.time() > deadline:
            raise SystemExit("KCL daemon delivered nothing within 240 s")
        time.sleep(0.5)
    sent: dict[int, float] = {}
    for i in range(int(seconds * 10)):  # 10 frames/s, like ten live sessions
        sent[i] = time.time()
        writer.put([FrameRecord("lat", i, i * 16_000, payload=payload)])
        time.sleep(0.1)
    writer.close()
    deadline = time.time() + 30
    while len(received("lat")) < len(sent) and time.time() < deadline:
        time.sleep(0.5)
    got = received("lat")
    if procs:
        procs[0].terminate()
    daemon.join(timeout=60)
    return [(got[i] - t) * 1000 for i, t in sent.items() if i in got]


def main() -> None:
    """Run both measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--sessions", type=int, default=32)
    args = parser.parse_args()
    started: dict[str, str] | None = None
    exports: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="flowbot-bench-") as tmp:
        if os.environ.get("FLOWBOT_KINESIS_ENDPOINT"):
            env = dict(os.environ)
        else:
            exports, env = start_emulators(Path(tmp) / "run")
            started = env
        os.environ.update({k: v for k, v in exports.items() if k.startswith("AWS_")})
        env.update(exports)
        settings = Settings.from_env(env)
        try:
            big = throughput(settings, args.sessions, 1.0, args.seconds / 2)
            small = throughput(settings, args.sessions, 0.1, args.seconds / 2)
            lat = latency(settings, env, args.seconds, Path(tmp))
        finally:
            if started is not None:
                subprocess.run([str(ROOT / "localstack" / "down")], env=started, check=False)
    print(f"one producer -> one shard, {args.sessions} sessions, LocalStack kinesis-mock:")
    for name, r in (("1 s frames (32 KB)", big), ("0.1 s frames (3.2 KB)", small)):
        print(
            f"  {name:<22} {r['records_per_s']:8.0f} records/s = "
            f"{r['records_per_s'] / SHARD_RECORDS_PER_SECOND:5.2f}x shard record limit; "
            f"{r['bytes_per_s'] / 1e6:6.2f} MB/s = "
            f"{r['bytes_per_s'] / SHARD_BYTES_PER_SECOND:5.2f}x shard byte limit; "
            f"{r['calls_per_s']:5.0f} PutRecords/s"
        )
    print(
        f"  live audio needs 1 record/s and 32,000 B/s per session: one shard carries "
        f"{SHARD_BYTES_PER_SECOND // 32_100} sessions by bytes"
    )
    print(
        f"put -> process_records under KCL (POLLING, idle 250 ms): n={len(lat)} "
        f"p50={percentile(lat, 50):.0f} ms p95={percentile(lat, 95):.0f} ms "
        f"max={max(lat) if lat else float('nan'):.0f} ms"
    )


if __name__ == "__main__":
    main()
