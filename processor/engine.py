"""The record processor: frame records in, committed transcript windows out.

One :class:`ShardProcessor` per stream shard, driven through the KCL lifecycle
by the embedded consumer or the KCL MultiLangDaemon. A shard carries many
sessions interleaved; each session has its own buffer
(:class:`processor.session.SessionBuffer`).

A window is one job (:class:`processor.window.WindowJob`) whose stages run in
order: *cut* (:func:`processor.windowing.plan_windows`), *hear* (ASR),
*diarize* (on the executor chosen at composition), *label* (session speakers)
and *commit* (store, archive). Cut jobs wait in their session's queue; one
commit point, :meth:`ShardProcessor._drain`, takes finished jobs in window
order. Nothing else commits.

Safety rules (why they hold is noted where they are enforced):

- A window's segments, its archive pointer and the session's progress are
  committed in one store transaction, *then* the checkpoint may move.
- The checkpoint never passes the first record of any session's uncommitted
  audio: the open window, its context, and every queued job.
- On replay, audio before a session's committed sample is skipped, so no
  window is transcribed twice into different rows, and windows are cut at the
  same places (the cut depends only on the audio after the committed sample).
- A window cut inside speech (no pause anywhere) is committed only up to a
  gap between words short of the cut (:func:`processor.windowing.commit_point`,
  a function of the window's audio and its transcript, so a replay commits the
  same span); the rest stays buffered and opens the next window. Windows stay
  contiguous: the next window starts exactly where the committed one ended.
- Speaker labels are assigned at the commit point, in window order, so a
  replay assigns the same labels whatever executor diarized the windows.
  Interim captions on or off change nothing about when windows commit.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Protocol

import numpy as np

from contracts.frames import SAMPLE_RATE, FrameKind, FrameRecord, MalformedRecord
from contracts.segments import WindowRecord, WindowStatus
from processor.asr import AsrResult, Transcriber
from processor.diarization import Diarizer, SpeakerMapper
from processor.final_asr import FinalAsr
from processor.session import SessionBuffer
from processor.window import (
    InlineExecutor,
    WindowJob,
    WindowResult,
    hear_all,
    label,
    run_window,
    store_window,
)
from processor.windowing import PlannedWindow, WindowPolicy, plan_windows
from stores.archive import WindowArchive
from stores.base import SessionProgress, TranscriptStore
from streams.base import Checkpointer, StreamRecord

log = logging.getLogger(__name__)

__all__ = ["EngineParts", "InterimSink", "ShardProcessor", "WindowResult", "transcribe_window"]

#: Cut windows a session may hold uncommitted; cutting one more waits for the oldest.
#: Live, diarization of a 30 s window takes seconds, so the queue stays at one or
#: two; for a file (audio faster than real time) it bounds memory and lag.
MAX_QUEUED = 2


class InterimSink(Protocol):
    """Receives snapshots of open windows for interim captions (may drop them)."""

    def offer(self, session_id: str, window_index: int, start_sample: int, pcm: np.ndarray) -> None:
        """A newer snapshot of the open window; must not block."""

    def window_closed(self, session_id: str, window_index: int) -> None:
        """The window was cut and its final ASR is done (final text on the way); stop interim work on it."""

    def stats(self, session_id: str | None = None) -> dict[str, Any]:
        """Counters (passes run, dropped, skipped) for one session or all."""

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the worker."""


