"""Meeting notes from a transcript.

:class:`NotesGenerator` is the plug-in point: the offline extractive
generator here, and language-model providers in :mod:`control.llm` (chosen by
``FLOWBOT_NOTES_PROVIDER``, built by :func:`control.llm.notes_generator`).
Every generator returns the contract's :class:`~contracts.notes.MeetingNotes`.

The offline default needs no network and no model: it picks summary sentences by
how central their words are to the meeting, finds decisions and action items by
the phrases people use for them, names each action item's owner (the speaker,
or the person named as the subject), and adds up talk time per speaker. It is
also the fallback when a configured model fails (:class:`FallbackNotesGenerator`).
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from contracts.notes import (
    OFFLINE_GENERATOR,
    ActionItem,
    Decision,
    InvalidNotes,
    MeetingNotes,
    clean_text,
)
from contracts.segments import TranscriptSegment

__all__ = [
    "ActionItem",
    "Decision",
    "FallbackNotesGenerator",
    "MeetingNotes",
    "NotesError",
    "NotesGenerator",
    "OfflineNotesGenerator",
    "notes_from_dict",
]

log = logging.getLogger(__name__)


class NotesError(Exception):
    """A generator could not write notes.

    Two messages: ``str(exc)`` is the detail for the server log (URLs in it lose their
    credentials there, :func:`contracts.logs.redact_urls`); ``public`` is the reason
    recorded in the notes, which viewers see, so it names what failed and never
    carries an endpoint, a path or text the upstream sent (``notes model unavailable:
    HTTP 502``). Without a ``public``, the detail is safe to show as it is.
    """

    def __init__(self, detail: str, public: str | None = None) -> None:
        super().__init__(detail)
        self.public = public if public is not None else detail


class NotesGenerator(Protocol):
    """Turns a transcript into notes (the plug-in point of every notes provider)."""

    #: What wrote the notes, recorded in :attr:`MeetingNotes.generator` (e.g. ``openai:qwen2.5``).
    name: str

    def generate(self, segments: Sequence[TranscriptSegment], speakers: Mapping[str, str]) -> MeetingNotes:
        """Notes for the segments; ``speakers`` maps labels to display names."""


def talk_time(segments: Sequence[TranscriptSegment], speakers: Mapping[str, str]) -> dict[str, float]:
    """Seconds spoken per display name (word timings where there are words)."""
    talk: defaultdict[str, float] = defaultdict(float)
    for seg in segments:
        if seg.words:
            for w in seg.words:
                label = w.speaker or seg.speaker or "S1"
                talk[speakers.get(label, label)] += max(0.0, w.end - w.start)
        else:
            label = seg.speaker or "S1"
            talk[speakers.get(label, label)] += max(0.0, seg.end - seg.start)
    return {k: round(v, 2) for k, v in talk.items()}


def duration(segments: Sequence[TranscriptSegment]) -> float:
    """End of the last segment on the session timeline."""
    return round(max((s.end for s in segments), default=0.0), 2)


_DECISION = re.compile(
    r"\b(we (?:have )?(?:decided|agreed|chose|will go with)|let'?s go with|decision is|"
    r"we'?re going (?:to go )?with|agreed to|it'?s decided|final answer)\b",
    re.I,
)
_FIRST_PERSON_TASK = re.compile(r"\b(i'?ll|i will|i am going to|i'm going to|i can take|i'll take|let me)\b", re.I)
_ASSIGNED_TASK = re.compile(r"\b([A-Z][a-z]+) (?:will|is going to|should|needs to|has to)\b(?! be\b)")
_GENERIC_TASK = re.compile(
    r"\b(action item|to ?do|follow up|we need to|someone needs to|by (?:monday|tuesday|"
    r"wednesday|thursday|friday|tomorrow|next week|end of (?:day|week)))\b",
    re.I,
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[a-z']+")
_STOP = frozenset(
    """
    a an the and or but if of to in on at for with is are was were be been it this that these
    those i you he she we they me him her us them my your our their so do does did have has
    had will would can could should just very really okay ok yeah yes no not um uh like there
    here what which who when where how all any some about from by as up out then than also
    let's lets i'll we'll it's that's going get got go
    """.split()
)


def _sentences(segments: Sequence[TranscriptSegment]) -> list[tuple[str, str, float]]:
    """(speaker, sentence, start) in order."""
    out = []
    for seg in segments:
        for sent in _SENTENCE.split(seg.text.strip()):
            sent = sent.strip()
            if len(sent.split()) >= 3:
                out.append((seg.speaker or "S1", sent, seg.start))
    return out


class OfflineNotesGenerator:
    """Extractive notes: useful with no network and no language model."""

    name = OFFLINE_GENERATOR

    def __init__(self, summary_sentences: int = 5) -> None:
        self.summary_sentences = summary_sentences

    def generate(self, segments: Sequence[TranscriptSegment], speakers: Mapping[str, str]) -> MeetingNotes:
        """See :class:`NotesGenerator`."""
        name = lambda label: speakers.get(label, label)  # noqa: E731
        sents = _sentences(segments)
        decisions = [Decision(s, start, name(spk)) for spk, s, start in sents if _DECISION.search(s)]
        actions: list[ActionItem] = []
        known_names = {v.lower(): v for v in speakers.values()}
        for spk, s, start in sents:
            if _FIRST_PERSON_TASK.search(s):
                actions.append(ActionItem(name(spk), s, start))
                continue
            m = _ASSIGNED_TASK.search(s)
            if m and m.group(1).lower() not in {"it", "this", "that", "there", "we", "they"}:
                owner = known_names.get(m.group(1).lower(), m.group(1))
                actions.append(ActionItem(owner, s, start))
            elif _GENERIC_TASK.search(s):
                actions.append(ActionItem(name(spk), s, start))
        return MeetingNotes(
            summary=self._summary(sents),
            decisions=decisions,
            action_items=actions,
            talk_time=talk_time(segments, speakers),
            duration=duration(segments),
            generator=self.name,
            speakers=dict(speakers),
        )

    def _summary(self, sents: list[tuple[str, str, float]]) -> list[str]:
        """Sentences whose content words are most frequent across the meeting (centrality)."""
        docs = [[w for w in _WORD.findall(s.lower()) if w not in _STOP] for _, s, _ in sents]
        df: Counter[str] = Counter()
        tf: Counter[str] = Counter()
        for d in docs:
            tf.update(d)
            df.update(set(d))
        n = len(docs) or 1
        scores = []
        for i, d in enumerate(docs):
            if not d:
                continue
            # Frequent-in-meeting words, damped by length so long rambles don't win.
            score = sum(tf[w] * math.log(1 + n / df[w]) for w in set(d)) / math.sqrt(len(d) + 1)
            scores.append((score, i))
        keep = sorted(i for _, i in sorted(scores, reverse=True)[: self.summary_sentences])
        return [sents[i][1] for i in keep]


class FallbackNotesGenerator:
    """A configured generator (a language model) with the offline notes as the safety net.

    The primary runs in a worker thread bounded by ``timeout``; when it raises,
    overruns, or returns notes that fail the contract's validation, the fallback
    writes the notes instead and ``fallback_reason`` says why. Either way the
    workflow gets valid notes, so a provider outage never fails a session.
    """

    def __init__(self, primary: NotesGenerator, fallback: NotesGenerator, timeout: float) -> None:
        self.primary = primary
        self.fallback = fallback
        self.timeout = timeout
        self.name = primary.name

    def generate(self, segments: Sequence[TranscriptSegment], speakers: Mapping[str, str]) -> MeetingNotes:
        """See :class:`NotesGenerator`."""
        if not any(s.text.strip() for s in segments):
            # Nothing was said: a model has nothing to summarize, and would only invent.
            return self.fallback.generate(segments, speakers)
        result: list[MeetingNotes] = []
        error: list[BaseException] = []

        def run() -> None:
            try:
                result.append(self.primary.generate(segments, speakers))
            except BaseException as exc:  # reported below; the fallback covers it
                error.append(exc)

        worker = threading.Thread(target=run, name=f"notes-{self.primary.name}", daemon=True)
        worker.start()
        worker.join(self.timeout)
        if worker.is_alive():
            reason = detail = f"timed out after {self.timeout:g} s"
        elif error:
            reason, detail = _reasons(error[0])
        else:
            try:
                # Round-trip through the contract: the same check a reader applies.
                return MeetingNotes.from_dict(result[0].to_dict())
            except InvalidNotes as exc:
                reason = detail = f"invalid notes: {exc}"
        # The detail goes to the log only (the formatter strips credentials from its URLs).
        log.warning(
            "notes generator failed; using the fallback",
            extra={"generator": self.name, "reason": reason, "detail": detail},
        )
        notes = self.fallback.generate(segments, speakers)
        return replace(notes, fallback_reason=clean_text(f"{self.name}: {reason}"))


def _reasons(exc: BaseException) -> tuple[str, str]:
    """(the reason shown with the notes, the detail for the log) of a generator's failure."""
    if isinstance(exc, NotesError) and str(exc):
        return exc.public, str(exc)
    if isinstance(exc, TimeoutError):
        # The detail may name the endpoint: viewers get the fact only.
        return "notes model unavailable: no answer in time", str(exc) or "timeout"
    # A bug: name the exception; its message may hold anything.
    return f"internal error: {type(exc).__name__}", f"{type(exc).__name__}: {exc}"


def notes_from_dict(data: Mapping[str, Any]) -> MeetingNotes:
    """Validate and read stored notes (:meth:`MeetingNotes.from_dict`)."""
    return MeetingNotes.from_dict(data)
