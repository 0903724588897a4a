"""Hostile and broken stream records (issue 11): one bad record never stops a shard.

Each test puts forged records next to a real session on the same shard and checks
that the real session's transcript is exactly what it is without them.
"""

from __future__ import annotations

import struct
import threading
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from contracts.frames import MAX_RECORD_SAMPLES, FrameKind, end_commitment, end_of_stream
from contracts.segments import TranscriptSegment, WindowRecord
from processor.asr import AsrResult
from processor.diarization import IdentityMapper, SingleSpeakerDiarizer
from processor.engine import EngineParts, ShardProcessor
from processor.windowing import WindowPolicy
from producer.decode import read_pcm
from producer.framer import SessionFramer
from producer.hub import IngestHub
from stores.archive import NoArchive
from stores.base import SessionProgress
from stores.sqlite import SqliteTranscriptStore
from streams.base import Checkpointer, StreamRecord
from streams.embedded import EmbeddedConsumer, EmbeddedStream
from streams.poison import PoisonGuard, RetryPolicy
from testkit.checkpoints import ListCheckpointer
from testkit.speech import Turn

POLICY = WindowPolicy(max_seconds=10, min_seconds=5)


def raw_record(session: str, seq: int, offset: int, kind: FrameKind = FrameKind.AUDIO, payload: bytes = b"") -> bytes:
    """A v1 record with any header values (``FrameRecord.encode`` refuses impossible ones)."""
    sid = session.encode()
    return struct.pack(">4sBBHQQH", b"FBFR", 1, int(kind), 16000, seq, offset, len(sid)) + sid + payload


class MemoTranscriber:
    """The real model, with results remembered per audio (forged sessions must not change the real one's)."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.memo: dict[bytes, object] = {}

    def transcribe(self, audio: np.ndarray, **kw: object) -> object:
        key = audio.tobytes()
        if key not in self.memo:
            self.memo[key] = self.inner.transcribe(audio, **kw)  # type: ignore[attr-defined]
        return self.memo[key]


def parts_for(tmp: Path, transcriber: object, store: SqliteTranscriptStore | None = None) -> EngineParts:
    return EngineParts(
        transcriber=transcriber,  # type: ignore[arg-type]
        diarizer=SingleSpeakerDiarizer(),
        mapper_factory=lambda state: IdentityMapper(state),
        store=store or SqliteTranscriptStore(tmp / "t.db"),
        archive=NoArchive(),
        policy=POLICY,
    )


def segments_of(store: SqliteTranscriptStore, session: str) -> list[tuple[int, int, float, float, str]]:
    return [(s.window_index, s.segment_index, s.start, s.end, s.text) for s in store.segments(session)]


@pytest.fixture(scope="module")
def real_pcm(meeting: tuple[Path, list[Turn]]) -> np.ndarray:
    return read_pcm(str(meeting[0]))[: 22 * 16000]


@pytest.fixture(scope="module")
def memo(transcriber: object) -> MemoTranscriber:
    return MemoTranscriber(transcriber)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, real_pcm: np.ndarray, memo: MemoTranscriber) -> list[object]:
    """The real session processed alone."""
    tmp = tmp_path_factory.mktemp("reference")
    stream = EmbeddedStream(tmp / "s.db")
    framer = SessionFramer(stream, "real")
    framer.push(real_pcm)
    framer.end()
    parts = parts_for(tmp, memo)
    proc = ShardProcessor(parts)
    proc.initialize("shard-0", None)
    proc.process_records(stream.read("shard-0", 0, 100_000), ListCheckpointer())
    got = segments_of(parts.store, "real")  # type: ignore[arg-type]
    assert got and parts.store.load_progress("real").stream_done  # type: ignore[union-attr]
    return got  # type: ignore[return-value]


def real_with(
    stream: EmbeddedStream, pcm: np.ndarray, forged_after: dict[int, list[tuple[str, bytes]]], end_secret: bytes = b""
) -> None:
    """The real session second by second, with forged raw records put after the given seconds."""
    framer = SessionFramer(stream, "real", end_secret=end_secret)
    for i in range(0, len(pcm), 16000):
        framer.push(pcm[i : i + 16000])
        for item in forged_after.get(i // 16000, []):
            stream.put_raw([item])
    framer.end()


def test_end_of_stream_with_a_2_64_total_is_skipped_and_the_shard_goes_on(
    tmp_path: Path, real_pcm: np.ndarray, memo: MemoTranscriber, reference: list[object]
) -> None:
    """Issue 11 #1: the record made ``_end`` fail forever and stopped every session on the shard."""
    stream = EmbeddedStream(tmp_path / "s.db")
    forged = [
        ("p", raw_record("p", 1, 2**64 - 1, FrameKind.END)),
        ("p", raw_record("p", 2**64 - 1, 10**9, FrameKind.END)),
    ]
    real_with(stream, real_pcm, {3: forged})
    parts = parts_for(tmp_path, memo)
    proc = ShardProcessor(parts)
    proc.initialize("shard-0", None)
    ckpt = ListCheckpointer()
    records = stream.read("shard-0", 0, 100_000)
    for i in range(0, len(records), 4):
        proc.process_records(records[i : i + 4], ckpt)
    assert segments_of(parts.store, "real") == reference  # type: ignore[arg-type]
    assert parts.store.load_progress("real").stream_done  # type: ignore[union-attr]
    assert proc.counters["malformed_records"] == 1  # 2^64 at decode; 10^9 is an end of an empty session
    assert ckpt.values[-1] == records[-1].seq  # skipped, never replayed


