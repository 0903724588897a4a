"""The terminal view ``flowbot follow`` draws, whichever source feeds it (see :mod:`flowbot.follow`).

A window's segments replace that window's previous ones wholesale. Interim
text is shown distinctly: on a terminal it is drawn dimmed at the bottom and
rewritten in place until the final text replaces it; otherwise interim lines
are printed marked ``(interim)`` and every final line exactly once.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

from contracts.segments import TranscriptSegment
from contracts.voices import NamingState

_DIM = "\x1b[2m"
_RESET = "\x1b[0m"


class FollowError(RuntimeError):
    """Following a session failed (unknown session, refused, or the feed stayed down)."""


def _clock(seconds: float) -> str:
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def _epoch(value: Any) -> float:
    """Epoch seconds of a number or an ISO time (Postgres ``timestamptz`` as PostgREST writes it)."""
    if isinstance(value, int | float):
        return float(value)
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return 0.0


@dataclass
class _Window:
    revision: int
    is_final: bool
    segments: list[TranscriptSegment] = field(default_factory=list)


class TranscriptRenderer:
    """Turns window updates into terminal output (see the module docstring)."""

    def __init__(self, out: TextIO, *, tty: bool | None = None) -> None:
        self.out = out
        self.tty = out.isatty() if tty is None else tty
        self.speakers: dict[str, str] = {}
        self.state: str | None = None
        self.notes: dict[str, Any] | None = None
        self._windows: dict[int, _Window] = {}
        self._printed_final: dict[tuple[int, int], str] = {}
        self._printed_interim: dict[tuple[int, int], str] = {}
        self._interim_lines = 0  # lines of the interim block drawn at the bottom (TTY)
        self._namings: dict[str, tuple[float, str, str]] = {}  # label -> (at, state, name) last shown

    # --- input ---------------------------------------------------------------

    def window(
        self,
        window_index: int,
        revision: int,
        is_final: bool,
        segments: Sequence[TranscriptSegment],
        speakers: Mapping[str, str] | None = None,
    ) -> bool:
        """Replace a window's segments; False (nothing drawn) if ``revision`` is not newer."""
        if speakers:
            self.speakers.update(speakers)
        known = self._windows.get(window_index)
        if known is not None and revision <= known.revision:
            return False
        ordered = sorted(segments, key=lambda s: s.segment_index)
        self._windows[window_index] = _Window(revision, is_final, ordered)
        self._draw(window_index)
        return True

    def segment(self, seg: TranscriptSegment) -> None:
        """One segment row changed (Realtime): merge it into its window until the window's
        own update replaces the window wholesale."""
        win = self._windows.get(seg.window_index)
        if win is None:
            win = self._windows[seg.window_index] = _Window(0, seg.is_final)
        if win.is_final and not seg.is_final:
            return  # a stale interim row never overrides final text
        win.segments = sorted(
            [s for s in win.segments if s.segment_index != seg.segment_index] + [seg],
            key=lambda s: s.segment_index,
        )
        win.is_final = win.is_final or seg.is_final
        self._draw(seg.window_index)

    def set_speakers(self, speakers: Mapping[str, str]) -> None:
        """Update display names (applies to lines printed from now on)."""
        self.speakers.update(speakers)

    def show_namings(self, session_id: str, namings: Mapping[str, Mapping[str, Any]]) -> None:
        """Speakers named by voice, and undone (the owner's: ``get_session``'s ``named_by_voice``
        or ``voice_namings`` rows): one line each time one changes.

        ``at`` (epoch seconds or ISO time) orders them: a change older than the one shown
        (a Realtime message arriving after the catch-up read that already had the next one)
        is not shown again.
        """
        lines = []
        for label, naming in sorted(namings.items()):
            at, state, name = _epoch(naming.get("at")), str(naming.get("state")), str(naming.get("name"))
            shown = self._namings.get(label)
            if shown is not None and (shown[0] > at or shown[1:] == (state, name)):
                continue
            self._namings[label] = (at, state, name)
            lines.append(_naming_line(session_id, label, name, state, float(naming.get("score") or 0.0)))
        if lines:
            self._permanent(lines)

    def show_state(self, view: Mapping[str, Any]) -> None:
        """A session state change."""
        state = str(view.get("state"))
        if state == self.state:
            return
        self.state = state
        reason = view.get("reason")
        self._permanent([f"-- session {state}" + (f": {reason}" if reason else "") + " --"])

    def show_notes(self, notes: Mapping[str, Any]) -> None:
        """The meeting notes, once written."""
        if self.notes == dict(notes):
            return
        self.notes = dict(notes)
        lines = ["-- notes --"]
        for key, value in notes.items():
            if isinstance(value, list):
                lines.append(f"{key}:")
                lines += [f"  - {v if isinstance(v, str) else json.dumps(v)}" for v in value]
            else:
                lines.append(f"{key}: {value if isinstance(value, str) else json.dumps(value)}")
        self._permanent(lines)

    def close(self) -> None:
        """Leave the terminal tidy (interim block stays as the last thing shown)."""
        self.out.flush()

    # --- output --------------------------------------------------------------

    def _line(self, seg: TranscriptSegment) -> str:
        who = self.speakers.get(seg.speaker, seg.speaker) if seg.speaker else None
        head = f"[{_clock(seg.start)}]"
        return f"{head} {who}: {seg.text.strip()}" if who else f"{head} {seg.text.strip()}"

    def _draw(self, window_index: int) -> None:
        win = self._windows[window_index]
        new_final = self._new_final_lines(window_index, win) if win.is_final else []
        new_interim = self._new_interim_lines(window_index, win) if not (win.is_final or self.tty) else []
        if self.tty:
            self._redraw_tty(new_final)
        else:
            for line in new_final + new_interim:
                self.out.write(line + "\n")
        self.out.flush()

    def _new_final_lines(self, window_index: int, win: _Window) -> list[str]:
        """Final lines not printed yet (or printed with other text: marked revised); the interim ones go."""
        lines = []
        for seg in win.segments:
            line = self._line(seg)
            previous = self._printed_final.get((window_index, seg.segment_index))
            if previous == line:
                continue
            self._printed_final[(window_index, seg.segment_index)] = line
            lines.append(line if previous is None else f"{line} (revised)")
        for key in [k for k in self._printed_interim if k[0] == window_index]:
            del self._printed_interim[key]
        return lines

    def _new_interim_lines(self, window_index: int, win: _Window) -> list[str]:
        """Interim lines whose text changed, marked (not on a terminal, which redraws them in place)."""
        lines = []
        for seg in win.segments:
            line = self._line(seg)
            key = (window_index, seg.segment_index)
            if self._printed_interim.get(key) != line:
                self._printed_interim[key] = line
                lines.append(f"~ {line} (interim)")
        return lines

    def _permanent(self, lines: list[str]) -> None:
        if self.tty:
            self._redraw_tty(lines)
        else:
            for line in lines:
                self.out.write(line + "\n")
        self.out.flush()

    def _redraw_tty(self, permanent: list[str]) -> None:
        # Erase the interim block, print what is now permanent, then draw the
        # interim text of every open window again (truncated to one row each so
        # the block's height is known and can be erased next time).
        if self._interim_lines:
            self.out.write(f"\x1b[{self._interim_lines}F\x1b[J")
        for line in permanent:
            self.out.write(line + "\n")
        width = max(20, shutil.get_terminal_size((100, 24)).columns - 1)
        interim = [
            self._line(seg)
            for idx in sorted(self._windows)
            if not self._windows[idx].is_final
            for seg in self._windows[idx].segments
        ]
        for line in interim:
            text = line if len(line) <= width else line[: width - 1] + "…"
            self.out.write(f"{_DIM}{text}{_RESET}\n")
        self._interim_lines = len(interim)


def _naming_line(session_id: str, label: str, name: str, state: str, score: float) -> str:
    """The line that tells the owner of a name given by voice, or of its undoing."""
    if state == NamingState.NAMED:
        undo = f"flowbot voices undo {session_id} {label}"
        return f"-- {label} named {name} by voice (score {score:.2f}); undo: {undo} --"
    return f"-- {label}: the name {name} given by voice (score {score:.2f}) was undone --"
