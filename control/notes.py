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

import enum
import logging
import math
import re
import threading
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
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
from contracts.turns import Turn, speaker_turns

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


# --- which sentences are decisions and action items ---------------------------------------------
#
# Precision first: a sentence is an item only where its words make it one, measured on the
# labelled sentences in tests/notes/labelled_sentences.tsv (tests/test_notes_quality.py prints
# precision and recall). A phrase that usually marks an item ("I'll", "we agreed", "Tom will")
# is not enough on its own: the verb after it must be one of doing (not "I'll be honest", "I'll
# never forget"), and questions, conditions, negations, reported speech and past events are not
# items. Prose read aloud ("there might be prudently in his power to do for them") has none.


class ItemKind(enum.StrEnum):
    """What a sentence of the meeting is, for the notes."""

    DECISION = "decision"
    ACTION = "action"


class OwnerKind(enum.StrEnum):
    """Who an action item belongs to."""

    #: The speaker of the sentence ("I'll send it").
    SPEAKER = "speaker"
    #: A person the sentence names ("Dana will write it").
    NAMED = "named"
    #: The person asked ("Could you send me the slides?"): whoever speaks next.
    ADDRESSEE = "addressee"


@dataclass(frozen=True)
class Finding:
    """A sentence found to be a decision or an action item."""

    kind: ItemKind
    owner: OwnerKind = OwnerKind.SPEAKER
    #: The person named, for :attr:`OwnerKind.NAMED`.
    name: str = ""


# Verbs of doing something after the meeting (base form, as after "I'll" or "will").
_TASK_VERBS = r"""
    send|email|mail|review|update|write|draft|prepare|fix|check|call|phone|ring|set|schedule|book|
    organi[sz]e|arrange|talk|speak|follow|reach|look|take|handle|ask|create|open|file|test|finish|
    deploy|investigate|contact|circulate|put|get|report|make|own|run|build|order|reserve|clean|
    merge|publish|ping|sync|coordinate|confirm|compile|collect|document|research|find|post|
    renew|submit|sign|pay|invite|upload|install|configure|migrate|benchmark|measure|verify|
    double-check|chase|remind|order|plan|design|implement|refactor|write-up|polish|record|print|
    buy|move|cancel|close|escalate|notify|inform|tell\s+(?:him|her|them|the)|let\s+\w+\s+know|
    do\s+(?:the|that|this|it)|go\s+through|sort\s+out|pick\s+up|set\s+up|write\s+up|dig\s+into
"""
_VERB = rf"(?:{''.join(_TASK_VERBS.split())})\b"
# "I'll", "I will", "I'm going to", "I can", "let me" (+ "take care of", "go ahead and"), at the
# start of a clause: not "...that I will ...".
_COMMIT = re.compile(
    rf"(?:^|[,;:]\s*|\b(?:and|so|okay|ok|sure|yeah|yes|alright|right|fine|then)\s*,?\s+)"
    rf"(?:i'?ll|i\s+will|i'?m\s+going\s+to|i\s+am\s+going\s+to|i\s+can|let\s+me)\s+"
    rf"(?:also\s+|quickly\s+|just\s+|go\s+ahead\s+and\s+|take\s+care\s+of\s+)?(?:{_VERB}|take\s+(?:the|that|this|it|a|on|over))",
    re.I,
)
# "Dana will write", "Tom is going to call", "Sarah needs to finish"; the name is checked below.
_ASSIGNED = re.compile(
    rf"\b([A-Z][a-z]+)\s+(?:will|is\s+going\s+to|needs\s+to|has\s+to|should|is\s+to|can)\s+(?:also\s+)?{_VERB}"
)
_REQUEST = re.compile(rf"^(?:so\s+|and\s+|okay\s+|ok\s+)?(?:could|can|would)\s+you\s+(?:please\s+)?{_VERB}", re.I)
_PLEASE = re.compile(rf"^(?:so\s+|and\s+)?please\s+(?:remember\s+to\s+|make\s+sure\s+to\s+)?{_VERB}", re.I)
_ACTION_ITEM = re.compile(r"^(?:new\s+)?action\s+item\s*[:,-]", re.I)
_DECIDED = re.compile(
    r"(?:\b(?:we|we'?ve|we\s+have|we\s+all|everyone|everybody|the\s+team|the\s+group)\s+(?:have\s+)?"
    r"(?:decided|agreed|chose|chosen|settled)\b"
    r"|\bwe'?re\s+agreed\b|\bit'?s\s+decided\b|\b(?:the\s+)?decision\s+is\b|\bfinal\s+answer\b"
    r"|\b(?:let'?s|let\s+us)\s+(?:go\s+with|go\s+ahead|stick\s+with|use|keep|ship|launch|drop|switch|adopt|"
    r"choose|pick|postpone|cancel|move\s+(?:the|it|to))\b"
    r"|\bwe(?:'?re|\s+are)\s+going\s+(?:to\s+go\s+)?with\b|\bwe(?:'?ll|\s+will)\s+go\s+with\b"
    r"|\b(?:so|then)\s+(?:the\s+plan\s+is\s+to|we(?:'?ll|\s+will)\s+\w+)"
    r"|\bwe(?:'?ll|\s+will)\s+\w+.*\b(?:from\s+now\s+on|going\s+forward|starting\s+(?:next|on|from|this))\b)",
    re.I,
)
# Not a finding: questions are handled by the caller; these make the sentence about something else.
_CONDITION = re.compile(
    r"^(?:\w+,?\s+)?(?:if|when|whether|unless|maybe|perhaps|i\s+think|i\s+guess|i\s+wonder|what\s+if)\b", re.I
)
_NEGATION = re.compile(r"\b(?:not|never|no|nobody|nothing|cannot|\w+n't|wont|cant|dont)\b", re.I)
_REPORTED = re.compile(
    r"\b(?:said|says|told|wrote|asked\s+(?:him|her|them)|as\s+far\s+as\s+i\s+remember|last\s+(?:week|year|month|time)|"
    r"yesterday|earlier|previously|back\s+then|used\s+to)\b",
    re.I,
)
_PRONOUNS = frozenset(
    "he she it this that there we they you who what someone somebody everyone everybody nobody "
    "anyone one i the a an and but so then if when".split()
)


