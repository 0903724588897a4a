"""bench/captions.py's stage breakdown: where each word's caption latency went (testkit.captions.word_stages)."""

from __future__ import annotations

import math

from contracts.segments import TranscriptSegment, Word
from processor.interim_timing import PassTiming
from testkit.captions import SessionRun, word_stages
from testkit.sse import FeedReader

T0 = 100.0  # the replay's audio clock started here (time.monotonic seconds)


def window_event(window: int, final: bool, words: list[tuple[str, float]]) -> dict[str, object]:
    """A feed ``window`` event showing ``words`` (text, end in the session)."""
    return {
        "window_index": window,
        "is_final": final,
        "segments": [{"words": [{"text": text, "end": end} for text, end in words]}],
    }


def test_each_word_splits_into_framing_pipe_behind_decode_and_after() -> None:
    feed = FeedReader("http://unused")  # never started: the events are set below
    run = SessionRun("s", feed, t0=T0)
    # "hello" ends at 1.3 s: its record (1 s frames) ends at 2.0 s and is offered at T0 + 2.1;
    # the pass holding it starts at T0 + 2.5 and ends at T0 + 3.7; the feed shows it at T0 + 3.9.
    # "world" ends at 2.6 s: the interim pass gets it wrong; only the final shows it, at T0 + 40.
    feed.events = [
        (T0 + 3.9, "window", window_event(0, False, [("hello", 1.3), ("word", 2.6)])),
        (T0 + 40.0, "window", window_event(0, True, [("hello", 1.3), ("world", 2.6)])),
    ]
    passes = [PassTiming("s", 0, 0, 3 * 16_000, T0 + 3.1, T0 + 3.2, T0 + 4.0)]
    passes.insert(0, PassTiming("s", 0, 0, 2 * 16_000, T0 + 2.1, T0 + 2.5, T0 + 3.7))
    finals = [
        TranscriptSegment("s", 0, 0, 0.9, 2.6, "hello world", words=(Word(0.9, 1.3, "hello"), Word(2.0, 2.6, "world")))
    ]
    hello, world = word_stages(run, finals, passes)
    assert math.isclose(hello.latency, 3.9 - 1.3) and not hello.by_final
    assert math.isclose(hello.framing, 2.0 - 1.3) and math.isclose(hello.pipe, 0.1)
    assert math.isclose(hello.behind, 0.4) and math.isclose(hello.decode, 1.2) and math.isclose(hello.after, 0.2)
    parts = hello.framing + hello.pipe + hello.behind + hello.decode + hello.after
    assert math.isclose(parts, hello.latency)
    # "world" was in the second pass's audio (3 s) but first shown right by the final.
    assert world.by_final and math.isclose(world.latency, 40.0 - 2.6)
    assert math.isclose(world.decode, 0.8) and math.isclose(world.after, 40.0 - 4.0)


def test_a_word_no_interim_pass_held_has_no_stages() -> None:
    feed = FeedReader("http://unused")
    feed.events = [(T0 + 35.0, "window", window_event(1, True, [("late", 31.0)]))]
    run = SessionRun("s", feed, t0=T0)
    finals = [TranscriptSegment("s", 1, 0, 30.5, 31.0, "late", words=(Word(30.5, 31.0, "late"),))]
    (late,) = word_stages(run, finals, [PassTiming("s", 0, 0, 16_000, T0 + 1, T0 + 1, T0 + 2)])
    assert late.by_final and math.isclose(late.latency, 4.0) and math.isnan(late.wait)
