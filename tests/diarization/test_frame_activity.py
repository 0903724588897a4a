"""Issue 21, round 28: segmentation-3.0's own frame scores where the turns lose them.

The pyannote engine keeps each window's per-chunk local speaker activity (the
segmentation model's output, which the pipeline computes anyway) with its diarization
(``Diarization.activity``), each local speaker labelled with the window speaker it was
clustered into. A word whose middle falls in a gap between two turns used to go to the
nearer turn; it now goes to the side segmentation-3.0 heard under the word
(:mod:`processor.attribution`), the nearer one unless the other was heard more.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from contracts.segments import Word
from processor.asr import AsrSegment
from processor.attribution import attribute
from processor.diarization import Diarization, Diarizer, LocalActivity, SpeakerTurn
from processor.pyannote_diarizer import local_activity
from processor.turn_check import TurnCheck, settle_short_turns
from tests.diarization.conversations import Recording

STEP, OFFSET = 0.016875, 0.031  # segmentation-3.0's frames


def _activity(
    chunks: Sequence[Sequence[tuple[int, int, int]]], labels: Sequence[Sequence[str | None]]
) -> LocalActivity:
    """Chunks 5 s apart of 589 frames; each (local speaker, first frame, end frame) is active."""
    active = np.zeros((len(chunks), 589, 3), dtype=bool)
    for c, spans in enumerate(chunks):
        for k, a, b in spans:
            active[c, a:b, k] = True
    starts = 5.0 * np.arange(len(chunks))
    return LocalActivity(starts, OFFSET, STEP, active, tuple(tuple(row) for row in labels))


def _frame(t: float, chunk_start: float = 0.0) -> int:
    return round((t - chunk_start - OFFSET) / STEP)


def test_the_engine_labels_each_local_speaker_with_the_window_speaker_it_was_clustered_into() -> None:
    """The pipeline's segmentation output (chunks x frames x local speakers) is kept with the window
    speaker whose turns cover most of each local speaker's frames; a silent one has none."""
    from pyannote.core import SlidingWindow, SlidingWindowFeature

    data = np.zeros((2, 589, 3), dtype=np.float32)
    data[0, : _frame(4.0), 0] = 1
    data[0, _frame(4.0) :, 2] = 1
    data[1, : _frame(9.0, 5.0), 2] = 1
    segmentations = SlidingWindowFeature(data, SlidingWindow(start=0.0, duration=10.0, step=5.0))
    frames = SlidingWindow(start=OFFSET - 0.031, duration=0.062, step=STEP)
    speech = [SpeakerTurn(0.0, 4.0, "SPEAKER_00"), SpeakerTurn(4.0, 9.0, "SPEAKER_01")]
    activity = local_activity(segmentations, frames, speech)
    assert activity.labels == (("SPEAKER_00", None, "SPEAKER_01"), (None, None, "SPEAKER_01"))
    assert activity.active.shape == (2, 589, 3)
    assert activity.relabel({"SPEAKER_01": "S2"}).labels[1] == (None, None, "S2")


def _word_segment(start: float, end: float, text: str) -> AsrSegment:
    return AsrSegment(start, end, text, (Word(start, end, text, 0.9),), -0.2, 0.01, 1.2)


def test_a_word_in_a_gap_goes_to_the_side_segmentation_heard_under_it() -> None:
    """squeezed (both ISAs): "them." (6.58-6.78 s) sat in the 0.07 s gap between the reader's turn
    and the next voice's; the nearer turn was the next voice's, but segmentation-3.0 heard only
    the reader under the word. Words in gaps went to the nearer turn: squeezed cpWER - WER
    16.5 -> 15.5 points (AVX2), 13.9 -> 12.9 (AVX-512), nothing else moved."""
    turns = (SpeakerTurn(0.0, 6.63, "S1"), SpeakerTurn(6.70, 7.6, "S4"))
    activity = _activity([[(0, 0, _frame(6.75)), (1, _frame(6.76), _frame(7.6))]], [["S1", "S4", None]])
    dia = Diarization(turns, {}, turns, activity=activity)
    [piece] = attribute([_word_segment(6.58, 6.78, " them.")], dia)
    assert piece.speaker == "S1"
    assert attribute([_word_segment(6.58, 6.78, " them.")], Diarization(turns))[0].speaker == "S4"


