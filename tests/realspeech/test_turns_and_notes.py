"""Issue 23 on real recorded speech: the text export has one line per speaker turn, subtitle cues
stay within the player limits, and the offline notes find no action item in meetings that have none.

The recordings (testkit/corpus.py) go through the pipeline once per session
(``pipeline_runs``): tiny.en, offline pyannote diarization, 30 s windows. None of them has a
decision or a task in it: a novel read aloud, card names, digits, a song line, and a telephone
introduction ("This is Diane in New Jersey").
"""

from __future__ import annotations

import itertools
import re

import pytest

from contracts.turns import DEFAULT_SPEAKER
from control.notes import OfflineNotesGenerator
from flowbot.formats import CUE_LINE_CHARS, CUE_LINES, CUE_MAX_S, render
from testkit.corpus import Recording
from testkit.evaluate import Run

pytestmark = pytest.mark.slow

NAMES = ("sample", "concat", "squeezed")
LINE = re.compile(r"^\[(\d\d):(\d\d):(\d\d)\] ([^:]+): (.*)$")


@pytest.mark.parametrize("name", NAMES)
def test_text_export_has_one_line_per_speaker_turn(
    name: str, recordings: dict[str, Recording], pipeline_runs: dict[str, Run]
) -> None:
    segments = [s for s in pipeline_runs[name].segments if s.text.strip()]
    assert segments
    lines = render("text", name, segments, {}).splitlines()
    # Turns counted here independently: runs of one speaker label in the stored segments.
    runs = [
        (label, list(group)) for label, group in itertools.groupby(segments, lambda s: s.speaker or DEFAULT_SPEAKER)
    ]
    print(
        f"\n{name}: {len(segments)} segments -> {len(lines)} lines "
        f"({len(recordings[name].reference_turns())} reference turns)"
    )
    assert len(lines) == len(runs), lines
    for line, (label, group) in zip(lines, runs, strict=True):
        m = LINE.match(line)
        assert m, line
        assert m.group(4) == label
        assert m.group(5).split() == " ".join(s.text for s in group).split()
    speakers = [LINE.match(line).group(4) for line in lines]  # type: ignore[union-attr]
    assert all(a != b for a, b in itertools.pairwise(speakers)), speakers


@pytest.mark.parametrize("name", NAMES)
def test_subtitle_cues_of_real_speech_stay_within_player_limits(name: str, pipeline_runs: dict[str, Run]) -> None:
    srt = render("srt", name, pipeline_runs[name].segments, {})
    cues = [b.splitlines() for b in srt.split("\n\n") if "-->" in b]
    assert cues
    for cue in cues:
        a, b = (
            sum(float(x) * f for x, f in zip(t.replace(",", ".").split(":"), (3600, 60, 1), strict=True))
            for t in cue[1].split(" --> ")
        )
        assert 0 < b - a <= CUE_MAX_S + 1e-6, cue
        assert 1 <= len(cue[2:]) <= CUE_LINES and all(len(x) <= CUE_LINE_CHARS for x in cue[2:]), cue


@pytest.mark.parametrize("name", ("sample", "concat"))
def test_offline_notes_list_no_action_item_for_a_meeting_that_has_none(
    name: str, pipeline_runs: dict[str, Run]
) -> None:
    notes = OfflineNotesGenerator().generate(pipeline_runs[name].segments, {})
    print(f"\n{name} offline notes:\n{notes.to_markdown()}")
    assert notes.action_items == [], notes.action_items
    assert notes.decisions == [], notes.decisions
    # Whole sentences only, each said in the meeting.
    spoken = " ".join(" ".join(s.text.split()) for s in pipeline_runs[name].segments if s.text.strip())
    assert all(re.match(r"^[\"'(]?[A-Z0-9].*[.!?][\"')]?$", s) and s in spoken for s in notes.summary), notes.summary
