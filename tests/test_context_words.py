"""Which words of a decode belong to the window and which to its left context (issue 19).

Every window after the first is decoded with 1 s of the audio before it, whose
words the previous window already committed. On real speech Whisper sometimes
skips the context's last words and stretches the window's first word back over
the context: ``concat`` in tests/realspeech lost "Had" at a join this way
(decoded as 0.00-1.32 s of a 1 s context, its middle inside the context).
"""

from __future__ import annotations

from contracts.segments import Word
from processor.asr import AsrSegment
from processor.segtime import CONTEXT_SPILL_SECONDS, words_after


def _segment(*words: tuple[float, float, str]) -> AsrSegment:
    ws = tuple(Word(a, b, " " + t, 0.9) for a, b, t in words)
    return AsrSegment(ws[0].start, ws[-1].end, "".join(w.text for w in ws).strip(), ws, -0.2, 0.01, 1.2)


def _texts(segments: list[AsrSegment]) -> list[str]:
    return [w.text.strip() for s in segments for w in s.words]


def test_a_word_stretched_back_over_the_context_stays_in_the_window() -> None:
    # The decode of concat's third window (1 s context), as both CTranslate2 ISAs gave it.
    decoded = [_segment((0.00, 1.32, "Had"), (1.32, 1.66, "he"), (1.66, 1.88, "married"))]
    kept = words_after(decoded, 1.0)
    assert _texts(kept) == ["Had", "he", "married"]
    assert kept[0].words[0].start == 0.0 and abs(kept[0].words[0].end - 0.32) < 1e-9


def test_context_words_that_run_slightly_past_the_boundary_are_dropped() -> None:
    # Measured on the real-speech set: context words ended up to 0.10 s after the boundary.
    decoded = [_segment((0.00, 1.04, "Chicago."), (1.08, 1.50, "Oh,")), _segment((1.6, 1.9, "hello"))]
    assert _texts(words_after(decoded, 1.0)) == ["Oh,", "hello"]
    decoded = [_segment((0.60, 1.10, "Jersey"), (1.10, 1.52, "and"))]
    assert _texts(words_after(decoded, 1.0)) == ["and"]


def test_the_spill_rule_sits_between_the_measured_cases() -> None:
    assert 0.10 < CONTEXT_SPILL_SECONDS < 0.32
    # A word ending exactly at the spill is in the window; just before it, in the context.
    assert _texts(words_after([_segment((0.2, 1.0 + CONTEXT_SPILL_SECONDS, "x"))], 1.0)) == ["x"]
    assert _texts(words_after([_segment((0.2, 0.99 + CONTEXT_SPILL_SECONDS, "x"))], 1.0)) == []
