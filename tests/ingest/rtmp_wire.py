"""A tiny RTMP client-side encoder for tests: AMF0 values and chunked messages."""

from __future__ import annotations

import struct
from typing import Any


def amf0(value: Any) -> bytes:
    """Encode one AMF0 value (numbers, strings, booleans, None, dicts)."""
    if value is None:
        return b"\x05"
    if isinstance(value, bool):
        return b"\x01" + bytes([value])
    if isinstance(value, int | float):
        return b"\x00" + struct.pack(">d", float(value))
    if isinstance(value, str):
        data = value.encode()
        return b"\x02" + struct.pack(">H", len(data)) + data
    if isinstance(value, dict):
        out = b"\x03"
        for k, v in value.items():
            kb = k.encode()
            out += struct.pack(">H", len(kb)) + kb + amf0(v)
        return out + b"\x00\x00\x09"
    raise TypeError(value)


def command(*values: Any) -> bytes:
    """An AMF0 command payload."""
    return b"".join(amf0(v) for v in values)


def basic_header(fmt: int, csid: int) -> bytes:
    """Chunk basic header in its 1, 2 or 3 byte form."""
    if csid < 64:
        return bytes([(fmt << 6) | csid])
    if csid < 320:
        return bytes([fmt << 6, csid - 64])
    rest = csid - 64
    return bytes([(fmt << 6) | 1, rest & 0xFF, rest >> 8])


def chunk_message(
    payload: bytes,
    *,
    type_id: int,
    csid: int = 3,
    stream_id: int = 0,
    timestamp: int = 0,
    chunk_size: int = 128,
    first_fmt: int = 0,
) -> bytes:
    """A message split into chunks: a fmt ``first_fmt`` header, then fmt 3 continuations."""
    ext = timestamp >= 0xFFFFFF
    ts_field = 0xFFFFFF if ext else timestamp
    ext_bytes = struct.pack(">I", timestamp) if ext else b""
    if first_fmt == 0:
        header = (
            ts_field.to_bytes(3, "big")
            + len(payload).to_bytes(3, "big")
            + bytes([type_id])
            + struct.pack("<I", stream_id)
        )
    elif first_fmt == 1:
        header = ts_field.to_bytes(3, "big") + len(payload).to_bytes(3, "big") + bytes([type_id])
    elif first_fmt == 2:
        header = ts_field.to_bytes(3, "big")
    else:
        header = b""
    out = basic_header(first_fmt, csid) + header + ext_bytes
    out += payload[:chunk_size]
    for i in range(chunk_size, len(payload), chunk_size):
        out += basic_header(3, csid) + ext_bytes + payload[i : i + chunk_size]
    return out


def handshake_c0c1() -> bytes:
    """C0 + C1 (version 3, zero time, zero padding, fixed pseudo-random bytes)."""
    return b"\x03" + bytes(8) + (bytes(range(256)) * 6)[:1528]


def set_chunk_size(size: int) -> bytes:
    """Protocol control message 1 on chunk stream 2."""
    return chunk_message(struct.pack(">I", size), type_id=1, csid=2)
