"""Offline notes that are right rather than full (issue 23 item 3).

- Decisions and action items: precision on hand-labelled meeting sentences shipped
  with the tests (``tests/notes/labelled_sentences.tsv``, the set the finder was tuned
  on, and ``tests/notes/heldout_sentences.tsv``, written afterwards and scored untuned);
  the target is 0.8 on each.
- Whole sentences only: Whisper's cuts inside a sentence are mended by speaker turns
  before sentences are taken.
- A meeting with no tasks in it (prose read aloud) gets no action items; empty sections
  say none were found.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from contracts.notes import MeetingNotes
from contracts.segments import TranscriptSegment, Word
from control.notes import ItemKind, OfflineNotesGenerator, classify_sentence

HERE = Path(__file__).resolve().parent / "notes"
SETS = ("labelled_sentences.tsv", "heldout_sentences.tsv")
TARGET_PRECISION = 0.8


def labelled(name: str) -> list[tuple[str, str]]:
    """(label, sentence) rows of a labelled file."""
    rows = []
    for line in (HERE / name).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            label, sentence = line.split("\t", 1)
            assert label in {"decision", "action", "none"}, line
            rows.append((label, sentence))
    return rows


def scores(rows: list[tuple[str, str]]) -> dict[str, tuple[int, int, int]]:
    """Per kind: (true positives, predicted, labelled)."""
    found = [(label, classify_sentence(sentence)) for label, sentence in rows]
    out = {}
    for kind in ItemKind:
        predicted = [label for label, f in found if f is not None and f.kind is kind]
        out[kind.value] = (predicted.count(kind.value), len(predicted), sum(label == kind.value for label, _ in rows))
    return out


@pytest.mark.parametrize("name", SETS)
def test_decision_and_action_item_precision_on_labelled_sentences(name: str) -> None:
    rows = labelled(name)
    assert len(rows) >= 60 and {label for label, _ in rows} == {"decision", "action", "none"}
    for kind, (tp, predicted, total) in scores(rows).items():
        precision, recall = tp / max(1, predicted), tp / total
        print(f"\n{name} {kind}: precision {tp}/{predicted} = {precision:.2f}, recall {tp}/{total} = {recall:.2f}")
        assert precision >= TARGET_PRECISION, (kind, precision)
        # Precision bought by finding nothing is no finder.
        assert recall >= 0.5, (kind, recall)


def whisper_segments(turns: list[tuple[str, str]], cut_every: int = 7) -> list[TranscriptSegment]:
    """Turns as Whisper cuts them: a new segment every ``cut_every`` words, mid-sentence or not."""
    out: list[TranscriptSegment] = []
    t = 0.0
    for speaker, text in turns:
        words = text.split()
        for k in range(0, len(words), cut_every):
            timed = tuple(
                Word(t + i * 0.4, t + i * 0.4 + 0.35, " " + w, 0.9, speaker)
                for i, w in enumerate(words[k : k + cut_every])
            )
            n = len(out)
            text_k = " ".join(words[k : k + cut_every])
            out.append(TranscriptSegment("s", n // 10, n % 10, t, timed[-1].end, text_k, speaker, timed))
            t = timed[-1].end + 0.3
        t += 0.7
    return out


# Opening of Sense and Sensibility (the LibriVox reading in the real-speech set is from it) and of
# Pride and Prejudice, read by two voices: prose, not a meeting.
NOVEL = [
    (
        "S1",
        "The family of Dashwood had long been settled in Sussex. Their estate was large, and their residence "
        "was at Norland Park, in the centre of their property. And Mister John Dashwood had then leisure to "
        "consider how much there might be prudently in his power to do for them. He was not an ill-disposed "
        "young man, unless to be rather cold-hearted and rather selfish is to be ill-disposed.",
    ),
    (
        "S2",
        "It is a truth universally acknowledged, that a single man in possession of a good fortune must be in "
        "want of a wife. My dear Mister Bennet, said his lady to him one day, have you heard that Netherfield "
        "Park is let at last? Mister Bennet replied that he had not. He will be back by Saturday, and some of "
        "his servants are to be in the house by the end of next week.",
    ),
    (
        "S1",
        "Had he married a more amiable woman, he might have been made still more respectable than he was. He "
        "might even have been made amiable himself. I will not say that he was unkind.",
    ),
]


def test_prose_read_aloud_has_no_action_items_or_decisions() -> None:
    notes = OfflineNotesGenerator().generate(whisper_segments(NOVEL), {})
    assert notes.action_items == [] and notes.decisions == [], (notes.action_items, notes.decisions)
    md = notes.to_markdown()
    assert "## Action items\n- None found." in md and "## Decisions\n- None found." in md


KENNEDY = [
    ("S3", "And so, my fellow Americans, ask not what your country can do for you, ask what you can do for "),
    ("S3", "your country. My fellow citizens of the world, ask not what America will do for you, but what"),
    ("S3", "together we can do for the freedom of man."),
    ("S1", "Thank you. I will send the recording to everyone by Friday."),
    ("S2", "We decided to play it again at the start of the next meeting. and then"),
]


def test_summary_and_items_are_whole_sentences() -> None:
    segments = whisper_segments(KENNEDY, cut_every=5)
    notes = OfflineNotesGenerator().generate(segments, {"S1": "Ann"})
    whole = re.compile(r"^[A-Z].*[.!?]$")
    quoted = notes.summary + [d.text for d in notes.decisions] + [a.text for a in notes.action_items]
    assert notes.summary, notes
    assert all(whole.match(s) for s in quoted), quoted
    spoken = " ".join(" ".join(t.split()) for _, t in KENNEDY)
    assert all(s in spoken for s in quoted), quoted
    assert [(a.owner, a.text) for a in notes.action_items] == [
        ("Ann", "I will send the recording to everyone by Friday.")
    ]
    assert [d.text for d in notes.decisions] == ["We decided to play it again at the start of the next meeting."]
    # The decision is timed at its own first word, not at its segment's.
    assert notes.decisions[0].start == next(s.start for s in segments if s.text.startswith("We decided"))
    # The trailing fragment "and then" is not a sentence anybody said in full.
    assert not any("and then" in s for s in quoted)


def test_empty_sections_say_none_were_found() -> None:
    md = MeetingNotes(summary=["Budget agreed."], talk_time={"Ann": 3.0}).to_markdown()
    assert "## Decisions\n- None found." in md and "## Action items\n- None found." in md


def test_a_model_summary_item_is_one_sentence() -> None:
    """The schema the local model decodes under cannot hold the loop it fell into (issue 23)."""
    from control.llm.generator import NOTES_SCHEMA, SUMMARY_SCHEMA

    for schema in (NOTES_SCHEMA, SUMMARY_SCHEMA):
        pattern = re.compile(schema["properties"]["summary"]["items"]["pattern"])
        for sentence in ("Mr. Dashwood reads from a novel.", "Version 2.5 ships on Friday!", "Who owns QA?"):
            assert pattern.fullmatch(sentence), sentence
        loop = "The participants agreed or decided that they should not hear that in New Jersey now. " * 3
        for text in (loop.strip(), "Two sentences. In one item.", 'A "quoted" word.', "No full stop"):
            assert not pattern.fullmatch(text), text
