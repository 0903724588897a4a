"""Transcript output formats: text, json, srt, vtt, rttm.

:data:`FORMATS` is the one table of them: name, media type, file extension and
renderer. The CLI's ``--format``, the web front's downloads and its session
page all read it, so a new format is one renderer and one row here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from contracts.notes import InvalidNotes, MeetingNotes
from contracts.segments import SpeakerTurn, TranscriptSegment
from contracts.turns import Turn, speaker_name, speaker_turns


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
        "segments": [{**s.to_dict(), "speaker_name": speaker_name(s, t.speakers)} for s in t.segments],
        "speakers": dict(t.speakers),
        "notes": t.notes,
    }
    if t.extra:
        data.update(t.extra)
    return json.dumps(data, indent=2) + "\n"


def _text(t: Transcript) -> str:
    # One line per speaker turn: Whisper's segment breaks inside a turn are not news.
    lines = [
        f"[{_ts(turn.start, '.')[:-4]}] {turn.speaker}: {turn.text}" for turn in speaker_turns(t.segments, t.speakers)
    ]
    text = "\n".join(lines) + ("\n" if lines else "")
    return text + _notes_text(t.notes, t.speakers)


# Subtitle cues as players and broadcasters expect them: the Netflix Timed Text Style Guide
# (General Requirements; English) allows at most 42 characters per line, 2 lines and 7 s per
# subtitle event, and at least 5/6 s. A pause longer than CUE_PAUSE_S also ends a cue, so text
# is not on screen over silence, and a cue never spans two speakers.
CUE_LINE_CHARS = 42
CUE_LINES = 2
CUE_MAX_S = 7.0
CUE_MIN_S = 5 / 6
CUE_PAUSE_S = 1.5


@dataclass(frozen=True)
class Cue:
    """One subtitle event: its time, speaker, and text already wrapped into at most two lines."""

    start: float
    end: float
    speaker: str
    lines: tuple[str, ...]
    #: The first cue of a speaker turn (SRT names the speaker there).
    first: bool


def _timed_words(seg: TranscriptSegment) -> list[tuple[float, float, str]]:
    """A segment's words with times; text without word timings is spread evenly over the segment."""
    timed = [(w.start, w.end, w.text.strip()) for w in seg.words if w.text.strip()]
    if timed:
        return timed
    words = seg.text.split()
    step = (seg.end - seg.start) / max(1, len(words))
    return [(seg.start + i * step, seg.start + (i + 1) * step, w) for i, w in enumerate(words)]


def wrap_lines(words: Sequence[str], width: int = CUE_LINE_CHARS) -> list[str]:
    """Words into as few lines of at most ``width`` characters as greedy filling gives, then
    two lines balanced (the break that makes the longer line shortest); a word longer than
    ``width`` gets a line of its own."""
    lines: list[str] = []
    for w in words:
        if lines and len(lines[-1]) + 1 + len(w) <= width:
            lines[-1] += " " + w
        else:
            lines.append(w)
    if len(lines) == 2:
        splits = [[" ".join(words[:i]), " ".join(words[i:])] for i in range(1, len(words))]
        fits = [pair for pair in splits if max(map(len, pair)) <= width]
        if fits:
            lines = min(fits, key=lambda pair: max(map(len, pair)))
    return lines


def _turn_cues(turn: Turn, prefix: str) -> list[Cue]:
    """One turn's words cut into cues; ``prefix`` (``Name:`` or "") leads the first cue's text."""
    groups: list[list[tuple[float, float, str]]] = []

    def shown(words: Sequence[tuple[float, float, str]], first: bool) -> list[str]:
        return ([prefix] if first and prefix else []) + [w for _, _, w in words]

    for word in (w for seg in turn.segments for w in _timed_words(seg)):
        group = groups[-1] if groups else []
        if (
            not group
            or len(wrap_lines(shown([*group, word], len(groups) == 1))) > CUE_LINES
            or word[1] - group[0][0] > CUE_MAX_S
            or word[0] - group[-1][1] > CUE_PAUSE_S
        ):
            groups.append([word])
        else:
            group.append(word)
    return [
        Cue(g[0][0], g[-1][1], turn.speaker, tuple(wrap_lines(shown(g, i == 0))), i == 0) for i, g in enumerate(groups)
    ]


def subtitle_cues(turns: Sequence[Turn], *, name_first_cue: bool) -> list[Cue]:
    """Cues of every turn within the line, duration and pause limits above.

    ``name_first_cue``: the first cue of each turn starts with ``Name:`` (SRT has no
    speaker markup), so that prefix counts against the line width.
    """
    cues = [c for turn in turns for c in _turn_cues(turn, f"{turn.speaker}:" if name_first_cue else "")]
    cues.sort(key=lambda c: c.start)
    # At least CUE_MIN_S on screen where the next cue leaves room (never cut short: overlapping
    # speech gives overlapping cues, which players stack).
    for i, cue in enumerate(cues):
        following = cues[i + 1].start if i + 1 < len(cues) else math.inf
        cues[i] = replace(cue, end=max(cue.end, min(cue.start + CUE_MIN_S, following)))
    return cues


def _srt(t: Transcript) -> str:
    out: list[str] = []
    for i, cue in enumerate(subtitle_cues(speaker_turns(t.segments, t.speakers), name_first_cue=True), 1):
        out += [str(i), f"{_ts(cue.start, ',')} --> {_ts(cue.end, ',')}", *cue.lines, ""]
    return "\n".join(out)


def _vtt(t: Transcript) -> str:
    out = ["WEBVTT", ""]
    for cue in subtitle_cues(speaker_turns(t.segments, t.speakers), name_first_cue=False):
        # The voice span is markup, not shown text: it names the speaker of every cue.
        text = "\n".join(_vtt_escape(line) for line in cue.lines)
        out += [f"{_ts(cue.start, '.')} --> {_ts(cue.end, '.')}", f"<v {_vtt_escape(cue.speaker)}>{text}", ""]
    return "\n".join(out)


def _vtt_escape(text: str) -> str:
    # WebVTT cue text: "&", "<" and ">" are markup, and "-->" would end the cue timing.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


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
