"""Naming speakers by voice, measured: the owner's first meeting, then a second one.

Shared by tests/realspeech/test_voice_naming.py and bench/voices.py. Both
meetings go through ``flowbot transcribe``'s path (:func:`flowbot.pipeline.transcribe_file`)
as one owner's sessions. In the first, the owner names and remembers the
enrolled voices (the session speaker that holds most of each one's speech,
as a person reading the transcript would pick); the second is then named
by the end-of-session workflow. Each session speaker's true voice is the
reference speaker it overlaps most.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from contracts.settings import Settings
from contracts.voices import VoiceNaming, similarity
from flowbot.pipeline import TranscribeResult, transcribe_file
from processor.engine import EngineParts
from processor.rttm import window_turns
from stores.factory import session_store, transcript_store, voice_library
from stores.voice_naming import Voices
from testkit.corpus import Recording

Turns = Sequence[tuple[float, float, str]]


def overlaps(hyp: Turns, ref: Turns) -> dict[str, dict[str, float]]:
    """Seconds each hypothesis label overlaps each reference speaker."""
    out: dict[str, dict[str, float]] = {}
    for hs, he, label in hyp:
        row = out.setdefault(label, {})
        for rs, re, spk in ref:
            common = min(he, re) - max(hs, rs)
            if common > 0:
                row[spk] = row.get(spk, 0.0) + common
    return out


def true_voices(result: TranscribeResult, rec: Recording) -> dict[str, str]:
    """Session label -> the reference speaker it overlaps most."""
    hyp = [(t.start, t.end, t.speaker) for t in window_turns(result.windows)]
    return {label: max(row, key=lambda k: row[k]) for label, row in overlaps(hyp, rec.reference_turns()).items() if row}


@dataclass
class NamingRun:
    """What happened to one owner's second meeting."""

    enrolled: dict[str, str]  # reference speaker -> label remembered in the first meeting
    truth: dict[str, str]  # second meeting: label -> reference speaker
    seconds: dict[str, float]  # second meeting: label -> seconds of speech (registry)
    namings: dict[str, VoiceNaming]  # second meeting: label -> naming
    #: Second meeting: (label, remembered name, cosine similarity) for every speaker and voice.
    scores: list[tuple[str, str, float]] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # enrolled speaker -> why it was not remembered
    #: Every session speaker of both meetings: (meeting, label, true speaker, seconds, embedding).
    speakers: list[tuple[str, str, str, float, tuple[float, ...]]] = field(default_factory=list)
    #: Second meeting: labels named live, after a committed window (the rest at the end).
    named_live: list[str] = field(default_factory=list)

    def figures(self, min_score: float | None = None, min_seconds: float = 0.0) -> dict[str, float]:
        """Precision, recall and false accepts; at ``min_score`` (re-scored) or as the workflow named them."""
        if min_score is None:
            named = {label: n.name for label, n in self.namings.items()}
        else:
            # contracts.voices.match_voices' rule (most similar pairs first, one name per
            # speaker and per voice) on the stored similarities.
            named = {}
            used: set[str] = set()
            for label, name, score in sorted(self.scores, key=lambda x: -x[2]):
                if score < min_score or label in named or name in used or self.seconds.get(label, 0.0) < min_seconds:
                    continue
                named[label] = name
                used.add(name)
        enrolled = set(self.enrolled)
        correct = sum(1 for label, name in named.items() if self.truth.get(label) == name)
        present = {spk for spk in self.truth.values() if spk in enrolled}
        found = {name for label, name in named.items() if self.truth.get(label) == name}
        strangers = [label for label, spk in self.truth.items() if spk not in enrolled]
        false_accepts = [label for label in strangers if label in named]
        return {
            "named": len(named),
            "correct": correct,
            "precision": correct / len(named) if named else 1.0,
            "recall": len(found & present) / len(present) if present else 1.0,
            "enrolled_present": len(present),
            "strangers": len(strangers),
            "false_accepts": len(false_accepts),
            "false_accept_rate": len(false_accepts) / len(strangers) if strangers else 0.0,
        }

    def strangers_over(self, threshold: float, min_seconds: float = 0.0) -> list[str]:
        """Never-enrolled speakers that score ``threshold`` or more against any remembered voice.

        Stricter than false accepts: it counts a stranger even where a better match took that
        voice (what would be named if the voice's owner had stayed away).
        """
        enrolled = set(self.enrolled)
        return [
            label
            for label, spk in self.truth.items()
            if spk not in enrolled
            and self.seconds.get(label, 0.0) >= min_seconds
            and max((sc for lab, _, sc in self.scores if lab == label), default=-1.0) >= threshold
        ]

    def margins(self) -> dict[str, float]:
        """Lowest same-voice similarity and highest other-voice similarity (speakers of any length)."""
        same = [s for label, name, s in self.scores if self.truth.get(label) == name]
        other = [s for label, name, s in self.scores if self.truth.get(label) != name]
        return {"lowest_same": min(same, default=float("nan")), "highest_other": max(other, default=float("nan"))}

    def cross_meeting(self, min_seconds: float) -> tuple[list[float], list[float]]:
        """Similarities of every first-meeting speaker to every second-meeting speaker (both with
        ``min_seconds`` of speech): (same person, different people). Any voice of the first
        meeting could have been remembered, so this is the wider test of a threshold."""
        one = [s for s in self.speakers if s[0] == "first" and s[3] >= min_seconds]
        two = [s for s in self.speakers if s[0] == "second" and s[3] >= min_seconds]
        same: list[float] = []
        other: list[float] = []
        for a in one:
            for b in two:
                (same if a[2] == b[2] else other).append(similarity(a[4], b[4]))
        return same, other