def classify_sentence(sentence: str) -> Finding | None:
    """Whether one whole sentence is a decision or an action item (None: neither).

    Names that own an action item are any capitalised word before "will",
    "needs to", ... that is not a pronoun; the caller maps them to speakers.
    A negation up to the phrase undoes it ("we never agreed", "I'm not sure I
    can take that"); after it, it is the content ("we decided not to renew").
    """
    text = " ".join(sentence.split())
    if not text or _CONDITION.search(text) or _REPORTED.search(text):
        return None

    def said(pattern: re.Pattern[str]) -> re.Match[str] | None:
        m = pattern.search(text)
        return m if m and not _NEGATION.search(text, 0, m.end()) else None

    if text.endswith("?"):
        # A question decides nothing; a request ("could you send ...?") is a task for the one asked.
        return Finding(ItemKind.ACTION, OwnerKind.ADDRESSEE) if said(_REQUEST) else None
    if said(_ACTION_ITEM):
        m = _ASSIGNED.search(text) or re.search(r"[:,-]\s*([A-Z][a-z]+)\s+\w+s\b", text)
        return Finding(ItemKind.ACTION, OwnerKind.NAMED, m.group(1)) if m else Finding(ItemKind.ACTION)
    if said(_DECIDED):
        return Finding(ItemKind.DECISION)
    if said(_COMMIT):
        return Finding(ItemKind.ACTION)
    m = said(_ASSIGNED)
    if m and m.group(1).lower() not in _PRONOUNS:
        return Finding(ItemKind.ACTION, OwnerKind.NAMED, m.group(1))
    if said(_PLEASE) or said(_REQUEST):
        return Finding(ItemKind.ACTION, OwnerKind.ADDRESSEE)
    return None


# --- whole sentences ------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")
#: A whole sentence as ASR writes one: starts with a capital (or a digit, a quote), ends with . ! ?
_WHOLE = re.compile(r"^[\"'(\[]?[A-Z0-9].*[.!?][\"')\]]?$", re.S)
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


@dataclass(frozen=True)
class Sentence:
    """One sentence of a speaker turn, with when it was said."""

    speaker: str
    text: str
    start: float
    #: Starts with a capital and ends with sentence punctuation (not a fragment cut at a turn's end).
    whole: bool
    #: Position of its turn in the meeting.
    turn: int


