"""The wire contracts: golden examples, versioning and malformed input."""

from __future__ import annotations

import contextlib
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.frames import (
    MAX_RECORD_BYTES,
    MAX_RECORD_SAMPLES,
    MAX_SESSION_SAMPLES,
    EndAuthority,
    FrameKind,
    FrameRecord,
    MalformedRecord,
    end_commitment,
    end_of_stream,
    validate_session_id,
)
from contracts.segments import TranscriptSegment
from contracts.settings import Settings, SettingsError

GOLDEN = Path(__file__).resolve().parents[1] / "contracts" / "golden"


def _tone() -> bytes:
    return (np.sin(np.arange(160) * 2 * np.pi * 440 / 16000) * 8000).astype("<i2").tobytes()


SECRET = bytes(range(16))


def test_audio_frame_matches_golden_bytes() -> None:
    rec = FrameRecord("meeting-42", 7, 112000, FrameKind.AUDIO, _tone(), tag=end_commitment(SECRET))
    golden = (GOLDEN / "frame_v2_audio.bin").read_bytes()
    assert rec.encode() == golden
    back = FrameRecord.decode(golden)
    assert back == rec
    assert back.num_samples == 160 and back.end_offset == 112160
    assert back.partition_key == "meeting-42"


def test_end_frame_matches_golden_bytes() -> None:
    golden = (GOLDEN / "frame_v2_end.bin").read_bytes()
    assert end_of_stream("meeting-42", 8, 112160, SECRET).encode() == golden
    rec = FrameRecord.decode(golden)
    assert rec.kind is FrameKind.END and rec.sample_offset == 112160 and rec.payload == b""
    assert rec.tag == SECRET


def test_v1_records_are_still_read_as_records_without_a_tag() -> None:
    audio = FrameRecord.decode((GOLDEN / "frame_v1_audio.bin").read_bytes())
    assert audio == FrameRecord("meeting-42", 7, 112000, FrameKind.AUDIO, _tone())
    end = FrameRecord.decode((GOLDEN / "frame_v1_end.bin").read_bytes())
    assert end == end_of_stream("meeting-42", 8, 112160)
    # A v1 session (no tags) ends on its well-formed end record, as before.
    authority = EndAuthority()
    authority.check(audio)
    authority.check(end)


def test_only_the_end_secret_opens_the_commitment_of_a_sessions_audio() -> None:
    authority = EndAuthority()
    authority.check(FrameRecord.decode((GOLDEN / "frame_v2_audio.bin").read_bytes()))
    # A later audio record with another tag does not move the commitment.
    authority.check(FrameRecord("meeting-42", 9, 112160, FrameKind.AUDIO, _tone(), tag=end_commitment(bytes(16))))
    for forged in (b"", bytes(16), end_commitment(SECRET)):
        with pytest.raises(MalformedRecord, match="end secret"):
            authority.check(end_of_stream("meeting-42", 10, 112320, forged))
    authority.check(FrameRecord.decode((GOLDEN / "frame_v2_end.bin").read_bytes()))


@pytest.mark.parametrize("tag_len", [1, 15, 17, 255])
def test_tags_of_other_sizes_are_malformed(tag_len: int) -> None:
    good = (GOLDEN / "frame_v2_end.bin").read_bytes()
    cut = len(good) - 1 - 16  # where tag_len sits
    with pytest.raises(MalformedRecord, match="tag"):
        FrameRecord.decode(good[:cut] + bytes([tag_len]) + bytes(tag_len))
    with pytest.raises(ValueError, match="tag"):
        FrameRecord("meeting-42", 1, 0, tag=bytes(tag_len)).encode()


@pytest.mark.parametrize("name", ["segment_v1_final.json", "segment_v1_interim.json"])
def test_segment_golden_round_trip(name: str) -> None:
    data = json.loads((GOLDEN / name).read_text())
    seg = TranscriptSegment.from_dict(data)
    assert seg.to_dict() == data
    assert seg.key == (data["session_id"], data["window_index"], data["segment_index"])


def test_segment_rejects_unknown_version() -> None:
    data = json.loads((GOLDEN / "segment_v1_final.json").read_text())
    data["version"] = 2
    with pytest.raises(ValueError, match="version 2"):
        TranscriptSegment.from_dict(data)