def run_pair(
    first: Recording,
    second: Recording,
    enrolled: Sequence[str],
    settings: Settings,
    parts: EngineParts | None,
    owner: str,
) -> NamingRun:
    """The owner's two meetings; see the module docstring."""
    voices = Voices.from_settings(voice_library(settings), transcript_store(settings), settings)
    sessions = session_store(settings)
    one = transcribe_file(first.path, settings, parts=parts, user_id=owner)
    truth_one = true_voices(one, first)
    hyp = [(t.start, t.end, t.speaker) for t in window_turns(one.windows)]
    by_label = overlaps(hyp, first.reference_turns())
    chosen: dict[str, str] = {}
    refused: dict[str, str] = {}
    session_one = sessions.get(one.session_id)
    for spk in enrolled:
        label = max(by_label, key=lambda lab: (by_label[lab].get(spk, 0.0), lab))
        if truth_one.get(label) != spk:
            refused[spk] = f"no session speaker is mostly {spk} (best: {label}, mostly {truth_one.get(label)})"
            continue
        try:
            voices.remember(session_one, label, spk)
        except ValueError as exc:
            refused[spk] = str(exc)
            continue
        voices.transcripts.rename_speaker(one.session_id, label, spk)
        chosen[spk] = label

    two = transcribe_file(second.path, settings, parts=parts, user_id=owner)
    live = getattr(parts.after_commit, "named", {}) if parts is not None else {}
    speakers = voices.speakers(two.session_id)
    library = voices.library.voices(owner, model=voices.model)
    truth_two = true_voices(two, second)
    everyone = [
        ("first", s.label, truth_one.get(s.label, "?"), s.seconds, s.embedding) for s in voices.speakers(one.session_id)
    ]
    everyone += [("second", s.label, truth_two.get(s.label, "?"), s.seconds, s.embedding) for s in speakers]
    return NamingRun(
        speakers=everyone,
        enrolled=chosen,
        truth=truth_two,
        seconds={s.label: s.seconds for s in speakers},
        namings=voices.library.namings(two.session_id),
        scores=[(s.label, v.name, similarity(s.embedding, v.embedding)) for s in speakers for v in library],
        refused=refused,
        named_live=list(live.get(two.session_id, [])),
    )
