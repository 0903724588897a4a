"""Poison records: one record that keeps failing must not stop every session on its shard.

:class:`PoisonGuard` wraps the :class:`streams.base.RecordProcessor` of one shard
under either runner (the embedded consumer, the KCL MultiLangDaemon child). It
keeps the records delivered since the last checkpoint. When the processor
raises, it does what a restarted KCL worker would do, but in place and in
bounded time:

1. drop the processor's in-flight state (``lease_lost``) and start it again at
   the checkpoint (``initialize``), so nothing half-applied survives;
2. replay the kept records one at a time; the first one that raises is the
   suspect, and the processor is started again before the next attempt;
3. wait between attempts with a growing pause (:class:`RetryPolicy`), counted
   per suspect record, so a replay of good records never resets the count;
4. after ``RetryPolicy.attempts`` failures the suspect is quarantined: logged
   at ERROR with its shard, sequence number and partition key, counted, and
   skipped from then on. It is not deleted: it stays in the stream for the
   retention period, where the log line finds it.

A transient outage of a store also fails every attempt, so the bound is a
trade-off: the stores retry transient errors themselves first (Supabase's
``RetryPolicy``), and ``attempts`` x the growing pause gives an outage about a
minute before a record is set aside (docs/security.md).

Keeping records costs memory only while the checkpoint lags (open windows);
beyond ``max_retained_bytes`` the guard stops keeping them and a failure is
raised to the runner instead, which replays from the checkpoint as before.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from streams.base import Checkpointer, RecordProcessor, StreamRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """How often, and how patiently, a failing record is retried before quarantine."""

    #: Failures of one record before it is quarantined.
    attempts: int = 6
    #: Pause after the first failure; it doubles after each further one.
    first_delay: float = 1.0
    max_delay: float = 30.0

    def delay(self, failures: int) -> float:
        """Pause after the ``failures``-th failure of one record (1, 2, 4, ... capped)."""
        return float(min(self.max_delay, self.first_delay * 2 ** max(0, failures - 1)))


def _sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return False


class _Tracking:
    """Passes checkpoints on and tells the guard which kept records are now safe to forget."""

    def __init__(self, inner: Checkpointer, guard: PoisonGuard) -> None:
        self.inner = inner
        self.guard = guard

    def checkpoint(self, sequence_number: str | None = None) -> None:
        self.inner.checkpoint(sequence_number)
        self.guard._checkpointed(sequence_number)


class _Deferred:
    """Collects the checkpoints a replay asks for; the last one is passed on once."""

    def __init__(self) -> None:
        self.value: str | None = None
        self.asked = False

    def checkpoint(self, sequence_number: str | None = None) -> None:
        self.value, self.asked = sequence_number, True


class PoisonGuard:
    """:class:`streams.base.RecordProcessor` that quarantines a record failing again and again."""

    def __init__(
        self,
        delegate: RecordProcessor,
        *,
        policy: RetryPolicy | None = None,
        wait: Callable[[float], bool] = _sleep,
        max_retained_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        """``wait(seconds)`` pauses between attempts and returns True when the runner is stopping."""
        self.delegate = delegate
        self.policy = policy or RetryPolicy()
        self.wait = wait
        self.max_retained_bytes = max_retained_bytes
        self.shard_id = ""
        self.counters: Counter[str] = Counter()
        #: Sequence number -> error of every record set aside.
        self.quarantined: dict[int, str] = {}
        self._start: str | None = None
        self._checkpoint: str | None = None
        self._kept: list[StreamRecord] = []
        self._kept_bytes = 0
        # Records up to this sequence number were not kept (memory cap): no replay in place.
        self._unkept_through: int | None = None
        self._failures: Counter[int] = Counter()
        # The delegate raised and has not been replayed to a consistent state since.
        self.broken = False

    # -- lifecycle --------------------------------------------------------------------
    def initialize(self, shard_id: str, starting_sequence_number: str | None) -> None:
        """Start on a shard (see :class:`streams.base.RecordProcessor`)."""
        self.shard_id = shard_id
        self._start = self._checkpoint = starting_sequence_number
        self._forget_all()
        self.broken = False
        self.delegate.initialize(shard_id, starting_sequence_number)

    def process_records(self, records: Sequence[StreamRecord], checkpointer: Checkpointer) -> None:
        """Hand records on; on a failure replay, retry with growing pauses, quarantine."""
        tracking = _Tracking(checkpointer, self)
        batch = [r for r in records if r.seq not in self.quarantined]
        self._keep(batch)
        if not self.broken:
            try:
                self.delegate.process_records(batch, tracking)
                return
            except Exception as exc:
                self._failed(None, exc)
        self._recover(tracking)

    def lease_lost(self) -> None:
        """Another worker has the shard: drop everything."""
        self._forget_all()
        self.broken = False
        self.delegate.lease_lost()

    def shard_ended(self, checkpointer: Checkpointer) -> None:
        """Finish the shard; a processor left inconsistent by a failure is replayed first."""
        if self.broken:
            self._recover(_Tracking(checkpointer, self))
        if self.broken:
            raise RuntimeError(f"shard {self.shard_id} ended while its records still fail")
        self.delegate.shard_ended(_Tracking(checkpointer, self))

    def shutdown_requested(self, checkpointer: Checkpointer) -> None:
        """Checkpoint what is committed, unless a failure left the processor inconsistent."""
        if self.broken:
            log.warning("shutdown without checkpoint: records were failing", extra={"shard": self.shard_id})
            return
        self.delegate.shutdown_requested(_Tracking(checkpointer, self))

    # -- internals ------------------------------------------------------------------------
    def _keep(self, batch: Sequence[StreamRecord]) -> None:
        for rec in batch:
            self._kept.append(rec)
            self._kept_bytes += len(rec.data)
        if self._kept_bytes > self.max_retained_bytes:
            log.warning(
                "too much uncheckpointed data to keep for replay; a failure now restarts the shard",
                extra={"shard": self.shard_id, "bytes": self._kept_bytes},
            )
            self._unkept_through = self._kept[-1].seq
            self._kept, self._kept_bytes = [], 0

    def _forget_all(self) -> None:
        self._kept, self._kept_bytes, self._unkept_through = [], 0, None

    def _checkpointed(self, sequence_number: str | None) -> None:
        if sequence_number is None:  # shard end: everything delivered is done
            self._forget_all()
            return
        self._checkpoint = sequence_number
        done = int(sequence_number)
        keep = [r for r in self._kept if r.seq > done]
        self._kept_bytes -= sum(len(r.data) for r in self._kept) - sum(len(r.data) for r in keep)
        self._kept = keep
        if self._unkept_through is not None and done >= self._unkept_through:
            self._unkept_through = None

    def _failed(self, record: StreamRecord | None, exc: Exception) -> int:
        """Note a failure; returns how often ``record`` has failed so far."""
        self.broken = True
        self.counters["processor_failures"] += 1
        failures = 0
        if record is not None:
            self._failures[record.seq] += 1
            failures = self._failures[record.seq]
        log.warning(
            "record processor failed; replaying from the checkpoint",
            extra={
                "shard": self.shard_id,
                "seq": record.sequence_number if record else None,
                "failures": failures or None,
                "error": f"{type(exc).__name__}: {exc}",
            },
            exc_info=failures <= 1,
        )
        return failures

    def _recover(self, tracking: _Tracking) -> None:
        """Replay until every kept record went through or the suspect was quarantined."""
        if self._unkept_through is not None:
            raise RuntimeError(f"shard {self.shard_id}: processor failed and its records were not kept")
        pause = self.policy.delay(1)
        while True:
            if pause and self.wait(pause):
                return  # the runner is stopping; broken stays set, so nothing is checkpointed
            failed = self._replay(tracking)
            if failed is None:
                self.broken = False
                return
            record, exc = failed
            failures = self._failed(record, exc)
            if failures >= self.policy.attempts:
                self._quarantine(record, exc, failures)
                pause = 0.0  # replay at once without it
            else:
                pause = self.policy.delay(failures)

    def _replay(self, tracking: _Tracking) -> tuple[StreamRecord, Exception] | None:
        self.delegate.lease_lost()
        self.delegate.initialize(self.shard_id, self._checkpoint)
        deferred = _Deferred()
        try:
            for rec in list(self._kept):
                if rec.seq in self.quarantined:
                    continue
                try:
                    self.delegate.process_records([rec], deferred)
                except Exception as exc:
                    return rec, exc
            return None
        finally:
            # What the processor asked for before any failure was computed from a consistent state.
            if deferred.asked:
                tracking.checkpoint(deferred.value)

    def _quarantine(self, record: StreamRecord, exc: Exception, failures: int) -> None:
        error = f"{type(exc).__name__}: {exc}"
        self.quarantined[record.seq] = error
        self._failures.pop(record.seq, None)
        self.counters["quarantined_records"] += 1
        log.error(
            "record quarantined: skipped after repeated failures (it stays in the stream)",
            extra={
                "shard": self.shard_id,
                "seq": record.sequence_number,
                "partition_key": record.partition_key,
                "bytes": len(record.data),
                "failures": failures,
                "error": error,
                "quarantined_total": self.counters["quarantined_records"],
            },
        )
