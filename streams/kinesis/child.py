"""The KCL child: the process the MultiLangDaemon starts once per shard lease.

``python -m streams.kinesis.child module:callable`` (the ``executableName`` that
:mod:`streams.kinesis.daemon` writes into ``kcl.properties``) speaks the
multilang protocol on stdin/stdout, so nothing else may write to fd 1: it is
re-pointed at stderr before anything else runs. ``module:callable`` names a
module-level ``callable(settings) -> RecordProcessor`` (the composition point
passes ``processor.build:build_shard_processor``; tests and benchmarks pass
their own), called once with ``Settings.from_env()``.

:class:`KclRecordProcessor` adapts kclpy's v3 record processor to
:class:`streams.base.RecordProcessor`, the lifecycle every runner uses. The
delegate runs behind a :class:`streams.poison.PoisonGuard`: a failing record is
replayed in place with growing pauses and quarantined after a bounded number
of attempts, so the other sessions of the shard move on. An exception the
guard cannot handle in place is never swallowed (kclpy's default would report
the batch as done and move on, losing it): the child exits non-zero, the
daemon stops, and a restarted daemon replays from the last checkpoint.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Protocol, TextIO

from amazon_kclpy.kcl import CheckpointError, KCLProcess
from amazon_kclpy.v3 import processor as kcl_v3

from contracts.logs import configure_logging
from contracts.settings import Settings
from streams.base import RecordProcessor, StreamRecord
from streams.poison import PoisonGuard

log = logging.getLogger(__name__)

#: KCL checkpoint errors worth another try after a pause (kclpy's documented semantics).
_CHECKPOINT_RETRIES = 5
_CHECKPOINT_PAUSE_S = 1.0


# -- what the adapter reads of kclpy's (untyped) messages ----------------------------
class KclCheckpointerInput(Protocol):
    """kclpy's checkpointer (``amazon_kclpy.kcl.Checkpointer``)."""

    def checkpoint(self, sequence_number: str | None = None, sub_sequence_number: int | None = None) -> None: ...


class KclRecord(Protocol):
    """One record of ``ProcessRecordsInput.records`` (``amazon_kclpy.messages.Record``)."""

    @property
    def binary_data(self) -> bytes: ...  # base64-decoded on access; raises on bad base64
    @property
    def sequence_number(self) -> str: ...
    @property
    def partition_key(self) -> str: ...
    @property
    def timestamp_millis(self) -> int: ...


class InitializeInput(Protocol):
    """``amazon_kclpy.messages.InitializeInput``."""

    @property
    def shard_id(self) -> str: ...
    @property
    def sequence_number(self) -> str | None: ...


class ProcessRecordsInput(Protocol):
    """``amazon_kclpy.messages.ProcessRecordsInput``."""

    @property
    def records(self) -> Sequence[KclRecord]: ...
    @property
    def checkpointer(self) -> KclCheckpointerInput: ...


class CheckpointingInput(Protocol):
    """``ShardEndedInput`` / ``ShutdownRequestedInput``: a checkpointer to finish with."""

    @property
    def checkpointer(self) -> KclCheckpointerInput: ...


class KclCheckpointer:
    """:class:`streams.base.Checkpointer` over kclpy's checkpointer.

    - ``ThrottlingException``: DynamoDB is busy; pause and retry.
    - ``ShutdownException``: the lease is gone (another worker has the shard);
      skip, that worker resumes from the last stored checkpoint.
    - anything else (``InvalidStateException``, ...): logged and retried; if
      it never passes the checkpoint stays behind, which only means replay.
    """

    def __init__(self, kcl_checkpointer: KclCheckpointerInput, shard_id: str, pause_s: float = _CHECKPOINT_PAUSE_S):
        self._cp = kcl_checkpointer
        self.shard_id = shard_id
        self.pause_s = pause_s

    def checkpoint(self, sequence_number: str | None = None) -> None:
        """Checkpoint at ``sequence_number`` (None = everything delivered so far)."""
        for attempt in range(1, _CHECKPOINT_RETRIES + 1):
            try:
                self._cp.checkpoint(sequence_number, None)
                log.debug("checkpointed", extra={"shard": self.shard_id, "seq": sequence_number})
                return
            except CheckpointError as exc:
                if exc.value == "ShutdownException":
                    log.warning(
                        "checkpoint skipped: lease is gone", extra={"shard": self.shard_id, "seq": sequence_number}
                    )
                    return
                log.warning(
                    "checkpoint failed",
                    extra={"shard": self.shard_id, "seq": sequence_number, "error": exc.value, "attempt": attempt},
                )
                if attempt == _CHECKPOINT_RETRIES:
                    log.error(
                        "giving up on this checkpoint; records after the last one replay",
                        extra={"shard": self.shard_id, "seq": sequence_number},
                    )
                    return
                time.sleep(self.pause_s * attempt)


