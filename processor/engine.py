"""The record processor: frame records in, committed transcript windows out.

One :class:`ShardProcessor` per stream shard, driven through the KCL lifecycle
by the embedded consumer or the KCL MultiLangDaemon. A shard carries many
sessions interleaved; each session has its own window buffer.

Safety rules (why they hold is noted where they are enforced):

- A window's segments, its archive pointer and the session's progress are
  committed in one store transaction, *then* the checkpoint may move.
- The checkpoint never passes the first record of any session's unfinished
  window, so a crash replays every record whose audio is not yet committed.
- On replay, audio before a session's committed sample is skipped, so no
  window is transcribed twice into different rows, and windows are cut at the
  same places (the cut depends only on the audio after the committed sample).
- A window cut inside speech (no pause anywhere) is committed only up to a
  gap between words short of the cut (:func:`processor.windowing.commit_point`,
  a function of the window's audio and its transcript, so a replay commits the
  same span); the rest stays buffered and opens the next window. Windows stay
  contiguous: the next window starts exactly where the committed one ended,
  and the checkpoint rule above still covers the carried audio.
- With a diarization pool (:attr:`EngineParts.diarization_pool`, on when interim
  captions are), a window is *cut* when its ASR is done and *committed* once
  its diarization is: at a later record, at the session's next cut or end, or
  at shutdown. A session has at most one cut window; windows commit in order;
  the cut window's records count as uncommitted for the checkpoint rule.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from contracts.frames import MAX_RECORD_SAMPLES, SAMPLE_RATE, FrameKind, FrameRecord, MalformedRecord
from contracts.segments import SpeakerTurn, TranscriptSegment, WindowRecord, WindowStatus
from processor.asr import AsrResult, AsrSegment, Transcriber, shifted, words_text
from processor.attribution import attribute, transcript_segments
from processor.diarization import Diarization, Diarizer, SpeakerMapper
from processor.windowing import Cut, WindowPolicy, choose_cut, commit_point, has_speech, to_float
from stores.archive import WindowArchive
from stores.base import PermanentStoreError, SessionProgress, TranscriptStore
from streams.base import Checkpointer, StreamRecord

log = logging.getLogger(__name__)


class InterimSink(Protocol):
    """Receives snapshots of open windows for interim captions (may drop them)."""

    def offer(self, session_id: str, window_index: int, start_sample: int, pcm: np.ndarray) -> None:
        """A newer snapshot of the open window; must not block."""

    def window_closed(self, session_id: str, window_index: int) -> None:
        """The window was committed as final; stop interim work on it."""

    def stats(self, session_id: str | None = None) -> dict[str, Any]:
        """Counters (passes run, dropped, skipped) for one session or all."""

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the worker."""


@dataclass
class EngineParts:
    """Everything a shard processor needs; built once per process."""

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
    #: Where a final pass's diarization runs. None: inline, the window commits
    #: before the record that cut it returns. An executor (one thread): the record
    #: thread goes on ingesting, and offering the next window to interim captions,
    #: while the previous window is diarized; the window commits at a later record
    #: (see :class:`ShardProcessor`). Measured: diarization is 70-80 % of a final
    #: pass, and a blocked record thread was the cause of caption p95 > 7 s.
    diarization_pool: Executor | None = None
    #: Windows of one session decoded in one :meth:`Transcriber.transcribe_batch` call.
    #: Above 1 the processor waits until that much audio is buffered (or the stream
    #: ends) before cutting: only for audio that arrives faster than real time (a
    #: file, ``flowbot transcribe``). The cuts are the same either way.
    batch_windows: int = 1


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


def asr_input(policy: WindowPolicy, pcm: np.ndarray, context: np.ndarray | None) -> np.ndarray | None:
    """What ASR hears for a window: its left ``context`` then the window, float32.

    None when VAD finds no speech in the window (a silent tail needs no ASR pass).
    """
    audio = to_float(pcm)
    if not has_speech(audio, policy.min_silence_ms):
        return None
    if context is not None and context.size:
        return np.concatenate([to_float(context), audio])
    return audio


