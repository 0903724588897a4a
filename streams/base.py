"""The stream boundary, shaped after Kinesis + KCL so every backend looks alike.

A backend has two sides:

- a :class:`StreamWriter` that producers put frame records on, with the
  session id as partition key;
- a :class:`StreamConsumer` that reads the stream and drives one
  :class:`RecordProcessor` per shard lease through the KCL lifecycle, handing
  it a :class:`Checkpointer` (the embedded poller, or the KCL MultiLangDaemon).

Consumers get their processors from a :class:`ProcessorFactory`, built by the
composition point (flowbot), so nothing here knows what a processor does.
Sequence numbers are decimal strings that compare as integers, as on Kinesis.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from contracts.frames import FrameRecord


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """One record as a consumer sees it."""

    sequence_number: str
    partition_key: str
    data: bytes
    arrival_time: float = 0.0
    shard_id: str = "shard-0"

    @property
    def seq(self) -> int:
        """Sequence number as an integer (Kinesis sequence numbers are decimal)."""
        return int(self.sequence_number)


class StreamUnavailable(RuntimeError):
    """The stream could not take records within the producer's buffer limits."""


class StreamWriter(Protocol):
    """Puts frame records on the stream, in order per session."""

    def put(self, records: Sequence[FrameRecord]) -> None:
        """Durably append ``records``; raise :class:`StreamUnavailable` when giving up."""

    def close(self) -> None:
        """Flush and release resources."""


class Checkpointer(Protocol):
    """Records that everything up to and including a sequence number is done."""

    def checkpoint(self, sequence_number: str | None = None) -> None:
        """Checkpoint at ``sequence_number``; None = all records delivered so far
        (used at ``shard_ended``, where KCL requires the shard-end checkpoint)."""


class RecordProcessor(Protocol):
    """The KCL v3 record-processor lifecycle, used by every runner."""

    def initialize(self, shard_id: str, starting_sequence_number: str | None) -> None:
        """A lease on ``shard_id`` was taken; records after the checkpoint follow."""

    def process_records(self, records: Sequence[StreamRecord], checkpointer: Checkpointer) -> None:
        """Handle a batch of records in shard order."""

    def lease_lost(self) -> None:
        """Another worker owns the shard now: drop in-flight state, write nothing."""

    def shard_ended(self, checkpointer: Checkpointer) -> None:
        """The shard was split or merged and is fully read: finish and checkpoint its end."""

    def shutdown_requested(self, checkpointer: Checkpointer) -> None:
        """Graceful shutdown: checkpoint what is safely written."""


@dataclass(frozen=True)
class ProcessorFactory:
    """How a consumer gets the record processor of each shard lease.

    A consumer that runs processors in this process calls ``build`` once per
    lease (and again after a failure, to restart from the checkpoint with clean
    state). One whose processors live in other processes (the KCL
    MultiLangDaemon starts a child per lease) passes ``spec`` on: a
    ``"module:callable"`` naming a module-level ``callable(settings) ->
    RecordProcessor`` that the child imports.
    """

    build: Callable[[], RecordProcessor]
    spec: str


class StreamConsumer(Protocol):
    """Reads the stream and drives record processors through the KCL lifecycle."""

    def run(self) -> int:
        """Consume until :meth:`stop` or until the runner ends; 0 after a clean stop, else its exit status."""

    def stop(self) -> None:
        """Ask for a graceful stop (processors get ``shutdown_requested`` and checkpoint); any thread."""
