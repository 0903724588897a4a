"""Meeting notes contract v2: what the end-of-session workflow writes and every viewer reads.

Every notes generator (the offline extractive one and each language-model
provider) returns this one shape; stores keep it as JSON (SQLite ``notes``,
Supabase ``meeting_notes.notes``) and pages, ``flowbot transcript`` and
``flowbot follow`` render it. The JSON is self-describing: ``version`` names
the shape, ``generator`` says what wrote it, ``fallback_reason`` says why a
configured language model did not (``null`` when nothing failed).

- ``decisions[]`` and ``action_items[]`` carry ``start``, the transcript time
  (seconds on the session timeline) of the line they come from, so a viewer
  can link each one back to the transcript.
- Names are speaker *display names* (after ``rename_speaker``); ``speakers``
  is the label -> name map the notes were written with, so a later rename can
  be applied to stored notes (:meth:`MeetingNotes.renamed`).
- Version 1 (no ``version`` key: decisions were plain strings) is read and
  upgraded; any other unknown version is rejected.

``contracts/golden/notes_v2.json`` is the documented example.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

NOTES_VERSION = 2
OFFLINE_GENERATOR = "offline-extractive-v1"

# Bounds on what a stored note may hold: a generator that exceeds them is
# producing something other than notes (a loop, an injected payload).
MAX_TEXT_CHARS = 1000
MAX_NAME_CHARS = 120
MAX_SUMMARY_ITEMS = 30
MAX_ITEMS = 200

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u2029]")


class InvalidNotes(ValueError):
    """A notes document does not have the contract's shape (names the field)."""


