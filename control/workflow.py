"""End-of-session workflow: wait for every window, name known voices, write notes, mark the session done.

The three steps are plain methods so that Step Functions (through
``control.lambda_handlers``) and the local runner execute the same code; only
the waiting loop differs (a Wait state there, a thread here).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from contracts.settings import Settings, TranscriptBackend
from control import sessions
from control.notes import NotesGenerator, OfflineNotesGenerator
from control.sessions import Progress
from control.speakers import ReconcileParams, reconcile
from stores.base import Session, SessionStore, StateConflict, TranscriptStore
from stores.voice_naming import Voices

log = logging.getLogger(__name__)

#: Called with (session, final state, notes, reason) once a session is finalized.
OnFinalized = Callable[[Session, str, dict[str, Any] | None, str | None], None]


@dataclass(frozen=True)
class WorkflowSteps:
    """The workflow's steps over the stores."""

    sessions: SessionStore
    transcripts: TranscriptStore
    notes: NotesGenerator
    #: Where the final meeting status goes besides the session store (Supabase's
    #: "Update Meeting Status"): called with (session, state, notes, reason).
    on_finalized: OnFinalized | None = None
    #: End-of-session speaker reconciliation (None: labels stay as they were live).
    reconcile: ReconcileParams | None = field(default_factory=ReconcileParams)
    #: The owners' voice libraries: speakers that match a remembered voice are named before the notes.
    voices: Voices | None = None

    def check_windows(self, session_id: str) -> dict[str, Any]:
        """Has the processor committed every window up to the end-of-stream record?

        The answer is the Step Functions state's input (``done`` and ``windows_failed``
        are read by the state machine).
        """
        progress = Progress.read(self.transcripts, session_id)
        return {
            "session_id": session_id,
            "done": progress.stream_done,
            "ended": progress.stream_ended,
            "windows_done": progress.windows_done,
            "windows_failed": progress.windows_failed,
            "failed": [f.to_dict() for f in progress.failures],
            "segments_dropped": progress.segments_dropped,
            "processed_seconds": progress.processed_seconds,
        }

    def name_voices(self, session_id: str) -> dict[str, Any]:
        """Name the session's speakers that match one of its owner's remembered voices.

        Runs at the start of :meth:`generate_notes`, so the notes use the names.
        A failure here is logged and the notes are written anyway: a name is a
        convenience, the notes are the product.
        """
        if self.voices is None:
            return {"session_id": session_id, "named": {}}
        try:
            session = self.sessions.get(session_id)
            self.voices.follow_relabel(session)  # names given live, to speakers merged at the end
            namings = self.voices.name_session(session)
        except Exception:
            log.exception("naming speakers by voice failed", extra={"session": session_id})
            return {"session_id": session_id, "named": {}, "error": "naming by voice failed; see logs"}
        return {"session_id": session_id, "named": {n.label: n.name for n in namings}}

    def reconcile_speakers(self, session_id: str) -> dict[str, Any]:
        """One consistent cast: cluster every window speaker of the session at once and relabel.

        Runs once every window is committed and before the notes (the notes step
        calls it first, so Step Functions' GenerateNotes task runs it too). A second
        call finds the session already relabelled and changes nothing.
        """
        done = self.transcripts.speaker_relabel(session_id)
        applied = False
        if done is None and self.reconcile is not None:
            relabel = reconcile(self.transcripts.windows(session_id), self.reconcile)
            applied = self.transcripts.relabel_speakers(session_id, relabel)
            done = relabel if applied else self.transcripts.speaker_relabel(session_id)
        if applied and done is not None:
            log.info(
                "speakers reconciled",
                extra={
                    "session": session_id,
                    "before": len(done.before),
                    "after": len(done.after),
                    "windows_changed": sum(1 for v in done.windows.values() if v),
                },
            )
        return {"session_id": session_id, "speakers": None if done is None else done.to_dict()}

    def generate_notes(self, session_id: str) -> dict[str, Any]:
        """Notes from whatever transcript exists (also after partial failure).

        The speakers are reconciled first (:meth:`reconcile_speakers`), then those
        that match a remembered voice are named (:meth:`name_voices`), so the notes
        name the final cast. A language-model generator is wrapped in the offline
        fallback (:func:`control.llm.notes_generator`), so this step writes notes
        even when the model fails; the notes name the generator that wrote them.
        """
        self.reconcile_speakers(session_id)
        self.name_voices(session_id)
        segments = self.transcripts.segments(session_id)
        notes = self.notes.generate(segments, self.transcripts.speakers(session_id)).to_dict()
        self.transcripts.put_notes(session_id, notes)
        log.info(
            "notes written",
            extra={
                "session": session_id,
                "segments": len(segments),
                "action_items": len(notes["action_items"]),
                "generator": notes["generator"],
                "fallback_reason": notes["fallback_reason"],
            },
        )
        return {
            "session_id": session_id,
            "action_items": len(notes["action_items"]),
            "decisions": len(notes["decisions"]),
            "generator": notes["generator"],
            "fallback_reason": notes["fallback_reason"],
        }

    def finalize(self, session_id: str, timed_out: bool = False) -> dict[str, Any]:
        """Completed when every window is done; partial (with the reason) otherwise."""
        progress = Progress.read(self.transcripts, session_id)
        reasons = []
        if timed_out or not progress.stream_done:
            reasons.append(f"timed out waiting for audio: processed {progress.processed_seconds} s")
        if progress.failures:
            spans = ", ".join(f"{f.start:.0f}-{f.end:.0f}s ({f.error})" for f in progress.failures[:5])
            reasons.append(f"{progress.windows_failed} window(s) failed: {spans}")
        reason = "; ".join(reasons) or None
        try:
            if reason is None:
                session = sessions.complete(self.sessions, session_id)
            elif progress.windows_done == 0 and not self.transcripts.segments(session_id):
                session = sessions.fail(self.sessions, session_id, reason)
            else:
                session = sessions.complete_partially(self.sessions, session_id, reason)
        except StateConflict:
            current = self.sessions.get(session_id)
            log.warning(
                "session already finalized",
                extra={"session": session_id, "state": current.state.value},
            )
            return {
                "session_id": session_id,
                "state": current.state.value,
                "reason": current.reason,
            }
        state = session.state.value
        if self.on_finalized is not None:
            self.on_finalized(session, state, self.transcripts.get_notes(session_id), reason)
        log.info("session finalized", extra={"session": session_id, "state": state, "reason": reason})
        return {"session_id": session_id, "state": state, "reason": reason}

    def run(self, session_id: str, timeout: float, poll: float = 0.5, max_poll: float = 10.0) -> dict[str, Any]:
        """The whole workflow in this process: poll with backoff, bounded by ``timeout``."""
        deadline = time.monotonic() + timeout
        delay = poll
        while True:
            if Progress.read(self.transcripts, session_id).stream_done:
                timed_out = False
                break
            if time.monotonic() >= deadline:
                timed_out = True
                break
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(max_poll, delay * 1.5)
        self.generate_notes(session_id)
        return self.finalize(session_id, timed_out=timed_out)


