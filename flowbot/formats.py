"""Transcript output formats: text, json, srt, vtt, rttm."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from contracts.notes import InvalidNotes, MeetingNotes
from contracts.segments import SpeakerTurn, TranscriptSegment

FORMATS = ("text", "json", "srt", "vtt", "rttm")


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
    if fmt == "json":
        data: dict[str, Any] = {
            "session_id": session_id,
            "segments": [{**s.to_dict(), "speaker_name": _name(s, speakers)} for s in segments],
            "speakers": dict(speakers),
            "notes": notes,
        }
        if extra:
            data.update(extra)
        return json.dumps(data, indent=2) + "\n"
    if fmt == "text":
        # One line per speaker turn: Whisper's segment breaks inside a turn are not news.
        lines: list[str] = []
        prev: TranscriptSegment | None = None
        for s in segments:
            if prev is not None and _name(prev, speakers) == _name(s, speakers) and s.start - prev.end < 1.5:
                lines[-1] += " " + s.text
            else:
                lines.append(f"[{_ts(s.start, '.')[:-4]}] {_name(s, speakers)}: {s.text}")
            prev = s
        text = "\n".join(lines) + ("\n" if lines else "")
        return text + _notes_text(notes, speakers)
    if fmt in ("srt", "vtt"):
        out = ["WEBVTT", ""] if fmt == "vtt" else []
        sep = "." if fmt == "vtt" else ","
        for i, s in enumerate(segments, 1):
            if fmt == "srt":
                out.append(str(i))
            out.append(f"{_ts(s.start, sep)} --> {_ts(s.end, sep)}")
            out.append(f"<v {_name(s, speakers)}>{s.text}" if fmt == "vtt" else f"{_name(s, speakers)}: {s.text}")
            out.append("")
        return "\n".join(out)
    if fmt == "rttm":
        from processor.rttm import segments_to_rttm

        return segments_to_rttm(session_id, segments, turns=turns)
    raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
