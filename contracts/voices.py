"""Remembered voices: the records of an owner's voice library and the one matching rule.

A *voice* is one person's speaker embedding (never audio) that its owner asked
to keep when naming a session speaker (``rename_speaker`` with
``"remember": true``). In the owner's later sessions, a session speaker whose
embedding matches a remembered voice is named after it (:func:`match_voices`),
and the naming is recorded (:class:`VoiceNaming`) so the owner sees it was
named by voice, with its score, and can undo it.

Session speakers reach the matcher as :class:`SessionVoice` (label, embedding,
seconds of speech). :func:`session_voices` reads them from the session speaker
registry's stored state (``SessionProgress.speaker_state``, written by
``processor/speakers.py``, state version 1: ``{"version": 1, "speakers":
[{"label", "centroid", "seconds"}]}``); anything else that knows a session's
speakers (an end-of-meeting reconciliation) hands its own list to the same
functions.

Embeddings are only comparable within one embedding model, so every voice
carries the model that produced it (the ``FLOWBOT_DIARIZATION`` weights,
e.g. ``offline``: CAM++, 192 dimensions) and matching only ever compares
voices of the session's model.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Registry state versions :func:`session_voices` reads.
SPEAKER_STATE_VERSIONS = (1,)

#: Most seconds of speech a stored voice counts when another meeting's embedding is merged into it:
#: past meetings stop outweighing a new one after 10 minutes of speech.
MAX_VOICE_WEIGHT_SECONDS = 600.0


class NamingState(enum.StrEnum):
    """What became of a name given by voice."""

    NAMED = "named"  # the speaker carries the voice's name
    UNDONE = "undone"  # the owner undid it: the label is back and this voice is not tried again here


@dataclass(frozen=True)
class SessionVoice:
    """One session speaker as the matcher sees it."""

    label: str
    embedding: tuple[float, ...]
    seconds: float


@dataclass(frozen=True)
class Voice:
    """A remembered voice in its owner's library (the embedding is personal data)."""

    voice_id: str
    owner_id: str
    name: str
    model: str
    embedding: tuple[float, ...]
    #: Seconds of speech the embedding was averaged over (weights later merges).
    seconds: float
    created_at: float
    updated_at: float

    def public_view(self) -> dict[str, Any]:
        """What the API and CLI show: everything except the embedding."""
        return {
            "voice_id": self.voice_id,
            "name": self.name,
            "model": self.model,
            "dimensions": len(self.embedding),
            "seconds": round(self.seconds, 1),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class VoiceMatch:
    """A session speaker matched to a remembered voice; ``score`` is the cosine similarity."""

    label: str
    voice_id: str
    name: str
    score: float


@dataclass(frozen=True)
class VoiceNaming:
    """A session speaker named by voice (or a naming its owner undid)."""

    session_id: str
    label: str
    voice_id: str | None  # None once the voice was forgotten
    name: str
    score: float
    state: NamingState
    at: float

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``get_session``'s ``named_by_voice``)."""
        return {
            "voice_id": self.voice_id,
            "name": self.name,
            "score": round(self.score, 4),
            "state": self.state.value,
            "at": self.at,
        }


def _unit(values: Iterable[float]) -> tuple[float, ...] | None:
    vec = [float(v) for v in values]
    if not vec or not all(math.isfinite(v) for v in vec):
        return None
    norm = math.sqrt(sum(v * v for v in vec))
    if norm < 1e-8:
        return None
    return tuple(v / norm for v in vec)


def similarity(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity of two embeddings (NaN when unusable or of different sizes)."""
    ua, ub = _unit(a), _unit(b)
    if ua is None or ub is None or len(ua) != len(ub):
        return math.nan
    return sum(x * y for x, y in zip(ua, ub, strict=True))


def session_voices(speaker_state: Mapping[str, Any] | None) -> list[SessionVoice]:
    """Session speakers with a usable embedding, from the registry's stored state.

    An empty or other-format state (diarization off) has none.
    """
    if not speaker_state or speaker_state.get("version") not in SPEAKER_STATE_VERSIONS:
        return []
    out = []
    for item in speaker_state.get("speakers") or ():
        centroid = item.get("centroid") if isinstance(item, Mapping) else None
        unit = _unit(centroid) if isinstance(centroid, list) else None
        if unit is not None:
            out.append(SessionVoice(str(item["label"]), unit, float(item.get("seconds") or 0.0)))
    return out


def merged_embedding(voice: Voice, new: SessionVoice) -> tuple[tuple[float, ...], float]:
    """A stored voice's embedding with another meeting's speaker merged in (speech-weighted mean).

    Returns the new unit embedding and the seconds it now stands for.
    """
    w_old = min(voice.seconds, MAX_VOICE_WEIGHT_SECONDS)
    w_new = max(new.seconds, 1e-3)
    mixed = _unit(a * w_old + b * w_new for a, b in zip(voice.embedding, new.embedding, strict=True))
    return (mixed or voice.embedding), voice.seconds + new.seconds


def match_voices(
    speakers: Sequence[SessionVoice],
    voices: Sequence[Voice],
    *,
    min_score: float,
    min_seconds: float,
) -> list[VoiceMatch]:
    """Which session speakers are which remembered voices.

    One voice names at most one speaker and one speaker takes at most one
    voice: the most similar pairs are taken first (greedy on the score, which
    for the handful of speakers and voices of a meeting is what an optimal
    assignment gives whenever the accepted pairs are clear). A pair counts
    only with a cosine similarity of at least ``min_score`` and a speaker with
    at least ``min_seconds`` of speech (a short speaker's centroid is too
    noisy to put a name on: a wrong name is worse than none).
    """
    pairs = []
    for spk in speakers:
        if spk.seconds < min_seconds:
            continue
        for voice in voices:
            score = similarity(spk.embedding, voice.embedding)
            if math.isfinite(score) and score >= min_score:
                pairs.append((score, spk.label, voice))
    pairs.sort(key=lambda p: (-p[0], p[1], p[2].voice_id))
    used_labels: set[str] = set()
    used_voices: set[str] = set()
    out = []
    for score, label, voice in pairs:
        if label in used_labels or voice.voice_id in used_voices:
            continue
        used_labels.add(label)
        used_voices.add(voice.voice_id)
        out.append(VoiceMatch(label, voice.voice_id, voice.name, round(score, 6)))
    return sorted(out, key=lambda m: m.label)