def _word_times(turn: Turn) -> list[float]:
    """Start time of each whitespace-separated word of ``turn.text``."""
    times: list[float] = []
    for seg in turn.segments:
        n = len(seg.text.split())
        if not n:
            continue
        if len(seg.words) == n:
            times += [w.start for w in seg.words]
        else:  # word timings that do not line up with the text: the segment's start for each
            times += [seg.start] * n
    return times


def meeting_sentences(segments: Sequence[TranscriptSegment], speakers: Mapping[str, str]) -> list[Sentence]:
    """The final transcript as sentences of speaker turns (Whisper's segment cuts mended first)."""
    out: list[Sentence] = []
    finals = [s for s in segments if s.is_final]
    for index, turn in enumerate(speaker_turns(finals, speakers)):
        times = _word_times(turn)
        done = 0
        for part in _SENTENCE_END.split(turn.text):
            text = part.strip()
            if not text:
                continue
            start = times[done] if done < len(times) else turn.start
            done += len(text.split())
            out.append(Sentence(turn.speaker, text, start, bool(_WHOLE.match(text)), index))
    return out


class OfflineNotesGenerator:
    """Extractive notes: useful with no network and no language model."""

    name = OFFLINE_GENERATOR

    def __init__(self, summary_sentences: int = 5) -> None:
        self.summary_sentences = summary_sentences

    def generate(self, segments: Sequence[TranscriptSegment], speakers: Mapping[str, str]) -> MeetingNotes:
        """See :class:`NotesGenerator`."""
        sents = meeting_sentences(segments, speakers)
        known = {n.lower(): n for n in speakers.values()} | {
            n.split()[0].lower(): n for n in speakers.values() if n.split()
        }
        decisions: list[Decision] = []
        actions: list[ActionItem] = []
        items: set[int] = set()
        for i, sent in enumerate(sents):
            found = classify_sentence(sent.text) if sent.whole else None
            if found is None:
                continue
            items.add(i)
            if found.kind is ItemKind.DECISION:
                decisions.append(Decision(sent.text, sent.start, sent.speaker))
                continue
            if found.owner is OwnerKind.NAMED:
                owner = known.get(found.name.lower(), found.name)
            elif found.owner is OwnerKind.ADDRESSEE:
                # The one asked usually answers: the next turn's speaker, if another person.
                after = next((s.speaker for s in sents[i + 1 :] if s.turn > sent.turn), "")
                owner = after if after != sent.speaker else ""
            else:
                owner = sent.speaker
            actions.append(ActionItem(owner, sent.text, sent.start))
        return MeetingNotes(
            summary=self._summary([s for i, s in enumerate(sents) if i not in items]),
            decisions=decisions,
            action_items=actions,
            talk_time=talk_time(segments, speakers),
            duration=duration(segments),
            generator=self.name,
            speakers=dict(speakers),
        )

    def _summary(self, sents: list[Sentence]) -> list[str]:
        """Whole sentences whose content words are most frequent across the meeting (centrality).

        Decisions and action items have their own sections and are left out. Where the
        transcript has no sentence punctuation at all, whole turns stand in for sentences.
        """
        pool = [s for s in sents if s.whole] or sents
        docs = [[w for w in _WORD.findall(s.text.lower()) if w not in _STOP] for s in pool]
        df: Counter[str] = Counter()
        tf: Counter[str] = Counter()
        for d in docs:
            tf.update(d)
            df.update(set(d))
        n = len(docs) or 1
        scores = []
        for i, d in enumerate(docs):
            words = len(pool[i].text.split())
            if len(d) < 2 or not SUMMARY_WORDS[0] <= words <= SUMMARY_WORDS[1]:
                continue  # greetings and fillers say nothing; rambles are not summaries
            # Frequent-in-meeting words, damped by length so long rambles don't win.
            score = sum(tf[w] * math.log(1 + n / df[w]) for w in set(d)) / math.sqrt(len(d) + 1)
            scores.append((score, i))
        keep = sorted(i for _, i in sorted(scores, reverse=True)[: self.summary_sentences])
        return [pool[i].text for i in keep]


#: Length in words of a sentence the summary may quote.
SUMMARY_WORDS = (5, 40)


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
