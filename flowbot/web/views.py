"""What a session's viewers are shown: the one home of viewer-facing payloads.

Everything a view token reaches (the page, ``/info``, the live feed, the
exports) is built from these functions, which name what a viewer gets rather
than what it must not get: a new field of :class:`stores.base.Session` or of a
segment reaches viewers only once it is added here.

Left out on purpose:

- ``rtmp_url`` and the stream key: they let their holder publish into the
  meeting. Publishing is the owner's (``start_session``, ``rotate_stream_key``).
- ``user_id``: the owner's account id.
- ``audio_uri``: where the server archives a window's audio (``file:///<data
  dir>/...`` or an S3 key). The page plays a window through
  ``/sessions/<id>/audio/<n>``, which needs no path.
- Which speakers were named by voice, with what score and which voice: that a
  voice in the owner's library matched someone is the owner's business
  (docs/voices.md). Viewers see the name, as they see any rename; the owner's
  page also gets :func:`owner_voice_namings`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from contracts.segments import TranscriptSegment
from contracts.voices import VoiceNaming
from stores.base import Session

#: The session fields a viewer sees (the page's header and state badge).
VIEWER_SESSION_FIELDS = (
    "session_id",
    "meeting_id",
    "topic",
    "state",
    "reason",
    "created_at",
    "updated_at",
    "ended_at",
    # Which transcript revision the page shows (flowbot retranscribe): no credential, no path.
    "revision",
    "revision_of",
    "asr_model",
)


def viewer_session(session: Session) -> dict[str, Any]:
    """The session as a viewer sees it: id, meeting, topic, state and times."""
    view = session.public_view()
    return {name: view[name] for name in VIEWER_SESSION_FIELDS}


def viewer_segments(segments: Iterable[TranscriptSegment]) -> list[TranscriptSegment]:
    """Segments without the server's archive location."""
    return [replace(s, audio_uri=None) if s.audio_uri is not None else s for s in segments]


def viewer_segment_dicts(segments: Sequence[TranscriptSegment]) -> list[dict[str, Any]]:
    """Segments as the live feed sends them (:func:`viewer_segments`, JSON-ready)."""
    return [s.to_dict() for s in viewer_segments(segments)]


def owner_voice_namings(namings: Mapping[str, VoiceNaming]) -> dict[str, dict[str, Any]]:
    """Speakers named by voice as the session's owner's page shows them: label -> name, score, state.

    For the owner only (``/info`` with the owner's credential). No voice id: the
    page undoes a naming by its label (``undo_voice_name``), and ``get_session``
    gives the owner the id.
    """
    return {
        label: {"name": n.name, "score": round(n.score, 2), "state": n.state.value}
        for label, n in sorted(namings.items())
    }
