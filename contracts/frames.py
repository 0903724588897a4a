"""Frame record format v2: the one boundary between producer and processor.

A frame record carries a short run of 16 kHz mono signed 16-bit little-endian
PCM for one session, or marks the end of that session's stream. Records travel
through the embedded SQLite stream and through Kinesis unchanged, so the
encoding is compact binary (no base64): about 1 s of audio is 32 KB of payload
plus a header under 100 bytes, far below Kinesis' 1 MiB record limit.

Layout (big-endian header, then payload)::

    magic      4 bytes  b"FBFR"
    version    u8       2
    kind       u8       1 = audio, 2 = end of stream
    rate       u16      sample rate, always 16000
    seq        u64      per-session record sequence, starts at 0
    offset     u64      sample offset of the first sample on the session timeline
    sid_len    u16      length of the UTF-8 session id
    session_id sid_len bytes
    tag_len    u8       0 or 16 (v2 only)
    tag        tag_len  bytes: see "Who may end a stream" (v2 only)
    payload    rest     PCM s16le mono (empty for end of stream)

For an end-of-stream record ``offset`` is the total number of samples the
session produced, so the processor knows where the timeline ends.

Version 1 is version 2 without ``tag_len`` and ``tag``. It is still read (as a
record with an empty tag); only v2 is written.

Who may end a stream (v2): the ingest that owns a session's timeline holds a
16-byte secret for it (:func:`producer.hub.IngestHub.end_secret`). Every audio
record carries the secret's commitment (:func:`end_commitment`, a truncated
SHA-256), the end-of-stream record carries the secret itself, and the processor
(:class:`EndAuthority`) accepts an end of stream only if it opens the
commitment of the session's first audio record. Anyone who can read the stream
sees commitments, never the secret before the real end. A session whose audio
carried no tag (a v1 producer) ends as before, on any well-formed end record.

Bounds checked at decode (anything outside them is malformed, skipped and
counted, never replayed): a session is at most :data:`MAX_SESSION_SECONDS`
long, so no offset or total lies beyond :data:`MAX_SESSION_SAMPLES`; and a
record cannot start later than the records before it could have filled
(``offset <= seq * MAX_RECORD_SAMPLES``: each of the ``seq`` earlier records
carries at most :data:`MAX_RECORD_SAMPLES` samples).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import struct
from dataclasses import dataclass

MAGIC = b"FBFR"
VERSION = 2
#: Versions :meth:`FrameRecord.decode` reads.
READABLE_VERSIONS = (1, 2)
#: Size of a session's end secret and of its commitment (the only tag sizes besides none).
END_TAG_BYTES = 16
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
    """A stream record that cannot be decoded as a frame record (v2, or v1 as written before)."""


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
    #: Audio: the commitment to the session's end secret; end of stream: the secret (empty = none).
    tag: bytes = b""

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
        """Serialise to the v2 wire format."""
        validate_session_id(self.session_id)
        if self.kind == FrameKind.END and self.payload:
            raise ValueError("an end-of-stream record carries no payload")
        if len(self.payload) % BYTES_PER_SAMPLE:
            raise ValueError("payload must hold whole 16-bit samples")
        problem = _timeline_problem(self.seq, self.sample_offset, self.num_samples)
        if problem:
            raise ValueError(problem)
        if len(self.tag) not in (0, END_TAG_BYTES):
            raise ValueError(f"a tag is {END_TAG_BYTES} bytes or none")
        sid = self.session_id.encode()
        header = _HEADER.pack(MAGIC, VERSION, int(self.kind), self.sample_rate, self.seq, self.sample_offset, len(sid))
        data = header + sid + bytes([len(self.tag)]) + self.tag + self.payload
        if len(data) > MAX_RECORD_BYTES:
            raise ValueError(f"record of {len(data)} bytes exceeds {MAX_RECORD_BYTES}")
        return data

    @classmethod
    def decode(cls, data: bytes) -> FrameRecord:
        """Parse a v2 (or v1) record; raise :class:`MalformedRecord` on anything else."""
        if len(data) < _HEADER.size:
            raise MalformedRecord(f"record too short ({len(data)} bytes)")
        magic, version, kind, rate, seq, offset, sid_len = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise MalformedRecord(f"bad magic {magic!r}")
        if version not in READABLE_VERSIONS:
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
        start += sid_len
        tag = b""
        if version >= 2:
            if len(data) < start + 1:
                raise MalformedRecord("truncated tag")
            tag_len = data[start]
            if tag_len not in (0, END_TAG_BYTES) or len(data) < start + 1 + tag_len:
                raise MalformedRecord(f"bad tag of {tag_len} bytes")
            tag = bytes(data[start + 1 : start + 1 + tag_len])
            start += 1 + tag_len
        payload = bytes(data[start:])
        if len(payload) % BYTES_PER_SAMPLE:
            raise MalformedRecord("payload is not whole 16-bit samples")
        if frame_kind == FrameKind.END and payload:
            raise MalformedRecord("end-of-stream record with a payload")
        problem = _timeline_problem(seq, offset, len(payload) // BYTES_PER_SAMPLE)
        if problem:
            raise MalformedRecord(problem)
        return cls(session_id, seq, offset, frame_kind, payload, rate, tag)


def _timeline_problem(seq: int, offset: int, samples: int) -> str:
    """Why a record's place on the session timeline is impossible ("" if it is possible)."""
    if offset + samples > MAX_SESSION_SAMPLES:
        return f"samples {offset}..{offset + samples} lie beyond the longest session ({MAX_SESSION_SECONDS} s)"
    if offset > seq * MAX_RECORD_SAMPLES:
        return f"sample offset {offset} at record {seq}: more audio than {seq} earlier record(s) can carry"
    return ""


def end_of_stream(session_id: str, seq: int, total_samples: int, secret: bytes = b"") -> FrameRecord:
    """The record that closes a session's stream (``secret``: the session's end secret, if it has one)."""
    return FrameRecord(session_id, seq, total_samples, FrameKind.END, tag=secret)


def end_commitment(secret: bytes) -> bytes:
    """What a session's audio records carry for its end secret: only the secret opens it."""
    return hashlib.sha256(b"flowbot-frame-end:" + secret).digest()[:END_TAG_BYTES]


class EndAuthority:
    """The processor's check that an end of stream comes from the session's own ingest.

    One per session: it keeps the commitment of the first audio record with a
    tag, and refuses (:class:`MalformedRecord`) an end of stream that does not
    carry the secret behind it. Audio is not judged by its tag: refusing it would
    let a forger who wrote a session's first record drop the real publisher's audio.
    """

    def __init__(self) -> None:
        self.commitment: bytes | None = None

    def check(self, frame: FrameRecord) -> None:
        """Learn from an audio record; raise :class:`MalformedRecord` for a forged end of stream."""
        if frame.kind == FrameKind.AUDIO:
            if self.commitment is None and frame.tag:
                self.commitment = frame.tag
            return
        if self.commitment is None:
            return  # audio without a tag (a v1 producer), or none seen yet: nothing to hold it to
        if not frame.tag or not hmac.compare_digest(end_commitment(frame.tag), self.commitment):
            raise MalformedRecord("end of stream without the end secret of the session's publisher")
