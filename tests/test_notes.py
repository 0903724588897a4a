"""Offline meeting notes: decisions, action items with owners, talk time."""

from __future__ import annotations

from contracts.segments import TranscriptSegment, Word
from control.notes import OfflineNotesGenerator, notes_from_dict
from tests.speech import MEETING


def _segments() -> list[TranscriptSegment]:
    out, t = [], 0.0
    for i, (who, text) in enumerate(MEETING):
        dur = len(text.split()) * 0.4
        words = tuple(
            Word(t + k * 0.4, t + k * 0.4 + 0.35, " " + w, 0.9, f"S{who + 1}") for k, w in enumerate(text.split())
        )
        out.append(TranscriptSegment("s", i // 5, i % 5, t, t + dur, text, f"S{who + 1}", words))
        t += dur + 1
    return out


def test_decisions_action_items_and_owners() -> None:
    notes = OfflineNotesGenerator().generate(_segments(), {"S1": "Ann", "S2": "Bob", "S3": "Cy"})
    assert any("ship version two on Friday" in d for d in notes.decisions)
    assert any("speaker renaming" in d for d in notes.decisions)
    owners = {(a.owner, a.text.split()[2]) for a in notes.action_items}
    assert ("Cy", "review") in owners  # "I will review the documentation by Thursday afternoon."
    assert ("Bob", "update") in owners  # "I will update the deployment scripts ..."
    assert any(a.owner == "Dana" and "design note" in a.text for a in notes.action_items)
    assert not any("installed on Monday" in a.text for a in notes.action_items)  # passive, nobody's task
    assert set(notes.talk_time) == {"Ann", "Bob", "Cy"}
    assert abs(sum(notes.talk_time.values()) - sum(len(t.split()) * 0.35 for _, t in MEETING)) < 0.5
    assert 1 <= len(notes.summary) <= 5
    assert notes_from_dict(notes.to_dict()) == notes
    md = notes.to_markdown()
    assert "## Action items" in md and "[Cy]" in md


def test_empty_meeting_has_empty_notes() -> None:
    notes = OfflineNotesGenerator().generate([], {})
    assert notes.summary == [] and notes.action_items == [] and notes.talk_time == {}
