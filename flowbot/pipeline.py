"""Run a file through the real pipeline on one machine.

``flowbot transcribe`` is not a shortcut: the file is framed by the producer,
written to the embedded stream, consumed by the same shard processor that
serves live meetings, committed to the store, and closed by the same
end-of-session workflow (notes, final state).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.segments import TranscriptSegment, WindowRecord
from contracts.settings import Settings
from control.sessions import end, start_processing
from control.workflow import default_steps
from processor.build import build_engine_parts
from processor.engine import EngineParts, ShardProcessor
from producer.file_ingest import ingest_file
from stores.base import Session, SessionState
from stores.factory import session_store, transcript_store
from streams.embedded import EmbeddedConsumer, EmbeddedStream

log = logging.getLogger(__name__)

#: (processed seconds, total seconds or None while still decoding)
ProgressFn = Callable[[float, float | None], None]


@dataclass
class TranscribeResult:
    """What ``flowbot transcribe`` produced."""

    session_id: str
    segments: list[TranscriptSegment]
    windows: list[WindowRecord]
    speakers: dict[str, str]
    notes: dict[str, Any] | None
    state: str
    reason: str | None
    audio_seconds: float
    wall_seconds: float
    counters: dict[str, int]


class EmbeddedProcessor:
    """The embedded consumer in a background thread (``flowbot process``/``serve``)."""

    def __init__(self, settings: Settings, parts: EngineParts | None = None) -> None:
        self.settings = settings
        self.parts = parts or build_engine_parts(settings)
        self.stream = EmbeddedStream(settings.data_dir / "stream.db")
        self.processors: list[ShardProcessor] = []

        def factory() -> ShardProcessor:
            proc = ShardProcessor(self.parts)
            self.processors.append(proc)
            return proc

        self.consumer = EmbeddedConsumer(self.stream, settings.kcl_application_name, factory)
        self.thread = threading.Thread(target=self._run, name="processor", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            self.consumer.run()
        except BaseException as exc:  # surfaced to the caller by check()
            self.error = exc
            log.exception("processor stopped on an error")

    def start(self) -> EmbeddedProcessor:
        """Start consuming."""
        self.thread.start()
        return self

    def check(self) -> None:
        """Re-raise a processor crash in the caller's thread."""
        if self.error is not None:
            raise RuntimeError(f"processor failed: {self.error}") from self.error

    def stop(self) -> None:
        """Graceful stop (checkpoint) and join."""
        self.consumer.stop()
        self.thread.join(timeout=60)
        if self.parts.interim is not None:
            self.parts.interim.stop()

    def counters(self) -> dict[str, int]:
        """Sum of the shard processors' counters (and their poison guards': quarantined records)."""
        total: dict[str, int] = {}
        for counters in [*(p.counters for p in self.processors), *(g.counters for g in self.consumer.guards.values())]:
            for k, v in counters.items():
                total[k] = total.get(k, 0) + v
        return total


def transcribe_file(
    path: str | Path,
    settings: Settings,
    *,
    session_id: str | None = None,
    on_progress: ProgressFn | None = None,
    parts: EngineParts | None = None,
) -> TranscribeResult:
    """Transcribe one file through producer -> stream -> processor -> store -> workflow."""
    t0 = time.monotonic()
    session_id = session_id or f"file-{uuid.uuid4().hex[:12]}"
    sessions = session_store(settings)
    transcripts = transcript_store(settings)
    sessions.create(
        Session(
            session_id,
            meeting_id=Path(path).name,
            user_id="local",
            topic=str(path),
            stream_key=uuid.uuid4().hex,
            state=SessionState.LIVE,
        )
    )
    # A file has no live viewers: interim captions would only cost time.
    processor = EmbeddedProcessor(settings.replace(interim_seconds=0.0), parts).start()
    total: list[float | None] = [None]
    try:
        samples = ingest_file(str(path), processor.stream, session_id)
        total[0] = samples / 16000
        # The whole file is in the stream, its end-of-stream record last.
        end(sessions, session_id)
        start_processing(sessions, session_id)
        while True:
            processor.check()
            progress = transcripts.load_progress(session_id)
            done = progress.committed_sample / 16000 if progress else 0.0
            if on_progress:
                on_progress(done, total[0])
            if progress and progress.stream_done:
                break
            time.sleep(0.1)
        steps = default_steps(sessions, transcripts, settings)
        steps.generate_notes(session_id)
        final = steps.finalize(session_id)
    finally:
        processor.stop()
    return TranscribeResult(
        session_id=session_id,
        segments=transcripts.segments(session_id),
        windows=transcripts.windows(session_id),
        speakers=transcripts.speakers(session_id),
        notes=transcripts.get_notes(session_id),
        state=final["state"],
        reason=final["reason"],
        audio_seconds=total[0] or 0.0,
        wall_seconds=time.monotonic() - t0,
        counters=processor.counters(),
    )
