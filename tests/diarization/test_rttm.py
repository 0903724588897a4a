"""RTTM export from transcript segments and RTTM reading."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.segments import TranscriptSegment, Word
from processor.rttm import RttmError, parse_rttm, read_rttm, segments_to_rttm


def _seg(idx: int, words: list[tuple[float, float, str, str]], **kw: object) -> TranscriptSegment:
    ws = tuple(Word(s, e, t, 0.9, spk) for s, e, t, spk in words)
    return TranscriptSegment(
        "sess",
        0,
        idx,
        ws[0].start,
        ws[-1].end,
        "".join(w.text for w in ws).strip(),
        speaker=ws[0].speaker,
        words=ws,
        **kw,  # type: ignore[arg-type]
    )


def test_word_level_turns_merge_small_gaps_and_split_speakers() -> None:
    segs = [
        _seg(0, [(1.0, 1.4, " hello", "S1"), (1.5, 1.9, " there", "S1")]),
        _seg(1, [(2.1, 2.5, " next", "S1"), (2.6, 3.0, " reply", "S2"), (3.1, 3.5, " ok", "S2")]),
    ]
    text = segments_to_rttm("sess", segs)
    assert text.splitlines() == [
        "SPEAKER sess 1 1.000 1.500 <NA> <NA> S1 <NA> <NA>",
        "SPEAKER sess 1 2.600 0.900 <NA> <NA> S2 <NA> <NA>",
    ]


def test_interim_segments_skipped_and_wordless_segments_kept() -> None:
    final = TranscriptSegment("sess", 1, 0, 10.0, 12.0, "no words", speaker="S2")
    interim = _seg(1, [(13.0, 14.0, " draft", "S1")], is_final=False)
    text = segments_to_rttm("sess", [interim, final])
    assert text == "SPEAKER sess 1 10.000 2.000 <NA> <NA> S2 <NA> <NA>\n"


def test_names_with_spaces_and_missing_speaker_stay_one_field() -> None:
    seg = TranscriptSegment("my session", 0, 0, 0.0, 1.0, "x", speaker="Dana Smith")
    nospk = TranscriptSegment("my session", 0, 1, 2.0, 3.0, "y", speaker=None)
    lines = segments_to_rttm("my session", [seg, nospk]).splitlines()
    assert [len(line.split()) for line in lines] == [10, 10]
    assert lines[0].split()[1] == "my_session"
    assert lines[0].split()[7] == "Dana_Smith"
    assert lines[1].split()[7] == "unknown"


def test_round_trip_through_parser() -> None:
    segs = [_seg(0, [(0.5, 1.0, " a", "S1")]), _seg(1, [(4.0, 5.25, " b", "S2")])]
    turns = parse_rttm(segments_to_rttm("rt", segs))
    assert [(t.uri, t.start, t.end, t.speaker) for t in turns] == [
        ("rt", 0.5, 1.0, "S1"),
        ("rt", 4.0, 5.25, "S2"),
    ]


def test_reads_pyannote_sample_reference() -> None:
    import pyannote.audio

    path = Path(pyannote.audio.__file__).parent / "sample" / "sample.rttm"
    turns = read_rttm(path)
    assert len(turns) == 10
    assert {t.speaker for t in turns} == {"speaker90", "speaker91"}
    assert turns[0].start == pytest.approx(6.69) and turns[0].duration == pytest.approx(0.43)


def test_parser_skips_other_records_and_reports_bad_lines() -> None:
    text = ";; comment\nSPKR-INFO x 1 <NA> <NA> <NA> unknown A <NA>\nSPEAKER x 1 1 2 <NA> <NA> A\n"
    assert len(parse_rttm(text)) == 1
    with pytest.raises(RttmError, match="line 2"):
        parse_rttm("SPEAKER x 1 0 1 <NA> <NA> A\nSPEAKER x 1 zero 1 <NA> <NA> B\n")
    with pytest.raises(RttmError, match="line 1"):
        parse_rttm("SPEAKER x 1 0\n")
    with pytest.raises(RttmError, match="negative"):
        parse_rttm("SPEAKER x 1 -1 1 <NA> <NA> A\n")


def test_diarizer_turns_are_exported_when_stored() -> None:
    """Turns stored with the windows cover pauses and overlap; word spans do not."""
    from contracts.segments import SpeakerTurn, WindowRecord
    from processor.rttm import window_turns

    windows = [
        WindowRecord("sess", 0, 0, 160_000, turns=(SpeakerTurn(1.0, 6.0, "S1"), SpeakerTurn(5.5, 10.0, "S2"))),
        # The next window goes on with S2: one turn across the join.
        WindowRecord("sess", 1, 160_000, 320_000, turns=(SpeakerTurn(10.0, 12.0, "S2"), SpeakerTurn(12.5, 14.0, "S1"))),
    ]
    words = [_seg(0, [(1.2, 1.6, " hi", "S1"), (6.2, 6.6, " yes", "S2")])]
    text = segments_to_rttm("sess", words, turns=window_turns(windows))
    assert text.splitlines() == [
        "SPEAKER sess 1 1.000 5.000 <NA> <NA> S1 <NA> <NA>",
        "SPEAKER sess 1 5.500 6.500 <NA> <NA> S2 <NA> <NA>",
        "SPEAKER sess 1 12.500 1.500 <NA> <NA> S1 <NA> <NA>",
    ]
    # Without stored turns (diarization off, older sessions) the words still give turns.
    assert segments_to_rttm("sess", words, turns=()).count("SPEAKER") == 2