@dataclass(frozen=True)
class Recognized:
    """The ASR half of a final pass: the window's words and how much of it they commit."""

    #: The window's audio as float32 (what diarization will hear).
    audio: np.ndarray
    #: Segments within the committed span, times relative to the window start.
    asr: list[AsrSegment]
    #: Samples of the window committed (see :attr:`WindowResult.samples`).
    samples: int
    dropped: Counter[str] = field(default_factory=Counter)


def recognize_window(
    parts: EngineParts,
    pcm: np.ndarray,
    *,
    carry: bool = False,
    context: np.ndarray | None = None,
    raw: AsrResult | None = None,
) -> Recognized:
    """ASR of one window and, with ``carry``, its commit point (the first half of :func:`transcribe_window`).

    ``raw`` is the transcript of :func:`asr_input` when a batch already decoded it.
    """
    audio = to_float(pcm)
    lead = context.size / SAMPLE_RATE if context is not None and context.size else 0.0
    if raw is None:
        heard = asr_input(parts.policy, pcm, context)
        if heard is None:
            return Recognized(audio, [], len(pcm))
        raw = parts.transcriber.transcribe(heard)
    asr = words_after(raw, lead) if lead else list(raw)
    samples = len(pcm)
    if carry:
        words = [(w.start, w.end) for seg in asr for w in seg.words]
        samples, kept = commit_point(audio, words, len(pcm), parts.policy)
        asr = keep_words(asr, kept) if samples < len(pcm) else asr
    return Recognized(audio, asr, samples, raw.dropped)


def label_window(
    recognized: Recognized,
    diarization: Diarization | None,
    mapper: SpeakerMapper,
    session_id: str,
    window_index: int,
    start_sample: int,
) -> WindowResult:
    """Speaker-attributed session-timeline segments from a window's words and its diarization.

    ``diarization`` is None exactly when the window has no words (nothing to attribute).
    """
    if not recognized.asr or diarization is None:
        return WindowResult([], recognized.samples, dropped=recognized.dropped)
    if recognized.samples < len(recognized.audio):
        diarization = diarization.until(recognized.samples / SAMPLE_RATE)
    mapping = mapper.assign(diarization)
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
    return WindowResult(segments, recognized.samples, turns, recognized.dropped)


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
    raw: AsrResult | None = None,
) -> WindowResult:
    """ASR + diarization of one window -> session-timeline segments.

    ``context`` is the audio just before the window (already committed): ASR
    hears it first and its words are dropped. With ``carry`` (the window was
    cut inside speech) only the words up to
    :func:`processor.windowing.commit_point` are kept; the result says how
    many samples that is, and the rest belongs to the next window. The result
    also counts the ASR segments the hallucination guard dropped. ``raw`` is
    the transcript of :func:`asr_input` when a batch already decoded it.
    """
    recognized = recognize_window(parts, pcm, carry=carry, context=context, raw=raw)
    diarization = parts.diarizer.diarize(recognized.audio) if recognized.asr else None
    return label_window(recognized, diarization, mapper, session_id, window_index, start_sample)


#: A word reaching this far past the left context belongs to the window even when its
#: middle lies in the context. Whisper sometimes skips the context's last words and
#: stretches the window's first word back over them: on the real-speech ``concat``
#: recording "Had" came out as 0.00-1.32 s of a 1 s context and was lost at the join
#: (both CTranslate2 ISAs). Context words ran at most 0.10 s past the boundary
#: (real-speech set, AVX2 and AVX-512), the stretched word 0.32 s.
CONTEXT_SPILL_SECONDS = 0.2


def in_window(start: float, end: float, seconds: float) -> bool:
    """Is a word (times from the start of the ASR input) in the window that begins at ``seconds``?

    Its middle is at or after the boundary, or it reaches :data:`CONTEXT_SPILL_SECONDS` past it.
    """
    return (start + end) / 2 >= seconds or end >= seconds + CONTEXT_SPILL_SECONDS


def words_after(segments: Sequence[AsrSegment], seconds: float) -> list[AsrSegment]:
    """Words of the window that begins ``seconds`` into the ASR input (:func:`in_window`), moved back by it."""
    out: list[AsrSegment] = []
    for seg in segments:
        if not seg.words:
            if (seg.start + seg.end) / 2 >= seconds:  # no word times: the segment's middle decides
                out.append(shifted(seg, -seconds))
            continue
        words = tuple(w for w in seg.words if in_window(w.start, w.end, seconds))
        if words:
            text = seg.text if len(words) == len(seg.words) else words_text(words)
            out.append(shifted(replace(seg, start=words[0].start, end=words[-1].end, text=text, words=words), -seconds))
    return out


