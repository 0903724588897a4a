"""A durable local stream in SQLite with Kinesis-like semantics.

- Records are appended per shard with increasing sequence numbers; a session's
  records go to one shard (md5 of the partition key, as Kinesis does).
- Each consumer application keeps one checkpoint per shard. A restarted
  consumer resumes after its checkpoint, so records past it are replayed: the
  processor must be idempotent, exactly as under KCL.
- Producer and consumer may be separate processes (WAL mode, busy timeout).
- One consumer per application at a time holds the shard lease; a second one
  waits until the first one's heartbeat is stale, as KCL's lease table works.

When one machine is not enough, switch to Kinesis + KCL (``FLOWBOT_STREAM=kinesis``);
this file is not meant to grow into a distributed log.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from contracts.frames import FrameRecord
from localdb import SqliteFile
from streams.base import Checkpointer, RecordProcessor, StreamRecord
from streams.poison import PoisonGuard, RetryPolicy

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    shard_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    partition_key TEXT NOT NULL,
    data BLOB NOT NULL,
    arrival REAL NOT NULL,
    PRIMARY KEY (shard_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    application TEXT NOT NULL,
    shard_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (application, shard_id)
);
CREATE TABLE IF NOT EXISTS leases (
    application TEXT NOT NULL,
    shard_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    heartbeat REAL NOT NULL,
    PRIMARY KEY (application, shard_id)
);
"""


def shard_for(partition_key: str, shard_count: int) -> str:
    """Shard id for a partition key (md5 hash, like Kinesis' hash-key ranges)."""
    digest = int.from_bytes(hashlib.md5(partition_key.encode()).digest(), "big")
    return f"shard-{digest * shard_count >> 128}"


