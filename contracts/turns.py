"""Speaker turns of a transcript: what people read, rather than Whisper's segment breaks.

A *turn* is a run of consecutive segments with one speaker: Whisper cuts a
sentence wherever its 30 s decoder or its timestamps break ("and so my fellow"
/ "Americans ask not ..."), and those cuts are not news to a reader. Text
exports, subtitle cues and the offline notes group segments with
:func:`speaker_turns`; the session page (``flowbot/static/session.js``,
``speakerTurns``) applies the same rule in the browser.

Interim text (``is_final`` false) continues the current turn: it has no
diarization of its own yet, so it is not a new speaker's line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from contracts.segments import TranscriptSegment

#: The label of a segment with no speaker (diarization off): one speaker.
DEFAULT_SPEAKER = "S1"


@dataclass(frozen=True)
class Turn:
    """Consecutive segments of one speaker, in order."""

    #: Display name (the label where the map has none).
    speaker: str
    segments: tuple[TranscriptSegment, ...]

    @property
    def start(self) -> float:
        """Start of the first segment on the session timeline."""
        return self.segments[0].start

    @property
    def end(self) -> float:
        """End of the last segment."""
        return max(s.end for s in self.segments)

    @property
    def text(self) -> str:
        """The segments' text joined with single spaces."""
        return " ".join(t for t in (" ".join(s.text.split()) for s in self.segments) if t)


def speaker_name(segment: TranscriptSegment, speakers: Mapping[str, str]) -> str:
    """A segment's speaker as a display name (labels without a name stay labels)."""
    label = segment.speaker or DEFAULT_SPEAKER
    return speakers.get(label, label)


def speaker_turns(segments: Sequence[TranscriptSegment], speakers: Mapping[str, str] | None = None) -> list[Turn]:
    """Group time-ordered segments into turns.

    A new turn starts where the speaker's display name changes (two labels
    renamed to one person are one speaker); an interim segment always joins
    the turn before it. Segments with no text are dropped.
    """
    names = speakers or {}
    groups: list[tuple[str, list[TranscriptSegment]]] = []
    for seg in segments:
        if not seg.text.strip():
            continue
        name = speaker_name(seg, names)
        if groups and (not seg.is_final or groups[-1][0] == name):
            groups[-1][1].append(seg)
        else:
            groups.append((name, [seg]))
    return [Turn(name, tuple(segs)) for name, segs in groups]
