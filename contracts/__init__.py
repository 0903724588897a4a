"""Contracts shared by producer, processor and control: nothing here imports a service.

Exports:
- :mod:`contracts.frames` - the versioned frame record (producer -> stream -> processor).
- :mod:`contracts.segments` - the versioned transcript segment and window record.
- :mod:`contracts.settings` - the typed ``FLOWBOT_*`` settings object.
- :mod:`contracts.errors` - the one error answer of every HTTP endpoint.
- :mod:`contracts.logs` - structured logging set-up.
"""

from contracts.frames import (
    SAMPLE_RATE,
    FrameKind,
    FrameRecord,
    MalformedRecord,
    end_of_stream,
    validate_session_id,
)
from contracts.segments import TranscriptSegment, WindowRecord, WindowStatus, Word
from contracts.settings import Settings, SettingsError

__all__ = [
    "SAMPLE_RATE",
    "FrameKind",
    "FrameRecord",
    "MalformedRecord",
    "Settings",
    "SettingsError",
    "TranscriptSegment",
    "WindowRecord",
    "WindowStatus",
    "Word",
    "end_of_stream",
    "validate_session_id",
]