class EmbeddedStream:
    """The single-machine stream; one SQLite file, safe across processes."""

    def __init__(self, path: Path | str, shard_count: int = 1) -> None:
        self._db = SqliteFile(path, _SCHEMA)
        self.path = self._db.path
        self.shard_count = shard_count

    @property
    def shard_ids(self) -> list[str]:
        """All shard ids of this stream."""
        return [f"shard-{i}" for i in range(self.shard_count)]

    # -- writing --------------------------------------------------------------
    def put(self, records: Sequence[FrameRecord]) -> None:
        """Append frame records atomically (the :class:`StreamWriter` protocol)."""
        self.put_raw([(r.partition_key, r.encode()) for r in records])

    def put_raw(self, items: Sequence[tuple[str, bytes]]) -> list[str]:
        """Append raw ``(partition_key, data)`` pairs; returns their sequence numbers."""
        now = time.time()
        seqs: list[str] = []
        with self._db.tx() as conn:
            for key, data in items:
                shard = shard_for(key, self.shard_count)
                row = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM records WHERE shard_id = ?", (shard,)).fetchone()
                seq = int(row[0]) + 1
                conn.execute("INSERT INTO records VALUES (?, ?, ?, ?, ?)", (shard, seq, key, data, now))
                seqs.append(str(seq))
        return seqs

    def close(self) -> None:
        """Close this thread's connection."""
        self._db.close()

    # -- reading --------------------------------------------------------------
    def read(self, shard_id: str, after_seq: int, limit: int = 100) -> list[StreamRecord]:
        """Records of ``shard_id`` with sequence number above ``after_seq``."""
        rows = (
            self._db.conn()
            .execute(
                "SELECT seq, partition_key, data, arrival FROM records "
                "WHERE shard_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (shard_id, after_seq, limit),
            )
            .fetchall()
        )
        return [StreamRecord(str(s), k, bytes(d), a, shard_id) for s, k, d, a in rows]

    def latest_seq(self, shard_id: str) -> int:
        """Highest sequence number written to a shard (0 if none)."""
        row = (
            self._db.conn()
            .execute("SELECT COALESCE(MAX(seq), 0) FROM records WHERE shard_id = ?", (shard_id,))
            .fetchone()
        )
        return int(row[0])

    def trim(self, retention_seconds: float) -> int:
        """Delete records older than the retention period, as Kinesis does; returns how many."""
        cur = self._db.conn().execute("DELETE FROM records WHERE arrival < ?", (time.time() - retention_seconds,))
        return cur.rowcount

    def last_record(self, partition_key: str) -> StreamRecord | None:
        """The newest record under a partition key (to continue a session's timeline)."""
        shard = shard_for(partition_key, self.shard_count)
        row = (
            self._db.conn()
            .execute(
                "SELECT seq, data, arrival FROM records WHERE shard_id = ? AND partition_key = ? "
                "ORDER BY seq DESC LIMIT 1",
                (shard, partition_key),
            )
            .fetchone()
        )
        return StreamRecord(str(row[0]), partition_key, bytes(row[1]), row[2], shard) if row else None

    def get_checkpoint(self, application: str, shard_id: str) -> int:
        """Last checkpointed sequence number (0 = from the start)."""
        row = (
            self._db.conn()
            .execute(
                "SELECT seq FROM checkpoints WHERE application = ? AND shard_id = ?",
                (application, shard_id),
            )
            .fetchone()
        )
        return int(row[0]) if row else 0

    def set_checkpoint(self, application: str, shard_id: str, seq: int) -> None:
        """Store a checkpoint; it never moves backwards."""
        self._db.conn().execute(
            "INSERT INTO checkpoints VALUES (?, ?, ?) ON CONFLICT (application, shard_id) "
            "DO UPDATE SET seq = MAX(seq, excluded.seq)",
            (application, shard_id, seq),
        )

    # -- leases ---------------------------------------------------------------
    def take_lease(self, application: str, shard_id: str, owner: str, stale_after: float) -> bool:
        """Take or renew the shard lease; False while another owner's lease is fresh."""
        now = time.time()
        with self._db.tx() as conn:
            row = conn.execute(
                "SELECT owner, heartbeat FROM leases WHERE application = ? AND shard_id = ?",
                (application, shard_id),
            ).fetchone()
            if row and row[0] != owner and now - float(row[1]) < stale_after:
                return False
            conn.execute(
                "INSERT INTO leases VALUES (?, ?, ?, ?) ON CONFLICT (application, shard_id) "
                "DO UPDATE SET owner = excluded.owner, heartbeat = excluded.heartbeat",
                (application, shard_id, owner, now),
            )
            return True

    def release_lease(self, application: str, shard_id: str, owner: str) -> None:
        """Give up a lease we hold."""
        self._db.conn().execute(
            "DELETE FROM leases WHERE application = ? AND shard_id = ? AND owner = ?",
            (application, shard_id, owner),
        )


class _EmbeddedCheckpointer(Checkpointer):
    def __init__(self, stream: EmbeddedStream, application: str, shard_id: str) -> None:
        self._stream, self._app, self._shard = stream, application, shard_id

    def checkpoint(self, sequence_number: str | None = None) -> None:
        if sequence_number is None:  # the embedded stream never ends a shard
            return
        self._stream.set_checkpoint(self._app, self._shard, int(sequence_number))


