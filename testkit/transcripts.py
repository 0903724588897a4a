"""Transcripts for notes tests and ``bench/notes.py``: the flite planning meeting as segments."""

from __future__ import annotations

from contracts.segments import TranscriptSegment, Word
from testkit.speech import MEETING

#: Display names of the meeting's three speakers.
NAMES = {"S1": "Ann", "S2": "Bob", "S3": "Cy"}


def meeting_segments(repeat: int = 1, session_id: str = "s") -> list[TranscriptSegment]:
    """The planning meeting of ``testkit.speech`` as transcript segments (0.4 s a word, 1 s pauses).

    ``repeat`` plays the agenda that many times in a row (a longer meeting for map-reduce).
    """
    out, t, i = [], 0.0, 0
    for _ in range(repeat):
        for who, text in MEETING:
            dur = len(text.split()) * 0.4
            words = tuple(
                Word(t + k * 0.4, t + k * 0.4 + 0.35, " " + w, 0.9, f"S{who + 1}") for k, w in enumerate(text.split())
            )
            out.append(TranscriptSegment(session_id, i // 5, i % 5, t, t + dur, text, f"S{who + 1}", words))
            t += dur + 1
            i += 1
    return out
