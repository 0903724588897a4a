"""KinesisWriter against LocalStack's Kinesis: batching, per-session order, throttling, limits."""

from __future__ import annotations

import random
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from contracts.frames import FrameRecord, end_of_stream
from contracts.settings import Settings
from streams.base import StreamUnavailable
from streams.kinesis.writer import KinesisWriter, kinesis_client
from testkit.net import free_port
from tests.aws.conftest import read_stream


def _frames(session: str, count: int, samples: int = 16_000) -> list[FrameRecord]:
    rng = np.random.default_rng(abs(hash(session)) % 2**32)
    out = [
        FrameRecord(session, i, i * samples, payload=rng.integers(-3000, 3000, samples, np.int16).tobytes())
        for i in range(count)
    ]
    return [*out, end_of_stream(session, count, count * samples)]


def _per_session(records: list[dict[str, Any]]) -> dict[str, list[int]]:
    seqs: dict[str, list[int]] = defaultdict(list)
    for r in records:
        frame = FrameRecord.decode(r["Data"])
        assert frame.partition_key == r["PartitionKey"]
        seqs[frame.session_id].append(frame.seq)
    return seqs


def test_batches_across_sessions_and_keeps_each_session_in_order(
    aws_settings: Settings, make_stream: Callable[..., str]
) -> None:
    stream = make_stream(shards=2)
    real = kinesis_client(aws_settings)
    calls: list[list[str]] = []

    class Recording:
        def put_records(self, **kw: Any) -> Any:
            calls.append([r["PartitionKey"] for r in kw["Records"]])
            return real.put_records(**kw)

    writer = KinesisWriter(Recording(), stream, max_batch_records=7)
    sessions = {f"sess-{i}": _frames(f"sess-{i}", 25, samples=4000) for i in range(9)}
    # Interleave calls the way concurrent ingest threads would.
    for i in range(26):
        writer.put([frames[i] for frames in sessions.values()])
    writer.close()

    got = _per_session(read_stream(aws_settings, stream))
    assert got == {sid: list(range(26)) for sid in sessions}
    assert writer.stats.records_sent == 9 * 26
    # Batched across sessions, at most 7 per call, never two of one session in a call.
    assert all(len(keys) <= 7 and len(set(keys)) == len(keys) for keys in calls)
    assert max(len(keys) for keys in calls) == 7
    assert len(calls) == writer.stats.calls < 9 * 26 / 3
    assert writer.stats.failed_entries == 0


class FlakyKinesis:
    """Wraps a real client: whole calls throttled, and random entries failed per call.

    Failed entries are not forwarded, exactly as Kinesis leaves them unwritten;
    the others are written in their original order.
    """

    def __init__(self, real: Any, seed: int = 7) -> None:
        self.real = real
        self.rng = random.Random(seed)
        self.calls = 0
        self.lock = threading.Lock()

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        with self.lock:
            self.calls += 1
            call = self.calls
        if call % 4 == 0:
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
                "PutRecords",
            )
        fail = [self.rng.random() < 0.35 for _ in Records]
        passed = [r for r, f in zip(Records, fail, strict=True) if not f]
        written = self.real.put_records(StreamName=StreamName, Records=passed) if passed else {}
        real = iter(written.get("Records", []))
        entries = []
        for f in fail:
            if f:
                entries.append(
                    {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded for shard"}
                )
            else:
                entries.append(next(real))
        return {"FailedRecordCount": sum(fail), "Records": entries}


def test_throttled_calls_and_partial_failures_lose_nothing_and_keep_order(
    aws_settings: Settings, make_stream: Callable[..., str]
) -> None:
    stream = make_stream(shards=1)
    flaky = FlakyKinesis(kinesis_client(aws_settings))
    writer = KinesisWriter(flaky, stream, base_backoff=0.005, max_backoff=0.05, buffer_seconds=600)
    sessions = {f"m-{i}": _frames(f"m-{i}", 40, samples=1600) for i in range(6)}
    for i in range(41):
        writer.put([frames[i] for frames in sessions.values()])
    writer.close(timeout=120)

    got = _per_session(read_stream(aws_settings, stream))
    assert got == {sid: list(range(41)) for sid in sessions}, "frame lost, doubled or reordered"
    assert writer.stats.failed_entries > 20
    assert writer.stats.call_errors >= 5
    assert writer.stats.throttled_entries > writer.stats.failed_entries
    assert writer.stats.records_sent == 6 * 41


def test_full_buffer_raises_stream_unavailable_and_keeps_what_was_accepted() -> None:
    # Nothing listens on this port: every call fails with a connection error.
    client = boto3.client(
        "kinesis",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=0.2),
    )
    writer = KinesisWriter(client, "down", buffer_seconds=3.0, put_timeout=0.3, base_backoff=0.01, max_backoff=0.05)
    frames = _frames("s1", 5)
    writer.put(frames[:3])  # exactly 3 s of audio: fits
    with pytest.raises(StreamUnavailable, match=r"buffer limit 3\.0 s"):
        writer.put([frames[3]])
    assert writer.pending() == 3  # nothing accepted is dropped
    # Another session has its own budget.
    writer.put(_frames("s2", 1)[:1])
    assert writer.pending() == 4
    with pytest.raises(StreamUnavailable, match="still unsent"):
        writer.close(timeout=0.5)
    assert writer.stats.call_errors > 0


def test_bad_record_rejects_the_whole_call(aws_settings: Settings, make_stream: Callable[..., str]) -> None:
    stream = make_stream()
    writer = KinesisWriter(aws_settings, stream)
    good = _frames("ok", 1)[0]
    odd = FrameRecord("ok", 1, 16_000, payload=b"\x00\x01\x02")  # half a sample
    with pytest.raises(ValueError, match="whole 16-bit samples"):
        writer.put([good, odd])
    assert writer.pending() == 0
    writer.put([good])
    writer.close()
    assert _per_session(read_stream(aws_settings, stream)) == {"ok": [0]}


def test_missing_stream_fails_loudly(aws_settings: Settings) -> None:
    writer = KinesisWriter(aws_settings, "no-such-stream-here")
    writer.put(_frames("x", 1)[:1])
    with pytest.raises(StreamUnavailable, match="ResourceNotFound"):
        writer.flush(timeout=20)
    with pytest.raises(StreamUnavailable):
        writer.put(_frames("x", 2)[1:2])
    writer.close()