class EmbeddedConsumer:
    """:class:`streams.base.StreamConsumer` of the embedded stream, like KCL's worker.

    One processor instance per shard, fed in shard order after the stored
    checkpoint, behind a :class:`streams.poison.PoisonGuard` (a record that keeps
    failing is quarantined after ``retry`` allows, so the shard's other sessions
    move on). ``stop`` triggers ``shutdown_requested`` (graceful checkpoint).
    """

    def __init__(
        self,
        stream: EmbeddedStream,
        application: str,
        processor_factory: Callable[[], RecordProcessor],
        *,
        batch_size: int = 50,
        idle_sleep: float = 0.05,
        lease_stale_after: float = 10.0,
        retention_seconds: float = 24 * 3600.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.stream = stream
        self.application = application
        self.processor_factory = processor_factory
        self.batch_size = batch_size
        self.idle_sleep = idle_sleep
        self.lease_stale_after = lease_stale_after
        self.retention_seconds = retention_seconds
        self.retry = retry or RetryPolicy()
        self.owner = f"{os.uname().nodename}:{os.getpid()}:{id(self)}"
        self.stop_event = threading.Event()
        #: The guard of each shard this consumer holds (its counters, its quarantine).
        self.guards: dict[str, PoisonGuard] = {}
        # While running: each held shard's processor and read position, and per shard the
        # consecutive failures and the last record of the batch that failed. The count is
        # reset only once the shard got past that record, not by good replayed batches.
        self._processors: dict[str, RecordProcessor] = {}
        self._positions: dict[str, int] = {}
        self._failures: dict[str, tuple[int, int]] = {}

    def _processor(self, shard: str, start: int) -> PoisonGuard:
        guard = PoisonGuard(self.processor_factory(), policy=self.retry, wait=self.stop_event.wait)
        guard.initialize(shard, str(start) if start else None)
        self.guards[shard] = guard
        return guard

    def stop(self) -> None:
        """Ask the consumer to shut down gracefully."""
        self.stop_event.set()

    def run(self) -> int:
        """Consume every shard until :meth:`stop` is called; returns 0."""
        self._processors = {}
        self._positions = {}
        self._failures = {}
        last_heartbeat = 0.0
        try:
            while not self.stop_event.is_set():
                now = time.monotonic()
                if now - last_heartbeat > self.lease_stale_after / 3:
                    last_heartbeat = now
                    self._renew_leases()
                if not self._read_shards():
                    self.stop_event.wait(self.idle_sleep)
        finally:
            for shard, proc in self._processors.items():
                proc.shutdown_requested(_EmbeddedCheckpointer(self.stream, self.application, shard))
                self.stream.release_lease(self.application, shard, self.owner)
        return 0

    def _read_shards(self) -> bool:
        """One batch from each held shard to its processor; False when none had any."""
        busy = False
        for shard, proc in list(self._processors.items()):
            records = self.stream.read(shard, self._positions[shard], self.batch_size)
            if records:
                busy = True
                self._feed(shard, proc, records)
        return busy

    def _renew_leases(self) -> None:
        """Trim the stream, then take (and start) or give up the lease of each shard."""
        self.stream.trim(self.retention_seconds)
        for shard in self.stream.shard_ids:
            held = self.stream.take_lease(self.application, shard, self.owner, self.lease_stale_after)
            if held and shard not in self._processors:
                start = self.stream.get_checkpoint(self.application, shard)
                self._processors[shard], self._positions[shard] = self._processor(shard, start), start
                log.info("shard lease taken", extra={"shard": shard, "after_seq": start})
            elif not held and shard in self._processors:
                self._processors.pop(shard).lease_lost()
                self._positions.pop(shard)
                log.warning("shard lease lost", extra={"shard": shard})

    def _feed(self, shard: str, proc: RecordProcessor, records: list[StreamRecord]) -> None:
        """Hand a batch to its shard's processor; a failure restarts the shard from its checkpoint."""
        try:
            proc.process_records(records, _EmbeddedCheckpointer(self.stream, self.application, shard))
            self._positions[shard] = records[-1].seq
            if self._positions[shard] >= self._failures.get(shard, (0, 0))[1]:
                self._failures.pop(shard, None)
        except Exception:
            # The guard could not replay in place (too much kept): as when a KCL
            # worker dies, drop in-memory state and replay from the checkpoint with
            # a fresh processor, after a pause that grows until the shard gets past
            # the batch that failed.
            count = self._failures.get(shard, (0, 0))[0] + 1
            self._failures[shard] = (count, max(records[-1].seq, self._failures.get(shard, (0, 0))[1]))
            log.exception(
                "record processor failed; replaying from checkpoint", extra={"shard": shard, "failures": count}
            )
            proc.lease_lost()
            start = self.stream.get_checkpoint(self.application, shard)
            self._processors[shard], self._positions[shard] = self._processor(shard, start), start
            self.stop_event.wait(self.retry.delay(count))
