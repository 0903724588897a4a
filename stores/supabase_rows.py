"""Transcript records to and from the JSON that PostgREST and the ``flowbot_*`` functions speak.

Both directions of each record live here, side by side, so what a commit writes
and what a read gives back cannot drift apart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from contracts.frames import SAMPLE_RATE
from contracts.segments import SpeakerTurn, TranscriptSegment, WindowRecord, WindowSpeaker, WindowStatus
from stores.base import PermanentStoreError, SearchHit, SessionProgress, WindowChange

#: The ``transcript_windows`` columns a :class:`WindowRecord` is read from.
WINDOW_COLUMNS = (
    "session_id,window_index,start_sample,end_sample,status,error,audio_uri,turns,dropped_segments,speakers"
)


def _check_finite(seg: TranscriptSegment) -> None:
    values = [("start", seg.start), ("end", seg.end)]
    if seg.avg_logprob is not None:
        values.append(("avg_logprob", seg.avg_logprob))
    values += [(f"words[{i}].start", w.start) for i, w in enumerate(seg.words)]
    values += [(f"words[{i}].end", w.end) for i, w in enumerate(seg.words)]
    for name, value in values:
        if not math.isfinite(value):
            raise PermanentStoreError(f"segment {seg.key} has non-finite {name}={value}; JSON cannot carry it")


def segment_json(seg: TranscriptSegment) -> dict[str, Any]:
    """A segment as a ``transcript_segments`` row (refused when JSON cannot carry a value)."""
    _check_finite(seg)
    data = seg.to_dict()
    data.pop("version", None)
    return data


def segment_from_row(row: dict[str, Any]) -> TranscriptSegment:
    """A segment from a ``transcript_segments`` row."""
    return TranscriptSegment.from_dict(row)


def check_window(window: WindowRecord, segments: Sequence[TranscriptSegment], progress: SessionProgress) -> None:
    """Refuse a commit whose segments or progress belong to another window, or an unknown status."""
    sid, idx = window.session_id, window.window_index
    for s in segments:
        if (s.session_id, s.window_index) != (sid, idx):
            raise PermanentStoreError(f"segment {s.key} is not in window ({sid!r}, {idx})")
    if progress.session_id != sid:
        raise PermanentStoreError(f"progress of {progress.session_id!r} given for {sid!r}")
    if window.status not in tuple(WindowStatus):
        raise PermanentStoreError(f"window status {window.status!r} is not one of {', '.join(WindowStatus)}")


def window_json(window: WindowRecord) -> dict[str, Any]:
    """A window as a ``transcript_windows`` row (``flowbot_commit_window``'s ``p_window``)."""
    return {
        "session_id": window.session_id,
        "window_index": window.window_index,
        "start_sample": window.start_sample,
        "end_sample": window.end_sample,
        "status": window.status,
        "error": window.error,
        "audio_uri": window.audio_uri,
        "turns": [t.to_dict() for t in window.turns],
        "dropped_segments": window.dropped_segments,
        "speakers": [spk.to_dict() for spk in window.speakers],
    }


def commit_params(
    window: WindowRecord, segments: Sequence[TranscriptSegment], progress: SessionProgress
) -> dict[str, Any]:
    """``flowbot_commit_window``'s arguments, once the window, its segments and progress agree."""
    check_window(window, segments, progress)
    return {
        "p_window": window_json(window),
        "p_segments": [segment_json(s) for s in segments],
        "p_progress": progress_json(progress),
    }


def window_from_row(row: dict[str, Any]) -> WindowRecord:
    """A window from a ``transcript_windows`` row (the :data:`WINDOW_COLUMNS`)."""
    return WindowRecord(
        **{
            **row,
            "status": WindowStatus(row["status"]),
            "turns": tuple(SpeakerTurn.from_dict(t) for t in row.get("turns") or ()),
            "speakers": tuple(WindowSpeaker.from_dict(s) for s in row.get("speakers") or ()),
        }
    )


def interim_params(session_id: str, window_index: int, segments: Sequence[TranscriptSegment]) -> dict[str, Any]:
    """``flowbot_put_interim``'s arguments (segments checked to be in the window)."""
    for s in segments:
        if (s.session_id, s.window_index) != (session_id, window_index):
            raise PermanentStoreError(f"segment {s.key} is not in window ({session_id!r}, {window_index})")
    return {
        "p_session_id": session_id,
        "p_window_index": window_index,
        "p_start_sample": int(segments[0].start * SAMPLE_RATE) if segments else 0,
        "p_end_sample": int(segments[-1].end * SAMPLE_RATE) if segments else 0,
        "p_segments": [segment_json(s) for s in segments],
    }


def relabelled_segment_json(s: TranscriptSegment) -> dict[str, Any]:
    """The columns ``flowbot_relabel_speakers`` rewrites in a relabelled segment."""
    return {
        "window_index": s.window_index,
        "segment_index": s.segment_index,
        "speaker": s.speaker,
        "words": [w.to_dict() for w in s.words],
    }


def relabelled_window_json(w: WindowRecord) -> dict[str, Any]:
    """The columns ``flowbot_relabel_speakers`` rewrites in a relabelled window."""
    return {
        "window_index": w.window_index,
        "turns": [t.to_dict() for t in w.turns],
        "speakers": [spk.to_dict() for spk in w.speakers],
    }


def progress_json(p: SessionProgress) -> dict[str, Any]:
    """Progress as a ``session_progress`` row."""
    return {
        "session_id": p.session_id,
        "next_window_index": p.next_window_index,
        "committed_sample": p.committed_sample,
        "ended_sample": p.ended_sample,
        "speaker_state": p.speaker_state,
    }


def progress_from_row(row: dict[str, Any]) -> SessionProgress:
    """Progress from a ``session_progress`` row."""
    return SessionProgress(
        session_id=str(row["session_id"]),
        next_window_index=int(row["next_window_index"]),
        committed_sample=int(row["committed_sample"]),
        ended_sample=None if row["ended_sample"] is None else int(row["ended_sample"]),
        speaker_state=dict(row["speaker_state"] or {}),
    )


def search_hit_from_json(row: dict[str, Any]) -> SearchHit:
    """A :class:`SearchHit` from one row of ``flowbot_search``."""
    return SearchHit(
        session_id=str(row["session_id"]),
        window_index=int(row["window_index"]),
        segment_index=int(row["segment_index"]),
        start=float(row["start"]),
        end=float(row["end"]),
        speaker=row["speaker"],
        text=str(row["text"]),
        snippet=str(row["snippet"]),
        score=float(row["score"]),
    )


def window_change_from_json(data: dict[str, Any]) -> WindowChange:
    """A :class:`WindowChange` from one element of ``flowbot_changes_since``."""
    return WindowChange(
        window_index=int(data["window_index"]),
        revision=int(data["revision"]),
        is_final=data["status"] != "open",
        segments=tuple(segment_from_row(s) for s in data.get("segments") or ()),
    )