def test_end_far_beyond_the_audio_costs_no_memory(tmp_path: Path) -> None:
    """Issue 11 #1: ``_end`` allocated np.zeros(total) for a total far past the buffered audio."""
    stream = EmbeddedStream(tmp_path / "s.db")
    tone = (np.sin(np.arange(16000) / 5) * 3000).astype("<i2").tobytes()
    stream.put_raw([("p", raw_record("p", 0, 0, payload=tone))])
    # Within the longest session and backed by enough "missing" records: a legal jump, 20 hours.
    total = 20 * 3600 * 16000
    stream.put_raw([("p", raw_record("p", total // MAX_RECORD_SAMPLES + 2, total, FrameKind.END))])

    class Silent:
        def transcribe(self, audio: np.ndarray, **kw: object) -> AsrResult:
            return AsrResult()

    parts = parts_for(tmp_path, Silent())
    proc = ShardProcessor(parts)
    proc.initialize("shard-0", None)
    tracemalloc.start()
    try:
        proc.process_records(stream.read("shard-0", 0, 10), ListCheckpointer())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024 * 1024, f"peak {peak / 2**20:.0f} MiB"
    progress = parts.store.load_progress("p")
    assert progress is not None and progress.stream_done and progress.ended_sample == total
    assert all(w.end_sample - w.start_sample <= POLICY.max_samples for w in parts.store.windows("p"))


def test_forged_offset_jump_is_malformed_not_replayed(
    tmp_path: Path, real_pcm: np.ndarray, memo: MemoTranscriber, reference: list[object]
) -> None:
    """Issue 11 #1: a jump ahead dropped the rest of the session, counted as "replayed"."""
    stream = EmbeddedStream(tmp_path / "s.db")
    fake = b"\x10\x00" * 16000
    forged = {
        # The next sequence number, an offset an hour ahead: impossible for record 5.
        4: [("real", raw_record("real", 5, 3600 * 16000, payload=fake))],
        # A plausible-at-decode jump (record 900 could be that far), not backed by missing records.
        8: [("real", raw_record("real", 9, 800 * 16000, payload=fake))],
        # An end before audio the session already sent.
        12: [("real", raw_record("real", 13, 16000, FrameKind.END))],
    }
    real_with(stream, real_pcm, forged)
    parts = parts_for(tmp_path, memo)
    proc = ShardProcessor(parts)
    proc.initialize("shard-0", None)
    proc.process_records(stream.read("shard-0", 0, 100_000), ListCheckpointer())
    assert segments_of(parts.store, "real") == reference  # type: ignore[arg-type]
    assert proc.counters["malformed_records"] == 3
    assert proc.counters["replayed_records"] == 0


def test_a_forged_end_of_stream_does_not_end_a_live_session(
    tmp_path: Path, real_pcm: np.ndarray, memo: MemoTranscriber, reference: list[object]
) -> None:
    """Issue 20 #9: a well-formed end of stream forged for a live session ended it early
    (the rest of its audio was counted as records after the end)."""
    stream = EmbeddedStream(tmp_path / "s.db")
    secret = IngestHub(stream).end_secret("real")  # what the ingest that owns "real" holds
    forged = {
        # Well-formed and at the right place on the timeline: the next record, at the next sample.
        5: [("real", raw_record("real", 6, 6 * 16000, FrameKind.END))],
        # A v2 end with a guessed secret, and one with the commitment read off the stream.
        8: [("real", end_of_stream("real", 9, 9 * 16000, bytes(16)).encode())],
        11: [("real", end_of_stream("real", 12, 12 * 16000, end_commitment(secret)).encode())],
    }
    real_with(stream, real_pcm, forged, end_secret=secret)
    parts = parts_for(tmp_path, memo)
    proc = ShardProcessor(parts)
    proc.initialize("shard-0", None)
    proc.process_records(stream.read("shard-0", 0, 100_000), ListCheckpointer())
    assert proc.counters["records_after_end"] == 0
    assert proc.counters["malformed_records"] == 3
    assert segments_of(parts.store, "real") == reference  # type: ignore[arg-type]
    progress = parts.store.load_progress("real")
    assert progress is not None and progress.stream_done and progress.ended_sample == len(real_pcm)


def test_records_inside_a_skipped_span_are_reported(tmp_path: Path) -> None:
    """After a (legal) long gap, audio that turns up inside the gap is malformed, not a replay."""
    stream = EmbeddedStream(tmp_path / "s.db")
    one = b"\x01\x00" * 16000
    stream.put_raw(
        [
            ("s", raw_record("s", 0, 0, payload=one)),
            ("s", raw_record("s", 60, 59 * 16000, payload=one)),  # 58 s gap, 59 missing records
            ("s", raw_record("s", 1, 16000, payload=one)),  # the gap's audio after all
        ]
    )

    class Silent:
        def transcribe(self, audio: np.ndarray, **kw: object) -> AsrResult:
            return AsrResult()

    proc = ShardProcessor(parts_for(tmp_path, Silent()))
    proc.initialize("shard-0", None)
    proc.process_records(stream.read("shard-0", 0, 10), ListCheckpointer())
    assert proc.counters["malformed_records"] == 1 and proc.counters["replayed_records"] == 0


# -- poison records: quarantine with growing backoff ----------------------------------------------


class PoisonStore(SqliteTranscriptStore):
    """A real store that refuses every write for one session (a bug only its data triggers)."""

    def __init__(self, path: Path, poisoned: str) -> None:
        super().__init__(path)
        self.poisoned = poisoned
        self.refusals = 0

    def commit_window(
        self, window: WindowRecord, segments: Sequence[TranscriptSegment], progress: SessionProgress
    ) -> None:
        if window.session_id == self.poisoned:
            self.refusals += 1
            raise RuntimeError(f"cannot store {window.session_id}")
        super().commit_window(window, segments, progress)

    def save_progress(self, progress: SessionProgress) -> None:
        if progress.session_id == self.poisoned:
            self.refusals += 1
            raise RuntimeError(f"cannot store {progress.session_id}")
        super().save_progress(progress)


class RecordingEvent(threading.Event):
    """The consumer's stop event; remembers every pause it was asked to wait."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is not None and timeout > 0.02:
            self.waits.append(timeout)
        return super().wait(min(timeout, 0.01) if timeout is not None else None)


def test_poison_record_is_quarantined_with_growing_backoff_and_other_sessions_move_on(
    tmp_path: Path, real_pcm: np.ndarray, memo: MemoTranscriber, reference: list[object]
) -> None:
    """Issue 11 #1: the failure replayed forever (95 restarts in 95 s, the pause never grew)."""
    stream = EmbeddedStream(tmp_path / "s.db")
    real_with(stream, real_pcm, {2: [("bad", raw_record("bad", 0, 0, FrameKind.END))]})
    store = PoisonStore(tmp_path / "t.db", poisoned="bad")
    parts = parts_for(tmp_path, memo, store)
    policy = RetryPolicy(attempts=4, first_delay=0.1, max_delay=10.0)
    consumer = EmbeddedConsumer(stream, "app", lambda: ShardProcessor(parts), idle_sleep=0.01, retry=policy)
    consumer.stop_event = RecordingEvent()
    thread = threading.Thread(target=consumer.run)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            p = store.load_progress("real")
            if p and p.stream_done:
                break
            time.sleep(0.05)
    finally:
        consumer.stop()
        thread.join(timeout=60)
    assert segments_of(store, "real") == reference
    guard = consumer.guards["shard-0"]
    assert guard.counters["quarantined_records"] == 1
    (bad_seq,) = guard.quarantined
    assert stream.read("shard-0", bad_seq - 1, 1)[0].partition_key == "bad"
    waits = consumer.stop_event.waits
    assert waits == [0.1, 0.1, 0.2, 0.4], waits  # grows with each failure of the same record
    assert store.refusals == 1 + policy.attempts  # bounded: the first try, then ``attempts`` replays
    assert stream.get_checkpoint("app", "shard-0") == stream.latest_seq("shard-0")


class FailOnce:
    """Delegate that fails the first time it sees one record, then works (a transient error)."""

    def __init__(self, bad_seq: int) -> None:
        self.bad_seq = bad_seq
        self.failed = False
        self.delivered: list[int] = []
        self.initialized: list[str | None] = []

    def initialize(self, shard_id: str, starting_sequence_number: str | None) -> None:
        self.initialized.append(starting_sequence_number)
        self.delivered = []

    def process_records(self, records: Sequence[StreamRecord], checkpointer: Checkpointer) -> None:
        for r in records:
            if r.seq == self.bad_seq and not self.failed:
                self.failed = True
                raise OSError("connection reset")
            self.delivered.append(r.seq)
        safe = [s for s in self.delivered if s % 3 == 0]  # "committed" every third record
        if safe:
            checkpointer.checkpoint(str(safe[-1]))

    def lease_lost(self) -> None:
        self.delivered = []

    def shard_ended(self, checkpointer: Checkpointer) -> None:
        checkpointer.checkpoint(None)

    def shutdown_requested(self, checkpointer: Checkpointer) -> None:
        pass


def _records(n: int) -> list[StreamRecord]:
    return [StreamRecord(str(i), "k", b"x") for i in range(1, n + 1)]


def test_guard_replays_from_the_checkpoint_after_a_transient_failure() -> None:
    inner = FailOnce(bad_seq=8)
    waits: list[float] = []

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        return False

    guard = PoisonGuard(inner, wait=wait)
    guard.initialize("shard-0", None)
    ckpt = ListCheckpointer()
    recs = _records(12)
    guard.process_records(recs[:5], ckpt)  # checkpoints 3
    guard.process_records(recs[5:10], ckpt)  # fails at 8
    assert inner.initialized[-1] == "3"  # restarted at the checkpoint
    assert inner.delivered == [4, 5, 6, 7, 8, 9, 10]  # nothing lost, nothing before the checkpoint
    guard.process_records(recs[10:], ckpt)
    assert ckpt.values == [3, 9, 12] and waits == [1.0]  # the replay checkpoints once
    assert not guard.quarantined


def test_guard_without_kept_records_hands_the_failure_to_the_runner() -> None:
    inner = FailOnce(bad_seq=2)
    guard = PoisonGuard(inner, wait=lambda s: False, max_retained_bytes=0)
    guard.initialize("shard-0", None)
    with pytest.raises(RuntimeError, match="not kept"):
        guard.process_records(_records(3), ListCheckpointer())
