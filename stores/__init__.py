"""Transcript and session stores.

Exports the protocols and records from :mod:`stores.base`
(:class:`TranscriptStore`, :class:`SessionStore`, :class:`SessionProgress`,
:class:`Session`, :class:`SessionState`, :class:`WindowChange`, errors:
:class:`StoreError`, :class:`PermanentStoreError`, :class:`StateConflict`,
:class:`SessionNotFound`) and the single-machine implementations
:class:`SqliteTranscriptStore` and :class:`SqliteSessionStore`. The AWS-mode stores live in :mod:`stores.supabase`
and :mod:`stores.dynamodb` and are imported only when configured.
"""

from stores.base import (
    PermanentStoreError,
    Session,
    SessionNotFound,
    SessionProgress,
    SessionState,
    SessionStore,
    StateConflict,
    StoreError,
    TranscriptStore,
    WindowChange,
)
from stores.sqlite import SqliteSessionStore, SqliteTranscriptStore

__all__ = [
    "PermanentStoreError",
    "Session",
    "SessionNotFound",
    "SessionProgress",
    "SessionState",
    "SessionStore",
    "SqliteSessionStore",
    "SqliteTranscriptStore",
    "StateConflict",
    "StoreError",
    "TranscriptStore",
    "WindowChange",
]