@dataclass
class EngineParts:
    """Everything a shard processor needs; built once per process (:mod:`processor.build`).

    The engine's modes are these parts, not branches: where diarization runs
    (``diarization_pool``), how many windows one ASR call decodes
    (``batch_windows`` with a batching ``transcriber``), whether open windows
    get interim captions (``interim``).
    """

    transcriber: Transcriber
    diarizer: Diarizer
    mapper_factory: Callable[[dict[str, object]], SpeakerMapper]
    store: TranscriptStore
    archive: WindowArchive
    policy: WindowPolicy = field(default_factory=WindowPolicy)
    interim: InterimSink | None = None
    #: Samples of silence inserted for a timeline gap at most; a longer gap
    #: closes the window instead (nothing to transcribe in it anyway).
    max_gap_samples: int = 10 * SAMPLE_RATE
    #: Where the diarize stage runs. None: inline, the window commits before the
    #: record that cut it returns. An executor (one thread): the record thread
    #: goes on ingesting, and offering the next window to interim captions, while
    #: the previous window is diarized; the window commits at a later record.
    #: Measured: diarization is 70-80 % of a final pass, and a blocked record
    #: thread was the cause of caption p95 > 7 s.
    diarization_pool: Executor | None = None
    #: Windows of one session decoded in one :meth:`Transcriber.transcribe_batch` call.
    #: Above 1 the processor waits until that much audio is buffered (or the stream
    #: ends) before cutting: only for audio that arrives faster than real time (a
    #: file, ``flowbot transcribe``). The cuts are the same either way.
    batch_windows: int = 1
    #: Called with the session id after each window committed as done (live naming by voice,
    #: :mod:`processor.live_voices`); must not raise.
    after_commit: Callable[[str], None] | None = None


def transcribe_window(
    parts: EngineParts,
    mapper: SpeakerMapper,
    session_id: str,
    window_index: int,
    start_sample: int,
    pcm: np.ndarray,
    *,
    carry: bool = False,
    context: np.ndarray | None = None,
) -> WindowResult:
    """One window's job run start to end, inline, outside any session (benches, tests).

    ``context`` is the audio just before the window: ASR hears it first and its
    words are dropped. With ``carry`` (cut inside speech) only the words up to
    :func:`processor.windowing.commit_point` are kept; the result says how many
    samples that is.
    """
    return run_window(
        parts.transcriber,
        parts.diarizer,
        parts.policy,
        mapper,
        session_id,
        window_index,
        start_sample,
        pcm,
        carry,
        context,
    )


def _nothing() -> None:
    """No interim captions: nothing to tell when a window is heard."""


