"""Ingest: decode meeting audio to 16 kHz mono PCM and put frame records on the stream.

Exports :func:`decode_file`, :func:`read_pcm`, :class:`DecodeError` (:mod:`producer.decode`)
and :class:`SessionFramer`, :class:`TimelinePosition` (:mod:`producer.framer`).
Live ingest publishes through the session/key registry in :mod:`producer.hub`:
RTMP through :mod:`producer.rtmp_relay` (wire parsing in :mod:`producer.rtmp_wire`),
WHIP through :mod:`producer.whip`.
"""

from producer.decode import DecodeError, decode_file, read_pcm
from producer.framer import SessionFramer, TimelinePosition

__all__ = ["DecodeError", "SessionFramer", "TimelinePosition", "decode_file", "read_pcm"]
