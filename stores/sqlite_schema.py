"""The SQLite file behind the single-machine stores: its schema, and upgrades of older files in place.

Transcripts (:mod:`stores.sqlite`) and sessions (:mod:`stores.sqlite_sessions`) share one file.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from localdb import SqliteFile

_SCHEMA = """
CREATE TABLE IF NOT EXISTS segments (
    session_id TEXT NOT NULL,
    window_index INTEGER NOT NULL,
    segment_index INTEGER NOT NULL,
    start REAL NOT NULL,
    "end" REAL NOT NULL,
    speaker TEXT,
    text TEXT NOT NULL,
    words TEXT NOT NULL,
    is_final INTEGER NOT NULL,
    stable INTEGER NOT NULL,
    avg_logprob REAL,
    audio_uri TEXT,
    PRIMARY KEY (session_id, window_index, segment_index)
);
CREATE TABLE IF NOT EXISTS windows (
    session_id TEXT NOT NULL,
    window_index INTEGER NOT NULL,
    start_sample INTEGER NOT NULL,
    end_sample INTEGER NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    audio_uri TEXT,
    revision INTEGER NOT NULL,
    turns TEXT NOT NULL DEFAULT '[]',
    dropped_segments INTEGER NOT NULL DEFAULT 0,
    speakers TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (session_id, window_index)
);
CREATE INDEX IF NOT EXISTS windows_by_revision ON windows (session_id, revision);
CREATE TABLE IF NOT EXISTS progress (
    session_id TEXT PRIMARY KEY,
    next_window_index INTEGER NOT NULL,
    committed_sample INTEGER NOT NULL,
    ended_sample INTEGER,
    speaker_state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS speakers (
    session_id TEXT NOT NULL,
    label TEXT NOT NULL,
    display_name TEXT NOT NULL,
    PRIMARY KEY (session_id, label)
);
CREATE TABLE IF NOT EXISTS notes (
    session_id TEXT PRIMARY KEY,
    notes TEXT NOT NULL
);
-- Full text of final segments (external content: the text lives once, in segments). Triggers
-- keep it in step, so every writer (commit, relabel, replay) indexes alike; interim rows are not
-- indexed. porter stems English ("decided" finds "decide").
CREATE VIRTUAL TABLE IF NOT EXISTS segments_fts USING fts5(
    text, content='segments', content_rowid='rowid', tokenize='porter unicode61'
);
CREATE TRIGGER IF NOT EXISTS segments_fts_insert AFTER INSERT ON segments WHEN new.is_final = 1 BEGIN
    INSERT INTO segments_fts (rowid, text) VALUES (new.rowid, new.text);
END;
CREATE TRIGGER IF NOT EXISTS segments_fts_delete AFTER DELETE ON segments WHEN old.is_final = 1 BEGIN
    INSERT INTO segments_fts (segments_fts, rowid, text) VALUES ('delete', old.rowid, old.text);
END;
-- One trigger for updates, so the old entry always leaves before the new one comes (same rowid).
CREATE TRIGGER IF NOT EXISTS segments_fts_update AFTER UPDATE OF text, is_final ON segments BEGIN
    INSERT INTO segments_fts (segments_fts, rowid, text) SELECT 'delete', old.rowid, old.text WHERE old.is_final = 1;
    INSERT INTO segments_fts (rowid, text) SELECT new.rowid, new.text WHERE new.is_final = 1;
END;
CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS speaker_relabels (
    session_id TEXT PRIMARY KEY,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS revisions (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL);
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    stream_key TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    data TEXT NOT NULL
);
"""

#: Columns added to ``windows`` after its first release: (name, declaration).
_ADDED_COLUMNS = (
    ("turns", "TEXT NOT NULL DEFAULT '[]'"),
    ("dropped_segments", "INTEGER NOT NULL DEFAULT 0"),
    ("speakers", "TEXT NOT NULL DEFAULT '[]'"),
)


def open_store(path: Path | str) -> SqliteFile:
    """The store file with its schema, upgraded in place from older releases."""
    db = SqliteFile(path, _SCHEMA)
    # Files from before a column was added get it (CREATE TABLE IF NOT EXISTS kept the old shape).
    conn = db.conn()
    _index_older_segments(db)
    have = {row[1] for row in conn.execute("PRAGMA table_info(windows)")}
    for column, decl in _ADDED_COLUMNS:
        if column not in have:
            try:
                conn.execute(f"ALTER TABLE windows ADD COLUMN {column} {decl}")
            except sqlite3.OperationalError as exc:  # another process added it just now
                if "duplicate column" not in str(exc):
                    raise
    return db


def _index_older_segments(db: SqliteFile) -> None:
    """Index the final segments of a file written before the full-text index existed (once per file).

    Rebuilt whole, in one write transaction, whatever another process indexed meanwhile through the
    triggers, so the index always ends up matching the rows; ``store_meta`` remembers it was done.
    """
    with db.tx() as conn:
        if conn.execute("SELECT 1 FROM store_meta WHERE key = 'segments_fts'").fetchone():
            return
        conn.execute("INSERT INTO segments_fts (segments_fts) VALUES ('delete-all')")
        conn.execute("INSERT INTO segments_fts (rowid, text) SELECT rowid, text FROM segments WHERE is_final = 1")
        conn.execute("INSERT INTO store_meta VALUES ('segments_fts', 'built')")