def test_a_gap_word_stays_with_the_nearer_turn_unless_the_other_side_was_heard_more() -> None:
    """A tie, or activity only of a speaker on neither side, keeps the nearer turn (whole-file
    concat under AVX-512 lost a word when ties went by label order)."""
    turns = (SpeakerTurn(0.0, 3.0, "A"), SpeakerTurn(3.4, 6.0, "B"))
    tie = _activity([[(0, _frame(3.0), _frame(3.4)), (1, _frame(3.0), _frame(3.4))]], [["A", "B", None]])
    word = _word_segment(3.05, 3.25, " though.")
    assert attribute([word], Diarization(turns, {}, turns, activity=tie))[0].speaker == "A"
    other = _activity([[(2, _frame(3.25), _frame(3.3))]], [[None, None, "C"]])
    word = _word_segment(3.25, 3.35, " now")
    assert attribute([word], Diarization(turns, {}, turns, activity=other))[0].speaker == "B"


def test_the_offline_pipeline_passes_its_frame_scores_on(offline_diarizer: Diarizer, two_speakers: Recording) -> None:
    """A 30 s window of two flite voices: the diarization carries one row of local speaker activity
    per 10 s chunk (5 s apart), every window speaker is some chunk's local speaker, and each
    labelled local speaker's active frames lie mostly inside its window speaker's speech."""
    out = offline_diarizer.diarize(two_speakers.audio[: 30 * 16000])
    activity = out.activity
    assert activity is not None
    assert list(activity.starts) == [0.0, 5.0, 10.0, 15.0, 20.0]
    assert activity.active.shape[0] == 5 and activity.active.shape[2] == 3
    assert {t.speaker for t in out.turns} <= {lab for row in activity.labels for lab in row if lab}
    middles = activity.middles()
    for c, row in enumerate(activity.labels):
        for k, label in enumerate(row):
            if label is None:
                continue
            heard = middles[c, activity.active[c, :, k]]
            own = sum(((heard >= t.start) & (heard < t.end)).sum() for t in out.speech_turns if t.speaker == label)
            assert own >= 0.8 * len(heard)


def test_a_turn_too_short_to_embed_joins_the_neighbour_segmentation_also_heard_under_it() -> None:
    """segmentation-3.0's chunks disagree under a 0.55 s turn: one heard B, the other heard A go on
    through it, and the aggregation gave it to B. Too short to embed, the turn check never heard
    it. It now goes to A (exclusive turns only; the overlapping-speech turns stay as they were).
    Measured on the dev set (replayed, both ISAs): final cpWER - WER concat 9.7 -> 8.7 points,
    squeezed 15.5 -> 12.9 (AVX2), returning 3.1 -> 2.6, DER unchanged."""
    turns = (SpeakerTurn(5.0, 8.0, "A"), SpeakerTurn(8.05, 8.6, "B"), SpeakerTurn(8.65, 10.0, "A"))
    activity = _activity(
        [
            [(0, _frame(5.0), _frame(8.0)), (1, _frame(8.05), _frame(8.6)), (0, _frame(8.65), 589)],
            [(0, 0, _frame(10.0, 5.0))],
        ],
        [["A", "B", None], ["A", None, None]],
    )
    dia = Diarization(turns, {}, turns, activity=activity)
    out = settle_short_turns(dia, TurnCheck())
    assert [t.speaker for t in out.turns] == ["A", "A", "A"]
    assert out.speech_turns == turns
    assert settle_short_turns(dia, TurnCheck(short_share=0.0)).turns == turns


def test_a_short_turn_stays_where_no_neighbour_was_heard_under_it() -> None:
    """A real short answer (the sample call's "mm-hmm"): every chunk heard only B under it, or its
    neighbours lie more than 0.3 s away; it stays B's. Long turns are left to the voice check."""
    turns = (SpeakerTurn(5.0, 8.0, "A"), SpeakerTurn(8.05, 8.6, "B"), SpeakerTurn(9.2, 10.0, "A"))
    activity = _activity(
        [[(0, _frame(5.0), _frame(8.0)), (1, _frame(8.05), _frame(8.6)), (0, _frame(9.2), 589)]],
        [["A", "B", None]],
    )
    assert settle_short_turns(Diarization(turns, {}, turns, activity=activity), TurnCheck()).turns == turns
    far = (SpeakerTurn(5.0, 7.6, "A"), SpeakerTurn(8.05, 8.6, "B"), SpeakerTurn(9.2, 10.0, "A"))
    loud = _activity([[(0, _frame(5.0), 589), (1, _frame(8.05), _frame(8.6))]], [["A", "B", None]])
    assert settle_short_turns(Diarization(far, {}, far, activity=loud), TurnCheck()).turns == far
