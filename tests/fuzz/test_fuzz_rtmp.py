"""Fuzzing the RTMP chunk-stream parser (issue 11): random chunk streams, from any client.

Whatever arrives, only :class:`RtmpProtocolError` leaves the parser (the relay
turns it into a refused connection), and what it holds stays bounded.
"""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from producer.rtmp_wire import (
    MAX_CHUNK_STREAMS,
    MAX_COMMAND_BYTES,
    MAX_MESSAGE_BYTES_IN_FLIGHT,
    RtmpProtocolError,
    RtmpSniffer,
    decode_amf0_command,
)
from tests.ingest.rtmp_wire import basic_header, handshake_c0c1

HANDSHAKE = handshake_c0c1() + bytes(1536)
#: A partial chunk header at most (1-3 byte basic header, 11 bytes, 4 extended timestamp)
#: plus every chunk stream's partial command.
BOUND = 18 + min(MAX_CHUNK_STREAMS * MAX_COMMAND_BYTES, MAX_MESSAGE_BYTES_IN_FLIGHT)

amf_scalar = st.one_of(
    st.none().map(lambda _: b"\x05"),
    st.booleans().map(lambda b: b"\x01" + bytes([b])),
    st.floats(allow_nan=True).map(lambda f: b"\x00" + struct.pack(">d", f)),
    st.text(max_size=40).map(lambda t: b"\x02" + struct.pack(">H", len(t.encode())) + t.encode()),
    st.binary(max_size=12),  # anything, including markers this parser does not know
)
amf_value = st.recursive(
    amf_scalar,
    lambda inner: st.one_of(
        st.lists(st.tuples(st.text(max_size=8), inner), max_size=4).map(
            lambda kv: (
                b"\x03" + b"".join(struct.pack(">H", len(k.encode())) + k.encode() + v for k, v in kv) + b"\x00\x00\x09"
            )
        ),
        st.lists(inner, max_size=4).map(lambda vs: b"\x0a" + struct.pack(">I", len(vs)) + b"".join(vs)),
        st.tuples(st.integers(1, 800), inner).map(lambda d: b"\x03\x00\x00" * d[0] + d[1]),  # deep nesting
    ),
    max_leaves=12,
)
command_payload = st.tuples(
    st.sampled_from(["connect", "publish", "createStream", "FCPublish", "play", "deleteStream", "x"]),
    st.lists(amf_value, max_size=4),
).map(lambda c: b"\x02" + struct.pack(">H", len(c[0])) + c[0].encode() + b"".join(c[1]))


@st.composite
def chunk(draw: st.DrawFn) -> bytes:
    """One chunk: any header format and chunk stream, often a plausible message."""
    fmt = draw(st.integers(0, 3))
    csid = draw(st.one_of(st.integers(2, 8), st.integers(2, 65599)))
    type_id = draw(st.sampled_from([1, 2, 3, 4, 5, 6, 8, 9, 15, 17, 18, 20, 22, 255]))
    if type_id in (17, 20):
        payload = (b"\x00" if type_id == 17 else b"") + draw(command_payload)
    elif type_id in (1, 2):
        payload = struct.pack(">I", draw(st.one_of(st.integers(0, 2**32 - 1), st.integers(1, 70000))))
    else:
        payload = draw(st.binary(max_size=300))
    length = draw(st.one_of(st.just(len(payload)), st.integers(0, 2**24 - 1)))
    ts = draw(st.one_of(st.integers(0, 100), st.just(0xFFFFFF)))
    header = ts.to_bytes(3, "big") + length.to_bytes(3, "big") + bytes([type_id]) + struct.pack("<I", 1)
    header = header[: (11, 7, 3, 0)[fmt]]
    ext = (
        struct.pack(">I", draw(st.integers(0, 2**32 - 1)))
        if ts == 0xFFFFFF or (fmt == 3 and draw(st.booleans()))
        else b""
    )
    return basic_header(fmt, csid) + header + ext + payload


def _feed_all(data: bytes, cuts: list[int]) -> None:
    sniffer = RtmpSniffer()
    pieces, last = [], 0
    for cut in sorted(c % (len(data) + 1) for c in cuts):
        pieces.append(data[last:cut])
        last = cut
    pieces.append(data[last:])
    try:
        for piece in pieces:
            sniffer.feed(piece)
            assert sniffer.buffered_bytes <= BOUND
            assert sniffer.chunk_streams <= MAX_CHUNK_STREAMS
            assert 0 <= sniffer.in_flight <= MAX_MESSAGE_BYTES_IN_FLIGHT
    except RtmpProtocolError:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(chunk(), max_size=40), st.lists(st.integers(0, 10**6), max_size=8))
def test_structured_chunk_streams(chunks: list[bytes], cuts: list[int]) -> None:
    _feed_all(HANDSHAKE + b"".join(chunks), cuts)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4000), st.lists(st.integers(0, 10**4), max_size=6))
def test_random_bytes_after_the_handshake(data: bytes, cuts: list[int]) -> None:
    _feed_all(HANDSHAKE + data, cuts)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_instead_of_a_handshake(data: bytes) -> None:
    _feed_all(data, [])


@settings(max_examples=300, deadline=None)
@given(st.one_of(command_payload, st.binary(max_size=500)))
def test_amf_decoding_raises_only_protocol_errors(payload: bytes) -> None:
    try:
        name, args = decode_amf0_command(payload)
    except RtmpProtocolError:
        return
    assert isinstance(name, str) and isinstance(args, list)