def test_one_second_record_fits_kinesis() -> None:
    rec = FrameRecord("s" * 128, 1, 0, payload=b"\0\0" * 16000)
    assert len(rec.encode()) < 33_000 < MAX_RECORD_BYTES < 1024 * 1024


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short"),
        (b"XXXX" + bytes(30), "bad magic"),
        (b"FBFR\x03" + bytes(29), "version 3"),
        (b"FBFR\x01\x09" + bytes(28), "unknown record kind"),
        (FrameRecord("abc", 0, 0, payload=b"\0\0").encode()[:-1], "whole 16-bit"),
        (FrameRecord("abc", 0, 0).encode()[:-2], "truncated session id"),
    ],
)
def test_malformed_records_raise_clear_errors(data: bytes, message: str) -> None:
    with pytest.raises(MalformedRecord, match=message):
        FrameRecord.decode(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_crash_the_decoder(data: bytes) -> None:
    with contextlib.suppress(MalformedRecord):
        FrameRecord.decode(data)


def _raw(seq: int, offset: int, kind: int = 2, payload: bytes = b"") -> bytes:
    return struct.pack(">4sBBHQQH", b"FBFR", 1, kind, 16000, seq, offset, 1) + b"p" + payload


@pytest.mark.parametrize(
    ("data", "message"),
    [
        # Issue 11: an end of stream with a 2^64-1 total stopped a whole shard.
        (_raw(1, 2**64 - 1), "beyond the longest session"),
        (_raw(2**64 - 1, 2**64 - 1), "beyond the longest session"),
        (_raw(2**40, MAX_SESSION_SAMPLES - 1, kind=1, payload=b"\0\0\0\0"), "beyond the longest session"),
        # More audio than the records before it could have carried.
        (_raw(3, 3 * MAX_RECORD_SAMPLES + 1), "3 earlier record"),
        (_raw(0, 1, kind=1, payload=b"\0\0"), "0 earlier record"),
    ],
)
def test_records_outside_what_a_session_can_produce_are_malformed(data: bytes, message: str) -> None:
    with pytest.raises(MalformedRecord, match=message):
        FrameRecord.decode(data)


def test_the_limits_still_admit_the_longest_session() -> None:
    last = FrameRecord.decode(_raw(MAX_SESSION_SAMPLES // 16000, MAX_SESSION_SAMPLES))
    assert last.sample_offset == MAX_SESSION_SAMPLES
    with pytest.raises(ValueError, match="earlier record"):
        FrameRecord("p", 0, 16000, payload=b"\0\0").encode()  # encode refuses what decode would


@pytest.mark.parametrize("bad", ["", "a/b", "../x", "x" * 129, "-start", "sp ace", "abc\n", "abc\r\n", "a\x00"])
def test_session_ids_are_safe_for_keys_and_paths(bad: str) -> None:
    with pytest.raises(ValueError):
        validate_session_id(bad)


def test_settings_read_typed_env() -> None:
    s = Settings.from_env({"FLOWBOT_WINDOW_SECONDS": "20", "FLOWBOT_STREAM": "kinesis", "FLOWBOT_PORT": "9000"})
    assert s.window_seconds == 20.0 and s.stream == "kinesis" and s.port == 9000


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FLOWBOT_PORT": "eighty"}, "not a valid int"),
        ({"FLOWBOT_STREAM": "kafka"}, "expected one of"),
    ],
)
def test_settings_reject_bad_values(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_every_setting_is_documented() -> None:
    rows = Settings.describe()
    assert all(var.startswith("FLOWBOT_") and doc for var, _, doc in rows)
    assert len({var for var, _, _ in rows}) == len(rows)


def test_settings_choices_are_enum_members_from_env_overrides_and_the_cli() -> None:
    from contracts.settings import DiarizationWeights, StreamBackend, TranscriptBackend
    from flowbot.cli import build_parser

    settings = Settings.from_env({"FLOWBOT_STREAM": "kinesis"}, store="supabase")
    assert settings.stream is StreamBackend.KINESIS and settings.store is TranscriptBackend.SUPABASE
    assert settings.replace(diarization="none").diarization is DiarizationWeights.NONE
    with pytest.raises(SettingsError, match="expected one of"):
        Settings.from_env({}, archive="tape")
    # The CLI offers exactly the setting's choices (argparse matches the string values).
    args = build_parser().parse_args(["process", "--source", "kinesis", "--diarization", "none"])
    assert args.stream == StreamBackend.KINESIS and args.diarization == DiarizationWeights.NONE
    with pytest.raises(SystemExit):
        build_parser().parse_args(["process", "--source", "kafka"])