def default_steps(
    sessions: SessionStore, transcripts: TranscriptStore, settings: Settings | None = None
) -> WorkflowSteps:
    """Steps with the notes generator ``settings`` configure (offline notes without settings).

    With Supabase transcripts the final state and notes also go to the meeting's row
    (:meth:`stores.supabase.SupabaseMeetingStatus.update`), wherever the steps run. With
    settings, speakers are named by their owners' remembered voices before the notes.
    """
    if settings is None:
        return WorkflowSteps(sessions, transcripts, OfflineNotesGenerator())
    from control.llm import notes_generator
    from stores.factory import voice_library

    on_finalized = _meeting_status_writer(settings) if settings.store == TranscriptBackend.SUPABASE else None
    voices = Voices.from_settings(voice_library(settings), transcripts, settings)
    threshold = settings.speaker_reconcile_threshold
    params = ReconcileParams(threshold=threshold) if threshold > 0 else None
    return WorkflowSteps(sessions, transcripts, notes_generator(settings), on_finalized, params, voices)


def _meeting_status_writer(settings: Settings) -> OnFinalized:
    from stores.supabase import SupabaseMeetingStatus

    meetings = SupabaseMeetingStatus.from_settings(settings)

    def update(session: Session, state: str, notes: dict[str, Any] | None, reason: str | None) -> None:
        meetings.update(session.meeting_id, state, notes, session_id=session.session_id, reason=reason)

    return update


class LocalWorkflowStarter:
    """Runs the workflow in a background thread (single-machine mode)."""

    def __init__(self, steps: WorkflowSteps, timeout: float) -> None:
        self.steps = steps
        self.timeout = timeout
        self.threads: dict[str, threading.Thread] = {}

    def start(self, session_id: str) -> str:
        """Start the workflow for a session; returns the thread name."""

        def target() -> None:
            try:
                self.steps.run(session_id, self.timeout)
            except Exception:
                log.exception("workflow crashed", extra={"session": session_id})
                try:
                    sessions.fail(self.steps.sessions, session_id, "workflow crashed; see logs")
                except Exception:
                    log.exception("could not mark session failed", extra={"session": session_id})

        thread = threading.Thread(target=target, name=f"workflow-{session_id}", daemon=True)
        self.threads[session_id] = thread
        thread.start()
        return thread.name

    def join(self, session_id: str, timeout: float | None = None) -> None:
        """Wait for a session's workflow (tests, CLI)."""
        thread = self.threads.get(session_id)
        if thread is not None:
            thread.join(timeout)
