"""Interim captions: re-transcribe each open window every few seconds, cheaply,
without ever holding up final text (docs/live-captions.md).

The engine (:mod:`processor.engine`) offers a snapshot of a session's open
window after every record and says when the window closed. This module turns
those snapshots into interim rows (``is_final=False``) through
``store.put_interim``; the final rows of the window replace them in place
(same window, same segment keys) when the engine commits it.

- **Drop, don't queue.** One slot per session holds only its latest snapshot;
  ``offer`` replaces an unprocessed one (``superseded``) and never blocks. At most
  one pass per session per ``interval``, oldest-served session first; a duty cap
  (``max_duty``) rests the worker after slow passes.
- **Final ASR first.** While a final ASR runs (:class:`processor.gate.FinalGate`), a
  due pass waits (``skipped_for_final``) and runs on the newest snapshot when it ends.
  One exception: a new window's first pass runs before the cut window's final ASR,
  which waits for it (:mod:`processor.first_pass`). Final diarization never holds passes.
- **Never over a final.** A pass whose window closed meanwhile is discarded
  (``stale``); the store refuses interim rows for a final window (``rejected_final``).
- **No word twice.** Only the open window's audio is transcribed, and it starts
  exactly where the last committed window ended.

Stability (LocalAgreement-2): the longest common word prefix (case and punctuation
ignored) of a pass and the previous pass of its window is *stable*; each ASR segment
is split there into a ``stable=True`` segment and a ``stable=False`` tail. Interim
speakers are the session's last final speaker (best effort).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from contracts.frames import SAMPLE_RATE
from contracts.segments import TranscriptSegment
from processor.asr import AsrSegment, Transcriber
from processor.attribution import AttributedSegment, transcript_segments
from processor.cadence import next_pass_due
from processor.gate import FinalGate
from processor.interim_timing import PASS_TIMINGS_KEPT, PassTiming
from processor.segtime import split_words
from processor.windowing import to_float
from stores.base import TranscriptStore

log = logging.getLogger(__name__)

#: How often a due pass held for a final ASR looks again (the gate does not notify).
FINAL_POLL_SECONDS = 0.05


# ------------------------------------------------------------------ stability


_PUNCT = re.compile(r"[^\w']+")


def normalize_word(text: str) -> str:
    """Word identity for agreement: lower case, punctuation and spaces dropped."""
    return _PUNCT.sub("", text.lower())


def agreed_prefix(previous: Sequence[str], current: Sequence[str]) -> int:
    """LocalAgreement-2: length of the longest common prefix of two passes' words."""
    n = 0
    for a, b in zip(previous, current, strict=False):
        if a != b:
            break
        n += 1
    return n


def interim_segments(
    session_id: str,
    window_index: int,
    start_sample: int,
    asr: Sequence[AsrSegment],
    stable_words: int,
    speaker: str | None,
) -> list[TranscriptSegment]:
    """Session-timeline interim segments; each ASR segment split at the stable prefix.

    The first ``stable_words`` words of the pass (counted across segments) are
    stable. A segment without word timings is kept whole and unstable.
    """
    stable, unstable = split_words(asr, stable_words)
    pieces = [_piece(seg, speaker) for seg in (*stable, *unstable)]
    flags = [True] * len(stable) + [False] * len(unstable)
    return transcript_segments(
        pieces, session_id=session_id, window_index=window_index, start_sample=start_sample, final=False, stable=flags
    )


def _piece(seg: AsrSegment, speaker: str | None) -> AttributedSegment:
    if not seg.words:
        return AttributedSegment(seg.start, seg.end, speaker, seg.text, (), seg.avg_logprob)
    return AttributedSegment.spoken(seg.words, speaker, seg.avg_logprob)


# ---------------------------------------------------------------------- worker


@dataclass
class InterimCounters:
    """Per-session counters (``InterimWorker.stats``)."""

    offered: int = 0
    passes: int = 0
    written: int = 0
    unchanged: int = 0
    superseded: int = 0
    skipped_for_final: int = 0
    stale: int = 0
    rejected_final: int = 0
    errors: int = 0
    audio_seconds: float = 0.0
    compute_seconds: float = 0.0


@dataclass
class _Snapshot:
    window_index: int
    start_sample: int
    pcm: np.ndarray
    offered_at: float


