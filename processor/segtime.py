"""Segment-time arithmetic: the one home of "shift by an offset", "keep these words", "split at a time".

ASR output (:class:`processor.asr.AsrSegment`) is timed relative to the audio a
model heard. The engine moves it past a window's left context, trims a window
cut inside speech to the words it commits, the interim worker splits a pass at
its stable prefix and the batched transcriber moves clips back onto their
request and splits them into sentences. All of them use these functions, so a
rule about word timing (a word belongs where its middle is) is written once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from contracts.segments import Word

if TYPE_CHECKING:
    from processor.asr import AsrSegment


def words_text(words: Sequence[Word]) -> str:
    """Join Whisper word tokens (which carry their own leading spaces) into text."""
    return "".join(w.text for w in words).strip()


def shifted(seg: AsrSegment, seconds: float) -> AsrSegment:
    """``seg`` with its times and its words' times moved by ``seconds`` (never below 0)."""
    return replace(
        seg,
        start=max(0.0, seg.start + seconds),
        end=max(0.0, seg.end + seconds),
        words=tuple(replace(w, start=max(0.0, w.start + seconds), end=max(0.0, w.end + seconds)) for w in seg.words),
    )


def trimmed(seg: AsrSegment, words: Sequence[Word]) -> AsrSegment:
    """``seg`` restricted to ``words`` (a non-empty run of its own words): times and text follow them."""
    if len(words) == len(seg.words):
        return seg
    return replace(seg, start=words[0].start, end=words[-1].end, text=words_text(words), words=tuple(words))


def middle(start: float, end: float) -> float:
    """Where a word (or a segment without words) is, for every side-of-a-boundary decision."""
    return (start + end) / 2


#: A word reaching this far past the left context belongs to the window even when its
#: middle lies in the context. Whisper sometimes skips the context's last words and
#: stretches the window's first word back over them: on the real-speech ``concat``
#: recording "Had" came out as 0.00-1.32 s of a 1 s context and was lost at the join
#: (both CTranslate2 ISAs). Context words ran at most 0.10 s past the boundary
#: (real-speech set, AVX2 and AVX-512), the stretched word 0.32 s.
CONTEXT_SPILL_SECONDS = 0.2


def in_window(start: float, end: float, seconds: float) -> bool:
    """Is a word (times from the start of the ASR input) in the window that begins at ``seconds``?

    Its middle is at or after the boundary, or it reaches :data:`CONTEXT_SPILL_SECONDS` past it.
    """
    return middle(start, end) >= seconds or end >= seconds + CONTEXT_SPILL_SECONDS


def words_after(segments: Sequence[AsrSegment], seconds: float) -> list[AsrSegment]:
    """What was heard from ``seconds`` on, moved back by it (drops a window's left context).

    A word belongs after the boundary when :func:`in_window` says so; a segment
    without word timing goes by its own middle.
    """
    out: list[AsrSegment] = []
    for seg in segments:
        if not seg.words:
            if middle(seg.start, seg.end) >= seconds:
                out.append(shifted(seg, -seconds))
            continue
        words = [w for w in seg.words if in_window(w.start, w.end, seconds)]
        if words:
            out.append(shifted(trimmed(seg, words), -seconds))
    return out


def keep_words(segments: Sequence[AsrSegment], count: int) -> list[AsrSegment]:
    """The first ``count`` words of a transcript, segments trimmed to them.

    A segment without word timing is left out: nobody can tell which side of the
    boundary it is on.
    """
    return split_words(segments, count)[0]


def split_words(segments: Sequence[AsrSegment], count: int) -> tuple[list[AsrSegment], list[AsrSegment]]:
    """A transcript split after its first ``count`` words (counted across segments).

    A segment holding the boundary is split in two. Segments without word timing
    go to the second part.
    """
    head: list[AsrSegment] = []
    tail: list[AsrSegment] = []
    left = count
    for seg in segments:
        if not seg.words:
            tail.append(seg)
            continue
        cut = max(0, min(len(seg.words), left))
        left -= cut
        if cut:
            head.append(trimmed(seg, seg.words[:cut]))
        if cut < len(seg.words):
            tail.append(trimmed(seg, seg.words[cut:]))
    return head, tail


def split_after(seg: AsrSegment, ends: Sequence[int]) -> list[AsrSegment]:
    """``seg`` split after each of its words whose index is in ``ends`` (sorted)."""
    out: list[AsrSegment] = []
    first = 0
    for end in ends:
        if first <= end < len(seg.words) - 1:
            out.append(trimmed(seg, seg.words[first : end + 1]))
            first = end + 1
    if not out:
        return [seg]
    out.append(trimmed(seg, seg.words[first:]))
    return out
