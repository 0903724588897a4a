"""Build the configured stores from settings (imports AWS-mode backends lazily)."""

from __future__ import annotations

from contracts.settings import ArchiveBackend, SessionBackend, Settings, TranscriptBackend
from stores.archive import LocalArchive, NoArchive, WindowArchive
from stores.base import SessionStore, TranscriptStore, VoiceLibrary
from stores.sqlite import SqliteSessionStore, SqliteTranscriptStore


def transcript_store(settings: Settings) -> TranscriptStore:
    """The transcript store named by ``FLOWBOT_STORE``."""
    if settings.store == TranscriptBackend.SUPABASE:
        from stores.supabase import SupabaseTranscriptStore

        return SupabaseTranscriptStore(settings)
    return SqliteTranscriptStore(settings.data_dir / "flowbot.db")


def session_store(settings: Settings) -> SessionStore:
    """The session store named by ``FLOWBOT_SESSION_STORE``."""
    if settings.session_store == SessionBackend.DYNAMODB:
        from stores.dynamodb import DynamoSessionStore

        return DynamoSessionStore(settings)
    return SqliteSessionStore(settings.data_dir / "flowbot.db")


def window_archive(settings: Settings) -> WindowArchive:
    """The window-audio archive named by ``FLOWBOT_ARCHIVE``."""
    if settings.archive == ArchiveBackend.S3:
        from stores.s3_archive import S3Archive

        return S3Archive(settings)
    if settings.archive == ArchiveBackend.NONE:
        return NoArchive()
    return LocalArchive(settings.data_dir / "archive")


def voice_library(settings: Settings) -> VoiceLibrary:
    """The owners' voice library, next to the transcripts (``FLOWBOT_STORE``)."""
    if settings.store == TranscriptBackend.SUPABASE:
        from stores.supabase_voices import SupabaseVoiceLibrary

        return SupabaseVoiceLibrary(settings)
    from stores.sqlite_voices import SqliteVoiceLibrary

    return SqliteVoiceLibrary(settings.data_dir / "flowbot.db")