@dataclass
class _Slot:
    session_id: str
    pending: _Snapshot | None = None
    #: The pending snapshot was due while a final ran (counted in ``skipped_for_final`` once).
    pending_held: bool = False
    running: bool = False
    last_offered: float = float("-inf")  # when the last pass's snapshot was offered
    #: The newest window offered; its first pass is still to run and a final ASR waits for it.
    offered_window: int = -1
    first_pending: bool = False
    closed_through: int = -1
    window_index: int = -1
    passed_samples: int = 0
    prev_words: list[str] = field(default_factory=list)
    last_written: tuple[tuple[str, bool, str | None], ...] | None = None
    speaker: str | None = None
    speaker_stale: bool = True
    counters: InterimCounters = field(default_factory=InterimCounters)


@dataclass
class _Job:
    slot: _Slot
    snap: _Snapshot
    #: The window's first pass, which the cut window's final ASR waits for.
    first: bool = False


class InterimWorker:
    """:class:`processor.engine.InterimSink` that runs interim passes in its own thread.

    ``interval``: seconds between passes of one session. ``beam_size``: 1 (greedy)
    for the cheap pass. ``gate``: finals in progress make due passes skip
    (``yield_to_finals``; off on the batched GPU path, where interim snapshots
    ride in the same model call as finals). ``max_duty``: the share of wall
    time passes may take; after a pass of *d* seconds the worker rests
    ``d * (1 / max_duty - 1)`` seconds. ``min_new_seconds``: a window is not
    re-run unless it grew by at least this much since its last pass.
    ``first_pass_seconds``: a new window offered with at least this much audio gets
    its first pass before the cut window's final ASR (:mod:`processor.first_pass`).
    """

    def __init__(
        self,
        transcriber: Transcriber,
        store: TranscriptStore,
        *,
        interval: float = 2.0,
        beam_size: int = 1,
        gate: FinalGate | None = None,
        yield_to_finals: bool = True,
        max_duty: float = 0.5,
        min_new_seconds: float = 0.5,
        first_pass_seconds: float = 1.0,
        batch_size: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval <= 0:
            raise ValueError("interim interval must be > 0 seconds (0 means: do not build a worker)")
        if not 0 < max_duty <= 1:
            raise ValueError("max_duty must be in (0, 1]")
        self.transcriber = transcriber
        self.store = store
        self.interval = interval
        self.beam_size = beam_size
        self.gate = gate or FinalGate()
        self.yield_to_finals = yield_to_finals
        self.max_duty = max_duty
        self.min_new_samples = int(min_new_seconds * SAMPLE_RATE)
        self.first_pass_samples = int(first_pass_seconds * SAMPLE_RATE)
        self.batch_size = max(1, batch_size)
        self.clock = clock
        self._cond = threading.Condition()
        self._slots: dict[str, _Slot] = {}
        self._rest_until = float("-inf")
        self._timings: deque[PassTiming] = deque(maxlen=PASS_TIMINGS_KEPT)
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- InterimSink --------------------------------------------------------------
    def offer(self, session_id: str, window_index: int, start_sample: int, pcm: np.ndarray) -> None:
        """Keep only this newest snapshot of the session's open window (never blocks on a pass).

        The engine never modifies a buffer it handed out (it concatenates into
        new arrays), so the snapshot is kept without a copy.
        """
        with self._cond:
            slot = self._slots.get(session_id)
            if slot is None:
                slot = self._slots[session_id] = _Slot(session_id)
            if window_index <= slot.closed_through:
                return  # a replayed record of a window already final
            slot.counters.offered += 1
            if slot.pending is not None:
                slot.counters.superseded += 1
            slot.pending = _Snapshot(window_index, start_sample, pcm, self.clock())
            slot.pending_held = False
            if window_index > slot.offered_window:
                self._opened(slot, window_index, pcm.size)
            if self._thread is None and not self._stopping:
                self._start_locked()
            self._cond.notify()

    def _opened(self, slot: _Slot, window_index: int, samples: int) -> None:
        """A new window's first offer: its first pass is due at once, before the cut window's final ASR."""
        cut = slot.offered_window >= 0  # else the session's first window here: no final waits for it
        slot.offered_window = window_index
        slot.last_offered = float("-inf")
        slot.first_pending = cut and self.yield_to_finals and samples >= self.first_pass_samples
        self.gate.first_passes.opened(slot.session_id, window_index, slot.first_pending)

    def window_closed(self, session_id: str, window_index: int) -> None:
        """Forget the closed window's pending snapshot and agreement state."""
        with self._cond:
            slot = self._slots.get(session_id)
            if slot is None:
                slot = self._slots[session_id] = _Slot(session_id)
            slot.closed_through = max(slot.closed_through, window_index)
            if slot.pending is not None and slot.pending.window_index <= window_index:
                slot.pending = None
                slot.counters.stale += 1
            slot.prev_words = []
            slot.last_written = None
            slot.passed_samples = 0
            slot.speaker_stale = True
            # The next window's first pass may run as soon as it has audio.
            slot.last_offered = float("-inf")
            counters = asdict(slot.counters)
        log.info("interim window closed", extra={"session": session_id, "window": window_index, **counters})

    # -- lifecycle & stats ----------------------------------------------------------
    def start(self) -> InterimWorker:
        """Start the worker thread (``offer`` also starts it on first use)."""
        with self._cond:
            if self._thread is None:
                self._stopping = False
                self._start_locked()
        return self

    def _start_locked(self) -> None:
        self._thread = threading.Thread(target=self._run, name="interim", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the pass in progress (pending snapshots are dropped)."""
        with self._cond:
            self._stopping = True
            thread, self._thread = self._thread, None
            self._cond.notify_all()
        self.gate.first_passes.release()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until no snapshot is pending or in a pass (replays, tests, benchmarks)."""
        deadline = self.clock() + timeout
        with self._cond:
            while any(s.pending is not None or s.running for s in self._slots.values()):
                left = deadline - self.clock()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def stats(self, session_id: str | None = None) -> dict[str, Any]:
        """Counters of one session, or ``{session_id: counters}`` of all.

        ``passes`` ran; ``superseded`` snapshots were replaced before a pass took
        them (dropped); ``skipped_for_final`` due passes gave way to a final;
        ``stale`` snapshots/passes belonged to a window that closed first;
        ``rejected_final`` writes were refused by the store (window already final).
        """
        with self._cond:
            if session_id is not None:
                slot = self._slots.get(session_id)
                return asdict(slot.counters) if slot else asdict(InterimCounters())
            return {sid: asdict(s.counters) for sid, s in self._slots.items()}

    def timings(self, session_id: str) -> list[PassTiming]:
        """The session's recent passes (the last :data:`PASS_TIMINGS_KEPT` of all sessions), oldest first."""
        with self._cond:
            return [t for t in self._timings if t.session_id == session_id]

    # -- worker -----------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                jobs: list[_Job] = []
                while not jobs:
                    if self._stopping:
                        return
                    jobs, wait = self._pick(self.clock())
                    if not jobs:
                        self._cond.wait(timeout=wait)
            try:
                self._run_passes(jobs)
            finally:
                with self._cond:
                    for job in jobs:
                        job.slot.running = False
                    self._cond.notify_all()
                for job in jobs:
                    if job.first:
                        self.gate.first_passes.done(job.slot.session_id, job.snap.window_index)

    def _pick(self, now: float) -> tuple[list[_Job], float]:
        """Due snapshots to run now (oldest-served first), or how long to wait."""
        due, wait = self._due(now)
        first = [
            s for s in due if s.first_pending and s.pending is not None and s.pending.window_index == s.offered_window
        ]
        if first:
            # A final ASR waits for these passes (processor/first_pass.py): no rest, no gate.
            due = first
        elif now < self._rest_until:
            return [], self._rest_until - now
        elif due and self.yield_to_finals and self.gate.busy:
            # Held (newer offers still supersede it) and looked at again every FINAL_POLL_SECONDS,
            # so it runs on a fresh snapshot when the final ends (before round 27 it was dropped).
            for slot in due:
                slot.counters.skipped_for_final += not slot.pending_held
                slot.pending_held = True
            return [], FINAL_POLL_SECONDS
        if not due:
            return [], wait
        return self._take(due), min(wait, self.interval)

    def _due(self, now: float) -> tuple[list[_Slot], float]:
        """Slots with a snapshot whose interval has passed, and how long until the next one is due."""
        due: list[_Slot] = []
        wait = 1.0
        for slot in self._slots.values():
            if slot.pending is None or slot.running:
                continue
            at = next_pass_due(slot.last_offered, slot.pending.offered_at, self.interval)
            if at <= now:
                due.append(slot)
            else:
                wait = min(wait, at - now)
        return due, wait

    def _take(self, due: list[_Slot]) -> list[_Job]:
        """Take the due snapshots (oldest-served first) for passes, at most ``batch_size``."""
        due.sort(key=lambda s: s.last_offered)
        jobs = []
        for slot in due:
            snap = slot.pending
            assert snap is not None
            slot.pending = None
            if snap.window_index == slot.window_index and snap.pcm.size - slot.passed_samples < self.min_new_samples:
                continue  # nothing new worth a pass; the next offer brings more audio
            first = slot.first_pending and snap.window_index == slot.offered_window
            slot.first_pending = False
            slot.running = True
            slot.last_offered = snap.offered_at  # the cadence counts from offers (processor/cadence.py)
            jobs.append(_Job(slot, snap, first))
            if len(jobs) >= self.batch_size:
                break
        return jobs

    def _run_passes(self, jobs: list[_Job]) -> None:
        audios = [to_float(j.snap.pcm) for j in jobs]
        t0 = self.clock()
        try:
            results = self.transcriber.transcribe_batch(audios, beam_size=self.beam_size)
        except Exception:
            log.exception("interim pass failed", extra={"session": jobs[0].slot.session_id})
            with self._cond:
                for j in jobs:
                    j.slot.counters.errors += 1
            return
        done = self.clock()
        took = done - t0
        with self._cond:
            self._rest_until = done + took * (1.0 / self.max_duty - 1.0)
            for j in jobs:
                slot, snap = j.slot, j.snap
                self._timings.append(
                    PassTiming(
                        slot.session_id, snap.window_index, snap.start_sample, snap.pcm.size, snap.offered_at, t0, done
                    )
                )
        for job, asr in zip(jobs, results, strict=True):
            self._publish(job, asr, took / len(jobs))

    def _publish(self, job: _Job, asr: Sequence[AsrSegment], took: float) -> None:
        """Write one pass's words as interim rows, split at the prefix it agrees on with the last pass."""
        slot, snap = job.slot, job.snap
        stable = self._agree(job, asr, took)
        if stable is None:
            return
        speaker = self._last_speaker(slot) if slot.speaker_stale else slot.speaker
        segments = interim_segments(slot.session_id, snap.window_index, snap.start_sample, asr, stable, speaker)
        shape = tuple((s.text, s.stable, s.speaker) for s in segments)
        with self._cond:
            if shape == slot.last_written or (not segments and slot.last_written is None):
                slot.counters.unchanged += 1
                return
        accepted = self._write(slot, snap.window_index, segments)
        with self._cond:
            if accepted and slot.window_index == snap.window_index:
                slot.last_written = shape
        log.debug(
            "interim pass",
            extra={
                "session": slot.session_id,
                "window": snap.window_index,
                "audio_s": round(snap.pcm.size / SAMPLE_RATE, 2),
                "took_s": round(took, 3),
                "stable_words": stable,
                "accepted": accepted,
            },
        )

    def _agree(self, job: _Job, asr: Sequence[AsrSegment], took: float) -> int | None:
        """Count the pass; its stable word count (LocalAgreement-2), or None when its window closed."""
        slot, snap = job.slot, job.snap
        with self._cond:
            c = slot.counters
            c.passes += 1
            c.audio_seconds += snap.pcm.size / SAMPLE_RATE
            c.compute_seconds += took
            if snap.window_index <= slot.closed_through:
                c.stale += 1
                return None
            if snap.window_index != slot.window_index:
                slot.window_index = snap.window_index
                slot.prev_words = []
                slot.last_written = None
            words = [normalize_word(w.text) for s in asr for w in s.words]
            stable = agreed_prefix(slot.prev_words, words)
            slot.prev_words = words
            slot.passed_samples = snap.pcm.size
            return stable

    def _write(self, slot: _Slot, window_index: int, segments: list[TranscriptSegment]) -> bool:
        """``put_interim``, counted: False when it failed or the store refused (the window is final)."""
        try:
            accepted = self.store.put_interim(slot.session_id, window_index, segments)
        except Exception:
            log.exception("interim write failed", extra={"session": slot.session_id, "window": window_index})
            accepted = None
        with self._cond:
            if accepted is None:
                slot.counters.errors += 1
            elif accepted:
                slot.counters.written += 1
            else:
                slot.counters.rejected_final += 1
        return bool(accepted)

    def _last_speaker(self, slot: _Slot) -> str | None:
        """Speaker of the session's last final segment (best effort, once per window)."""
        try:
            finals = self.store.segments(slot.session_id)
        except Exception:
            log.warning("last speaker lookup failed", extra={"session": slot.session_id}, exc_info=True)
            return slot.speaker
        speaker = next((s.speaker for s in reversed(finals) if s.speaker), None)
        with self._cond:
            slot.speaker = speaker
            slot.speaker_stale = False
        return speaker
