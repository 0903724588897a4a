"""SQLite transcript store for the single-machine mode: windows written and read in one file.

The file's schema and its upgrades are :mod:`stores.sqlite_schema`; the session store
sharing the file is :mod:`stores.sqlite_sessions` (importable from here as before).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from contracts.frames import SAMPLE_RATE
from contracts.segments import (
    SpeakerRelabel,
    SpeakerTurn,
    TranscriptSegment,
    WindowRecord,
    WindowSpeaker,
    WindowStatus,
    Word,
    relabel_segment,
    relabel_window,
)
from stores.base import MATCH_END, MATCH_START, SearchHit, SessionProgress, WindowChange, search_words
from stores.sqlite_schema import open_store
from stores.sqlite_sessions import SqliteSessionStore

__all__ = ["SEARCH_CANDIDATES", "SqliteSessionStore", "SqliteTranscriptStore"]

# Window status while interim text is shown for it.
OPEN = "open"

#: Most matching segments ranked per query, newest first (see SqliteTranscriptStore.search).
SEARCH_CANDIDATES = 2000


def _fts_query(words: Sequence[str]) -> str:
    """An FTS5 query that matches rows holding every word: each word a quoted string, never syntax."""
    return " AND ".join('"' + w.replace('"', '""') + '"' for w in words)


def _next_revision(conn: sqlite3.Connection) -> int:
    """A new store-wide revision number (live feeds ask for changes after one)."""
    cur = conn.execute("INSERT INTO revisions (at) VALUES (?)", (time.time(),))
    return int(cur.lastrowid or 0)


def _segment_row(s: TranscriptSegment) -> tuple[Any, ...]:
    return (
        s.session_id,
        s.window_index,
        s.segment_index,
        s.start,
        s.end,
        s.speaker,
        s.text,
        json.dumps([w.to_dict() for w in s.words]),
        int(s.is_final),
        int(s.stable),
        s.avg_logprob,
        s.audio_uri,
    )


def _segment_from_row(row: sqlite3.Row | tuple[Any, ...]) -> TranscriptSegment:
    (sid, win, idx, start, end, speaker, text, words, final, stable, lp, uri) = row
    return TranscriptSegment(
        session_id=sid,
        window_index=win,
        segment_index=idx,
        start=start,
        end=end,
        text=text,
        speaker=speaker,
        words=tuple(Word.from_dict(w) for w in json.loads(words)),
        is_final=bool(final),
        stable=bool(stable),
        avg_logprob=lp,
        audio_uri=uri,
    )


_SEG_COLS = (
    'session_id, window_index, segment_index, start, "end", speaker, text, words, '
    "is_final, stable, avg_logprob, audio_uri"
)


def _window_from_row(row: tuple[Any, ...]) -> WindowRecord:
    sid, win, start, end, status, error, uri, turns, dropped, speakers = row
    return WindowRecord(
        sid,
        win,
        start,
        end,
        WindowStatus(status),
        error,
        uri,
        tuple(SpeakerTurn.from_dict(t) for t in json.loads(turns)),
        dropped,
        tuple(WindowSpeaker.from_dict(s) for s in json.loads(speakers)),
    )


def _window_row(window: WindowRecord, revision: int) -> tuple[Any, ...]:
    return (
        window.session_id,
        window.window_index,
        window.start_sample,
        window.end_sample,
        window.status,
        window.error,
        window.audio_uri,
        json.dumps([t.to_dict() for t in window.turns]),
        window.dropped_segments,
        json.dumps([s.to_dict() for s in window.speakers]),
        revision,
    )


_WIN_COLS = (
    "session_id, window_index, start_sample, end_sample, status, error, audio_uri, turns, dropped_segments, speakers"
)


def _replace_segments(conn: sqlite3.Connection, session_id: str, index: int, rows: list[tuple[Any, ...]]) -> None:
    """A window's segment rows become ``rows`` (:func:`_segment_row` tuples)."""
    conn.execute("DELETE FROM segments WHERE session_id = ? AND window_index = ?", (session_id, index))
    conn.executemany(f"INSERT INTO segments ({_SEG_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)


def _put_window_row(conn: sqlite3.Connection, row: tuple[Any, ...]) -> None:
    """Write a window row (:func:`_window_row`'s tuple: its columns and its revision)."""
    conn.execute(f"INSERT OR REPLACE INTO windows ({_WIN_COLS}, revision) VALUES (?,?,?,?,?,?,?,?,?,?,?)", row)


def _relabel_segments(conn: sqlite3.Connection, session_id: str, index: int, mapping: dict[str, str]) -> None:
    """Give a window's final segments (and their words) the session speakers ``mapping`` names."""
    rows = conn.execute(
        f"SELECT {_SEG_COLS} FROM segments WHERE session_id = ? AND window_index = ? AND is_final = 1",
        (session_id, index),
    ).fetchall()
    for seg in (relabel_segment(_segment_from_row(r), mapping) for r in rows):
        conn.execute(
            "UPDATE segments SET speaker = ?, words = ? "
            "WHERE session_id = ? AND window_index = ? AND segment_index = ?",
            (seg.speaker, json.dumps([w.to_dict() for w in seg.words]), session_id, index, seg.segment_index),
        )


def _relabel_window_row(conn: sqlite3.Connection, session_id: str, index: int, mapping: dict[str, str]) -> None:
    """Relabel a committed window's turns and speakers under a new revision."""
    row = conn.execute(
        f"SELECT {_WIN_COLS} FROM windows WHERE session_id = ? AND window_index = ? AND status != ?",
        (session_id, index, OPEN),
    ).fetchone()
    if row is not None:
        # A new revision: live feeds send the window again, with its final labels.
        _put_window_row(conn, _window_row(relabel_window(_window_from_row(row), mapping), _next_revision(conn)))


def _ranked_matches(
    conn: sqlite3.Connection, match: str, session_ids: Sequence[str] | None, limit: int
) -> list[tuple[Any, ...]]:
    """The best ``limit`` of the newest :data:`SEARCH_CANDIDATES` final segments matching ``match``."""
    scope, scope_params = "", []
    if session_ids is not None:
        scope = f"JOIN segments w ON w.rowid = f.rowid AND w.session_id IN ({','.join('?' * len(session_ids))})"
        scope_params = list(session_ids)
    return conn.execute(
        'SELECT s.rowid, s.session_id, s.window_index, s.segment_index, s.start, s."end", s.speaker, s.text, '
        "c.score FROM (SELECT f.rowid AS rid, bm25(segments_fts) AS score FROM segments_fts f "
        f"{scope} WHERE segments_fts MATCH ? ORDER BY f.rowid DESC LIMIT ?) c "
        "JOIN segments s ON s.rowid = c.rid ORDER BY c.score, s.session_id, s.start LIMIT ?",
        [*scope_params, match, SEARCH_CANDIDATES, limit],
    ).fetchall()


def _search_hit(conn: sqlite3.Connection, match: str, row: tuple[Any, ...]) -> SearchHit:
    """One ranked match as a hit, its matched words marked."""
    rowid, sid, window, index, start, end, speaker, text, score = row
    (snippet,) = conn.execute(
        "SELECT highlight(segments_fts, 0, ?, ?) FROM segments_fts WHERE segments_fts MATCH ? AND rowid = ?",
        (MATCH_START, MATCH_END, match, rowid),
    ).fetchone()
    # bm25() is lower-is-better; the hit's score is its negation, so higher is better.
    return SearchHit(sid, window, index, start, end, speaker, text, snippet, -float(score))


class SqliteTranscriptStore:
    """:class:`stores.base.TranscriptStore` on one SQLite file."""

    def __init__(self, path: Path | str) -> None:
        self._db = open_store(path)

    def commit_window(
        self,
        window: WindowRecord,
        segments: Sequence[TranscriptSegment],
        progress: SessionProgress,
    ) -> None:
        """See :meth:`stores.base.TranscriptStore.commit_window`."""
        with self._db.tx() as conn:
            rev = _next_revision(conn)
            _replace_segments(conn, window.session_id, window.window_index, [_segment_row(s) for s in segments])
            _put_window_row(conn, _window_row(window, rev))
            self._save_progress(conn, progress)

    def put_interim(self, session_id: str, window_index: int, segments: Sequence[TranscriptSegment]) -> bool:
        """See :meth:`stores.base.TranscriptStore.put_interim`."""
        with self._db.tx() as conn:
            row = conn.execute(
                "SELECT status FROM windows WHERE session_id = ? AND window_index = ?",
                (session_id, window_index),
            ).fetchone()
            if row and row[0] != OPEN:
                return False
            rev = _next_revision(conn)
            rows = [_segment_row(replace(s, is_final=False)) for s in segments]
            _replace_segments(conn, session_id, window_index, rows)
            start = int(segments[0].start * SAMPLE_RATE) if segments else 0
            end = int(segments[-1].end * SAMPLE_RATE) if segments else 0
            _put_window_row(conn, (session_id, window_index, start, end, OPEN, None, None, "[]", 0, "[]", rev))
            return True

    @staticmethod
    def _save_progress(conn: sqlite3.Connection, p: SessionProgress) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO progress VALUES (?,?,?,?,?)",
            (
                p.session_id,
                p.next_window_index,
                p.committed_sample,
                p.ended_sample,
                json.dumps(p.speaker_state),
            ),
        )

    def save_progress(self, progress: SessionProgress) -> None:
        """See :meth:`stores.base.TranscriptStore.save_progress`."""
        with self._db.tx() as conn:
            self._save_progress(conn, progress)

    def load_progress(self, session_id: str) -> SessionProgress | None:
        """See :meth:`stores.base.TranscriptStore.load_progress`."""
        row = (
            self._db.conn()
            .execute(
                "SELECT next_window_index, committed_sample, ended_sample, speaker_state "
                "FROM progress WHERE session_id = ?",
                (session_id,),
            )
            .fetchone()
        )
        if row is None:
            return None
        return SessionProgress(session_id, row[0], row[1], row[2], json.loads(row[3]))

    def segments(self, session_id: str, *, include_interim: bool = False) -> list[TranscriptSegment]:
        """See :meth:`stores.base.TranscriptStore.segments`."""
        sql = f"SELECT {_SEG_COLS} FROM segments WHERE session_id = ?"
        if not include_interim:
            sql += " AND is_final = 1"
        sql += " ORDER BY window_index, segment_index"
        return [_segment_from_row(r) for r in self._db.conn().execute(sql, (session_id,))]

    def windows(self, session_id: str) -> list[WindowRecord]:
        """See :meth:`stores.base.TranscriptStore.windows`."""
        rows = self._db.conn().execute(
            f"SELECT {_WIN_COLS} FROM windows WHERE session_id = ? AND status != ? ORDER BY window_index",
            (session_id, OPEN),
        )
        return [_window_from_row(r) for r in rows]

    def changes_since(self, session_id: str, revision: int) -> list[WindowChange]:
        """See :meth:`stores.base.TranscriptStore.changes_since`."""
        # One read transaction so windows and their segments are consistent.
        with self._db.tx(write=False) as conn:
            wins = conn.execute(
                "SELECT window_index, revision, status FROM windows "
                "WHERE session_id = ? AND revision > ? ORDER BY revision",
                (session_id, revision),
            ).fetchall()
            out = []
            for win, rev, status in wins:
                rows = conn.execute(
                    f"SELECT {_SEG_COLS} FROM segments WHERE session_id = ? AND window_index = ? "
                    "ORDER BY segment_index",
                    (session_id, win),
                ).fetchall()
                out.append(WindowChange(win, rev, status != OPEN, tuple(_segment_from_row(r) for r in rows)))
        return out

    def speakers(self, session_id: str) -> dict[str, str]:
        """See :meth:`stores.base.TranscriptStore.speakers`."""
        conn = self._db.conn()
        labels = {
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT speaker FROM segments WHERE session_id = ? AND speaker IS NOT NULL",
                (session_id,),
            )
        }
        names = dict(
            conn.execute("SELECT label, display_name FROM speakers WHERE session_id = ?", (session_id,)).fetchall()
        )
        return {label: names.get(label, label) for label in sorted(labels | set(names))}

    def rename_speaker(self, session_id: str, label: str, name: str) -> None:
        """See :meth:`stores.base.TranscriptStore.rename_speaker`."""
        with self._db.tx() as conn:
            conn.execute("INSERT OR REPLACE INTO speakers VALUES (?,?,?)", (session_id, label, name))

    def relabel_speakers(self, session_id: str, relabel: SpeakerRelabel) -> bool:
        """See :meth:`stores.base.TranscriptStore.relabel_speakers`: one transaction."""
        with self._db.tx() as conn:
            if conn.execute("SELECT 1 FROM speaker_relabels WHERE session_id = ?", (session_id,)).fetchone():
                return False
            for index, mapping in sorted(relabel.windows.items()):
                if mapping:
                    _relabel_segments(conn, session_id, index, mapping)
                    _relabel_window_row(conn, session_id, index, mapping)
            names = dict(
                conn.execute("SELECT label, display_name FROM speakers WHERE session_id = ?", (session_id,)).fetchall()
            )
            conn.execute("DELETE FROM speakers WHERE session_id = ?", (session_id,))
            conn.executemany(
                "INSERT INTO speakers VALUES (?,?,?)",
                [(session_id, label, name) for label, name in relabel.carry_names(names).items()],
            )
            conn.execute("INSERT INTO speaker_relabels VALUES (?,?)", (session_id, json.dumps(relabel.to_dict())))
        return True

    def speaker_relabel(self, session_id: str) -> SpeakerRelabel | None:
        """See :meth:`stores.base.TranscriptStore.speaker_relabel`."""
        row = (
            self._db.conn()
            .execute("SELECT record FROM speaker_relabels WHERE session_id = ?", (session_id,))
            .fetchone()
        )
        return SpeakerRelabel.from_dict(json.loads(row[0])) if row else None

    def put_notes(self, session_id: str, notes: dict[str, Any]) -> None:
        """See :meth:`stores.base.TranscriptStore.put_notes`."""
        with self._db.tx() as conn:
            conn.execute("INSERT OR REPLACE INTO notes VALUES (?,?)", (session_id, json.dumps(notes)))

    def get_notes(self, session_id: str) -> dict[str, Any] | None:
        """See :meth:`stores.base.TranscriptStore.get_notes`."""
        row = self._db.conn().execute("SELECT notes FROM notes WHERE session_id = ?", (session_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def search(self, query: str, *, session_ids: Sequence[str] | None, limit: int) -> list[SearchHit]:
        """See :meth:`stores.base.TranscriptStore.search` (FTS5, ranked by BM25).

        Ranks the newest :data:`SEARCH_CANDIDATES` matching segments: a word said in most
        meetings would otherwise rank every mention (0.5 M of them in bench/search.py's corpus,
        1.8 s a query) to show 20. Matched words are marked only in the hits returned.
        """
        words = search_words(query)
        if not words or (session_ids is not None and not session_ids):
            return []
        match = _fts_query(words)
        conn = self._db.conn()
        return [_search_hit(conn, match, row) for row in _ranked_matches(conn, match, session_ids, limit)]
