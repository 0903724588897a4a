"""Push an audio/video file through the same framing as live ingest.

Used by ``flowbot ingest FILE`` and ``flowbot transcribe``; with
``realtime=True`` the file is paced at 1x wall clock, which turns a recording
into a stand-in for a live meeting (demos, replays, latency tests).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import numpy as np

from contracts.frames import END_TAG_BYTES, SAMPLE_RATE, validate_session_id
from producer.decode import DecodeError, decode_file
from producer.framer import SessionFramer
from streams.base import StreamWriter

log = logging.getLogger(__name__)


def ingest_file(
    path: str | Path,
    writer: StreamWriter,
    session_id: str,
    *,
    realtime: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Decode ``path``, write its frame records for ``session_id``, end the stream.

    Returns the number of 16 kHz samples written. A file that cannot be opened
    raises :class:`DecodeError` before anything is written. A file that breaks
    part-way raises :class:`DecodeError` too, after the audio decoded up to that
    point was written and the stream ended, so nothing already accepted is lost
    and the processor can finish the session.
    """
    validate_session_id(session_id)
    if not Path(path).is_file():
        raise DecodeError(f"cannot open {path}: no such file")
    # One run writes the whole stream, so a secret of its own makes the end its alone.
    framer = SessionFramer(writer, session_id, end_secret=secrets.token_bytes(END_TAG_BYTES))
    pushed = 0
    try:
        for pcm in _paced(decode_file(str(path)), realtime):
            framer.push(pcm)
            pushed += pcm.size
            if on_progress is not None:
                on_progress(pushed)
    except (DecodeError, av.error.FFmpegError) as exc:
        if pushed == 0:
            raise DecodeError(f"cannot decode {path}: {exc}") from exc
        raise _broke_part_way(path, framer, session_id, pushed, exc) from exc
    framer.end()
    total = framer.position.next_offset
    log.info(
        "file ingested",
        extra={"session": session_id, "samples": total, "seconds": round(total / SAMPLE_RATE, 2)},
    )
    return total


def _paced(chunks: Iterator[np.ndarray], realtime: bool) -> Iterator[np.ndarray]:
    """The decoded chunks; with ``realtime``, each when its last sample would have been heard live."""
    started = time.monotonic()
    released = 0
    for pcm in chunks:
        if realtime:
            delay = started + (released + pcm.size) / SAMPLE_RATE - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        yield pcm
        released += pcm.size


def _broke_part_way(
    path: str | Path, framer: SessionFramer, session_id: str, pushed: int, exc: Exception
) -> DecodeError:
    """End the stream after the audio decoded so far; the error that says so."""
    framer.end()
    log.error(
        "input broke part-way; stream ended after the audio decoded so far",
        extra={"session": session_id, "samples": pushed, "error": str(exc)},
    )
    return DecodeError(
        f"{path}: decoding failed after {framer.position.next_offset / SAMPLE_RATE:.1f} s "
        f"(that audio was written and the stream ended): {exc}"
    )