class KclRecordProcessor(kcl_v3.RecordProcessorBase):
    """amazon_kclpy v3 record processor that drives one of our RecordProcessors."""

    def __init__(self, delegate: RecordProcessor) -> None:
        self.delegate = delegate
        self.shard_id = ""
        self.counters: Counter[str] = Counter()

    def initialize(self, initialize_input: InitializeInput) -> None:
        """Lease taken: tell the delegate the shard and where its checkpoint is."""
        self.shard_id = str(initialize_input.shard_id)
        seq = initialize_input.sequence_number
        # TRIM_HORIZON / LATEST / AT_TIMESTAMP are positions, not records.
        start = str(seq) if seq is not None and str(seq).isdigit() else None
        log.info("kcl lease initialized", extra={"shard": self.shard_id, "checkpoint": seq})
        self.delegate.initialize(self.shard_id, start)

    def process_records(self, process_records_input: ProcessRecordsInput) -> None:
        """Convert KCL records (base64 JSON) to StreamRecords and hand them on."""
        records: list[StreamRecord] = []
        for rec in process_records_input.records:
            try:
                data = rec.binary_data
            except (ValueError, TypeError) as exc:  # binascii.Error is a ValueError
                self.counters["undecodable_records"] += 1
                log.warning(
                    "record with undecodable data skipped",
                    extra={
                        "shard": self.shard_id,
                        "seq": rec.sequence_number,
                        "error": str(exc),
                        "undecodable_total": self.counters["undecodable_records"],
                    },
                )
                continue
            records.append(
                StreamRecord(
                    sequence_number=str(rec.sequence_number),
                    partition_key=str(rec.partition_key),
                    data=bytes(data),
                    arrival_time=rec.timestamp_millis / 1000.0,
                    shard_id=self.shard_id,
                )
            )
        self.counters["records"] += len(records)
        checkpointer = KclCheckpointer(process_records_input.checkpointer, self.shard_id)
        try:
            self.delegate.process_records(records, checkpointer)
        except Exception:
            # kclpy would log this and report the batch done, skipping it for good.
            log.critical(
                "record processor failed; exiting so the batch is replayed",
                extra={"shard": self.shard_id, "records": len(records)},
                exc_info=True,
            )
            raise SystemExit(1) from None

    def lease_lost(self, lease_lost_input: object) -> None:
        """Another worker took the shard: the delegate drops its state, writes nothing."""
        log.warning("kcl lease lost", extra={"shard": self.shard_id})
        self.delegate.lease_lost()

    def shard_ended(self, shard_ended_input: CheckpointingInput) -> None:
        """Resharding: the delegate finishes and checkpoints the shard end."""
        log.info("kcl shard ended", extra={"shard": self.shard_id})
        self.delegate.shard_ended(KclCheckpointer(shard_ended_input.checkpointer, self.shard_id))

    def shutdown_requested(self, shutdown_requested_input: CheckpointingInput) -> None:
        """Graceful shutdown: the delegate checkpoints what is committed."""
        log.info("kcl shutdown requested", extra={"shard": self.shard_id})
        self.delegate.shutdown_requested(KclCheckpointer(shutdown_requested_input.checkpointer, self.shard_id))


def load_factory(spec: str) -> Callable[[Settings], RecordProcessor]:
    """Resolve ``module:callable`` to a processor factory."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"processor factory {spec!r}: expected 'module:callable'")
    factory = getattr(importlib.import_module(module_name), attr)
    if not callable(factory):
        raise ValueError(f"{spec} is not callable")
    return factory


def _protocol_stdout() -> TextIO:
    """Keep fd 1 for the multilang protocol only; everything else printed goes to stderr.

    Native libraries (CTranslate2, torch) may write to fd 1 directly, so the fd
    itself is swapped, not just ``sys.stdout``.
    """
    sys.stdout.flush()
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(protocol_fd, "w", buffering=1)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the child process the MultiLangDaemon runs for each shard lease."""
    protocol_out = _protocol_stdout()
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 1:
        sys.stderr.write("usage: python -m streams.kinesis.child module:callable\n")
        raise SystemExit(2)
    spec = args[0]
    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    delegate = load_factory(spec)(settings)
    log.info("kcl child ready", extra={"factory": spec, "pid": os.getpid()})
    KCLProcess(
        KclRecordProcessor(PoisonGuard(delegate)),
        input_file=sys.stdin,
        output_file=protocol_out,
        error_file=sys.stderr,
    ).run()


if __name__ == "__main__":
    main()
