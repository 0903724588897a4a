"""SQLite files of the single-machine mode, opened one way.

The embedded stream (:mod:`streams.embedded`) and the SQLite stores
(:mod:`stores.sqlite`) both keep their data in SQLite files that several threads
and processes share. :class:`SqliteFile` is how both open them: one connection
per thread, WAL journal, a busy timeout, and explicit transactions.

This package sits at the bottom of the layering next to :mod:`contracts` and
imports nothing of the project: it is infrastructure, not a wire contract, and
neither ``streams`` nor ``stores`` may import the other.
"""

from localdb.sqlite import SqliteFile

__all__ = ["SqliteFile"]
