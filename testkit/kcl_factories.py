"""Record-processor factories the KCL child (``python -m streams.kinesis.child``) builds in tests.

Named as ``KclDaemon(settings, "testkit.kcl_factories:<name>")``; the daemon passes the
test's environment through to its children.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence

from contracts.frames import FrameRecord, MalformedRecord
from contracts.settings import Settings
from processor.diarization import IdentityMapper, SingleSpeakerDiarizer
from processor.engine import EngineParts, ShardProcessor
from processor.windowing import WindowPolicy
from stores.s3_archive import S3Archive
from stores.sqlite import SqliteTranscriptStore
from streams.base import Checkpointer, StreamRecord


class RecordingProcessor:
    """Writes every delivered record and lifecycle call to SQLite; checkpoints each batch."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, timeout=30, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS records (shard TEXT, seq TEXT, pk TEXT, session TEXT, "
            "frame_seq INTEGER, arrival REAL, received REAL)"
        )
        self.db.execute("CREATE TABLE IF NOT EXISTS events (pid INTEGER, event TEXT, detail TEXT)")
        self.shard = ""

    def _event(self, event: str, detail: str = "") -> None:
        self.db.execute("INSERT INTO events VALUES (?,?,?)", (os.getpid(), event, detail))

    def initialize(self, shard_id: str, starting_sequence_number: str | None) -> None:
        self.shard = shard_id
        self._event("initialize", f"{shard_id} {starting_sequence_number}")

    def process_records(self, records: Sequence[StreamRecord], checkpointer: Checkpointer) -> None:
        import time

        now = time.time()
        rows: list[tuple[object, ...]] = []
        for r in records:
            try:
                frame = FrameRecord.decode(r.data)
                rows.append(
                    (r.shard_id, r.sequence_number, r.partition_key, frame.session_id, frame.seq, r.arrival_time, now)
                )
            except MalformedRecord:
                rows.append((r.shard_id, r.sequence_number, r.partition_key, None, None, r.arrival_time, now))
        self.db.executemany("INSERT INTO records VALUES (?,?,?,?,?,?,?)", rows)
        if records:
            checkpointer.checkpoint(records[-1].sequence_number)

    def lease_lost(self) -> None:
        self._event("lease_lost")

    def shard_ended(self, checkpointer: Checkpointer) -> None:
        self._event("shard_ended")
        checkpointer.checkpoint(None)

    def shutdown_requested(self, checkpointer: Checkpointer) -> None:
        self._event("shutdown_requested")


def build_recorder(settings: Settings) -> RecordingProcessor:
    """Factory: the recording processor writing to ``$FLOWBOT_TEST_SINK``."""
    return RecordingProcessor(os.environ["FLOWBOT_TEST_SINK"])


def build_engine(settings: Settings, *, diarized: bool = False) -> ShardProcessor:
    """Factory: the real engine (bundled tiny.en, one speaker, S3 archive, SQLite store)."""
    from processor.asr import AsrOptions, WhisperTranscriber
    from processor.build import build_diarizer, mapper_factory

    return ShardProcessor(
        EngineParts(
            transcriber=WhisperTranscriber(
                "bundled:tiny.en",
                device="cpu",
                cpu_threads=settings.cpu_threads,
                options=AsrOptions(beam_size=5),
            ),
            diarizer=build_diarizer(settings) if diarized else SingleSpeakerDiarizer(),
            mapper_factory=mapper_factory(settings) if diarized else lambda state: IdentityMapper(state),
            store=SqliteTranscriptStore(os.environ["FLOWBOT_TEST_STORE"]),
            archive=S3Archive(settings),
            policy=WindowPolicy(
                settings.window_seconds,
                settings.window_min_seconds,
                settings.window_min_silence_ms,
            ),
        )
    )


def build_diarized_engine(settings: Settings) -> ShardProcessor:
    """Factory: :func:`build_engine` with the diarization the settings name (offline pyannote)."""
    return build_engine(settings, diarized=True)
