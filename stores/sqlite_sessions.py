"""SQLite session store for the single-machine mode: transitions are compare-and-set."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from stores.base import Session, SessionNotFound, SessionState, StateConflict
from stores.sqlite_schema import open_store


class SqliteSessionStore:
    """:class:`stores.base.SessionStore` on SQLite; transitions are compare-and-set."""

    def __init__(self, path: Path | str) -> None:
        self._db = open_store(path)

    @staticmethod
    def _dump(s: Session) -> str:
        data = {f.name: getattr(s, f.name) for f in fields(s)}
        data["state"] = s.state.value
        return json.dumps(data)

    @staticmethod
    def _load(data: str) -> Session:
        raw = json.loads(data)
        raw["state"] = SessionState(raw["state"])
        return Session(**raw)

    def create(self, session: Session) -> None:
        """See :meth:`stores.base.SessionStore.create`."""
        try:
            with self._db.tx() as conn:
                conn.execute(
                    "INSERT INTO sessions VALUES (?,?,?,?)",
                    (
                        session.session_id,
                        session.stream_key,
                        session.state.value,
                        self._dump(session),
                    ),
                )
        except sqlite3.IntegrityError:
            raise StateConflict(f"session {session.session_id} already exists") from None

    def get(self, session_id: str) -> Session:
        """See :meth:`stores.base.SessionStore.get`."""
        row = self._db.conn().execute("SELECT data FROM sessions WHERE session_id = ?", (session_id,)).fetchone()
        if row is None:
            raise SessionNotFound(session_id)
        return self._load(row[0])

    def transition(
        self,
        session_id: str,
        expected: Sequence[SessionState],
        new: SessionState,
        **changes: Any,
    ) -> Session:
        """See :meth:`stores.base.SessionStore.transition`."""
        with self._db.tx() as conn:
            row = conn.execute("SELECT data FROM sessions WHERE session_id = ?", (session_id,)).fetchone()
            if row is None:
                raise SessionNotFound(session_id)
            current = self._load(row[0])
            _check_state(current, expected)
            updated = replace(current, state=new, updated_at=time.time(), **changes)
            conn.execute(
                "UPDATE sessions SET state = ?, data = ?, stream_key = ? WHERE session_id = ?",
                (new.value, self._dump(updated), updated.stream_key, session_id),
            )
        return updated

    def find_by_stream_key(self, stream_key: str) -> Session | None:
        """See :meth:`stores.base.SessionStore.find_by_stream_key`."""
        row = self._db.conn().execute("SELECT data FROM sessions WHERE stream_key = ?", (stream_key,)).fetchone()
        return self._load(row[0]) if row else None

    def list(self, states: Sequence[SessionState] | None = None) -> list[Session]:
        """See :meth:`stores.base.SessionStore.list`."""
        rows = self._db.conn().execute("SELECT data FROM sessions ORDER BY rowid").fetchall()
        sessions = [self._load(r[0]) for r in rows]
        if states is not None:
            sessions = [s for s in sessions if s.state in states]
        return sessions


def _check_state(session: Session, expected: Sequence[SessionState]) -> None:
    """:class:`StateConflict` unless ``session`` is in one of the ``expected`` states."""
    if session.state not in expected:
        raise StateConflict(
            f"session {session.session_id} is {session.state.value}, expected " + " or ".join(s.value for s in expected)
        )
