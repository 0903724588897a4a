"""Build the configured stores from settings (imports AWS-mode backends lazily)."""

from __future__ import annotations

from contracts.settings import Settings
from stores.archive import LocalArchive, NoArchive, WindowArchive
from stores.base import SessionStore, TranscriptStore
from stores.sqlite import SqliteSessionStore, SqliteTranscriptStore


def transcript_store(settings: Settings) -> TranscriptStore:
    """The transcript store named by ``FLOWBOT_STORE``."""
    if settings.store == "supabase":
        from stores.supabase import SupabaseTranscriptStore

        return SupabaseTranscriptStore(settings)
    return SqliteTranscriptStore(settings.data_dir / "flowbot.db")


def session_store(settings: Settings) -> SessionStore:
    """The session store named by ``FLOWBOT_SESSION_STORE``."""
    if settings.session_store == "dynamodb":
        from stores.dynamodb import DynamoSessionStore

        return DynamoSessionStore(settings)
    return SqliteSessionStore(settings.data_dir / "flowbot.db")


def window_archive(settings: Settings) -> WindowArchive:
    """The window-audio archive named by ``FLOWBOT_ARCHIVE``."""
    if settings.archive == "s3":
        from stores.s3_archive import S3Archive

        return S3Archive(settings)
    if settings.archive == "none":
        return NoArchive()
    return LocalArchive(settings.data_dir / "archive")
