"""Transcript output formats: text, json, srt, vtt, rttm.

:data:`FORMATS` is the one table of them: name, media type, file extension and
renderer. The CLI's ``--format``, the web front's downloads and its session
page all read it, so a new format is one renderer and one row here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from contracts.notes import InvalidNotes, MeetingNotes
from contracts.segments import SpeakerTurn, TranscriptSegment


@dataclass(frozen=True)
class Transcript:
    """What a renderer gets: one session's segments with everything shown beside them."""

    session_id: str
    segments: Sequence[TranscriptSegment]
    speakers: Mapping[str, str]
    notes: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] | None = None
    turns: Sequence[SpeakerTurn] = ()


def _ts(seconds: float, sep: str) -> str:
    ms = round(seconds * 1000)
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _name(seg: TranscriptSegment, speakers: Mapping[str, str]) -> str:
    label = seg.speaker or "S1"
    return speakers.get(label, label)


def _notes_text(notes: Mapping[str, Any] | None, speakers: Mapping[str, str]) -> str:
    """Notes under the transcript, names as they are now (a rename after the notes applies)."""
    if not notes:
        return ""
    try:
        parsed = MeetingNotes.from_dict(notes)
    except InvalidNotes as exc:
        # Stored notes that are not the contract's shape are reported, never half-printed.
        return f"\n## Notes\n(stored notes are unreadable: {exc})\n"
    return "\n" + parsed.renamed(speakers).to_markdown()


def _json(t: Transcript) -> str:
    data: dict[str, Any] = {
        "session_id": t.session_id,
        "segments": [{**s.to_dict(), "speaker_name": _name(s, t.speakers)} for s in t.segments],
        "speakers": dict(t.speakers),
        "notes": t.notes,
    }
    if t.extra:
        data.update(t.extra)
    return json.dumps(data, indent=2) + "\n"


def _text(t: Transcript) -> str:
    # One line per speaker turn: Whisper's segment breaks inside a turn are not news.
    lines: list[str] = []
    prev: TranscriptSegment | None = None
    for s in t.segments:
        if prev is not None and _name(prev, t.speakers) == _name(s, t.speakers) and s.start - prev.end < 1.5:
            lines[-1] += " " + s.text
        else:
            lines.append(f"[{_ts(s.start, '.')[:-4]}] {_name(s, t.speakers)}: {s.text}")
        prev = s
    text = "\n".join(lines) + ("\n" if lines else "")
    return text + _notes_text(t.notes, t.speakers)


def _srt(t: Transcript) -> str:
    out: list[str] = []
    for i, s in enumerate(t.segments, 1):
        out += [str(i), f"{_ts(s.start, ',')} --> {_ts(s.end, ',')}", f"{_name(s, t.speakers)}: {s.text}", ""]
    return "\n".join(out)


def _vtt(t: Transcript) -> str:
    out = ["WEBVTT", ""]
    for s in t.segments:
        out += [f"{_ts(s.start, '.')} --> {_ts(s.end, '.')}", f"<v {_name(s, t.speakers)}>{s.text}", ""]
    return "\n".join(out)


def _rttm(t: Transcript) -> str:
    from processor.rttm import segments_to_rttm

    # Speaker turns from the diarizer when stored; word spans otherwise.
    return segments_to_rttm(t.session_id, t.segments, turns=t.turns)


@dataclass(frozen=True)
class Format:
    """One output format."""

    media_type: str
    extension: str
    render: Callable[[Transcript], str]


#: Every format by name (the first is the CLI's default).
FORMATS: dict[str, Format] = {
    "text": Format("text/plain; charset=utf-8", "txt", _text),
    "json": Format("application/json", "json", _json),
    "srt": Format("application/x-subrip; charset=utf-8", "srt", _srt),
    "vtt": Format("text/vtt; charset=utf-8", "vtt", _vtt),
    "rttm": Format("text/plain; charset=utf-8", "rttm", _rttm),
}


def render(
    fmt: str,
    session_id: str,
    segments: Sequence[TranscriptSegment],
    speakers: Mapping[str, str],
    notes: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    turns: Sequence[SpeakerTurn] = (),
) -> str:
    """Render a transcript; speaker labels are shown with their display names.

    ``turns`` are the diarizer's speaker turns (see :func:`processor.rttm.window_turns`);
    only ``rttm`` uses them, and falls back to word spans without them. ``text``
    puts the meeting notes (``contracts.notes``) under the transcript; ``json``
    carries them as stored.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    return FORMATS[fmt].render(Transcript(session_id, segments, speakers, notes, extra, turns))
