"""One session's state on a shard: its open window's buffer, its left context, its queue of cut windows."""

from __future__ import annotations

from collections import deque

import numpy as np

from contracts.frames import MAX_RECORD_SAMPLES, EndAuthority, FrameKind, FrameRecord, MalformedRecord
from processor.diarization import SpeakerMapper
from processor.window import WindowJob
from stores.base import SessionProgress


class SessionBuffer:
    """One session's open window and the cut windows not yet committed.

    Besides the open window it keeps ``context``: the audio just before the
    window's start (``context_samples`` at most, zeros where no frame was
    seen), which ASR hears as left context. It is rebuilt from replayed
    frames after a restart, and the records holding it stay uncheckpointed
    while it is needed, so a replay hears exactly what the first pass heard.

    ``queue`` holds the windows cut off the buffer whose commit is still to
    come, in window order: their audio has left the buffer, so the next window
    opens (and gets interim captions) at once, and their records stay
    uncheckpointed until the engine's commit point takes them.
    """

    def __init__(self, progress: SessionProgress, mapper: SpeakerMapper, context_samples: int = 0) -> None:
        self.progress = progress
        self.mapper = mapper
        self.chunks: list[np.ndarray] = []
        self.buffered = 0
        self.start_sample = progress.committed_sample
        self.context_samples = context_samples
        self.context = np.zeros(min(context_samples, self.start_sample), np.int16)
        # (stream sequence number, end sample) of records with audio in the buffer or the context.
        self.sources: list[tuple[int, int]] = []
        # Frame sequence number of the newest record that brought new audio (None until
        # one is seen in this process): a jump ahead must be backed by records missing
        # in between, each carrying at most MAX_RECORD_SAMPLES.
        self.last_frame_seq: int | None = None
        # Timeline spans jumped over at gaps; a record that later turns up inside one
        # contradicts the jump and is reported, not counted as a replay.
        self.skipped: list[tuple[int, int]] = []
        self.queue: deque[WindowJob] = deque()
        # Only the session's own ingest may end its stream (contracts.frames, "Who may end a stream").
        self.end_authority = EndAuthority()

    @property
    def session_id(self) -> str:
        """The session this buffer belongs to."""
        return self.progress.session_id

    @property
    def expected_sample(self) -> int:
        """Session sample the next new audio starts at."""
        return self.start_sample + self.buffered

    @property
    def next_index(self) -> int:
        """Index of the open window (one past the cut windows waiting to commit)."""
        return self.progress.next_window_index + len(self.queue)

    @property
    def pending_seq(self) -> int | None:
        """First stream record whose audio is not yet committed (or is the open window's context)."""
        seqs = [self.sources[0][0]] if self.sources else []
        seqs += [job.first_seq for job in self.queue if job.first_seq is not None]
        return min(seqs) if seqs else None

    def check(self, frame: FrameRecord) -> None:
        """Raise :class:`MalformedRecord` if ``frame`` contradicts what this session already sent.

        Decoding bounds each record on its own; here it is held against the session:
        an end of stream never lies before audio already received, a jump ahead must
        be covered by the records missing in between, and audio never arrives inside
        a span the timeline already jumped over.
        """
        self.end_authority.check(frame)
        expected = self.expected_sample
        start = frame.sample_offset
        if frame.kind == FrameKind.END and start < expected:
            raise MalformedRecord(f"end of stream at sample {start}, before audio already received ({expected})")
        if frame.kind == FrameKind.AUDIO and frame.end_offset <= expected:
            if any(a < frame.end_offset and start < b for a, b in self.skipped):
                raise MalformedRecord(f"audio at samples {start}..{frame.end_offset} inside a span already skipped")
            return  # a replay
        if start > expected and self.last_frame_seq is not None:
            missing = frame.seq - self.last_frame_seq - 1
            if missing < 0 or start - expected > missing * MAX_RECORD_SAMPLES:
                raise MalformedRecord(
                    f"jump of {start - expected} samples at record {frame.seq}: "
                    f"not covered by {max(missing, 0)} missing record(s) after record {self.last_frame_seq}"
                )

    def append(self, seq: int, pcm: np.ndarray) -> None:
        """New audio at the end of the open window, from record ``seq``."""
        self.chunks.append(pcm)
        self.buffered += pcm.size
        self.sources.append((seq, self.expected_sample))

    def remember(self, seq: int, offset: int, pcm: np.ndarray) -> None:
        """A replayed frame before the window start: keep its part inside the context."""
        lo = self.start_sample - len(self.context)
        a, b = max(offset, lo), min(offset + pcm.size, self.start_sample)
        if a >= b:
            return
        self.context[a - lo : b - lo] = pcm[a - offset : b - offset]
        if not self.sources or self.sources[-1][0] < seq:
            self.sources.append((seq, offset + pcm.size))

    def pcm(self) -> np.ndarray:
        """The open window's audio (int16); never modified in place once handed out."""
        if len(self.chunks) > 1:
            self.chunks = [np.concatenate(self.chunks)]
        return self.chunks[0] if self.chunks else np.zeros(0, np.int16)

    def drop(self, samples: int) -> None:
        """The first ``samples`` left the buffer as a window; they become context."""
        data = self.pcm()
        self.context = np.concatenate([self.context, data[:samples]])[-self.context_samples :]
        if not self.context_samples:
            self.context = self.context[:0]
        data = data[samples:]
        self.chunks = [data] if data.size else []
        self.buffered = data.size
        self.start_sample += samples
        self._forget()

    def jump(self, sample: int) -> None:
        """The timeline skips ahead to ``sample`` (nothing buffered): the context is silence."""
        self.start_sample = sample
        self.context = np.zeros(min(self.context_samples, sample), np.int16)
        self._forget()

    def _forget(self) -> None:
        while self.sources and self.sources[0][1] <= self.start_sample - len(self.context):
            self.sources.pop(0)
