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

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from contracts.segments import SpeakerRelabel
from contracts.settings import Settings
from contracts.voices import SessionVoice, Voice, VoiceNaming, match_voices, similarity
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


def true_voices(result: TranscribeResult, rec: Recording, relabel: SpeakerRelabel | None = None) -> dict[str, str]:
    """Session label -> the reference speaker it overlaps most.

    A live label the end-of-meeting reconciliation merged into another (``relabel``) has no
    rows left: it is taken to be the voice of the label it was merged into (in most windows).
    """
    hyp = [(t.start, t.end, t.speaker) for t in window_turns(result.windows)]
    truth = {
        label: max(row, key=lambda k: row[k]) for label, row in overlaps(hyp, rec.reference_turns()).items() if row
    }
    if relabel is not None:
        into: dict[str, Counter[str]] = {}
        for moves in relabel.windows.values():
            for live, final in moves.items():
                into.setdefault(live, Counter())[final] += 1
        for live, finals in into.items():
            final = finals.most_common(1)[0][0]
            if live not in truth and final in truth:
                truth[live] = truth[final]
    return truth


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
    #: Second meeting: label -> seconds of each reference speaker's speech under that label.
    mix: dict[str, dict[str, float]] = field(default_factory=dict)

    def named_speech(self) -> tuple[float, float]:
        """(seconds under a name given by voice that are that person's, seconds under such a name).

        A wrong name on words is the harm: this counts the speech of a stranger (or of another
        enrolled voice) that the diarizer put under a speaker who was then named.
        """
        right = total = 0.0
        for label, naming in self.namings.items():
            row = self.mix.get(label, {})
            total += sum(row.values())
            right += row.get(naming.name, 0.0)
        return right, total

    def rotations(self, min_score: float, min_seconds: float) -> Rotations:
        """Naming trials beyond the one enrollment the owner made: more strangers from the same audio.

        Either meeting enrolls every voice it has (the longest session speaker of each person
        with ``min_seconds`` of speech), and the other meeting's speakers are named against that
        library with :func:`contracts.voices.match_voices`, as live naming does (live labels
        merged away at the end included: they could be named while the meeting went on). Then
        each enrolled person in turn is left out of the library, so that person's speakers in
        the other meeting are a voice never enrolled, facing every other voice (the Sheila /
        Diane telephone pair, the singer against the reader). An enrolled person counts as
        named when one of their speakers gets their name.
        """
        out = Rotations()
        pool = [s for s in self.speakers if s[3] >= min_seconds and s[2] != "?"]
        for enrol, test in (("first", "second"), ("second", "first")):
            library: dict[str, tuple[tuple[float, ...], float]] = {}
            for meeting, _, spk, seconds, emb in pool:
                if meeting == enrol and seconds > library.get(spk, ((), -1.0))[1]:
                    library[spk] = (emb, seconds)
            tested = [(label, spk, SessionVoice(label, emb, sec)) for m, label, spk, sec, emb in pool if m == test]
            for left_out in (None, *sorted(library)):
                voices = [Voice(p, "o", p, "m", e, sec, 0.0, 0.0) for p, (e, sec) in library.items() if p != left_out]
                matches = match_voices([t[2] for t in tested], voices, min_score=min_score, min_seconds=min_seconds)
                named = {m.label: m.name for m in matches}
                for label, spk, voice in tested:
                    if left_out is None and spk in library:
                        out.named_wrong += label in named and named[label] != spk
                    elif (left_out is None and spk not in library) or spk == left_out:
                        out.strangers += 1
                        out.false_accepts += label in named
                        best = max((similarity(voice.embedding, v.embedding) for v in voices), default=-1.0)
                        out.highest_stranger = max(out.highest_stranger, best)
                if left_out is None:
                    for person in sorted({spk for _, spk, _ in tested} & set(library)):
                        mine = [(label, v) for label, spk, v in tested if spk == person]
                        out.enrolled += 1
                        out.named_right += any(named.get(label) == person for label, _ in mine)
                        own = max(similarity(v.embedding, library[person][0]) for _, v in mine)
                        out.lowest_same = min(out.lowest_same, own)
        return out

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

    def fragments(self) -> list[str]:
        """Second meeting: live labels the end-of-meeting reconciliation merged into another."""
        return sorted(label for label in self.truth if label not in self.mix)

    def margins(self) -> dict[str, float]:
        """Lowest same-voice similarity and highest other-voice similarity (speakers of any length
        left in the final transcript; :meth:`fragments` merged away at the end are not)."""
        final = [(label, name, s) for label, name, s in self.scores if label not in self.fragments()]
        same = [s for label, name, s in final if self.truth.get(label) == name]
        other = [s for label, name, s in final if self.truth.get(label) != name]
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


@dataclass
class Rotations:
    """Figures of :meth:`NamingRun.rotations` (counts over both directions)."""

    enrolled: int = 0  # enrolled people present in the other meeting
    named_right: int = 0  # ... of whom a speaker got their name
    named_wrong: int = 0  # speakers of enrolled people named after someone else
    strangers: int = 0  # speakers whose person the library does not hold
    false_accepts: int = 0  # ... given a name
    lowest_same: float = 1.0  # lowest, over enrolled people, of their best speaker's score to their voice
    highest_stranger: float = -1.0  # highest score of a stranger's speaker to any remembered voice

    @property
    def recall(self) -> float:
        """Share of enrolled people named right."""
        return self.named_right / self.enrolled if self.enrolled else 1.0

    @property
    def false_accept_rate(self) -> float:
        """Share of strangers' speakers given a name."""
        return self.false_accepts / self.strangers if self.strangers else 0.0


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
    truth_one = true_voices(one, first, voices.transcripts.speaker_relabel(one.session_id))
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
    truth_two = true_voices(two, second, voices.transcripts.speaker_relabel(two.session_id))
    mix = overlaps([(t.start, t.end, t.speaker) for t in window_turns(two.windows)], second.reference_turns())
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
        mix=mix,
    )
