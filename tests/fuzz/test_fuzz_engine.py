"""Fuzzing the frame decoder and the engine (issue 11): hostile records next to a real session.

A real flite meeting is framed onto the stream; hypothesis puts random and
adversarial records between its records (random bytes, headers with any field
values for other sessions, impossible records under the real session's id,
duplicates of records already delivered) and feeds them in batches of random
size. Nothing may raise, and the real session's transcript must be exactly the
one it has alone. The Whisper model is real; its results are remembered per
window audio, so an example only pays for windows that differ.
"""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.frames import MAX_RECORD_SAMPLES, MAX_SESSION_SAMPLES, FrameRecord, MalformedRecord
from processor.engine import ShardProcessor
from producer.decode import read_pcm
from producer.framer import SessionFramer
from streams.base import StreamRecord
from streams.embedded import EmbeddedStream
from testkit.checkpoints import ListCheckpointer
from testkit.speech import Turn
from tests.test_hostile_records import MemoTranscriber, parts_for, segments_of

REAL = "real"

u64 = st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 2**63, 2**64 - 1, MAX_SESSION_SAMPLES]))
session_ids = st.one_of(
    st.sampled_from(["p", "q", "a.b:c-d", "x" * 128]),
    st.text(min_size=0, max_size=130),
)


def header(
    kind: int, seq: int, offset: int, sid: bytes, payload: bytes, *, version: int = 1, rate: int = 16000
) -> bytes:
    return struct.pack(">4sBBHQQH", b"FBFR", version, kind, rate, seq, offset, len(sid) & 0xFFFF) + sid + payload


@st.composite
def other_session(draw: st.DrawFn) -> tuple[str, bytes]:
    """Any header fields for some other session (its own partition key, or a wrong one)."""
    sid = draw(session_ids)
    raw_sid = sid.encode("utf-8", "surrogatepass")
    payload = draw(st.one_of(st.binary(max_size=64), st.builds(lambda n: b"\x10\x00" * n, st.integers(0, 3000))))
    data = header(
        draw(st.sampled_from([0, 1, 2, 3, 255])),
        draw(u64),
        draw(u64),
        raw_sid,
        payload,
        version=draw(st.sampled_from([1, 1, 1, 0, 2])),
        rate=draw(st.sampled_from([16000, 16000, 8000, 0])),
    )
    key = draw(st.one_of(st.just(sid), st.sampled_from(["p", REAL])))
    return key, data


@st.composite
def impossible_for_real(draw: st.DrawFn) -> tuple[str, bytes]:
    """Records under the real session's id that no producer could have written."""
    seq = draw(st.integers(0, 40))
    offset = draw(
        st.one_of(
            st.integers(seq * MAX_RECORD_SAMPLES + 1, 2**64 - 1),  # more audio than seq records carry
            st.integers(MAX_SESSION_SAMPLES + 1, 2**64 - 1),  # beyond the longest session
        )
    )
    kind = draw(st.sampled_from([1, 2]))
    payload = b"" if kind == 2 else b"\x20\x00" * draw(st.integers(1, 16000))
    return REAL, header(kind, seq, offset, REAL.encode(), payload)


hostile = st.one_of(
    st.tuples(st.sampled_from([REAL, "p", "", "ü" * 3]), st.binary(max_size=200)),
    other_session(),
    impossible_for_real(),
)


@pytest.fixture(scope="module")
def real_records(tmp_path_factory: pytest.TempPathFactory, meeting: tuple[Path, list[Turn]]) -> list[StreamRecord]:
    stream = EmbeddedStream(tmp_path_factory.mktemp("real") / "s.db")
    framer = SessionFramer(stream, REAL)
    framer.push(read_pcm(str(meeting[0]))[: 14 * 16000])
    framer.end()
    return stream.read("shard-0", 0, 1000)


@pytest.fixture(scope="module")
def memo(transcriber: object) -> MemoTranscriber:
    return MemoTranscriber(transcriber)


def _run(records: list[tuple[str, bytes]], batches: list[int], memo: MemoTranscriber) -> tuple[object, dict[str, int]]:
    with tempfile.TemporaryDirectory() as tmp:
        stream = EmbeddedStream(Path(tmp) / "s.db")
        for key, data in records:
            stream.put_raw([(key, data)])
        delivered = stream.read("shard-0", 0, 10_000)
        parts = parts_for(Path(tmp), memo)
        proc = ShardProcessor(parts)
        proc.initialize("shard-0", None)
        ckpt = ListCheckpointer()
        i = 0
        for size in [*batches, len(delivered)]:
            proc.process_records(delivered[i : i + size], ckpt)
            i += size
        progress = parts.store.load_progress(REAL)
        assert progress is not None and progress.stream_done
        return segments_of(parts.store, REAL), dict(proc.counters)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def alone(real_records: list[StreamRecord], memo: MemoTranscriber) -> object:
    got, _ = _run([(r.partition_key, r.data) for r in real_records], [], memo)
    assert got
    return got


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    st.lists(st.tuples(st.integers(0, 10**6), hostile), max_size=25),
    st.lists(st.integers(0, 10**6), max_size=6),
    st.lists(st.integers(1, 7), max_size=8),
)
def test_hostile_records_never_change_the_real_transcript(
    real_records: list[StreamRecord],
    memo: MemoTranscriber,
    alone: object,
    inserts: list[tuple[int, tuple[str, bytes]]],
    duplicates: list[int],
    batches: list[int],
) -> None:
    real = [(r.partition_key, r.data) for r in real_records]
    mixed = list(real)
    for where, item in inserts:
        mixed.insert(where % (len(mixed) + 1), item)
    for pick in duplicates:  # a record delivered again, after the original (Kinesis retries)
        original = real[pick % len(real)]
        first = mixed.index(original)
        mixed.insert(first + 1 + pick % (len(mixed) - first), original)
    got, counters = _run(mixed, batches, memo)
    assert got == alone
    undecodable = 0
    for key, data in mixed:
        try:
            if FrameRecord.decode(data).session_id != key:
                undecodable += 1
        except MalformedRecord:
            undecodable += 1
    assert counters.get("malformed_records", 0) >= undecodable  # skipped and counted, never replayed


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_decoder_raises_only_malformed_record(data: bytes) -> None:
    try:
        rec = FrameRecord.decode(data)
    except MalformedRecord:
        return
    assert rec.end_offset <= MAX_SESSION_SAMPLES and rec.sample_offset <= rec.seq * MAX_RECORD_SAMPLES
    assert FrameRecord.decode(rec.encode()) == rec


@settings(max_examples=300, deadline=None)
@given(other_session())
def test_decoder_on_any_header(item: tuple[str, bytes]) -> None:
    test_decoder_raises_only_malformed_record.hypothesis.inner_test(item[1])  # type: ignore[attr-defined]
