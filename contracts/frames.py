"""Frame record format v1: the one boundary between producer and processor.

A frame record carries a short run of 16 kHz mono signed 16-bit little-endian
PCM for one session, or marks the end of that session's stream. Records travel
through the embedded SQLite stream and through Kinesis unchanged, so the
encoding is compact binary (no base64): about 1 s of audio is 32 KB of payload
plus a header under 100 bytes, far below Kinesis' 1 MiB record limit.

Layout (big-endian header, then payload)::

    magic      4 bytes  b"FBFR"
    version    u8       1
    kind       u8       1 = audio, 2 = end of stream
    rate       u16      sample rate, always 16000 in v1
    seq        u64      per-session record sequence, starts at 0
    offset     u64      sample offset of the first sample on the session timeline
    sid_len    u16      length of the UTF-8 session id
    session_id sid_len bytes
    payload    rest     PCM s16le mono (empty for end of stream)

For an end-of-stream record ``offset`` is the total number of samples the
session produced, so the processor knows where the timeline ends.

Bounds checked at decode (anything outside them is malformed, skipped and
counted, never replayed): a session is at most :data:`MAX_SESSION_SECONDS`
long, so no offset or total lies beyond :data:`MAX_SESSION_SAMPLES`; and a
record cannot start later than the records before it could have filled
(``offset <= seq * MAX_RECORD_SAMPLES``: each of the ``seq`` earlier records
carries at most :data:`MAX_RECORD_SAMPLES` samples).
"""

from __future__ import annotations

import enum
import re
import struct
from dataclasses import dataclass

MAGIC = b"FBFR"
VERSION = 1
SAMPLE_RATE = 16_000
BYTES_PER_SAMPLE = 2
#: Kinesis rejects records over 1 MiB; stay far below it.
MAX_RECORD_BYTES = 256 * 1024
#: Most samples one record can carry (its payload is under MAX_RECORD_BYTES).
MAX_RECORD_SAMPLES = MAX_RECORD_BYTES // BYTES_PER_SAMPLE
#: One second of audio per record keeps the per-record overhead under 0.3 %.
DEFAULT_FRAME_SAMPLES = SAMPLE_RATE
#: Longest session the pipeline accepts (24 h, also Kinesis' default retention).
#: Offsets and totals beyond it are forged or corrupt: at decode they are malformed.
MAX_SESSION_SECONDS = 24 * 3600
MAX_SESSION_SAMPLES = MAX_SESSION_SECONDS * SAMPLE_RATE

_HEADER = struct.Struct(">4sBBHQQH")
_SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")


class MalformedRecord(ValueError):
    """A stream record that cannot be decoded as a v1 frame record."""


class FrameKind(enum.IntEnum):
    """What a frame record carries."""

    AUDIO = 1
    END = 2


def validate_session_id(session_id: str) -> str:
    """Return ``session_id`` if it is a valid id, else raise ``ValueError``.

    Ids double as Kinesis partition keys, S3 key parts and URL path segments,
    so they are restricted to a safe alphabet.
    """
    # fullmatch: ``$`` would also accept a trailing newline ("abc\n"), which then
    # forges log lines and breaks S3 keys.
    if not isinstance(session_id, str) or not _SESSION_ID.fullmatch(session_id):
        raise ValueError(
            f"invalid session id {session_id!r}: use 1-128 characters of "
            "letters, digits, '_', '.', ':' or '-', starting with a letter or digit"
        )
    return session_id


@dataclass(frozen=True, slots=True)
class FrameRecord:
    """One record on the audio stream."""

    session_id: str
    seq: int
    sample_offset: int
    kind: FrameKind = FrameKind.AUDIO
    payload: bytes = b""
    sample_rate: int = SAMPLE_RATE

    @property
    def num_samples(self) -> int:
        """Number of PCM samples in the payload."""
        return len(self.payload) // BYTES_PER_SAMPLE

    @property
    def end_offset(self) -> int:
        """Sample offset just past this record's audio."""
        return self.sample_offset + self.num_samples

    @property
    def partition_key(self) -> str:
        """Kinesis partition key: all of a session's frames stay on one shard, in order."""
        return self.session_id

    def encode(self) -> bytes:
        """Serialise to the v1 wire format."""
        validate_session_id(self.session_id)
        if self.kind == FrameKind.END and self.payload:
            raise ValueError("an end-of-stream record carries no payload")
        if len(self.payload) % BYTES_PER_SAMPLE:
            raise ValueError("payload must hold whole 16-bit samples")
        problem = _timeline_problem(self.seq, self.sample_offset, self.num_samples)
        if problem:
            raise ValueError(problem)
        sid = self.session_id.encode()
        header = _HEADER.pack(MAGIC, VERSION, int(self.kind), self.sample_rate, self.seq, self.sample_offset, len(sid))
        data = header + sid + self.payload
        if len(data) > MAX_RECORD_BYTES:
            raise ValueError(f"record of {len(data)} bytes exceeds {MAX_RECORD_BYTES}")
        return data

    @classmethod
    def decode(cls, data: bytes) -> FrameRecord:
        """Parse a v1 record; raise :class:`MalformedRecord` on anything else."""
        if len(data) < _HEADER.size:
            raise MalformedRecord(f"record too short ({len(data)} bytes)")
        magic, version, kind, rate, seq, offset, sid_len = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise MalformedRecord(f"bad magic {magic!r}")
        if version != VERSION:
            raise MalformedRecord(f"unsupported frame record version {version}")
        try:
            frame_kind = FrameKind(kind)
        except ValueError:
            raise MalformedRecord(f"unknown record kind {kind}") from None
        if rate != SAMPLE_RATE:
            raise MalformedRecord(f"unsupported sample rate {rate}")
        start = _HEADER.size
        if len(data) < start + sid_len:
            raise MalformedRecord("truncated session id")
        try:
            session_id = validate_session_id(data[start : start + sid_len].decode())
        except (UnicodeDecodeError, ValueError) as exc:
            raise MalformedRecord(f"bad session id: {exc}") from None
        payload = bytes(data[start + sid_len :])
        if len(payload) % BYTES_PER_SAMPLE:
            raise MalformedRecord("payload is not whole 16-bit samples")
        if frame_kind == FrameKind.END and payload:
            raise MalformedRecord("end-of-stream record with a payload")
        problem = _timeline_problem(seq, offset, len(payload) // BYTES_PER_SAMPLE)
        if problem:
            raise MalformedRecord(problem)
        return cls(session_id, seq, offset, frame_kind, payload, rate)


def _timeline_problem(seq: int, offset: int, samples: int) -> str:
    """Why a record's place on the session timeline is impossible ("" if it is possible)."""
    if offset + samples > MAX_SESSION_SAMPLES:
        return f"samples {offset}..{offset + samples} lie beyond the longest session ({MAX_SESSION_SECONDS} s)"
    if offset > seq * MAX_RECORD_SAMPLES:
        return f"sample offset {offset} at record {seq}: more audio than {seq} earlier record(s) can carry"
    return ""


def end_of_stream(session_id: str, seq: int, total_samples: int) -> FrameRecord:
    """The record that closes a session's stream."""
    return FrameRecord(session_id, seq, total_samples, FrameKind.END)
