"""Cut PCM into frame records on one session's timeline and put them on a stream."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from contracts.frames import DEFAULT_FRAME_SAMPLES, FrameRecord, end_commitment, end_of_stream
from streams.base import StreamWriter

log = logging.getLogger(__name__)


@dataclass
class TimelinePosition:
    """Where a session's stream stands: the next sequence number and sample offset.

    A publisher that reconnects continues from here, so the session timeline
    never restarts at zero and the processor sees one contiguous stream.
    """

    next_seq: int = 0
    next_offset: int = 0


class SessionFramer:
    """Accumulates PCM for one session and writes ~1 s frame records.

    ``end_secret`` (16 bytes) makes the end of stream this framer's alone: audio
    records carry its commitment, the end record the secret
    (:class:`contracts.frames.EndAuthority`). A restarted ingest that continues
    the timeline must pass the same secret.
    """

    def __init__(
        self,
        writer: StreamWriter,
        session_id: str,
        position: TimelinePosition | None = None,
        frame_samples: int = DEFAULT_FRAME_SAMPLES,
        records_per_put: int = 1,
        end_secret: bytes = b"",
    ) -> None:
        self.writer = writer
        self.session_id = session_id
        self.position = position or TimelinePosition()
        self.frame_samples = frame_samples
        self.records_per_put = records_per_put
        self._end_secret = end_secret
        self._commitment = end_commitment(end_secret) if end_secret else b""
        self._buf: list[np.ndarray] = []
        self._buffered = 0
        self._pending: list[FrameRecord] = []
        self.ended = False

    def push(self, pcm: np.ndarray) -> None:
        """Add int16 mono samples; full frames are written as they fill."""
        if self.ended:
            raise RuntimeError(f"session {self.session_id} stream already ended")
        if pcm.size == 0:
            return
        self._buf.append(pcm.astype(np.int16, copy=False))
        self._buffered += pcm.size
        if self._buffered >= self.frame_samples:
            data = np.concatenate(self._buf)
            whole = (data.size // self.frame_samples) * self.frame_samples
            for i in range(0, whole, self.frame_samples):
                self._emit(data[i : i + self.frame_samples])
            rest = data[whole:]
            self._buf = [rest] if rest.size else []
            self._buffered = rest.size
        if len(self._pending) >= self.records_per_put:
            self._put()

    def flush(self) -> None:
        """Write any partial frame now (at a disconnect, so nothing waits in memory)."""
        if self._buffered:
            self._emit(np.concatenate(self._buf))
            self._buf, self._buffered = [], 0
        self._put()

    def end(self) -> None:
        """Flush and write the end-of-stream record."""
        self.flush()
        self._pending.append(
            end_of_stream(self.session_id, self.position.next_seq, self.position.next_offset, self._end_secret)
        )
        self.position.next_seq += 1
        self._put()
        self.ended = True
        log.info(
            "stream ended",
            extra={"session": self.session_id, "samples": self.position.next_offset},
        )

    def _emit(self, samples: np.ndarray) -> None:
        rec = FrameRecord(
            self.session_id,
            self.position.next_seq,
            self.position.next_offset,
            payload=samples.astype("<i2").tobytes(),
            tag=self._commitment,
        )
        self._pending.append(rec)
        self.position.next_seq += 1
        self.position.next_offset += samples.size

    def _put(self) -> None:
        if self._pending:
            self.writer.put(self._pending)
            self._pending = []
