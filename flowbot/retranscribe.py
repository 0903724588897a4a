"""Re-transcription: a finished meeting again, from its archived audio, as a new revision.

The archived windows (:mod:`stores.archive`) are put back on the session timeline and run
through :func:`flowbot.pipeline.transcribe_file`, the same producer -> stream -> processor ->
store -> workflow path as any file, with the model and language asked for. The revision is a
session of its own (``revision``, ``revision_of``): the old transcript, its speakers and notes
stay as they were, and each page says which revision it shows.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import uuid
import wave
from pathlib import Path

import numpy as np

from contracts.frames import SAMPLE_RATE
from contracts.settings import Settings
from control import sessions
from flowbot.pipeline import ProgressFn, TranscribeResult, transcribe_file
from stores.archive import WindowArchive
from stores.base import Session, SessionNotFound, SessionState, SessionStore, TranscriptStore
from stores.factory import session_store, transcript_store, window_archive

log = logging.getLogger(__name__)

#: Sessions that may be re-transcribed: their audio is all archived and nothing writes to them.
FINISHED = (SessionState.COMPLETED, SessionState.PARTIAL)


class RetranscribeError(ValueError):
    """The session cannot be re-transcribed (unknown, not finished, no archived audio)."""


def archived_audio(transcripts: TranscriptStore, archive: WindowArchive, session_id: str) -> np.ndarray:
    """The session's archived window audio on its timeline (silence where a window has none)."""
    windows = [w for w in transcripts.windows(session_id) if w.audio_uri]
    if not windows:
        raise RetranscribeError(f"session {session_id} has no archived audio (was FLOWBOT_ARCHIVE=none?)")
    pcm = np.zeros(max(w.end_sample for w in windows), np.int16)
    for w in windows:
        audio = archive.get(w.audio_uri or "")[: w.end_sample - w.start_sample]
        pcm[w.start_sample : w.start_sample + len(audio)] = audio
    return pcm


def plan_revision(sessions: SessionStore, session_id: str, *, model: str | None, language: str | None) -> Session:
    """The next revision of a finished session (not yet stored)."""
    original = _finished(sessions, session_id)
    root = original.revision_of or original.session_id
    latest = max((s.revision for s in sessions.list() if s.revision_of == root), default=1)
    return Session(
        session_id=str(uuid.uuid4()),
        meeting_id=original.meeting_id,
        user_id=original.user_id,
        topic=original.topic,
        stream_key=uuid.uuid4().hex,  # never published to: the audio comes from the archive
        state=SessionState.LIVE,
        revision=latest + 1,
        revision_of=root,
        asr_model=model,
        asr_language=language,
    )


def _finished(sessions: SessionStore, session_id: str) -> Session:
    """The session ``session_id``; :class:`RetranscribeError` unless it exists and is finished."""
    try:
        original = sessions.get(session_id)
    except SessionNotFound:
        raise RetranscribeError(f"no session {session_id!r}") from None
    if original.state not in FINISHED:
        raise RetranscribeError(
            f"session {session_id} is {original.state.value}; only a finished meeting "
            f"({' or '.join(s.value for s in FINISHED)}) is re-transcribed"
        )
    return original


def run_revision(settings: Settings, revision: Session, *, on_progress: ProgressFn | None = None) -> TranscribeResult:
    """Transcribe ``revision`` from the archived audio of the session it revises."""
    assert revision.revision_of is not None
    pcm = archived_audio(transcript_store(settings), window_archive(settings), revision.revision_of)
    overrides = {"asr_model": revision.asr_model, "asr_language": revision.asr_language}
    settings = settings.replace(**{k: v for k, v in overrides.items() if v is not None})
    with tempfile.TemporaryDirectory(prefix="flowbot-revision-") as tmp:
        wav = Path(tmp) / "archived.wav"
        with wave.open(str(wav), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(SAMPLE_RATE)
            out.writeframes(pcm.tobytes())
        return transcribe_file(wav, settings, session=revision, on_progress=on_progress)


def retranscribe(
    settings: Settings,
    session_id: str,
    *,
    model: str | None = None,
    language: str | None = None,
    on_progress: ProgressFn | None = None,
) -> TranscribeResult:
    """Re-transcribe a finished session as its next revision; returns the new revision's result."""
    revision = plan_revision(session_store(settings), session_id, model=model, language=language)
    return run_revision(settings, revision, on_progress=on_progress)


class BackgroundRetranscriber:
    """The ``retranscribe`` API action of ``flowbot serve``: plan now, transcribe on a thread.

    Answers with the revision's session at once (already stored, state ``live``), so a client can
    open its page and watch it fill, like any session.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.threads: dict[str, threading.Thread] = {}

    def __call__(self, session_id: str, model: str | None, language: str | None) -> Session:
        """Start re-transcribing ``session_id``; returns the new revision's session."""
        sessions = session_store(self.settings)
        revision = plan_revision(sessions, session_id, model=model, language=language)
        # Fail here, not on the thread, when the audio is not there.
        archived_audio(transcript_store(self.settings), window_archive(self.settings), revision.revision_of or "")
        sessions.create(revision)
        thread = threading.Thread(
            target=self._run, args=(revision,), name=f"revision-{revision.session_id}", daemon=True
        )
        self.threads[revision.session_id] = thread
        thread.start()
        return revision

    def _run(self, revision: Session) -> None:
        try:
            run_revision(self.settings, revision)
        except Exception as exc:
            log.exception("re-transcription failed", extra={"session": revision.session_id})
            sessions.fail(session_store(self.settings), revision.session_id, f"re-transcription failed: {exc}"[:300])

    def join(self, session_id: str, timeout: float | None = None) -> None:
        """Wait for a revision's transcription (tests, shutdown)."""
        thread = self.threads.get(session_id)
        if thread is not None:
            thread.join(timeout)
