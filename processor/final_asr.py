"""Where a cut window's final ASR runs: on the record thread, or live on a thread of its own.

A window cut at a pause commits whole, so where the next window starts does not
depend on its words. Live (diarization on its own thread,
:attr:`processor.engine.EngineParts.diarization_pool`), its final ASR (beam 5,
1-3 s on 2 cores) then runs on the final-ASR thread while the record thread goes
on reading records and offering the next window to interim captions. Before,
the records spoken meanwhile waited for it, and the next window's first interim
pass decoded a snapshot that ended at the cut (caption pipe stage up to 3 s,
docs/live-captions.md). A window cut inside speech is heard on the record
thread: its words decide where the next window starts.

One thread hears windows in cut order and hands each to the diarization
executor in that order; the engine's commit point waits for both
(:meth:`FinalAsr.ready`, :meth:`FinalAsr.wait`) and commits in window order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext

from processor.asr import AsrResult, Transcriber
from processor.diarization import Diarizer
from processor.gate import GatedTranscriber
from processor.window import WindowJob, diarize, hear
from processor.windowing import WindowPolicy

log = logging.getLogger(__name__)


class FinalAsr:
    """The hear stage of cut windows (and the hand-off to diarization), inline or on its own thread."""

    def __init__(
        self, transcriber: Transcriber, diarizer: Diarizer, policy: WindowPolicy, diarization: Executor, threaded: bool
    ) -> None:
        self.transcriber = transcriber
        self.diarizer = diarizer
        self.policy = policy
        self.diarization = diarization
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="final-asr") if threaded else None
        #: Final ASR on the thread, by job identity (the job is kept, so its id is not reused).
        self._running: dict[int, tuple[WindowJob, Future[None]]] = {}

    def start(self, job: WindowJob, raw: AsrResult | None, heard: Callable[[], None]) -> None:
        """Hear ``job`` (``raw``: its ASR, already decoded in a batch); on the thread when its length is known.

        ``heard`` runs once its ASR is done: the interim worker's ``window_closed``. Not at
        the cut: an interim pass of the window already running then is still written
        (the final ASR waits for the model until it ends; the final rows replace it).
        Closing the window at the cut discarded it as stale: in two runs 5 passes and
        4-9 more words first shown by a final.
        """
        if self._thread is None or raw is not None or job.carry:
            self._recognize(job, raw, heard)
            return
        # Final ASR first: the gate is busy from the cut, before the engine offers the next
        # window, so no interim pass can start between the cut and this ASR (it would make
        # the final wait for the model).
        final = self.transcriber.gate.final() if isinstance(self.transcriber, GatedTranscriber) else nullcontext()
        final.__enter__()
        try:
            self._running[id(job)] = (job, self._thread.submit(self._after_cut, job, final, heard))
        except BaseException:
            final.__exit__(None, None, None)
            raise

    def ready(self, job: WindowJob) -> bool:
        """Are the job's ASR and diarization done (may the commit point take it without waiting)?"""
        running = self._running.get(id(job))
        return (running is None or running[1].done()) and job.ready()

    def wait(self, job: WindowJob) -> None:
        """Wait for the job's ASR if it runs on the thread (it has set the job's words or error then)."""
        running = self._running.pop(id(job), None)
        if running is not None:
            running[1].result()

    def forget(self) -> None:
        """Drop every job's handle (lease lost: what still runs is discarded with its session)."""
        self._running.clear()

    def _after_cut(self, job: WindowJob, final: AbstractContextManager[None], heard: Callable[[], None]) -> None:
        """The thread's task: the next window's first interim pass, :meth:`_recognize`, then leave the gate.

        The first pass of the next window goes first (:mod:`processor.first_pass`): its
        words have been in no pass yet, while the cut window's were captioned up to its
        last pass.
        """
        try:
            if isinstance(self.transcriber, GatedTranscriber) and not job.final:
                self.transcriber.gate.first_passes.wait(job.session_id, job.index + 1)
            self._recognize(job, None, heard)
        finally:
            final.__exit__(None, None, None)

    def _recognize(self, job: WindowJob, raw: AsrResult | None, heard: Callable[[], None]) -> None:
        """ASR of a cut window, ``heard``, and its diarization handed to the executor; a failure marks the job."""
        try:
            try:
                job.recognized = hear(job, self.transcriber, self.policy, raw)
            finally:
                heard()
            job.diarization = diarize(job.recognized, self.diarizer, self.diarization)
        except Exception as exc:  # a window that cannot be transcribed is reported, not retried forever
            log.exception("window failed", extra={"session": job.session_id, "window": job.index})
            job.error = f"{type(exc).__name__}: {exc}"
