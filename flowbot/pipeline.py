"""The processor side as flowbot runs it, and a file through the real pipeline on one machine.

:class:`LocalProcessors` is what every flowbot command hands a stream consumer
(``flowbot process``, ``serve``, ``transcribe``): shard processors sharing
one set of engine parts, or, for a consumer whose processors run in other
processes, the processor factory's name.

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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.frames import SAMPLE_RATE
from contracts.segments import TranscriptSegment, WindowRecord
from contracts.settings import Settings
from control.sessions import end, start_processing
from control.workflow import default_steps
from processor.build import build_engine_parts, build_file_parts, build_shard_processor, check_loaded
from processor.engine import EngineParts, ShardProcessor
from producer.file_ingest import ingest_file
from stores.base import Session, SessionState, SessionStore, StateConflict, TranscriptStore
from stores.factory import session_store, transcript_store
from streams.base import ProcessorFactory
from streams.factory import embedded_consumer, embedded_stream
from streams.thread import ConsumerThread

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


#: What the KCL child builds its processor with: in its own process, so with its own models.
SHARD_PROCESSOR_SPEC = f"{build_shard_processor.__module__}:{build_shard_processor.__name__}"


class LocalProcessors:
    """The shard processors of this process, sharing one set of engine parts (models load once).

    A consumer calls it once per shard lease (and after a failure). The parts
    are built on first use, so a consumer whose processors run elsewhere (the
    KCL daemon's children) never loads models here.
    """

    def __init__(self, settings: Settings, parts: EngineParts | None = None) -> None:
        self.settings = settings
        self._parts = parts
        self._lock = threading.Lock()
        self.processors: list[ShardProcessor] = []

    def parts(self) -> EngineParts:
        """The engine parts (built now if not yet)."""
        with self._lock:
            if self._parts is None:
                self._parts = build_engine_parts(self.settings)
            return self._parts

    def __call__(self) -> ShardProcessor:
        """A processor for one shard lease."""
        proc = build_shard_processor(self.settings, self.parts())
        self.processors.append(proc)
        return proc

    def check(self) -> None:
        """Raise the error of a model that failed to load in the background (the diarizer); never waits.

        The command's loop calls it next to ``ConsumerThread.check``, so that a
        diarizer that cannot load ends the command with its own error, as when it
        loaded before anything else.
        """
        if self._parts is not None:
            check_loaded(self._parts)

    def factory(self) -> ProcessorFactory:
        """These processors for a consumer in this process, the shard processor by name for a KCL child."""
        return ProcessorFactory(build=self, spec=SHARD_PROCESSOR_SPEC)

    def counters(self) -> dict[str, int]:
        """Sum of the processors' counters."""
        return _sum([p.counters for p in self.processors])

    def stop(self) -> None:
        """Stop what runs beside the processors (the interim-caption worker)."""
        if self._parts is not None and self._parts.interim is not None:
            self._parts.interim.stop()


def _sum(counters: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for c in counters:
        for k, v in c.items():
            total[k] = total.get(k, 0) + v
    return total


def transcribe_file(
    path: str | Path,
    settings: Settings,
    *,
    session_id: str | None = None,
    session: Session | None = None,
    user_id: str = "local",
    on_progress: ProgressFn | None = None,
    parts: EngineParts | None = None,
) -> TranscribeResult:
    """Transcribe one file through producer -> stream -> processor -> store -> workflow.

    ``session`` (state ``live``) is the session to transcribe into, stored here unless its
    caller stored it already; without it, a new session named after the file, owned by
    ``user_id`` (that owner's remembered voices name its speakers).
    """
    t0 = time.monotonic()
    sessions = session_store(settings)
    transcripts = transcript_store(settings)
    session = session if session is not None else _file_session(path, session_id, user_id)
    session_id = session.session_id
    _store_live(sessions, session)
    # Models load here, not on the consumer's first lease (the diarizer in the background:
    # the first window's ASR does not wait for it). A file has no live viewers (no interim
    # captions) and its windows may be decoded in batches.
    processors = LocalProcessors(settings.replace(interim_seconds=0.0), build_file_parts(settings, parts))
    stream = embedded_stream(settings)
    consumer = embedded_consumer(settings, processors, stream)
    thread = ConsumerThread(consumer).start()
    total: list[float | None] = [None]
    try:
        samples = ingest_file(str(path), stream, session_id)
        total[0] = samples / SAMPLE_RATE
        # The whole file is in the stream, its end-of-stream record last.
        end(sessions, session_id)
        start_processing(sessions, session_id)
        _wait_until_committed(thread, processors, transcripts, session_id, total[0], on_progress)
        steps = default_steps(sessions, transcripts, settings)
        steps.generate_notes(session_id)
        final = steps.finalize(session_id)
    finally:
        thread.stop()
        processors.stop()
    # The poison guards' counters too (quarantined records).
    counters = _sum([processors.counters(), *(g.counters for g in consumer.guards.values())])
    return _result(transcripts, session_id, final, total[0] or 0.0, t0, counters)


def _result(
    transcripts: TranscriptStore,
    session_id: str,
    final: Mapping[str, Any],
    audio_seconds: float,
    started: float,
    counters: dict[str, int],
) -> TranscribeResult:
    """What ``flowbot transcribe`` produced: the session as stored, its final state and what it cost."""
    return TranscribeResult(
        session_id=session_id,
        segments=transcripts.segments(session_id),
        windows=transcripts.windows(session_id),
        speakers=transcripts.speakers(session_id),
        notes=transcripts.get_notes(session_id),
        state=final["state"],
        reason=final["reason"],
        audio_seconds=audio_seconds,
        wall_seconds=time.monotonic() - started,
        counters=counters,
    )


def _file_session(path: str | Path, session_id: str | None, user_id: str) -> Session:
    """A new live session for a file, named after it."""
    return Session(
        session_id or f"file-{uuid.uuid4().hex[:12]}",
        meeting_id=Path(path).name,
        user_id=user_id,
        topic=str(path),
        stream_key=uuid.uuid4().hex,
        state=SessionState.LIVE,
    )


def _store_live(sessions: SessionStore, session: Session) -> None:
    """Store ``session``, unless its caller stored it already (and it is still live)."""
    try:
        sessions.create(session)
    except StateConflict:
        if sessions.get(session.session_id).state != SessionState.LIVE:
            raise


def _wait_until_committed(
    thread: ConsumerThread,
    processors: LocalProcessors,
    transcripts: TranscriptStore,
    session_id: str,
    total: float | None,
    on_progress: ProgressFn | None,
) -> None:
    """Until the session's end of stream is committed, reporting progress (a failed consumer, or a
    model that failed to load in the background, raises)."""
    while True:
        thread.check()
        processors.check()
        progress = transcripts.load_progress(session_id)
        done = progress.committed_sample / SAMPLE_RATE if progress else 0.0
        if on_progress:
            on_progress(done, total)
        if progress and progress.stream_done:
            return
        time.sleep(0.1)
