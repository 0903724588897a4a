"""The voice library on Supabase (service-role key): tables ``voices`` and ``voice_namings``.

Schema and row-level security: ``supabase/migrations/20261207000100_voice_library.sql``
(owners read and delete only their own voices; only the service role writes).
Requests go through the retry and error rules every Supabase store shares
(:mod:`stores.supabase_rest`). Every query on ``voices`` is filtered on the
owner, so even this service-role client never hands one owner's voice to another.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from contracts.voices import NamingState, Voice, VoiceNaming
from stores.supabase_rest import SupabaseClient, result

VOICES = "voices"
NAMINGS = "voice_namings"


def _is_uuid(value: str) -> bool:
    """Owners and voices are uuids here; another id names nothing (and would be a Postgres error)."""
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _ts(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def _epoch(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def _voice(row: dict[str, Any]) -> Voice:
    return Voice(
        voice_id=str(row["id"]),
        owner_id=str(row["owner_id"]),
        name=str(row["name"]),
        model=str(row["model"]),
        embedding=tuple(float(x) for x in row["embedding"]),
        seconds=float(row["seconds"]),
        created_at=_epoch(row["created_at"]),
        updated_at=_epoch(row["updated_at"]),
    )


def _naming(row: dict[str, Any]) -> VoiceNaming:
    return VoiceNaming(
        session_id=str(row["session_id"]),
        label=str(row["label"]),
        voice_id=None if row["voice_id"] is None else str(row["voice_id"]),
        name=str(row["name"]),
        score=float(row["score"]),
        state=NamingState(row["state"]),
        at=_epoch(row["at"]),
    )


class SupabaseVoiceLibrary(SupabaseClient):
    """:class:`stores.base.VoiceLibrary` on Supabase."""

    def save_voice(self, voice: Voice) -> None:
        """See :meth:`stores.base.VoiceLibrary.save_voice`."""
        row = {
            "id": voice.voice_id,
            "owner_id": voice.owner_id,
            "name": voice.name,
            "model": voice.model,
            "embedding": list(voice.embedding),
            "seconds": voice.seconds,
            "created_at": _ts(voice.created_at),
            "updated_at": _ts(voice.updated_at),
        }
        self._rest.call(
            "save_voice",
            lambda: (
                self._db.table(VOICES)
                .upsert(row, on_conflict="id", returning="minimal")  # type: ignore[arg-type]
                .execute()
            ),
        )

    def voices(self, owner_id: str, *, model: str | None = None) -> list[Voice]:
        """See :meth:`stores.base.VoiceLibrary.voices`."""
        if not _is_uuid(owner_id):
            return []

        def query() -> Any:
            q = self._db.table(VOICES).select("*").eq("owner_id", owner_id)
            if model is not None:
                q = q.eq("model", model)
            return result(q.order("name").order("id"))

        return [_voice(r) for r in self._rest.call("voices", query)]

    def forget_voice(self, owner_id: str, voice_id: str) -> bool:
        """See :meth:`stores.base.VoiceLibrary.forget_voice` (namings lose the link: ON DELETE SET NULL)."""
        if not (_is_uuid(owner_id) and _is_uuid(voice_id)):
            return False
        rows = self._rest.call(
            "forget_voice",
            lambda: result(self._db.table(VOICES).delete().eq("owner_id", owner_id).eq("id", voice_id)),
        )
        return bool(rows)

    def record_naming(self, naming: VoiceNaming) -> None:
        """See :meth:`stores.base.VoiceLibrary.record_naming`."""
        row = {
            "session_id": naming.session_id,
            "label": naming.label,
            "voice_id": naming.voice_id,
            "name": naming.name,
            "score": naming.score,
            "state": naming.state.value,
            "at": _ts(naming.at),
        }
        self._rest.call(
            "record_naming",
            lambda: (
                self._db.table(NAMINGS)
                .upsert(row, on_conflict="session_id,label", returning="minimal")  # type: ignore[arg-type]
                .execute()
            ),
            session=naming.session_id,
        )

    def namings(self, session_id: str) -> dict[str, VoiceNaming]:
        """See :meth:`stores.base.VoiceLibrary.namings`."""
        rows = self._rest.call(
            "namings",
            lambda: result(self._db.table(NAMINGS).select("*").eq("session_id", session_id).order("label")),
            session=session_id,
        )
        return {str(r["label"]): _naming(r) for r in rows}