def keep_words(segments: Sequence[AsrSegment], count: int) -> list[AsrSegment]:
    """The first ``count`` words of a transcript, segments trimmed to them."""
    out: list[AsrSegment] = []
    left = count
    for seg in segments:
        if left <= 0:
            break
        if not seg.words:
            continue  # no word timing: cannot tell which side of the boundary it is
        words = seg.words[:left]
        left -= len(words)
        if len(words) == len(seg.words):
            out.append(seg)
        else:
            out.append(replace(seg, end=words[-1].end, text=words_text(words), words=tuple(words)))
    return out


@dataclass
class _CutWindow:
    """A window whose words are known (ASR ran) and whose diarization may still run.

    Its audio has left the session buffer, so the next window opens (and gets
    interim captions) at once; it is committed later, in window order, and its
    records stay uncheckpointed until then.
    """

    index: int
    start: int
    #: The committed span's audio (what the archive keeps).
    pcm: np.ndarray
    #: None when ASR failed (``error`` says why).
    recognized: Recognized | None
    #: None when the window has no words (nothing to diarize).
    diarization: Future[Diarization] | None
    error: str | None
    first_seq: int | None
    final: bool
    carried: int
    started: float

    def ready(self) -> bool:
        return self.diarization is None or self.diarization.done()