def clean_text(value: str, limit: int = MAX_TEXT_CHARS) -> str:
    """One line of plain text: control characters out, whitespace collapsed, at most ``limit`` chars."""
    text = " ".join(_CONTROL.sub(" ", value).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


@dataclass(frozen=True)
class Decision:
    """Something the meeting agreed on, with the time of the line it comes from."""

    text: str
    start: float | None
    #: Display name of who stated it ("" when not known).
    speaker: str = ""


@dataclass(frozen=True)
class ActionItem:
    """Something someone is to do: the owner's display name and the time it was said."""

    owner: str
    text: str
    start: float | None


@dataclass(frozen=True)
class Usage:
    """What a language-model generator spent (``None`` for the offline generator)."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class MeetingNotes:
    """The notes written at the end of a session (contract v2)."""

    summary: list[str] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    action_items: list[ActionItem] = field(default_factory=list)
    talk_time: dict[str, float] = field(default_factory=dict)
    duration: float = 0.0
    generator: str = OFFLINE_GENERATOR
    #: Why the configured generator's notes were not used (``None``: they were, or none was configured).
    fallback_reason: str | None = None
    #: Speaker label -> display name used when the notes were written.
    speakers: dict[str, str] = field(default_factory=dict)
    usage: Usage | None = None
    version: int = NOTES_VERSION

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``contracts/golden/notes_v2.json`` shows it)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MeetingNotes:
        """Validate and read a notes document (v2, or v1 upgraded); raises :class:`InvalidNotes`."""
        if not isinstance(data, Mapping):
            raise InvalidNotes(f"notes must be a JSON object, got {type(data).__name__}")
        version = data.get("version", 1)
        if version == 1:
            return _from_v1(data)
        if version != NOTES_VERSION:
            raise InvalidNotes(f"unsupported meeting notes version {version!r}")
        usage = data.get("usage")
        return cls(
            summary=[_str(s, "summary[]") for s in _list(data, "summary", MAX_SUMMARY_ITEMS)],
            decisions=[
                Decision(
                    text=_str(_obj(d, "decisions[]").get("text"), "decisions[].text"),
                    start=_time(d.get("start"), "decisions[].start"),
                    speaker=_str(d.get("speaker", ""), "decisions[].speaker", MAX_NAME_CHARS),
                )
                for d in _list(data, "decisions", MAX_ITEMS)
            ],
            action_items=[
                ActionItem(
                    owner=_str(_obj(a, "action_items[]").get("owner"), "action_items[].owner", MAX_NAME_CHARS),
                    text=_str(a.get("text"), "action_items[].text"),
                    start=_time(a.get("start"), "action_items[].start"),
                )
                for a in _list(data, "action_items", MAX_ITEMS)
            ],
            talk_time=_talk_time(data.get("talk_time", {})),
            duration=_seconds(data.get("duration", 0.0), "duration"),
            generator=_str(data.get("generator"), "generator", MAX_NAME_CHARS),
            fallback_reason=None
            if data.get("fallback_reason") is None
            else _str(data["fallback_reason"], "fallback_reason"),
            speakers=_names(data.get("speakers", {})),
            usage=None if usage is None else _usage(usage),
        )

    def renamed(self, speakers: Mapping[str, str]) -> MeetingNotes:
        """The same notes with names re-resolved after a ``rename_speaker`` (label -> new name)."""
        old_to_new = {old: speakers[label] for label, old in self.speakers.items() if label in speakers}
        if not old_to_new:
            return self

        def swap(name: str) -> str:
            return old_to_new.get(name, name)

        talk: dict[str, float] = {}
        for name, sec in self.talk_time.items():
            talk[swap(name)] = round(talk.get(swap(name), 0.0) + sec, 2)
        return replace(
            self,
            decisions=[replace(d, speaker=swap(d.speaker)) for d in self.decisions],
            action_items=[replace(a, owner=swap(a.owner)) for a in self.action_items],
            talk_time=talk,
            speakers={**self.speakers, **{k: v for k, v in speakers.items() if k in self.speakers}},
        )

    def to_markdown(self) -> str:
        """The notes as people read them: each decision and action item starts with its transcript
        time; an empty section says so. Machine fields (generator, fallback reason, usage,
        version, the speakers map) are left to the JSON."""
        lines = ["## Summary", *[f"- {s}" for s in self.summary or ["Nothing to summarize."]]]
        lines += ["", "## Decisions"]
        lines += [f"- {_at(d.start)}{d.text}" + (f" ({d.speaker})" if d.speaker else "") for d in self.decisions] or [
            "- None found."
        ]
        lines += ["", "## Action items"]
        lines += [f"- {_at(a.start)}[{a.owner or 'unassigned'}] {a.text}" for a in self.action_items] or [
            "- None found."
        ]
        lines += ["", "## Talk time"]
        total = sum(self.talk_time.values()) or 1.0
        lines += [
            f"- {spk}: {sec:.0f} s ({100 * sec / total:.0f}%)"
            for spk, sec in sorted(self.talk_time.items(), key=lambda kv: -kv[1])
        ] or ["- Nobody spoke."]
        return "\n".join(lines) + "\n"


def clock(seconds: float) -> str:
    """``mm:ss`` (``h:mm:ss`` from an hour on): how notes and prompts show transcript times."""
    total = max(0, int(seconds))
    h, rem = divmod(total, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def _at(start: float | None) -> str:
    return "" if start is None else f"[{clock(start)}] "


def _from_v1(data: Mapping[str, Any]) -> MeetingNotes:
    """v1 (before the contract was versioned): decisions were ``"sentence (Speaker)"`` strings."""
    decisions = []
    for d in _list(data, "decisions", MAX_ITEMS):
        text = _str(d, "decisions[]")
        m = re.fullmatch(r"(.*) \(([^()]{1,120})\)", text)
        decisions.append(Decision(m.group(1), None, m.group(2)) if m else Decision(text, None))
    return MeetingNotes(
        summary=[_str(s, "summary[]") for s in _list(data, "summary", MAX_SUMMARY_ITEMS)],
        decisions=decisions,
        action_items=[
            ActionItem(
                owner=_str(_obj(a, "action_items[]").get("owner"), "action_items[].owner", MAX_NAME_CHARS),
                text=_str(a.get("text"), "action_items[].text"),
                start=_time(a.get("start"), "action_items[].start"),
            )
            for a in _list(data, "action_items", MAX_ITEMS)
        ],
        talk_time=_talk_time(data.get("talk_time", {})),
        duration=_seconds(data.get("duration", 0.0), "duration"),
        generator=_str(data.get("generator") or OFFLINE_GENERATOR, "generator", MAX_NAME_CHARS),
    )


def _list(data: Mapping[str, Any], key: str, limit: int) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise InvalidNotes(f"{key} must be a list, got {type(value).__name__}")
    if len(value) > limit:
        raise InvalidNotes(f"{key} has {len(value)} entries (at most {limit})")
    return value


def _obj(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidNotes(f"{where} must be an object, got {type(value).__name__}")
    return value


def _str(value: Any, where: str, limit: int = MAX_TEXT_CHARS) -> str:
    if not isinstance(value, str):
        raise InvalidNotes(f"{where} must be a string, got {type(value).__name__}")
    if len(value) > limit:
        raise InvalidNotes(f"{where} is {len(value)} characters (at most {limit})")
    return value


def _seconds(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise InvalidNotes(f"{where} must be a non-negative number of seconds, got {value!r}")
    return float(value)


def _time(value: Any, where: str) -> float | None:
    return None if value is None else _seconds(value, where)


def _talk_time(value: Any) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise InvalidNotes("talk_time must be an object of name -> seconds")
    return {_str(k, "talk_time key", MAX_NAME_CHARS): _seconds(v, f"talk_time[{k!r}]") for k, v in value.items()}


def _names(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise InvalidNotes("speakers must be an object of label -> name")
    return {_str(k, "speakers key", MAX_NAME_CHARS): _str(v, "speakers[]", MAX_NAME_CHARS) for k, v in value.items()}


def _usage(value: Any) -> Usage:
    u = _obj(value, "usage")
    ints = {}
    for key in ("calls", "input_tokens", "output_tokens"):
        v = u.get(key, 0)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise InvalidNotes(f"usage.{key} must be a non-negative integer, got {v!r}")
        ints[key] = v
    return Usage(**ints, seconds=_seconds(u.get("seconds", 0.0), "usage.seconds"))
