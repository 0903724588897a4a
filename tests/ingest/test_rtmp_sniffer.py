"""The RTMP client-stream parser that finds connect/publish before bytes are forwarded."""

from __future__ import annotations

import pytest

from producer.rtmp_wire import HANDSHAKE_BYTES, RtmpProtocolError, RtmpSniffer

from .rtmp_wire import chunk_message, command, handshake_c0c1, set_chunk_size

C2 = bytes(1536)


def _session(publish_name: str = "secret-key?token=1", *, big_chunks: bool = True) -> bytes:
    """What OBS sends: connect, releaseStream, FCPublish, createStream, publish, media."""
    chunk = 4096 if big_chunks else 128
    out = handshake_c0c1() + C2
    out += chunk_message(
        command(
            "connect",
            1,
            {
                "app": "live?x=1",
                "tcUrl": "rtmp://h/live",
                "type": "nonprivate",
                "flashVer": "FMLE/3.0",
                "swfUrl": "rtmp://h/live" + "x" * 300,
            },
        ),
        type_id=20,
    )
    if big_chunks:
        out += set_chunk_size(4096)
    out += chunk_message(
        command("releaseStream", 2, None, "secret-key"), type_id=20, csid=3, first_fmt=1, chunk_size=chunk
    )
    out += chunk_message(command("FCPublish", 3, None, "secret-key"), type_id=20, csid=3, first_fmt=1, chunk_size=chunk)
    out += chunk_message(command("createStream", 4, None), type_id=20, csid=3, first_fmt=1, chunk_size=chunk)
    out += chunk_message(
        command("publish", 5, None, publish_name, "live"), type_id=20, csid=320, stream_id=1, chunk_size=chunk
    )
    # Audio with extended timestamps, continuation chunks and fmt 2/3 headers.
    audio = bytes(range(256)) * 40
    out += chunk_message(audio, type_id=8, csid=4, stream_id=1, timestamp=0x1000000, chunk_size=chunk)
    out += chunk_message(audio, type_id=8, csid=4, timestamp=0x1000000, first_fmt=2, chunk_size=chunk)
    out += chunk_message(audio, type_id=8, csid=4, timestamp=0x1000000, first_fmt=3, chunk_size=chunk)
    return out


@pytest.mark.parametrize("big_chunks", [True, False])
@pytest.mark.parametrize("step", [1, 7, 1000, 1 << 20])
def test_commands_found_however_bytes_are_split(step: int, big_chunks: bool) -> None:
    data = _session(big_chunks=big_chunks)
    sniffer = RtmpSniffer()
    names = []
    for i in range(0, len(data), step):
        names += sniffer.feed(data[i : i + step])
    assert [c.name for c in names] == ["connect", "releaseStream", "FCPublish", "publish", "media"]
    assert names[0].app == "live" and names[0].tc_url == "rtmp://h/live"
    assert names[3].stream_name == "secret-key"  # query string stripped
    assert sniffer.media_messages == 3
    assert sniffer.chunk_size == (4096 if big_chunks else 128)
    assert sniffer.bytes_seen == len(data)


def test_publish_is_reported_in_the_feed_that_completes_it() -> None:
    data = _session()
    sniffer = RtmpSniffer()
    marker = data.index(b"publish\x00")  # inside the publish command's AMF name
    early = sniffer.feed(data[:marker])
    assert "publish" not in [c.name for c in early]
    assert sniffer.media_messages == 0


def test_not_rtmp_is_refused() -> None:
    with pytest.raises(RtmpProtocolError):
        RtmpSniffer().feed(b"GET / HTTP/1.1\r\n\r\n")


def test_oversized_command_is_refused() -> None:
    sniffer = RtmpSniffer()
    sniffer.feed(handshake_c0c1() + C2)
    with pytest.raises(RtmpProtocolError):
        big = command("connect", 1, {"a": "x" * 40000, "b": "y" * 40000})
        sniffer.feed(chunk_message(big, type_id=20))


def test_continuation_without_a_first_header_is_refused() -> None:
    sniffer = RtmpSniffer()
    sniffer.feed(handshake_c0c1() + C2)
    with pytest.raises(RtmpProtocolError):
        sniffer.feed(b"\xc5" + b"\x00" * 10)


def test_handshake_only_yields_nothing() -> None:
    sniffer = RtmpSniffer()
    assert sniffer.feed(handshake_c0c1()) == []
    assert sniffer.handshake_left == HANDSHAKE_BYTES - 1537
