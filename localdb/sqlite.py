"""One SQLite file shared by threads and processes."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Seconds a writer waits for another process's write lock before SQLite gives up.
BUSY_TIMEOUT_S = 30.0


class SqliteFile:
    """A SQLite file with one connection per thread, in WAL mode.

    WAL lets readers run while one process writes (a producer appending frames
    while the processor reads them); ``synchronous=NORMAL`` is durable across a
    process crash, which is what a checkpointed stream and an idempotent store
    need. Connections run in autocommit mode: a statement outside :meth:`tx` is
    its own transaction.
    """

    def __init__(self, path: Path | str, schema: str = "") -> None:
        """Open (and create) ``path``; ``schema`` is run once (``CREATE ... IF NOT EXISTS``)."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        if schema:
            self.conn().executescript(schema)

    def conn(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    @contextmanager
    def tx(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """A transaction on this thread's connection: committed on exit, rolled back on an exception.

        ``write=True`` takes the write lock at once (``BEGIN IMMEDIATE``), so a
        read-then-write cannot fail half-way on a lock another process took in
        between; ``write=False`` is a consistent snapshot for several reads.
        """
        conn = self.conn()
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        """Close this thread's connection (another call opens a new one)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
