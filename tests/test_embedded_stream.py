"""The embedded SQLite stream: ordering, checkpoints, leases, separate processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from contracts.frames import FrameRecord
from streams.base import Checkpointer, StreamRecord
from streams.embedded import EmbeddedConsumer, EmbeddedStream, shard_for
from streams.thread import run_until_signalled


def _frames(session: str, n: int) -> list[FrameRecord]:
    return [FrameRecord(session, i, i * 10, payload=b"\1\0" * 10) for i in range(n)]


def test_records_keep_order_and_sessions_map_to_stable_shards(tmp_path: Path) -> None:
    stream = EmbeddedStream(tmp_path / "s.db", shard_count=4)
    for s in ("a", "b", "c"):
        stream.put(_frames(s, 5))
    seen: dict[str, list[int]] = {}
    for shard in stream.shard_ids:
        for rec in stream.read(shard, 0, 1000):
            assert rec.shard_id == shard_for(rec.partition_key, 4)
            seen.setdefault(rec.partition_key, []).append(FrameRecord.decode(rec.data).seq)
    assert seen == {s: [0, 1, 2, 3, 4] for s in ("a", "b", "c")}


def test_checkpoint_never_moves_backwards(tmp_path: Path) -> None:
    stream = EmbeddedStream(tmp_path / "s.db")
    stream.set_checkpoint("app", "shard-0", 10)
    stream.set_checkpoint("app", "shard-0", 4)
    assert stream.get_checkpoint("app", "shard-0") == 10
    assert stream.get_checkpoint("other", "shard-0") == 0


def test_second_consumer_waits_for_a_fresh_lease(tmp_path: Path) -> None:
    stream = EmbeddedStream(tmp_path / "s.db")
    assert stream.take_lease("app", "shard-0", "one", stale_after=60)
    assert not stream.take_lease("app", "shard-0", "two", stale_after=60)
    assert stream.take_lease("app", "shard-0", "two", stale_after=0)  # stale: taken over
    stream.release_lease("app", "shard-0", "two")
    assert stream.take_lease("app", "shard-0", "one", stale_after=60)


class _Recorder:
    """Records what the consumer delivers; stops it after six records."""

    def __init__(self) -> None:
        self.records: list[StreamRecord] = []
        self.events: list[str] = []
        self.consumer: EmbeddedConsumer | None = None

    def initialize(self, shard_id: str, starting_sequence_number: str | None) -> None:
        self.events.append(f"init {shard_id} {starting_sequence_number}")

    def process_records(self, records: object, checkpointer: Checkpointer) -> None:
        self.records.extend(records)  # type: ignore[arg-type]
        checkpointer.checkpoint(self.records[-1].sequence_number)
        if len(self.records) >= 6 and self.consumer is not None:
            self.consumer.stop()

    def lease_lost(self) -> None:
        self.events.append("lease_lost")

    def shard_ended(self, checkpointer: Checkpointer) -> None:
        self.events.append("shard_ended")

    def shutdown_requested(self, checkpointer: Checkpointer) -> None:
        self.events.append("shutdown_requested")


def test_consumer_resumes_after_checkpoint_and_a_writer_process(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    stream = EmbeddedStream(path)
    stream.put(_frames("a", 3))
    # A separate producer process writes to the same file.
    code = (
        "from streams.embedded import EmbeddedStream; from contracts.frames import FrameRecord;"
        f"EmbeddedStream({str(path)!r}).put([FrameRecord('a', i, i, payload=b'') for i in range(3, 6)])"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
    rec = _Recorder()
    rec.consumer = EmbeddedConsumer(stream, "app", lambda: rec, idle_sleep=0.01)
    rec.consumer.run()
    assert [FrameRecord.decode(r.data).seq for r in rec.records] == [0, 1, 2, 3, 4, 5]
    assert rec.events[0] == "init shard-0 None" and rec.events[-1] == "shutdown_requested"
    stream.put(_frames("b", 6))
    rec2 = _Recorder()
    rec2.consumer = EmbeddedConsumer(stream, "app", lambda: rec2, idle_sleep=0.01)
    rec2.consumer.run()
    assert rec2.events[0] == "init shard-0 6"
    assert {r.partition_key for r in rec2.records} == {"b"}


def test_records_past_retention_are_trimmed(tmp_path: Path) -> None:
    stream = EmbeddedStream(tmp_path / "s.db")
    stream.put(_frames("a", 3))
    assert stream.trim(retention_seconds=3600) == 0
    assert stream.trim(retention_seconds=-1) == 3
    assert stream.read("shard-0", 0) == []


def test_sigterm_stops_the_consumer_gracefully(tmp_path: Path) -> None:
    """What ``flowbot process`` does with SIGTERM: the processor checkpoints, the exit code is 0."""
    stream = EmbeddedStream(tmp_path / "s.db")
    stream.put(_frames("a", 3))
    rec = _Recorder()  # stops the consumer itself only after six records
    consumer = EmbeddedConsumer(stream, "app", lambda: rec, idle_sleep=0.01)

    def terminate() -> None:
        deadline = time.monotonic() + 30
        while len(rec.records) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    threading.Thread(target=terminate, daemon=True).start()
    assert run_until_signalled(consumer) == 0
    assert len(rec.records) == 3 and rec.events[-1] == "shutdown_requested"
    assert stream.get_checkpoint("app", "shard-0") == 3
    assert signal.getsignal(signal.SIGTERM) == before  # the previous handler is back


def test_a_failed_check_stops_the_consumer_gracefully_and_raises(tmp_path: Path) -> None:
    """What ``flowbot process`` does when the diarizer fails to load in the background: the
    consumer stops as on SIGTERM (its processor checkpoints what it took) and the error ends
    the command, instead of every later window being recorded as failed."""
    stream = EmbeddedStream(tmp_path / "s.db")
    stream.put(_frames("a", 3))
    rec = _Recorder()  # would stop the consumer itself only after six records
    consumer = EmbeddedConsumer(stream, "app", lambda: rec, idle_sleep=0.01)

    class LoadFailed(RuntimeError):
        pass

    def check() -> None:
        if len(rec.records) >= 3:
            raise LoadFailed("diarization weights unreadable")

    with pytest.raises(LoadFailed, match="weights unreadable"):
        run_until_signalled(consumer, poll_s=0.01, check=check)
    assert rec.events[-1] == "shutdown_requested"
    assert stream.get_checkpoint("app", "shard-0") == 3


def test_flowbot_process_polls_the_background_load(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``flowbot process`` hands its processors' load check to the loop that runs the consumer."""
    import flowbot.cli as cli
    import flowbot.pipeline as pipeline
    import streams.factory as factory
    import streams.thread as thread

    seen: dict[str, Callable[[], None] | None] = {}

    def fake_run(consumer: object, *, check: Callable[[], None] | None = None) -> int:
        seen["check"] = check
        return 0

    monkeypatch.setattr(thread, "run_until_signalled", fake_run)
    monkeypatch.setattr(factory, "stream_consumer", lambda settings, processors: object())
    checks: list[str] = []
    monkeypatch.setattr(pipeline.LocalProcessors, "check", lambda self: checks.append("checked"))
    monkeypatch.setenv("FLOWBOT_DATA_DIR", str(tmp_path))
    assert cli.main(["process"]) == 0
    polled = seen["check"]
    assert polled is not None
    polled()
    assert checks == ["checked"]
