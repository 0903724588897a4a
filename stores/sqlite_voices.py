"""The voice library on SQLite (single machine): same file as the transcript store.

Embeddings are float32 blobs. Forgetting a voice deletes its row with
``secure_delete`` on (SQLite overwrites the freed content with zeros) and then
checkpoints and truncates the write-ahead log, so the embedding's bytes are
gone from the database file and its WAL, not only unreachable
(tests/test_voices.py reads the raw files to check).
"""

from __future__ import annotations

import logging
import sqlite3
import struct
from pathlib import Path
from typing import Any

from contracts.voices import NamingState, Voice, VoiceNaming
from localdb import SqliteFile

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS voices (
    voice_id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL,
    name TEXT NOT NULL,
    model TEXT NOT NULL,
    embedding BLOB NOT NULL,
    seconds REAL NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS voices_by_owner ON voices (owner_id, model);
CREATE TABLE IF NOT EXISTS voice_namings (
    session_id TEXT NOT NULL,
    label TEXT NOT NULL,
    voice_id TEXT,
    name TEXT NOT NULL,
    score REAL NOT NULL,
    state TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (session_id, label)
);
"""


def pack_embedding(embedding: tuple[float, ...]) -> bytes:
    """The stored form of an embedding: little-endian float32."""
    return struct.pack(f"<{len(embedding)}f", *embedding)


def _unpack(blob: bytes) -> tuple[float, ...]:
    return struct.unpack(f"<{len(blob) // 4}f", blob)


_COLS = "voice_id, owner_id, name, model, embedding, seconds, created_at, updated_at"


def _voice(row: tuple[Any, ...]) -> Voice:
    vid, owner, name, model, blob, seconds, created, updated = row
    return Voice(vid, owner, name, model, _unpack(blob), float(seconds), float(created), float(updated))


class SqliteVoiceLibrary:
    """:class:`stores.base.VoiceLibrary` on one SQLite file."""

    def __init__(self, path: Path | str) -> None:
        self._db = SqliteFile(path, _SCHEMA)

    def save_voice(self, voice: Voice) -> None:
        """See :meth:`stores.base.VoiceLibrary.save_voice`."""
        with self._db.tx() as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO voices ({_COLS}) VALUES (?,?,?,?,?,?,?,?)",
                (
                    voice.voice_id,
                    voice.owner_id,
                    voice.name,
                    voice.model,
                    pack_embedding(voice.embedding),
                    voice.seconds,
                    voice.created_at,
                    voice.updated_at,
                ),
            )

    def voices(self, owner_id: str, *, model: str | None = None) -> list[Voice]:
        """See :meth:`stores.base.VoiceLibrary.voices`."""
        sql = f"SELECT {_COLS} FROM voices WHERE owner_id = ?"
        args: tuple[str, ...] = (owner_id,)
        if model is not None:
            sql += " AND model = ?"
            args += (model,)
        rows = self._db.conn().execute(sql + " ORDER BY name, voice_id", args).fetchall()
        return [_voice(r) for r in rows]

    def forget_voice(self, owner_id: str, voice_id: str) -> bool:
        """See :meth:`stores.base.VoiceLibrary.forget_voice` (the bytes are overwritten, not only unlinked)."""
        conn = self._db.conn()
        conn.execute("PRAGMA secure_delete = ON")
        with self._db.tx() as tx:
            gone = tx.execute("DELETE FROM voices WHERE owner_id = ? AND voice_id = ?", (owner_id, voice_id)).rowcount
            if gone:
                tx.execute("UPDATE voice_namings SET voice_id = NULL WHERE voice_id = ?", (voice_id,))
        if gone:
            # The WAL still holds the page as it was before the delete until it is checkpointed
            # and truncated; a reader holding an old snapshot can make that wait (then it is logged).
            try:
                busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            except sqlite3.OperationalError as exc:
                busy = 1
                log.warning("voice forgotten; WAL checkpoint failed", extra={"error": str(exc)})
            if busy:
                log.warning("voice forgotten; WAL not yet truncated (a reader holds it)")
        return bool(gone)

    def record_naming(self, naming: VoiceNaming) -> None:
        """See :meth:`stores.base.VoiceLibrary.record_naming`."""
        with self._db.tx() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO voice_namings VALUES (?,?,?,?,?,?,?)",
                (
                    naming.session_id,
                    naming.label,
                    naming.voice_id,
                    naming.name,
                    naming.score,
                    naming.state.value,
                    naming.at,
                ),
            )

    def namings(self, session_id: str) -> dict[str, VoiceNaming]:
        """See :meth:`stores.base.VoiceLibrary.namings`."""
        rows = self._db.conn().execute(
            "SELECT session_id, label, voice_id, name, score, state, at FROM voice_namings "
            "WHERE session_id = ? ORDER BY label",
            (session_id,),
        )
        return {r[1]: VoiceNaming(r[0], r[1], r[2], r[3], float(r[4]), NamingState(r[5]), float(r[6])) for r in rows}
