"""The SQLite file helper the embedded stream and the SQLite stores share."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from localdb import SqliteFile


def test_a_transaction_commits_or_rolls_back_whole(tmp_path: Path) -> None:
    db = SqliteFile(tmp_path / "sub" / "x.db", "CREATE TABLE IF NOT EXISTS t (v INTEGER);")
    with db.tx() as conn:
        conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(ValueError), db.tx() as conn:
        conn.execute("INSERT INTO t VALUES (2)")
        raise ValueError("half-way")
    assert [r[0] for r in db.conn().execute("SELECT v FROM t")] == [1]
    assert db.conn().execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_each_thread_has_its_own_connection(tmp_path: Path) -> None:
    db = SqliteFile(tmp_path / "x.db")
    seen: list[object] = []
    thread = threading.Thread(target=lambda: seen.append(db.conn()))
    thread.start()
    thread.join()
    assert seen[0] is not db.conn() and db.conn() is db.conn()
    db.close()
    assert db.conn().execute("SELECT 1").fetchone() == (1,)  # reopened after close
