"""Frame records onto a Kinesis Data Stream, in order per session, with a bounded buffer.

Ordering. ``PutRecords`` may fail some entries of a call and accept later ones,
so two records of one session in the same call could land out of order. The
writer therefore sends at most ONE record per session per call and sends a
session's next record only after the previous one succeeded. Batching happens
across sessions (up to 500 records / 5 MiB per call), which is where the
volume is: one session makes about one 32 KB record per second.

Retries. Throttling (``ProvisionedThroughputExceededException``), internal
failures, partial batch failures and connection errors are retried with
exponential backoff and full jitter; failed entries simply stay at the head of
their session's queue. Errors that no retry can fix (missing stream, bad
credentials) fail the writer at once.

Memory. Each session may hold at most ``buffer_seconds`` of audio that
Kinesis has not yet accepted. When it is full, :meth:`KinesisWriter.put` waits
``put_timeout`` for room (back-pressure for producers faster than real time)
and then raises :class:`streams.base.StreamUnavailable` without accepting any
of the new records; what was accepted before stays queued and is still sent.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from contracts.frames import SAMPLE_RATE, FrameRecord
from contracts.settings import Settings
from streams.base import StreamUnavailable

if TYPE_CHECKING:
    from botocore.exceptions import ClientError

log = logging.getLogger(__name__)

#: PutRecords limits (AWS service quotas).
MAX_BATCH_RECORDS = 500
MAX_BATCH_BYTES = 5 * 1024 * 1024
#: Per-shard write limits; documented here so capacity maths has one source.
SHARD_RECORDS_PER_SECOND = 1000
SHARD_BYTES_PER_SECOND = 1024 * 1024

#: Errors a later attempt may get past.
RETRYABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "LimitExceededException",
        "InternalFailure",
        "InternalFailureException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "KMSThrottlingException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)


def kinesis_client(settings: Settings) -> Any:
    """A boto3 Kinesis client for ``settings`` (endpoint override for LocalStack).

    botocore's own retries are switched off: the writer retries per entry and
    keeps per-session order, which a blind whole-call retry would not know about.
    """
    import boto3
    from botocore.config import Config

    return boto3.client(
        "kinesis",
        region_name=settings.aws_region,
        endpoint_url=settings.kinesis_endpoint or None,
        config=Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=3,
            read_timeout=10,
        ),
    )


@dataclass
class WriterStats:
    """Counters of one writer (for logs, tests and the benchmark)."""

    calls: int = 0
    records_sent: int = 0
    bytes_sent: int = 0
    failed_entries: int = 0
    throttled_entries: int = 0
    call_errors: int = 0
    retries: int = 0
    error_codes: dict[str, int] = field(default_factory=dict)


@dataclass
class _Pending:
    record: FrameRecord
    data: bytes
    enqueued: float


class KinesisWriter:
    """:class:`streams.base.StreamWriter` over Kinesis ``PutRecords``.

    ``source`` is a :class:`contracts.settings.Settings` (a client is built from
    it, and ``stream_name``/``buffer_seconds`` default to its fields) or a
    ready boto3 Kinesis client. A background thread does the sending.
    """

    def __init__(
        self,
        source: Settings | Any,
        stream_name: str | None = None,
        *,
        buffer_seconds: float | None = None,
        put_timeout: float = 5.0,
        base_backoff: float = 0.05,
        max_backoff: float = 2.0,
        max_batch_records: int = MAX_BATCH_RECORDS,
        max_batch_bytes: int = MAX_BATCH_BYTES,
        on_sent: Callable[[FrameRecord, str], None] | None = None,
    ) -> None:
        if isinstance(source, Settings):
            self.client = kinesis_client(source)
            stream_name = stream_name or source.kinesis_stream_name
            if buffer_seconds is None:
                buffer_seconds = source.producer_buffer_seconds
        else:
            self.client = source
        if not stream_name:
            raise ValueError("KinesisWriter needs a stream name")
        if not 1 <= max_batch_records <= MAX_BATCH_RECORDS:
            raise ValueError(f"max_batch_records must be 1..{MAX_BATCH_RECORDS}")
        if not 0 < max_batch_bytes <= MAX_BATCH_BYTES:
            raise ValueError(f"max_batch_bytes must be 1..{MAX_BATCH_BYTES}")
        self.stream_name = stream_name
        seconds = 120.0 if buffer_seconds is None else buffer_seconds
        self.buffer_samples = int(seconds * SAMPLE_RATE)
        self.put_timeout = put_timeout
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self.max_batch_records = max_batch_records
        self.max_batch_bytes = max_batch_bytes
        self.on_sent = on_sent
        self.stats = WriterStats()
        # session id -> records not yet accepted by Kinesis, oldest first.
        self._queues: OrderedDict[str, deque[_Pending]] = OrderedDict()
        self._buffered: dict[str, int] = {}
        self._cond = threading.Condition()
        self._failure: BaseException | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="kinesis-writer", daemon=True)
        self._thread.start()

    # -- StreamWriter ---------------------------------------------------------
    def put(self, records: Sequence[FrameRecord]) -> None:
        """Queue ``records`` for sending; all or none of them are accepted.

        Raises ``ValueError`` for a record that cannot be encoded and
        :class:`StreamUnavailable` when the writer has failed or a session's
        buffer stays full for ``put_timeout`` seconds.
        """
        # Encode everything first: a bad record rejects the call before anything is queued.
        now = time.monotonic()
        items = [_Pending(r, r.encode(), now) for r in records]
        need: dict[str, int] = {}
        for item in items:
            sid = item.record.session_id
            need[sid] = need.get(sid, 0) + item.record.num_samples
        deadline = now + self.put_timeout
        with self._cond:
            self._wait_for_room(need, deadline)
            for item in items:
                sid = item.record.session_id
                self._queues.setdefault(sid, deque()).append(item)
                self._buffered[sid] = self._buffered.get(sid, 0) + item.record.num_samples
            self._cond.notify_all()

    def _wait_for_room(self, need: dict[str, int], deadline: float) -> None:
        """Wait (the lock held) until each session's buffer has room for ``need`` samples more."""
        while True:
            self._raise_if_failed()
            if self._closing:
                raise StreamUnavailable("writer is closed")
            full = [sid for sid, n in need.items() if n and self._buffered.get(sid, 0) + n > self.buffer_samples]
            if not full:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._buffer_full(full)
            self._cond.wait(left)

    def _buffer_full(self, full: list[str]) -> StreamUnavailable:
        """The error (logged) for sessions whose buffer stayed full past the put timeout."""
        buffered = max(self._buffered.get(sid, 0) for sid in full) / SAMPLE_RATE
        log.error(
            "kinesis producer buffer full",
            extra={
                "session": full[0],
                "buffered_s": round(buffered, 1),
                "stream": self.stream_name,
                "last_error": self._last_error(),
            },
        )
        return StreamUnavailable(
            f"Kinesis stream {self.stream_name!r} has not accepted audio of session "
            f"{full[0]!r} for {buffered:.1f} s (buffer limit "
            f"{self.buffer_samples / SAMPLE_RATE:.1f} s); "
            f"last error: {self._last_error()}"
        )

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until Kinesis accepted every queued record, or raise StreamUnavailable."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queues:
                self._raise_if_failed()
                left = deadline - time.monotonic()
                if left <= 0:
                    pending = sum(len(q) for q in self._queues.values())
                    raise StreamUnavailable(
                        f"{pending} records still unsent to {self.stream_name!r} "
                        f"after {timeout} s; "
                        f"last error: {self._last_error()}"
                    )
                self._cond.wait(left)
            self._raise_if_failed()

    def close(self, timeout: float = 30.0) -> None:
        """Flush, then stop the sender thread (raises StreamUnavailable if records are left)."""
        try:
            if self._failure is None:
                self.flush(timeout)
        finally:
            with self._cond:
                self._closing = True
                self._cond.notify_all()
            self._thread.join(timeout=max(1.0, self.max_backoff + 1.0))

    def pending(self) -> int:
        """Records queued and not yet accepted by Kinesis."""
        with self._cond:
            return sum(len(q) for q in self._queues.values())

    # -- sender ---------------------------------------------------------------
    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise StreamUnavailable(
                f"Kinesis writer for {self.stream_name!r} failed: {self._failure}"
            ) from self._failure

    def _last_error(self) -> str:
        return ", ".join(f"{k}x{v}" for k, v in self.stats.error_codes.items()) or "none"

    def _next_batch(self) -> list[_Pending]:
        """Head record of each session, round-robin, within the call limits."""
        batch: list[_Pending] = []
        size = 0
        for sid in list(self._queues):
            head = self._queues[sid][0]
            entry = len(head.data) + len(sid.encode())
            if len(batch) >= self.max_batch_records or size + entry > self.max_batch_bytes:
                break
            batch.append(head)
            size += entry
            # Sessions served this round go to the back, so none starves under load.
            self._queues.move_to_end(sid)
        return batch

    def _count(self, code: str) -> None:
        self.stats.error_codes[code] = self.stats.error_codes.get(code, 0) + 1

    def _run(self) -> None:
        attempt = 0
        while True:
            with self._cond:
                while not self._queues and not self._closing:
                    self._cond.wait()
                if self._closing:  # close() flushed (or gave up flushing) already
                    return
                batch = self._next_batch()
            ok = self._send(batch)
            if ok:
                attempt = 0
                continue
            attempt += 1
            if not self._back_off(attempt):
                return

    def _back_off(self, attempt: int) -> bool:
        """Wait before retry ``attempt``; False when the writer failed or is closing instead."""
        with self._cond:
            if self._failure is not None:
                return False
        self.stats.retries += 1
        # Full jitter: concurrent producers throttled together do not retry together.
        delay = random.uniform(0, min(self.max_backoff, self.base_backoff * 2**attempt))
        with self._cond:
            if self._closing:
                return False
            self._cond.wait(delay)
        return True

    def _send(self, batch: list[_Pending]) -> bool:
        """One PutRecords call; True if every entry was accepted."""
        self.stats.calls += 1
        resp = self._put_records(batch)
        if resp is None:
            return False
        entries = resp.get("Records", [])
        if len(entries) != len(batch):
            self._fail(RuntimeError(f"PutRecords answered {len(entries)} entries for {len(batch)}"))
            return False
        sent = self._take_accepted(batch, entries)
        if len(sent) < len(batch):
            log.warning(
                "PutRecords partly failed; retrying failed entries in order",
                extra={"stream": self.stream_name, "failed": len(batch) - len(sent), "records": len(batch)},
            )
        if self.on_sent is not None:
            for item, seq in sent:
                self.on_sent(item.record, seq)
        return len(sent) == len(batch)

    def _put_records(self, batch: list[_Pending]) -> dict[str, Any] | None:
        """PutRecords' answer, or None when the call failed (counted; a failure no retry helps fails the writer)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            resp: dict[str, Any] = self.client.put_records(
                StreamName=self.stream_name,
                Records=[{"Data": p.data, "PartitionKey": p.record.partition_key} for p in batch],
            )
            return resp
        except ClientError as exc:
            self._call_refused(exc, batch)
        except (BotoCoreError, OSError) as exc:  # connection refused/reset, timeouts
            self.stats.call_errors += 1
            self._count(type(exc).__name__)
            log.warning(
                "PutRecords call failed; retrying",
                extra={"stream": self.stream_name, "error": str(exc), "records": len(batch)},
            )
        except Exception as exc:  # a bug or a misconfigured client: retrying cannot help
            self._fail(exc)
        return None

    def _call_refused(self, exc: ClientError, batch: list[_Pending]) -> None:
        """Count a PutRecords call Kinesis refused; fail the writer unless a retry can help."""
        code = str(exc.response.get("Error", {}).get("Code", "ClientError"))
        self.stats.call_errors += 1
        self._count(code)
        if code not in RETRYABLE_CODES:
            self._fail(exc)
            return
        if code == "ProvisionedThroughputExceededException":
            self.stats.throttled_entries += len(batch)
        log.warning(
            "PutRecords throttled or failed; retrying",
            extra={"stream": self.stream_name, "code": code, "records": len(batch)},
        )

    def _take_accepted(self, batch: list[_Pending], entries: list[dict[str, Any]]) -> list[tuple[_Pending, str]]:
        """Take accepted entries off their queues; each with its sequence number. Failed ones stay put."""
        sent: list[tuple[_Pending, str]] = []
        with self._cond:
            for item, entry in zip(batch, entries, strict=True):
                if entry.get("ErrorCode"):
                    code = str(entry["ErrorCode"])
                    self.stats.failed_entries += 1
                    self._count(code)
                    if code == "ProvisionedThroughputExceededException":
                        self.stats.throttled_entries += 1
                    continue  # stays at the head of its session's queue
                self._dequeue(item)
                sent.append((item, str(entry.get("SequenceNumber", ""))))
            self._cond.notify_all()
        return sent

    def _dequeue(self, item: _Pending) -> None:
        """Remove a sent record from the head of its session's queue (the lock is held)."""
        sid = item.record.session_id
        queue = self._queues[sid]
        assert queue[0] is item  # only this thread removes, and only heads are sent
        queue.popleft()
        self._buffered[sid] -= item.record.num_samples
        if not queue:
            del self._queues[sid]
            del self._buffered[sid]
        self.stats.records_sent += 1
        self.stats.bytes_sent += len(item.data)

    def _fail(self, exc: BaseException) -> None:
        log.error(
            "kinesis writer failed; no retry can help",
            extra={"stream": self.stream_name, "error": f"{type(exc).__name__}: {exc}"},
        )
        with self._cond:
            self._failure = exc
            self._cond.notify_all()