class ShardProcessor:
    """:class:`streams.base.RecordProcessor` for one shard."""

    def __init__(self, parts: EngineParts) -> None:
        self.parts = parts
        self.shard_id = ""
        self.sessions: dict[str, SessionBuffer] = {}
        self._seen: list[int] = []
        self._last_checkpoint = 0
        self.counters: Counter[str] = Counter()
        self._diarization: Executor = parts.diarization_pool or InlineExecutor()
        threaded = parts.diarization_pool is not None  # live: the record thread must not wait for final ASR
        self._final = FinalAsr(parts.transcriber, parts.diarizer, parts.policy, self._diarization, threaded)

    # -- KCL lifecycle ----------------------------------------------------------
    def initialize(self, shard_id: str, starting_sequence_number: str | None) -> None:
        """Start on a shard; state is rebuilt lazily from the store per session."""
        self.shard_id = shard_id
        self._last_checkpoint = (
            int(starting_sequence_number) if starting_sequence_number and starting_sequence_number.isdigit() else 0
        )
        log.info("shard processor started", extra={"shard": shard_id, "from": starting_sequence_number})

    def process_records(self, records: Sequence[StreamRecord], checkpointer: Checkpointer) -> None:
        """Feed records; commit windows as they finish; checkpoint what is safe."""
        self._drain_all(wait=False)  # windows whose diarization finished meanwhile
        for rec in records:
            self._seen.append(rec.seq)
            try:
                frame = FrameRecord.decode(rec.data)
                if frame.partition_key != rec.partition_key:
                    raise MalformedRecord(f"session {frame.session_id!r} under partition key {rec.partition_key!r}")
                self._on_frame(rec.seq, frame)
            except MalformedRecord as exc:
                # Skipped for good (the checkpoint passes it): replaying cannot make it valid.
                self.counters["malformed_records"] += 1
                log.warning(
                    "malformed record skipped",
                    extra={
                        "shard": self.shard_id,
                        "seq": rec.sequence_number,
                        "error": str(exc),
                        "malformed_total": self.counters["malformed_records"],
                    },
                )
        self._checkpoint(checkpointer)

    def lease_lost(self) -> None:
        """Another worker has the shard: forget everything, write nothing."""
        log.warning(
            "lease lost; dropping in-flight windows",
            extra={"shard": self.shard_id, "sessions": len(self.sessions)},
        )
        self.sessions.clear()
        self._seen.clear()
        self._final.forget()

    def shard_ended(self, checkpointer: Checkpointer) -> None:
        """Resharding: commit every open window now; the child shard resumes from progress."""
        for sess in list(self.sessions.values()):
            self._cut(sess, rest=True, final=False)
        self._drain_all(wait=True)
        checkpointer.checkpoint(None)
        log.info("shard ended and checkpointed", extra={"shard": self.shard_id})

    def shutdown_requested(self, checkpointer: Checkpointer) -> None:
        """Graceful shutdown: commit cut windows, checkpoint what is committed; open windows replay later."""
        self._drain_all(wait=True, tolerate=True)
        self._checkpoint(checkpointer)
        log.info(
            "shutdown checkpoint taken",
            extra={"shard": self.shard_id, "seq": self._last_checkpoint},
        )

    # -- records ------------------------------------------------------------------
    def _session(self, session_id: str) -> SessionBuffer:
        sess = self.sessions.get(session_id)
        if sess is None:
            progress = self.parts.store.load_progress(session_id) or SessionProgress(session_id)
            mapper = self.parts.mapper_factory(dict(progress.speaker_state))
            sess = self.sessions[session_id] = SessionBuffer(progress, mapper, self.parts.policy.context_samples)
            if progress.committed_sample:
                log.info(
                    "session resumed from store",
                    extra={
                        "session": session_id,
                        "window": progress.next_window_index,
                        "sample": progress.committed_sample,
                    },
                )
        return sess

    def _on_frame(self, seq: int, frame: FrameRecord) -> None:
        sess = self._session(frame.session_id)
        if sess.progress.stream_done:
            self.counters["records_after_end"] += 1
            return
        try:
            sess.check(frame)
        except MalformedRecord:
            if not sess.buffered and sess.last_frame_seq is None and not sess.queue:
                self.sessions.pop(sess.session_id, None)  # a forged session id holds no memory
            raise
        if frame.kind == FrameKind.AUDIO:
            self._audio(sess, seq, frame)
            self._drain(sess, wait=False)
            return
        cut = self._end(sess, seq, frame)
        self._drain(sess, wait=True)
        self._ended(sess, frame.sample_offset, save=not cut)

    def _audio(self, sess: SessionBuffer, seq: int, frame: FrameRecord) -> None:
        """An audio record: its new samples join the open window; full windows are cut."""
        pcm = np.frombuffer(frame.payload, dtype="<i2").astype(np.int16)
        expected = sess.expected_sample
        if frame.sample_offset < sess.start_sample:
            sess.remember(seq, frame.sample_offset, pcm)  # committed audio, maybe context
        if frame.end_offset <= expected:
            self.counters["replayed_records"] += 1  # already committed or buffered
            return
        sess.last_frame_seq = max(frame.seq, sess.last_frame_seq or 0)
        if frame.sample_offset < expected:
            pcm = pcm[expected - frame.sample_offset :]
        else:
            self._advance(sess, seq, frame.sample_offset)
        sess.append(seq, pcm)
        # Cut only once the buffer is *over* the limit: a stream that ends exactly at it
        # (pyannote's sample is 30.000 s) is one full window, not a window and a fragment.
        while sess.buffered > self.parts.policy.max_samples * self.parts.batch_windows:
            self._cut(sess, rest=False, final=False)
        if self.parts.interim is not None and sess.buffered:
            self.parts.interim.offer(sess.session_id, sess.next_index, sess.start_sample, sess.pcm())

    def _advance(self, sess: SessionBuffer, seq: int, offset: int) -> None:
        """Bring the timeline to ``offset`` across a gap (frames lost upstream).

        A short gap is filled with silence; a long one closes the open window and
        jumps, so no gap ever costs more memory than ``max_gap_samples``.
        """
        gap = offset - sess.expected_sample
        if gap <= 0:
            return
        log.warning("gap in session timeline", extra={"session": sess.session_id, "gap_s": round(gap / SAMPLE_RATE, 3)})
        if gap > self.parts.max_gap_samples:
            self._cut(sess, rest=True, final=False)
            sess.skipped.append((sess.start_sample, offset))
            sess.jump(offset)
        else:
            sess.append(seq, np.zeros(gap, np.int16))

    def _end(self, sess: SessionBuffer, seq: int, frame: FrameRecord) -> bool:
        """The end-of-stream record: everything buffered becomes the session's last windows (True if any)."""
        if sess.buffered:
            # Frames lost upstream before the end: keep the timeline honest.
            self._advance(sess, seq, frame.sample_offset)
        sess.progress = replace(sess.progress, ended_sample=max(frame.sample_offset, sess.start_sample))
        if not sess.buffered:
            return False
        self._cut(sess, rest=True, final=True)
        return True

    def _ended(self, sess: SessionBuffer, total_samples: int, *, save: bool) -> None:
        """After the last commit; a stream that ended with nothing buffered still records its end."""
        if save:
            sess.progress = replace(
                sess.progress,
                committed_sample=max(sess.progress.committed_sample, sess.progress.ended_sample or 0),
            )
            self.parts.store.save_progress(sess.progress)
        log.info(
            "session stream done",
            extra={
                "session": sess.session_id,
                "windows": sess.progress.next_window_index,
                "seconds": round(total_samples / SAMPLE_RATE, 2),
            },
        )
        self.sessions.pop(sess.session_id, None)

    # -- the window job -------------------------------------------------------------
    def _cut(self, sess: SessionBuffer, *, rest: bool, final: bool) -> None:
        """Cut the next windows off the buffer (all of it with ``rest``), hear them, queue them.

        Up to ``batch_windows`` windows are heard in one ASR call; their
        diarization goes to the executor. They commit at :meth:`_drain`.
        """
        while sess.buffered:
            plans = plan_windows(sess.pcm(), sess.context, self.parts.policy, rest=rest, most=self.parts.batch_windows)
            jobs = [self._job(sess, i, plan, final) for i, plan in enumerate(plans)]
            raws = self._hear_batch(sess, jobs) if len(jobs) > 1 else [None] * len(jobs)
            for job, raw in zip(jobs, raws, strict=True):
                self._hear(sess, job, raw)
            if not rest or not jobs:
                return

    def _job(self, sess: SessionBuffer, i: int, plan: PlannedWindow, final: bool) -> WindowJob:
        """The cut stage: a planned window as a job (the ``i``-th of this plan)."""
        if plan.reason is not None:
            self.counters[f"cut_{plan.reason}"] += 1
        pcm = sess.pcm()[plan.at : plan.at + plan.samples]
        last = final and plan.at + plan.samples == sess.buffered
        start = sess.start_sample + plan.at
        return WindowJob(
            sess.session_id, sess.next_index + i, start, pcm, plan.context, plan.carries, plan.speech, final=last
        )

    def _hear_batch(self, sess: SessionBuffer, jobs: list[WindowJob]) -> list[AsrResult | None]:
        """One ASR call for several planned windows (None each when it failed: heard one at a time)."""
        try:
            raws: list[AsrResult | None] = list(hear_all(self.parts.transcriber, self.parts.policy, jobs))
        except Exception:
            log.exception("batched asr failed; windows heard one at a time", extra={"session": sess.session_id})
            return [None] * len(jobs)
        self.counters["batched_windows"] += len(jobs)
        return raws

    def _hear(self, sess: SessionBuffer, job: WindowJob, raw: AsrResult | None) -> None:
        """The hear stage of a cut job (:class:`processor.final_asr.FinalAsr`), then into the queue."""
        # Only the last window of a plan may carry, so each starts where it was planned.
        assert job.start == sess.start_sample, "plan out of step with the buffer"
        job.first_seq = sess.pending_seq
        interim = self.parts.interim
        closed = partial(interim.window_closed, sess.session_id, job.index) if interim is not None else _nothing
        self._final.start(job, raw, closed)  # live, on the final-ASR thread when the window's length is known
        sess.drop(job.samples)
        sess.queue.append(job)

    # -- the commit point -----------------------------------------------------------
    def _drain_all(self, *, wait: bool, tolerate: bool = False) -> None:
        for sess in list(self.sessions.values()):
            try:
                self._drain(sess, wait=wait)
            except Exception:
                if not tolerate:
                    raise
                # Still uncommitted: the checkpoint stays behind it and it replays.
                log.exception("cut window not committed at shutdown", extra={"session": sess.session_id})

    def _drain(self, sess: SessionBuffer, *, wait: bool) -> None:
        """The one commit point: commit the session's finished jobs in window order.

        With ``wait``, every queued job (waiting for its diarization); otherwise
        the finished ones at the front, and the oldest ones beyond
        :data:`MAX_QUEUED`.
        """
        while sess.queue and (wait or len(sess.queue) > MAX_QUEUED or self._final.ready(sess.queue[0])):
            self._commit(sess, sess.queue[0])
            sess.queue.popleft()

    def _commit(self, sess: SessionBuffer, job: WindowJob) -> None:
        """Label a window's words, archive its audio and commit it with the session's progress."""
        self._final.wait(job)
        result, error = self._label(sess, job)
        samples = job.samples
        uri = self.parts.archive.put(sess.session_id, job.index, job.pcm[:samples]) or None
        progress = replace(
            sess.progress,
            next_window_index=job.index + 1,
            committed_sample=job.start + samples,
            speaker_state=dict(sess.mapper.state()),
        )
        status = WindowStatus.DONE if error is None else WindowStatus.FAILED
        window = WindowRecord(
            sess.session_id,
            job.index,
            job.start,
            job.start + samples,
            status,
            error,
            uri,
            result.turns,
            dropped_segments=result.dropped.total(),
            speakers=result.speakers,
        )
        segments = [replace(seg, audio_uri=uri) for seg in result.segments]
        status = store_window(self.parts.store, window, segments, progress)
        sess.progress = progress
        self._count(job, result, status)
        if self.parts.after_commit is not None and status == WindowStatus.DONE:
            self.parts.after_commit(sess.session_id)

    def _label(self, sess: SessionBuffer, job: WindowJob) -> tuple[WindowResult, str | None]:
        """The label stage (session speakers, in window order); a failed window has no rows."""
        error = job.error
        result = WindowResult([], job.samples)
        if job.recognized is not None and error is None:
            try:
                diarization = job.diarization.result() if job.diarization is not None else None
                result = label(job.recognized, diarization, sess.mapper, sess.session_id, job.index, job.start)
            except Exception as exc:
                log.exception("window failed", extra={"session": sess.session_id, "window": job.index})
                error = f"{type(exc).__name__}: {exc}"
        if error is not None:
            # The registry may have half-learned from this window: start again from what
            # was committed, so a replay assigns the same labels.
            sess.mapper = self.parts.mapper_factory(dict(sess.progress.speaker_state))
        return result, error

    def _count(self, job: WindowJob, result: WindowResult, status: WindowStatus) -> None:
        self.counters["windows"] += 1
        self.counters["dropped_segments"] += result.dropped.total()
        self.counters["failed_windows"] += status == WindowStatus.FAILED
        self.counters["carried_windows"] += job.carried > 0
        log.info(
            "window committed",
            extra={
                "session": job.session_id,
                "window": job.index,
                "start_s": round(job.start / SAMPLE_RATE, 2),
                "seconds": round(job.samples / SAMPLE_RATE, 2),
                "segments": len(result.segments),
                "status": status,
                "took_s": round(time.monotonic() - job.started, 2),
                "final": job.final,
                "carried_s": round(job.carried / SAMPLE_RATE, 2),
            },
        )

    def _checkpoint(self, checkpointer: Checkpointer) -> None:
        if not self._seen:
            return
        pending = [s.pending_seq for s in self.sessions.values() if s.pending_seq is not None]
        if pending:
            i = bisect.bisect_left(self._seen, min(pending))
            if i == 0:
                return
            safe = self._seen[i - 1]
        else:
            safe = self._seen[-1]
        if safe > self._last_checkpoint:
            checkpointer.checkpoint(str(safe))
            self._last_checkpoint = safe
            del self._seen[: bisect.bisect_right(self._seen, safe)]
