"""Words go to the speaker active at their middle; segments split at turn changes."""

from __future__ import annotations

from contracts.segments import Word
from processor.asr import AsrSegment
from processor.attribution import attribute
from processor.diarization import Diarization, SpeakerTurn


def _asr(words: list[tuple[float, float, str]], text: str | None = None) -> AsrSegment:
    ws = tuple(Word(s, e, t, 0.9) for s, e, t in words)
    return AsrSegment(
        start=ws[0].start if ws else 0.0,
        end=ws[-1].end if ws else 0.0,
        text=text if text is not None else "".join(w.text for w in ws).strip(),
        words=ws,
        avg_logprob=-0.2,
        no_speech_prob=0.01,
        compression_ratio=1.2,
    )


def _diar(*turns: tuple[float, float, str]) -> Diarization:
    return Diarization(tuple(SpeakerTurn(*t) for t in turns))


def test_segment_split_at_turn_change() -> None:
    seg = _asr([(0.0, 0.4, " I"), (0.5, 0.9, " agree."), (1.2, 1.6, " Thanks"), (1.7, 2.2, " all.")])
    out = attribute([seg], _diar((0.0, 1.0, "A"), (1.0, 3.0, "B")))
    assert [(s.speaker, s.text) for s in out] == [("A", "I agree."), ("B", "Thanks all.")]
    assert out[0].start == 0.0 and out[0].end == 0.9
    assert out[1].start == 1.2 and out[1].end == 2.2
    assert all(w.speaker == "A" for w in out[0].words)
    assert all(w.speaker == "B" for w in out[1].words)
    assert {s.avg_logprob for s in out} == {-0.2}


def test_word_goes_to_speaker_at_its_middle() -> None:
    # " then" spans 0.8-1.6: its middle (1.2) is B's, though it starts in A's turn.
    seg = _asr([(0.0, 0.5, " so"), (0.8, 1.6, " then")])
    out = attribute([seg], _diar((0.0, 1.0, "A"), (1.0, 2.0, "B")))
    assert [(s.speaker, s.text) for s in out] == [("A", "so"), ("B", "then")]


def test_lone_word_across_a_near_boundary_stays_with_its_neighbours() -> None:
    # B's 0.2 s blip inside A's speech would otherwise make three segments.
    seg = _asr([(0.0, 0.4, " we"), (0.5, 0.7, " will"), (0.8, 1.2, " ship")])
    diar = _diar((0.0, 0.55, "A"), (0.55, 0.75, "B"), (0.75, 2.0, "A"))
    out = attribute([seg], diar)
    assert [(s.speaker, s.text) for s in out] == [("A", "we will ship")]


def test_real_interjection_is_kept() -> None:
    # A one-second "absolutely" by B between A's words is a real turn, not jitter.
    seg = _asr([(0.0, 0.4, " yes"), (1.0, 2.0, " absolutely"), (2.6, 3.0, " good")])
    diar = _diar((0.0, 0.7, "A"), (0.7, 2.3, "B"), (2.3, 3.5, "A"))
    out = attribute([seg], diar)
    assert [(s.speaker, s.text) for s in out] == [("A", "yes"), ("B", "absolutely"), ("A", "good")]


def test_word_in_a_gap_goes_to_nearest_turn() -> None:
    seg = _asr([(2.0, 2.2, " hm")])
    out = attribute([seg], _diar((0.0, 1.0, "A"), (2.5, 3.0, "B")))
    assert out[0].speaker == "B"


def test_segment_without_words_goes_to_who_talks_most() -> None:
    seg = _asr([], text="inaudible")
    seg = AsrSegment(0.0, 3.0, "inaudible", (), -0.5, 0.1, 1.0)
    out = attribute([seg], _diar((0.0, 0.8, "A"), (0.8, 3.0, "B")))
    assert [(s.speaker, s.text, s.words) for s in out] == [("B", "inaudible", ())]


def test_no_diarization_leaves_speaker_unknown_and_loses_no_words() -> None:
    seg = _asr([(0.0, 0.4, " one"), (0.5, 0.9, " two")])
    out = attribute([seg], Diarization(()))
    assert len(out) == 1 and out[0].speaker is None and out[0].text == "one two"


def test_every_word_kept_in_order() -> None:
    words = [(i * 0.3, i * 0.3 + 0.25, f" w{i}") for i in range(20)]
    diar = _diar((0.0, 1.5, "A"), (1.5, 3.0, "B"), (3.0, 6.0, "A"))
    out = attribute([_asr(words)], diar)
    assert [w.text for s in out for w in s.words] == [w[2] for w in words]
    assert [s.speaker for s in out] == ["A", "B", "A"]
