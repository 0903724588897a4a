"""Scoring a transcript of a real-speech recording: WER, cpWER, DER, words lost at joins.

Shared by ``tests/realspeech`` and ``bench/quality.py``. Three systems are
scored the same way:

- the pipeline (:func:`run_pipeline`): ``flowbot transcribe``'s code path,
  file -> producer -> stream -> windows -> store;
- faster-whisper on the whole file (:func:`whole_file_asr`), same model and options;
- pyannote on the whole file (:func:`whole_file_diarization`), same pipeline.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")

from contracts.segments import TranscriptSegment, WindowRecord, Word
from contracts.settings import Settings
from flowbot.wer import normalize
from processor.asr import AsrSegment, Transcriber
from processor.attribution import attribute
from processor.diarization import Diarization, Diarizer
from processor.engine import EngineParts
from processor.rttm import window_turns
from testkit.corpus import Recording


@dataclass
class Run:
    """One system's output on one recording."""

    words: list[Word]  # in time order, speaker on each where known
    turns: list[tuple[float, float, str]] = field(default_factory=list)  # diarization, for DER
    windows: list[WindowRecord] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    #: The stored final segments (pipeline runs only), for what is rendered from them.
    segments: list[TranscriptSegment] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The words as one string."""
        return "".join(w.text for w in self.words).strip()

    def speaker_texts(self) -> dict[str, str]:
        """Text per speaker label (for cpWER)."""
        out: dict[str, list[str]] = {}
        for w in self.words:
            out.setdefault(w.speaker or "?", []).append(w.text)
        return {k: "".join(v).strip() for k, v in out.items()}

    @property
    def speakers(self) -> set[str]:
        """Speaker labels on the words."""
        return {w.speaker for w in self.words if w.speaker}

    @property
    def joins(self) -> list[float]:
        """Seconds where one window ends and the next begins."""
        return [w.end for w in self.windows[:-1]]


def segment_words(segments: Iterable[TranscriptSegment]) -> list[Word]:
    """Final words of stored segments in time order (segment speaker where a word has none)."""
    return [
        Word(w.start, w.end, w.text, w.probability, w.speaker or s.speaker)
        for s in segments
        if s.is_final
        for w in s.words
    ]


def run_pipeline(rec: Recording, settings: Settings, parts: EngineParts | None = None) -> Run:
    """Transcribe ``rec`` as ``flowbot transcribe`` does (the real engine, windows and all)."""
    from flowbot.pipeline import transcribe_file

    result = transcribe_file(rec.path, settings, parts=parts)
    if result.state != "completed":
        raise RuntimeError(f"{rec.name}: session ended {result.state} ({result.reason})")
    turns = [(t.start, t.end, t.speaker) for t in window_turns(result.windows)]
    finals = [s for s in result.segments if s.is_final]
    return Run(segment_words(result.segments), turns, result.windows, result.counters, finals)


def run_live_and_final(rec: Recording, settings: Settings, parts: EngineParts | None = None) -> tuple[Run, Run]:
    """``rec`` through the pipeline once: the labels as they were live, then after the
    end-of-meeting reconciliation (:mod:`control.speakers`) applied to the same store.

    The pipeline runs with the reconciliation off, then the workflow's
    reconciliation step runs on its session with ``settings``' threshold.
    """
    from control.notes import OfflineNotesGenerator
    from control.speakers import ReconcileParams
    from control.workflow import WorkflowSteps
    from flowbot.pipeline import transcribe_file
    from stores.factory import session_store, transcript_store

    result = transcribe_file(rec.path, settings.replace(speaker_reconcile_threshold=0.0), parts=parts)
    if result.state != "completed":
        raise RuntimeError(f"{rec.name}: session ended {result.state} ({result.reason})")

    def as_run(segments: Iterable[TranscriptSegment], windows: list[WindowRecord]) -> Run:
        turns = [(t.start, t.end, t.speaker) for t in window_turns(windows)]
        finals = [s for s in segments if s.is_final]
        return Run(segment_words(finals), turns, windows, result.counters, finals)

    live = as_run(result.segments, result.windows)
    transcripts = transcript_store(settings)
    params = ReconcileParams(threshold=settings.speaker_reconcile_threshold)
    steps = WorkflowSteps(session_store(settings), transcripts, OfflineNotesGenerator(), reconcile=params)
    steps.reconcile_speakers(result.session_id)
    final = as_run(transcripts.segments(result.session_id), transcripts.windows(result.session_id))
    return live, final


def whole_file_asr(rec: Recording, transcriber: Transcriber) -> list[AsrSegment]:
    """faster-whisper over the whole recording in one call."""
    return transcriber.transcribe(rec.audio())


def whole_file_diarization(rec: Recording, diarizer: Diarizer) -> Diarization:
    """pyannote over the whole recording in one call, as pyannote gives it (no turn check)."""
    from processor.build import BackgroundDiarizer
    from processor.turn_check import TurnCheckingDiarizer

    if isinstance(diarizer, BackgroundDiarizer):
        diarizer = diarizer.loaded()
    plain = diarizer.inner if isinstance(diarizer, TurnCheckingDiarizer) else diarizer
    return plain.diarize(rec.audio())


def whole_file_run(asr: Sequence[AsrSegment], diarization: Diarization | None = None) -> Run:
    """Whole-file words, attributed to whole-file diarization when given."""
    if diarization is None:
        return Run([w for seg in asr for w in seg.words])
    words = [w for seg in attribute(asr, diarization) for w in seg.words]
    turns = diarization.speech_turns or diarization.turns
    return Run(words, [(t.start, t.end, t.speaker) for t in turns])


def der(
    reference: Sequence[tuple[float, float, str]], hypothesis: Sequence[tuple[float, float, str]]
) -> dict[str, float]:
    """pyannote.metrics DER, no collar, overlapping reference speech counted; with its parts."""
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate

    def annotation(turns: Sequence[tuple[float, float, str]]) -> Annotation:
        ann = Annotation()
        for i, (start, end, spk) in enumerate(turns):
            ann[Segment(start, end), i] = spk
        return ann

    metric = DiarizationErrorRate(collar=0.0, skip_overlap=False)
    detail = metric(annotation(reference), annotation(hypothesis), detailed=True)
    total = detail["total"] or 1.0
    return {
        "der": float(detail["diarization error rate"]),
        "missed": detail["missed detection"] / total,
        "false_alarm": detail["false alarm"] / total,
        "confusion": detail["confusion"] / total,
    }


# --------------------------------------------------------------------------- words at joins


def _tokens(words: Sequence[Word]) -> list[tuple[str, float, float]]:
    """Normalised tokens with the times of the word they came from."""
    return [(tok, w.start, w.end) for w in words for tok in normalize(w.text)]


def _align(ref: Sequence[str], hyp: Sequence[str]) -> list[int | None]:
    """For each reference token, the index of the hypothesis token it matches exactly (or None)."""
    n, m = len(ref), len(hyp)
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        cost[i][0] = i
    for j in range(m + 1):
        cost[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost[i][j] = min(cost[i - 1][j] + 1, cost[i][j - 1] + 1, cost[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]))
    out: list[int | None] = [None] * n
    i, j = n, m
    while i > 0 and j > 0:
        if cost[i][j] == cost[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]):
            if ref[i - 1] == hyp[j - 1]:
                out[i - 1] = j - 1
            i, j = i - 1, j - 1
        elif cost[i][j] == cost[i - 1][j] + 1:
            i -= 1
        else:
            j -= 1
    return out


@dataclass(frozen=True)
class LostWord:
    """A reference word the whole-file run found near a join that the windowed run did not."""

    word: str
    start: float
    end: float
    join: float


def missing_words(reference: str, whole: Sequence[Word], words: Sequence[Word]) -> list[tuple[str, float, float]]:
    """Reference words whole-file ASR recognised that ``words`` lack: (word, start, end).

    The reference has no word times; each reference word takes the time of the
    whole-file word it aligns to, so only words whole-file ASR got right are
    judged (a word the model cannot hear is not the pipeline's fault).
    """
    ref = normalize(reference)
    whole_tokens = _tokens(whole)
    in_whole = _align(ref, [t for t, _, _ in whole_tokens])
    in_words = _align(ref, [t for t, _, _ in _tokens(words)])
    return [
        (ref[i], whole_tokens[j][1], whole_tokens[j][2])
        for i, j in enumerate(in_whole)
        if j is not None and in_words[i] is None
    ]


def words_lost_at_joins(reference: str, whole: Sequence[Word], windowed: Run, reach: float = 1.0) -> list[LostWord]:
    """The :func:`missing_words` of a windowed run within ``reach`` seconds of a window join."""
    lost: list[LostWord] = []
    for word, start, end in missing_words(reference, whole, windowed.words):
        join = next((j for j in windowed.joins if start - reach <= j <= end + reach), None)
        if join is not None:
            lost.append(LostWord(word, start, end, join))
    return lost


def score(rec: Recording, run: Run) -> dict[str, float]:
    """WER, cpWER and (where the run has turns) DER of one run."""
    from flowbot.wer import cpwer, wer

    out = {"wer": wer(rec.text, run.text), "cpwer": cpwer(rec.speaker_texts(), run.speaker_texts())}
    if run.turns:
        out.update(der(rec.reference_turns(), run.turns))
    return out


def cache_dir(root: Path | None = None) -> Path:
    """Where built recordings live (``FLOWBOT_REALSPEECH_CACHE`` or ``~/.cache/flowbot-realspeech``)."""
    if root is not None:
        return root
    return Path(os.environ.get("FLOWBOT_REALSPEECH_CACHE", Path.home() / ".cache" / "flowbot-realspeech"))