class _Session:
    """One session's open window on this shard.

    Besides the open window it keeps ``context``: the audio just before the
    window's start (``context_samples`` at most, zeros where no frame was
    seen), which ASR hears as left context. It is rebuilt from replayed
    frames after a restart, and the records holding it stay uncheckpointed
    while it is needed, so a replay hears exactly what the first pass heard.
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
        # The window cut last, whose diarization may still run: out of the buffer, not yet committed.
        self.uncommitted: _CutWindow | None = None

    @property
    def session_id(self) -> str:
        return self.progress.session_id

    @property
    def expected_sample(self) -> int:
        return self.start_sample + self.buffered

    @property
    def next_index(self) -> int:
        """Index of the open window (one past a cut window still waiting to commit)."""
        if self.uncommitted is not None:
            return self.uncommitted.index + 1
        return self.progress.next_window_index

    @property
    def pending_seq(self) -> int | None:
        """First stream record whose audio is not yet committed (or is the open window's context)."""
        seqs = [self.sources[0][0]] if self.sources else []
        if self.uncommitted is not None and self.uncommitted.first_seq is not None:
            seqs.append(self.uncommitted.first_seq)
        return min(seqs) if seqs else None

    def append(self, seq: int, pcm: np.ndarray) -> None:
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
        if len(self.chunks) > 1:
            self.chunks = [np.concatenate(self.chunks)]
        return self.chunks[0] if self.chunks else np.zeros(0, np.int16)

    def drop(self, samples: int) -> None:
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


class ShardProcessor:
    """:class:`streams.base.RecordProcessor` for one shard."""

    def __init__(self, parts: EngineParts) -> None:
        self.parts = parts
        self.shard_id = ""
        self.sessions: dict[str, _Session] = {}
        self._seen: list[int] = []
        self._last_checkpoint = 0
        self.counters: Counter[str] = Counter()

    # -- KCL lifecycle ----------------------------------------------------------
    def initialize(self, shard_id: str, starting_sequence_number: str | None) -> None:
        """Start on a shard; state is rebuilt lazily from the store per session."""
        self.shard_id = shard_id
        self._last_checkpoint = (
            int(starting_sequence_number) if starting_sequence_number and starting_sequence_number.isdigit() else 0
        )
        log.info("shard processor started", extra={"shard": shard_id, "from": starting_sequence_number})

    def process_records(self, records: Sequence[StreamRecord], checkpointer: Checkpointer) -> None:
        """Feed records; commit windows as they fill; checkpoint what is safe."""
        for sess in list(self.sessions.values()):
            self._settle(sess, wait=False)  # cut windows whose diarization finished meanwhile
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

    def shard_ended(self, checkpointer: Checkpointer) -> None:
        """Resharding: commit every open window now; the child shard resumes from progress."""
        for sess in list(self.sessions.values()):
            self._flush(sess, final=False)
            self._settle(sess)
        checkpointer.checkpoint(None)
        log.info("shard ended and checkpointed", extra={"shard": self.shard_id})

    def shutdown_requested(self, checkpointer: Checkpointer) -> None:
        """Graceful shutdown: commit cut windows, checkpoint what is committed; open windows replay later."""
        for sess in list(self.sessions.values()):
            try:
                self._settle(sess)
            except Exception:  # still uncommitted: the checkpoint stays behind it and it replays
                log.exception("cut window not committed at shutdown", extra={"session": sess.session_id})
        self._checkpoint(checkpointer)
        log.info(
            "shutdown checkpoint taken",
            extra={"shard": self.shard_id, "seq": self._last_checkpoint},
        )

    # -- internals ----------------------------------------------------------------
    def _session(self, session_id: str) -> _Session:
        sess = self.sessions.get(session_id)
        if sess is None:
            progress = self.parts.store.load_progress(session_id) or SessionProgress(session_id)
            sess = _Session(
                progress,
                self.parts.mapper_factory(dict(progress.speaker_state)),
                self.parts.policy.context_samples,
            )
            self.sessions[session_id] = sess
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
        self._settle(sess, wait=False)
        if sess.progress.stream_done:
            self.counters["records_after_end"] += 1
            return
        try:
            self._check_timeline(sess, frame)
        except MalformedRecord:
            if not sess.buffered and sess.last_frame_seq is None:
                self.sessions.pop(sess.session_id, None)  # a forged session id holds no memory
            raise
        if frame.kind == FrameKind.END:
            self._end(sess, seq, frame)
            return
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
            self._commit_batch(sess, rest=False, final=False)
        if self.parts.interim is not None and sess.buffered:
            self.parts.interim.offer(sess.session_id, sess.next_index, sess.start_sample, sess.pcm())

    def _check_timeline(self, sess: _Session, frame: FrameRecord) -> None:
        """Raise :class:`MalformedRecord` if ``frame`` contradicts what this session already sent.

        Decoding bounds each record on its own; here it is held against the session:
        an end of stream never lies before audio already received, a jump ahead must
        be covered by the records missing in between, and audio never arrives inside
        a span the timeline already jumped over.
        """
        expected = sess.expected_sample
        start = frame.sample_offset
        if frame.kind == FrameKind.END and start < expected:
            raise MalformedRecord(f"end of stream at sample {start}, before audio already received ({expected})")
        if frame.kind == FrameKind.AUDIO and frame.end_offset <= expected:
            if any(a < frame.end_offset and start < b for a, b in sess.skipped):
                raise MalformedRecord(f"audio at samples {start}..{frame.end_offset} inside a span already skipped")
            return  # a replay
        if start > expected and sess.last_frame_seq is not None:
            missing = frame.seq - sess.last_frame_seq - 1
            if missing < 0 or start - expected > missing * MAX_RECORD_SAMPLES:
                raise MalformedRecord(
                    f"jump of {start - expected} samples at record {frame.seq}: "
                    f"not covered by {max(missing, 0)} missing record(s) after record {sess.last_frame_seq}"
                )

    def _advance(self, sess: _Session, seq: int, offset: int) -> None:
        """Bring the timeline to ``offset`` across a gap (frames lost upstream).

        A short gap is filled with silence; a long one closes the open window and
        jumps, so no gap ever costs more memory than ``max_gap_samples``.
        """
        gap = offset - sess.expected_sample
        if gap <= 0:
            return
        log.warning("gap in session timeline", extra={"session": sess.session_id, "gap_s": round(gap / SAMPLE_RATE, 3)})
        if gap > self.parts.max_gap_samples:
            self._flush(sess, final=False)
            sess.skipped.append((sess.start_sample, offset))
            sess.jump(offset)
        else:
            sess.append(seq, np.zeros(gap, np.int16))

    def _end(self, sess: _Session, seq: int, frame: FrameRecord) -> None:
        total_samples = frame.sample_offset
        if sess.buffered:
            # Frames lost upstream before the end: keep the timeline honest.
            self._advance(sess, seq, total_samples)
        self._settle(sess)
        sess.progress = replace(sess.progress, ended_sample=max(total_samples, sess.start_sample))
        if sess.buffered:
            self._flush(sess, final=True)
        else:
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

    def _flush(self, sess: _Session, *, final: bool) -> None:
        """Commit everything buffered: cut into windows, what is left under the limit the last one."""
        while sess.buffered:
            self._commit_batch(sess, rest=True, final=final)

    def _commit_batch(self, sess: _Session, *, rest: bool, final: bool) -> None:
        """Cut up to ``batch_windows`` windows off the buffer, decode them in one ASR call, commit them in order.

        A window is cut while more than ``max_samples`` is left, at
        :func:`processor.windowing.choose_cut`'s cut (so the cuts do not depend
        on the batch size); with ``rest``, what is left under the limit is the
        last window. A cut inside speech ends the batch: where the next window
        starts depends on that window's transcript. Each window hears the same
        left context as when decoded alone.
        """
        policy = self.parts.policy
        pcm = sess.pcm()
        plans: list[tuple[int, int, bool]] = []  # (offset in the buffer, samples, carry)
        pos = 0
        while len(plans) < max(1, self.parts.batch_windows) and pos < len(pcm):
            left = len(pcm) - pos
            if left <= policy.max_samples:
                if rest:
                    plans.append((pos, left, False))
                break
            cut: Cut = choose_cut(to_float(pcm[pos : pos + policy.max_samples]), policy)
            self.counters[f"cut_{cut.reason}"] += 1
            plans.append((pos, cut.at, cut.carries))
            pos += cut.at
            if cut.carries:
                break
        raws: list[AsrResult | None] = [None] * len(plans)
        if len(plans) > 1:
            raws = self._decode_batch(sess, pcm, plans)
        start = sess.start_sample
        for (at, samples, carry), raw in zip(plans, raws, strict=True):
            # Only the last window of a batch may carry, so each starts where it was planned.
            assert sess.start_sample == start + at, "batch out of step with the buffer"
            self._commit(sess, samples, final=final and at + samples == len(pcm), carry=carry, raw=raw)

    def _decode_batch(
        self, sess: _Session, pcm: np.ndarray, plans: Sequence[tuple[int, int, bool]]
    ) -> list[AsrResult | None]:
        """One ``transcribe_batch`` call for the planned windows (None each: decode one at a time)."""
        history = np.concatenate([sess.context, pcm[: plans[-1][0]]])
        inputs: list[np.ndarray | None] = []
        for at, samples, _ in plans:
            end = len(sess.context) + at
            context = history[max(0, end - sess.context_samples) : end] if sess.context_samples else None
            inputs.append(asr_input(self.parts.policy, pcm[at : at + samples], context))
        heard = [(i, audio) for i, audio in enumerate(inputs) if audio is not None]
        try:
            decoded = self.parts.transcriber.transcribe_batch([audio for _, audio in heard]) if heard else []
        except Exception:
            log.exception("batched asr failed; windows decoded one at a time", extra={"session": sess.session_id})
            return [None] * len(plans)
        self.counters["batched_windows"] += len(heard)
        raws: list[AsrResult | None] = [AsrResult() for _ in plans]  # no speech: nothing to decode
        for (i, _), raw in zip(heard, decoded, strict=True):
            raws[i] = raw
        return raws

    def _commit(
        self, sess: _Session, samples: int, *, final: bool, carry: bool = False, raw: AsrResult | None = None
    ) -> None:
        """Cut the first ``samples`` of the buffer as a window (or, with ``carry``, the
        part up to a safe boundary; the rest stays buffered), transcribe it now and
        commit it once diarized: at once without a diarization pool or when
        ``final``, otherwise at a later record (:meth:`_settle`). ``raw``: the
        window's ASR result when a batch already decoded it."""
        self._settle(sess)  # one cut window per session at a time: windows commit in order
        pcm = sess.pcm()[:samples]
        index = sess.next_index
        first_seq = sess.pending_seq
        t0 = time.monotonic()
        recognized: Recognized | None = None
        diarization: Future[Diarization] | None = None
        error = None
        try:
            recognized = recognize_window(self.parts, pcm, carry=carry, context=sess.context, raw=raw)
            if recognized.asr:
                diarization = self._diarize(recognized.audio)
        except Exception as exc:  # a window that cannot be transcribed is reported, not retried forever
            log.exception("window failed", extra={"session": sess.session_id, "window": index})
            error = f"{type(exc).__name__}: {exc}"
        kept = recognized.samples if recognized is not None else samples
        sess.uncommitted = _CutWindow(
            index, sess.start_sample, pcm[:kept], recognized, diarization, error, first_seq, final, samples - kept, t0
        )
        sess.drop(kept)
        if self.parts.interim is not None:
            self.parts.interim.window_closed(sess.session_id, index)
        if final or self.parts.diarization_pool is None:
            self._settle(sess)

    def _diarize(self, audio: np.ndarray) -> Future[Diarization]:
        """The final diarization of a window: on the pool when there is one, else now."""
        if self.parts.diarization_pool is not None:
            return self.parts.diarization_pool.submit(self.parts.diarizer.diarize, audio)
        done: Future[Diarization] = Future()
        try:
            done.set_result(self.parts.diarizer.diarize(audio))
        except Exception as exc:
            done.set_exception(exc)
        return done

    def _settle(self, sess: _Session, *, wait: bool = True) -> None:
        """Commit the session's cut window (waiting for its diarization unless ``wait`` is False)."""
        cut = sess.uncommitted
        if cut is None or not (wait or cut.ready()):
            return
        status, error = WindowStatus.DONE, cut.error
        result = WindowResult([], len(cut.pcm))
        if cut.recognized is not None and error is None:
            try:
                diarization = cut.diarization.result() if cut.diarization is not None else None
                result = label_window(cut.recognized, diarization, sess.mapper, sess.session_id, cut.index, cut.start)
            except Exception as exc:
                log.exception("window failed", extra={"session": sess.session_id, "window": cut.index})
                error = f"{type(exc).__name__}: {exc}"
        if error is not None:
            status = WindowStatus.FAILED
            self.counters["failed_windows"] += 1
            # The registry may have half-learned from this window: start again from what
            # was committed, so a replay assigns the same labels.
            sess.mapper = self.parts.mapper_factory(dict(sess.progress.speaker_state))
        if cut.carried:
            self.counters["carried_windows"] += 1
        samples = len(cut.pcm)
        uri = self.parts.archive.put(sess.session_id, cut.index, cut.pcm) or None
        segments = [replace(seg, audio_uri=uri) for seg in result.segments]
        progress = replace(
            sess.progress,
            next_window_index=cut.index + 1,
            committed_sample=cut.start + samples,
            speaker_state=dict(sess.mapper.state()),
        )
        window = WindowRecord(
            sess.session_id,
            cut.index,
            cut.start,
            cut.start + samples,
            status,
            error,
            uri,
            result.turns,
            dropped_segments=result.dropped.total(),
        )
        self.counters["dropped_segments"] += result.dropped.total()
        # Transient store errors propagate: the window stays uncommitted, the checkpoint
        # stays behind it and the window replays.
        try:
            self.parts.store.commit_window(window, segments, progress)
        except PermanentStoreError as exc:
            # The rows were refused for good: record the window as failed (reported by the
            # workflow) rather than replaying it forever. If even that is refused, raise.
            log.error(
                "store refused window", extra={"session": sess.session_id, "window": cut.index, "error": str(exc)}
            )
            self.counters["failed_windows"] += 1
            window = replace(window, status=WindowStatus.FAILED, error=f"store: {exc}", turns=())
            self.parts.store.commit_window(window, [], progress)
            status = WindowStatus.FAILED
        sess.progress = progress
        sess.uncommitted = None
        self.counters["windows"] += 1
        log.info(
            "window committed",
            extra={
                "session": sess.session_id,
                "window": cut.index,
                "start_s": round(cut.start / SAMPLE_RATE, 2),
                "seconds": round(samples / SAMPLE_RATE, 2),
                "segments": len(segments),
                "status": status,
                "took_s": round(time.monotonic() - cut.started, 2),
                "final": cut.final,
                "carried_s": round(cut.carried / SAMPLE_RATE, 2),
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
