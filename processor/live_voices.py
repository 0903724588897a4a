"""Live naming by voice: after each committed window, name the session's new speakers.

A session speaker becomes a candidate once the registry has heard enough of
it (``FLOWBOT_VOICE_MIN_SECONDS``); from the next committed window on it is
matched against its owner's remembered voices with the same rule as at the
end of the meeting (:meth:`stores.voice_naming.Voices.name_session`), so viewers
see "Dana" while Dana is still talking. A speaker named, undone or renamed is
never touched again; the end-of-meeting pass names whoever is left.

Naming is a convenience: any failure is logged once per session and the
window stays committed.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

from stores.base import Session, SessionNotFound, SessionStore
from stores.voice_naming import Voices

log = logging.getLogger(__name__)


#: Sessions whose owner the hook remembers (most recently committed first). A processor runs for
#: days and sees every session once; an older session is read again from the store if it comes back.
MAX_SESSIONS = 256


class LiveVoiceNaming:
    """``after_commit`` hook of the engine (:class:`processor.engine.EngineParts`)."""

    def __init__(self, voices: Voices, sessions: SessionStore, *, max_sessions: int = MAX_SESSIONS) -> None:
        self.voices = voices
        self.sessions = sessions
        self.max_sessions = max_sessions
        self._owners: OrderedDict[str, Session | None] = OrderedDict()
        #: Speakers named live, per session (the end-of-meeting pass names the rest); as many
        #: sessions as the owners kept.
        self.named: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def _session(self, session_id: str) -> Session | None:
        with self._lock:
            if session_id in self._owners:
                self._owners.move_to_end(session_id)
                return self._owners[session_id]
        try:
            session: Session | None = self.sessions.get(session_id)
        except SessionNotFound:
            session = None  # a stream written without a session record: nobody's voices
        with self._lock:
            self._remember(session_id, session)
        return session

    def _remember(self, session_id: str, session: Session | None) -> None:
        self._owners[session_id] = session
        self._owners.move_to_end(session_id)
        while len(self._owners) > self.max_sessions:
            gone, _ = self._owners.popitem(last=False)
            self.named.pop(gone, None)

    def __call__(self, session_id: str) -> None:
        """Name what can be named now; never raises."""
        try:
            session = self._session(session_id)
            if session is not None:
                namings = self.voices.name_session(session)
                if namings:
                    with self._lock:
                        self.named.setdefault(session_id, []).extend(n.label for n in namings)
        except Exception as exc:
            with self._lock:
                first = self._owners.get(session_id, ...) is not None
                self._remember(session_id, None)  # stop trying for this session; the workflow names at the end
            if first:
                log.warning("live naming by voice failed", extra={"session": session_id, "error": str(exc)})
