"""RTTM (NIST Rich Transcription Time Marked) export and import.

One line per speaker turn::

    SPEAKER <uri> 1 <onset> <duration> <NA> <NA> <speaker> <NA> <NA>

:func:`segments_to_rttm` turns a session's final transcript into RTTM (what
``flowbot export --format rttm`` writes); :func:`parse_rttm` reads reference
files such as pyannote's ``sample.rttm`` for DER checks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from contracts.segments import SpeakerTurn, TranscriptSegment, WindowRecord

UNKNOWN_SPEAKER = "unknown"
_SPACE = re.compile(r"\s+")


class RttmError(ValueError):
    """An RTTM line cannot be parsed (the message names the line)."""


@dataclass(frozen=True, slots=True)
class RttmTurn:
    """One ``SPEAKER`` line: a speaker talking from ``start`` to ``end`` seconds."""

    uri: str
    start: float
    end: float
    speaker: str
    channel: str = "1"

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.end - self.start

    def line(self) -> str:
        """This turn as an RTTM line (no newline)."""
        return (
            f"SPEAKER {_token(self.uri)} {self.channel} {self.start:.3f} {self.duration:.3f} "
            f"<NA> <NA> {_token(self.speaker)} <NA> <NA>"
        )


def _token(value: str) -> str:
    """RTTM fields are whitespace-separated: spaces inside a name become underscores."""
    return _SPACE.sub("_", value.strip()) or UNKNOWN_SPEAKER


def segment_turns(segments: Iterable[TranscriptSegment]) -> list[tuple[float, float, str]]:
    """Speaker turns of final segments: runs of same-speaker words, else whole segments."""
    turns: list[tuple[float, float, str]] = []
    for seg in segments:
        if not seg.is_final:
            continue
        if not seg.words:
            if seg.end > seg.start:
                turns.append((seg.start, seg.end, seg.speaker or UNKNOWN_SPEAKER))
            continue
        run_start, run_end = seg.words[0].start, seg.words[0].end
        run_spk = seg.words[0].speaker or seg.speaker or UNKNOWN_SPEAKER
        for w in seg.words[1:]:
            spk = w.speaker or seg.speaker or UNKNOWN_SPEAKER
            if spk != run_spk:
                turns.append((run_start, run_end, run_spk))
                run_start, run_spk = w.start, spk
            run_end = max(run_end, w.end)
        turns.append((run_start, run_end, run_spk))
    return [t for t in turns if t[1] > t[0]]


def window_turns(windows: Iterable[WindowRecord]) -> list[SpeakerTurn]:
    """The diarizer's turns of a session's committed windows, in time order."""
    return sorted((t for w in windows for t in w.turns), key=lambda t: (t.start, t.end, t.speaker))


def merge_turns(turns: Sequence[tuple[float, float, str]], max_gap: float) -> list[tuple[float, float, str]]:
    """Sort turns and join consecutive ones of one speaker separated by <= ``max_gap`` s."""
    out: list[tuple[float, float, str]] = []
    for start, end, spk in sorted(turns):
        if out and out[-1][2] == spk and start - out[-1][1] <= max_gap:
            out[-1] = (out[-1][0], max(out[-1][1], end), spk)
        else:
            out.append((start, end, spk))
    return out


def segments_to_rttm(
    session_id: str,
    segments: Iterable[TranscriptSegment],
    *,
    turns: Iterable[SpeakerTurn] = (),
    max_gap: float = 0.5,
) -> str:
    """Standard RTTM of a session.

    With ``turns`` (the diarizer's, stored with each window:
    :attr:`contracts.segments.WindowRecord.turns`) those are exported, touching
    turns of one speaker joined: they cover the pauses between words and
    overlapping speech, which word spans cannot (on pyannote's sample, turns
    made from words missed 18 % of the speech). Without them (diarization off,
    sessions written before windows kept turns), turns are made from the final
    segments' words: interim segments are skipped, and turns of one speaker
    less than ``max_gap`` seconds apart are merged (Whisper leaves small gaps
    between words).
    """
    diarized = [(t.start, t.end, t.speaker) for t in turns if t.end > t.start]
    merged = merge_turns(diarized, 0.0) if diarized else merge_turns(segment_turns(segments), max_gap)
    lines = [RttmTurn(session_id, start, end, spk).line() for start, end, spk in merged]
    return "".join(line + "\n" for line in lines)


def parse_rttm(text: str) -> list[RttmTurn]:
    """``SPEAKER`` lines of an RTTM document; other record types and comments are skipped."""
    turns: list[RttmTurn] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith((";;", "#")):
            continue
        fields = line.split()
        if fields[0] != "SPEAKER":
            continue
        if len(fields) < 8:
            raise RttmError(f"line {number}: expected at least 8 fields, got {len(fields)}: {raw!r}")
        try:
            onset, duration = float(fields[3]), float(fields[4])
        except ValueError:
            raise RttmError(f"line {number}: onset/duration are not numbers: {raw!r}") from None
        if onset < 0 or duration < 0:
            raise RttmError(f"line {number}: negative onset or duration: {raw!r}")
        turns.append(RttmTurn(fields[1], onset, onset + duration, fields[7], fields[2]))
    return turns


def read_rttm(path: str | Path) -> list[RttmTurn]:
    """Parse an RTTM file."""
    return parse_rttm(Path(path).read_text(encoding="utf-8"))


def by_uri(turns: Iterable[RttmTurn]) -> dict[str, list[RttmTurn]]:
    """Group turns per recording."""
    out: dict[str, list[RttmTurn]] = {}
    for t in turns:
        out.setdefault(t.uri, []).append(t)
    return out
