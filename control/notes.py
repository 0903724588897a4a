"""Meeting notes from a transcript.

:class:`NotesGenerator` is the plug-in point (an LLM provider later). The
offline default needs no network and no model: it picks summary sentences by
how central their words are to the meeting, finds decisions and action items by
the phrases people use for them, names each action item's owner (the speaker,
or the person named as the subject), and adds up talk time per speaker.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from contracts.segments import TranscriptSegment


@dataclass(frozen=True)
class ActionItem:
    """Something someone is to do."""

    owner: str
    text: str
    start: float


@dataclass(frozen=True)
class MeetingNotes:
    """The notes written at the end of a session."""

    summary: list[str] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)
    action_items: list[ActionItem] = field(default_factory=list)
    talk_time: dict[str, float] = field(default_factory=dict)
    duration: float = 0.0
    generator: str = "offline-extractive-v1"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    def to_markdown(self) -> str:
        """Human-readable notes."""
        lines = ["## Summary", *[f"- {s}" for s in self.summary or ["(nothing said)"]]]
        lines += ["", "## Decisions", *[f"- {d}" for d in self.decisions or ["(none recorded)"]]]
        lines += ["", "## Action items"]
        lines += [f"- [{a.owner}] {a.text}" for a in self.action_items] or ["- (none recorded)"]
        lines += ["", "## Talk time"]
        total = sum(self.talk_time.values()) or 1.0
        lines += [
            f"- {spk}: {sec:.0f} s ({100 * sec / total:.0f}%)"
            for spk, sec in sorted(self.talk_time.items(), key=lambda kv: -kv[1])
        ]
        return "\n".join(lines) + "\n"


class NotesGenerator(Protocol):
    """Turns a transcript into notes."""

    def generate(self, segments: Sequence[TranscriptSegment], speakers: Mapping[str, str]) -> MeetingNotes:
        """Notes for the segments; ``speakers`` maps labels to display names."""


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

    def __init__(self, summary_sentences: int = 5) -> None:
        self.summary_sentences = summary_sentences

    def generate(self, segments: Sequence[TranscriptSegment], speakers: Mapping[str, str]) -> MeetingNotes:
        """See :class:`NotesGenerator`."""
        name = lambda label: speakers.get(label, label)  # noqa: E731
        talk: defaultdict[str, float] = defaultdict(float)
        for seg in segments:
            if seg.words:
                for w in seg.words:
                    talk[name(w.speaker or seg.speaker or "S1")] += max(0.0, w.end - w.start)
            else:
                talk[name(seg.speaker or "S1")] += max(0.0, seg.end - seg.start)
        sents = _sentences(segments)
        decisions = [f"{s} ({name(spk)})" for spk, s, _ in sents if _DECISION.search(s)]
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
            talk_time={k: round(v, 2) for k, v in talk.items()},
            duration=round(max((s.end for s in segments), default=0.0), 2),
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


def notes_from_dict(data: Mapping[str, Any]) -> MeetingNotes:
    """Inverse of :meth:`MeetingNotes.to_dict`."""
    return MeetingNotes(
        summary=list(data.get("summary", [])),
        decisions=list(data.get("decisions", [])),
        action_items=[ActionItem(**a) for a in data.get("action_items", [])],
        talk_time=dict(data.get("talk_time", {})),
        duration=float(data.get("duration", 0.0)),
        generator=str(data.get("generator", "")),
    )
