"""A window is one job: cut, hear (ASR), diarize, label, commit, in that order.

:class:`WindowJob` carries one window from the session buffer to the store.
The engine (:mod:`processor.engine`) cuts it and runs :func:`hear` on the record
thread (where the next window starts may depend on this one's words), hands
:func:`diarize` to the diarization executor chosen at composition (inline or a
pool: :attr:`processor.engine.EngineParts.diarization_pool`), and runs
:func:`label` and the store commit at its one commit point, in window order.

The window's VAD (:class:`processor.vad.SpeechMap`) is run once, at the cut,
over its left context and the buffer; the cut, the "any speech?" test and the
speech ASR decodes all read it.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field, replace

import numpy as np

from contracts.frames import SAMPLE_RATE
from contracts.segments import SpeakerTurn, TranscriptSegment, WindowRecord, WindowSpeaker, WindowStatus
from processor.asr import AsrResult, AsrSegment, Transcriber
from processor.attribution import attribute, transcript_segments
from processor.diarization import Diarization, Diarizer, SpeakerMapper
from processor.segtime import keep_words, words_after
from processor.speakers import assign_window, window_speakers
from processor.vad import Spans, SpeechMap
from processor.windowing import ASR_INPUT_SECONDS, WindowPolicy, commit_point, to_float
from stores.base import PermanentStoreError, SessionProgress, TranscriptStore

log = logging.getLogger(__name__)

#: faster-whisper's own VAD settings for its decode (``vad_parameters``): the
#: speech the model hears, read from the window's one VAD pass.
ASR_MIN_SILENCE_MS = 500
ASR_SPEECH_PAD_MS = 200


@dataclass(frozen=True)
class WindowResult:
    """What one window pass produced: rows, how much of the window they cover, who spoke when."""

    segments: list[TranscriptSegment]
    #: Samples of the window committed; less than its length when the tail is carried over.
    samples: int
    #: Session-labelled speaker turns on the session timeline (see WindowRecord.turns).
    turns: tuple[SpeakerTurn, ...] = ()
    #: ASR segments the hallucination guard dropped, by reason (:class:`processor.asr.AsrResult`).
    dropped: Counter[str] = field(default_factory=Counter)
    #: Each session speaker's speech and voice in the window (see WindowRecord.speakers).
    speakers: tuple[WindowSpeaker, ...] = ()


@dataclass(frozen=True)
class Recognized:
    """The ASR stage's output: the window's words and how much of it they commit."""

    #: The window's audio as float32 (what diarization will hear).
    audio: np.ndarray
    #: Segments within the committed span, times relative to the window start.
    asr: list[AsrSegment]
    #: Samples of the window committed (see :attr:`WindowResult.samples`).
    samples: int
    dropped: Counter[str] = field(default_factory=Counter)
    #: The window's VAD (:attr:`WindowJob.speech`), which the diarize stage reuses.
    speech: SpeechMap | None = None


@dataclass
class WindowJob:
    """One window on its way from the session buffer to the store."""

    session_id: str
    index: int
    #: Session sample of the window's first sample.
    start: int
    #: The window's audio as cut (int16); the committed span is its first ``samples``.
    pcm: np.ndarray
    #: Audio just before the window (already committed) that ASR hears first.
    context: np.ndarray
    #: Cut inside speech: only the words up to :func:`processor.windowing.commit_point` commit.
    carry: bool
    #: VAD of ``pcm`` (and maybe more after it): the window's one VAD pass.
    speech: SpeechMap
    #: First stream record whose audio this job holds (the checkpoint stays before it).
    first_seq: int | None = None
    #: The session's last window (its end-of-stream record was read).
    final: bool = False
    started: float = field(default_factory=time.monotonic)
    recognized: Recognized | None = None
    diarization: Future[Diarization] | None = None
    #: Why the window failed (ASR or diarization raised), None while it has not.
    error: str | None = None

    @property
    def samples(self) -> int:
        """Samples this window commits (all of it until its words say otherwise)."""
        return self.recognized.samples if self.recognized is not None else len(self.pcm)

    @property
    def carried(self) -> int:
        """Samples left for the next window."""
        return len(self.pcm) - self.samples

    def ready(self) -> bool:
        """May the commit point take it without waiting?"""
        return self.diarization is None or self.diarization.done()

    def heard(self, min_silence_ms: int) -> tuple[np.ndarray, Spans] | None:
        """What ASR hears (context then window, float32) and where its speech is.

        The context is heard whole (it is there to lead Whisper into the
        window's first words); the window, where its VAD found speech. None when
        VAD finds no speech in the window (a silent tail needs no ASR pass).
        What is heard fits one Whisper input (:data:`ASR_INPUT_SECONDS`): a
        window whose speech leaves no room keeps only the end of its context.
        Before, a 30 s window of speech behind 1 s of context took a second
        encoder pass for its last second. (Shortening windows to 29 s instead
        moved cuts and cost words: flite meeting WER 3.3 -> 3.7 %.)
        """
        if not self.speech.has_speech(0, len(self.pcm), min_silence_ms):
            return None
        lead = len(self.context)
        found = self.speech.spans(ASR_MIN_SILENCE_MS, ASR_SPEECH_PAD_MS, 0, len(self.pcm))
        room = int(ASR_INPUT_SECONDS * SAMPLE_RATE) - sum(b - a for a, b in found)
        spans = [(a + lead, b + lead) for a, b in found]
        if lead and room > 0:
            spans = merged([(max(0, lead - room), lead), *spans])
        audio = np.concatenate([to_float(self.context), to_float(self.pcm)]) if lead else to_float(self.pcm)
        return audio, spans


def merged(spans: Spans) -> Spans:
    """Sorted spans with touching or overlapping ones joined."""
    out: Spans = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def hear_all(transcriber: Transcriber, policy: WindowPolicy, jobs: list[WindowJob]) -> list[AsrResult]:
    """The ASR of several planned windows in one ``transcribe_batch`` call (an empty result for no speech).

    Raises what the call raised.
    """
    heard = [job.heard(policy.min_silence_ms) for job in jobs]
    todo = [(i, h) for i, h in enumerate(heard) if h is not None]
    raws = [AsrResult() for _ in jobs]
    if not todo:
        return raws
    decoded = transcriber.transcribe_batch([h[0] for _, h in todo], speech=[h[1] for _, h in todo])
    for (i, _), raw in zip(todo, decoded, strict=True):
        raws[i] = raw
    return raws


def hear(job: WindowJob, transcriber: Transcriber, policy: WindowPolicy, raw: AsrResult | None = None) -> Recognized:
    """The ASR stage: the window's words (context words dropped) and, with ``carry``, its commit point."""
    audio = to_float(job.pcm)
    if raw is None:
        heard = job.heard(policy.min_silence_ms)
        raw = transcriber.transcribe(heard[0], speech=heard[1]) if heard is not None else AsrResult()
    lead = len(job.context) / SAMPLE_RATE
    asr = words_after(raw, lead) if lead else list(raw)
    samples = len(job.pcm)
    if job.carry:
        words = [(w.start, w.end) for seg in asr for w in seg.words]
        samples, kept = commit_point(audio, words, len(job.pcm), policy)
        asr = keep_words(asr, kept) if samples < len(job.pcm) else asr
    return Recognized(audio, asr, samples, raw.dropped, job.speech)


def diarize(recognized: Recognized, diarizer: Diarizer, executor: Executor) -> Future[Diarization] | None:
    """The diarization stage on ``executor``; None when the window has no words (nothing to attribute).

    The diarizer gets the window's VAD too (the pass the cut and the ASR read), so it needs no
    voice activity pass of its own to know where nobody speaks.
    """
    if not recognized.asr:
        return None
    return executor.submit(diarizer.diarize, recognized.audio, recognized.speech)


def label(
    recognized: Recognized,
    diarization: Diarization | None,
    mapper: SpeakerMapper,
    session_id: str,
    window_index: int,
    start_sample: int,
) -> WindowResult:
    """The label stage: speaker-attributed session-timeline segments from the words and the diarization.

    ``diarization`` is None exactly when the window has no words (nothing to attribute).
    """
    if not recognized.asr or diarization is None:
        return WindowResult([], recognized.samples, dropped=recognized.dropped)
    if recognized.samples < len(recognized.audio):
        diarization = diarization.until(recognized.samples / SAMPLE_RATE)
    diarization, mapping = assign_window(mapper, diarization)
    session_diarization = diarization.relabel(mapping)
    labelled = attribute(recognized.asr, session_diarization)
    segments = transcript_segments(
        labelled, session_id=session_id, window_index=window_index, start_sample=start_sample
    )
    offset = start_sample / SAMPLE_RATE
    turns = tuple(
        SpeakerTurn(round(offset + t.start, 3), round(offset + t.end, 3), t.speaker)
        for t in session_diarization.speech_turns
        if t.end > t.start
    )
    return WindowResult(segments, recognized.samples, turns, recognized.dropped, window_speakers(diarization, mapping))


def run_window(
    transcriber: Transcriber,
    diarizer: Diarizer,
    policy: WindowPolicy,
    mapper: SpeakerMapper,
    session_id: str,
    window_index: int,
    start_sample: int,
    pcm: np.ndarray,
    carry: bool = False,
    context: np.ndarray | None = None,
) -> WindowResult:
    """One window's stages run start to end, inline, outside any session (the commit aside)."""
    ctx = context if context is not None else np.zeros(0, np.int16)
    speech = SpeechMap.of(to_float(pcm))
    job = WindowJob(session_id, window_index, start_sample, pcm, ctx, carry, speech)
    recognized = hear(job, transcriber, policy)
    future = diarize(recognized, diarizer, InlineExecutor())
    diarization = future.result() if future is not None else None
    return label(recognized, diarization, mapper, session_id, window_index, start_sample)


def store_window(
    store: TranscriptStore, window: WindowRecord, segments: list[TranscriptSegment], progress: SessionProgress
) -> WindowStatus:
    """The commit stage's one store transaction; a window the store refuses for good is recorded as failed."""
    # Transient store errors propagate: the window stays queued, the checkpoint
    # stays behind it and the window replays.
    try:
        store.commit_window(window, segments, progress)
        return window.status
    except PermanentStoreError as exc:
        # The rows were refused for good: record the window as failed (reported by the
        # workflow) rather than replaying it forever. If even that is refused, raise.
        log.error(
            "store refused window",
            extra={"session": window.session_id, "window": window.window_index, "error": str(exc)},
        )
        window = replace(window, status=WindowStatus.FAILED, error=f"store: {exc}", turns=())
        store.commit_window(window, [], progress)
        return WindowStatus.FAILED


class InlineExecutor(Executor):
    """Runs each task at once on the caller's thread: the inline diarization strategy."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]  # Executor's own signature
        """Run ``fn`` now; its result (or exception) is in the returned future."""
        done: Future[object] = Future()
        try:
            done.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            done.set_exception(exc)
        return done
