"""The coordinator API: one handler for the Lambda function URL and the local server.

``POST`` a JSON body with an ``action``:

- ``start_session`` {meeting_id, user_id, topic} -> session id, rtmp_url, rtmp_server, stream_key, page_url
- ``get_session`` {session_id} -> the session report (:class:`control.sessions.SessionReport`):
  state, progress, speakers, notes
- ``end_session`` {session_id} -> state ``processing``; the workflow starts
- ``rotate_stream_key`` {session_id} -> a new stream_key, rtmp_url, rtmp_server; the old key is
  refused from then on and a publisher live with it is cut off (a session taking audio only)
- ``list_sessions`` {limit?} -> the caller's meetings, newest first (:mod:`control.library`)
- ``retranscribe`` {session_id, model?, language?} -> the new revision's session (transcribed from
  the archived audio in the background; the old revision is kept)
- ``search`` {query, limit?} -> ranked hits in every session the caller may read, with speaker,
  time and a link to that moment of the session page
- ``rename_speaker`` {session_id, speaker, name, remember?}: with ``"remember": true`` the
  speaker's voice (its embedding, never audio) is kept in the owner's voice library
- ``undo_voice_name`` {session_id, speaker}: a speaker named by voice gets its label back
- ``list_voices`` {user_id?} -> the owner's remembered voices (names, no embeddings)
- ``forget_voice`` {voice_id, user_id?}: delete a remembered voice and its embedding

Who may act on which session is :func:`control.access.may_access`; state
changes are the verbs of :mod:`control.sessions`. Errors are
:class:`contracts.errors.HttpError` answers with a 4xx status that says what is
wrong; nothing already accepted is touched by a rejected request.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from contracts.errors import HttpError
from contracts.frames import validate_session_id
from contracts.notes import InvalidNotes, MeetingNotes
from control import library, sessions
from control.access import LOCAL, Caller, may_access
from control.bearer import BearerError, bearer_token, same_secret
from control.context import ControlContext
from control.launch import KeyRotation, LaunchError, LaunchResult
from stores.base import Session, SessionNotFound, StateConflict, search_words
from stores.voice_naming import VoiceError, Voices

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
#: ISO 639-1/-3 codes, as Whisper takes them.
_LANGUAGE = re.compile(r"[a-z]{2,3}")


@dataclass(frozen=True)
class ApiResponse:
    """Status and JSON body."""

    status: int
    body: dict[str, Any]

    def json(self) -> str:
        """The body serialised."""
        return json.dumps(self.body)


def _int_field(body: Mapping[str, Any], name: str, *, default: int, lo: int, hi: int) -> int:
    value = body.get(name, default)
    # bool is an int in Python; JSON true is not a count.
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise HttpError(400, "invalid_field", f"'{name}' must be an integer from {lo} to {hi}")
    return value


def _str_field(body: Mapping[str, Any], name: str, *, required: bool = True, max_len: int = 256) -> str:
    value = body.get(name)
    if value is None:
        if required:
            raise HttpError(400, "missing_field", f"'{name}' is required")
        return ""
    if not isinstance(value, str) or not value.strip():
        raise HttpError(400, "invalid_field", f"'{name}' must be a non-empty string")
    if len(value) > max_len:
        raise HttpError(400, "invalid_field", f"'{name}' is longer than {max_len} characters")
    if not value.isprintable():
        # Control characters and lone surrogates: no id, name or title needs them, and they
        # break stores and log lines downstream.
        raise HttpError(400, "invalid_field", f"'{name}' must be printable text (no control characters)")
    return value.strip()


class Coordinator:
    """Actions over a :class:`ControlContext`."""

    def __init__(self, ctx: ControlContext) -> None:
        self.ctx = ctx
        self.actions: dict[str, Callable[[Mapping[str, Any], Caller], dict[str, Any]]] = {
            "start_session": self.start_session,
            "get_session": self.get_session,
            "end_session": self.end_session,
            "rename_speaker": self.rename_speaker,
            "rotate_stream_key": self.rotate_stream_key,
            "list_sessions": self.list_sessions,
            "search": self.search,
            "retranscribe": self.retranscribe,
            "undo_voice_name": self.undo_voice_name,
            "list_voices": self.list_voices,
            "forget_voice": self.forget_voice,
        }

    # -- entry points -------------------------------------------------------------
    def handle(self, method: str, headers: Mapping[str, str], raw_body: bytes) -> ApiResponse:
        """Handle one HTTP request (already routed to the API path)."""
        try:
            if method.upper() != "POST":
                raise HttpError(405, "method_not_allowed", "use POST with a JSON body")
            caller = self._authenticate({k.lower(): v for k, v in headers.items()})
            body = self._parse(raw_body)
            action = body.get("action")
            if not isinstance(action, str) or action not in self.actions:
                raise HttpError(
                    400,
                    "unknown_action",
                    f"'action' must be one of {', '.join(sorted(self.actions))}; got {action!r}",
                )
            return ApiResponse(200, self.actions[action](body, caller))
        except HttpError as exc:
            log.info(
                "api request rejected",
                extra={"status": exc.status, "code": exc.code, "reason": exc.message},
            )
            return ApiResponse(exc.status, exc.body())
        except Exception:
            log.exception("api request failed")
            return ApiResponse(500, HttpError(500, "internal", "internal error; see logs").body())

    def _authenticate(self, headers: Mapping[str, str]) -> Caller:
        ctx = self.ctx
        if ctx.authenticate is not None:
            try:
                return ctx.authenticate(headers)
            except PermissionError as exc:
                raise HttpError(401, "unauthorized", str(exc) or "invalid credentials") from None
        token = ctx.settings.api_token
        if token:
            try:
                given = bearer_token(headers)
            except BearerError as exc:
                raise HttpError(401, "unauthorized", str(exc)) from None
            if not same_secret(given, token):
                raise HttpError(401, "unauthorized", "wrong bearer token")
        return Caller(user_id=None, role=LOCAL)

    @staticmethod
    def _parse(raw: bytes) -> dict[str, Any]:
        if len(raw) > MAX_BODY_BYTES:
            raise HttpError(413, "body_too_large", f"body over {MAX_BODY_BYTES} bytes")
        if not raw.strip():
            raise HttpError(400, "empty_body", "expected a JSON object with an 'action'")
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            # ValueError covers JSONDecodeError, UnicodeDecodeError and integers past Python's
            # 4300-digit conversion limit; RecursionError, arrays nested thousands deep.
            raise HttpError(400, "invalid_json", f"body is not valid JSON: {type(exc).__name__}: {exc}"[:300]) from None
        if not isinstance(body, dict):
            raise HttpError(400, "invalid_body", "body must be a JSON object")
        return body

    def _session_for(self, body: Mapping[str, Any], caller: Caller) -> Session:
        session_id = _str_field(body, "session_id", max_len=128)
        try:
            session = self.ctx.sessions.get(validate_session_id(session_id))
        except (ValueError, SessionNotFound):
            raise HttpError(404, "unknown_session", f"no session {session_id!r}") from None
        if not may_access(caller, session.user_id):
            # Same answer as an unknown id: don't reveal other users' sessions.
            raise HttpError(404, "unknown_session", f"no session {session_id!r}")
        return session

    # -- actions --------------------------------------------------------------------
    def start_session(self, body: Mapping[str, Any], caller: Caller) -> dict[str, Any]:
        """Create a session and get ingest ready; returns where to publish."""
        meeting_id = _str_field(body, "meeting_id", max_len=128)
        user_id = _str_field(body, "user_id", required=caller.is_operator, max_len=128)
        topic = _str_field(body, "topic", required=False, max_len=500)
        if not caller.is_operator:
            # A user starts sessions only for themselves, of meetings they own.
            user_id = user_id or caller.user_id or ""
            if not may_access(caller, user_id):
                raise HttpError(403, "forbidden", "user_id does not match the caller")
            if self.ctx.owns_meeting is not None and not self.ctx.owns_meeting(user_id, meeting_id):
                raise HttpError(403, "forbidden", "the caller does not own this meeting")
        session = Session(
            session_id=str(uuid.uuid4()),
            meeting_id=meeting_id,
            user_id=user_id,
            topic=topic,
            stream_key=secrets.token_urlsafe(24),
        )
        self.ctx.sessions.create(session)
        if self.ctx.on_session_created is not None:
            self.ctx.on_session_created(session)
        try:
            launched = self.ctx.launcher.launch(session)
        except LaunchError as exc:
            sessions.fail_launch(self.ctx.sessions, session.session_id, f"producer launch failed: {exc}")
            raise HttpError(503, "launch_failed", f"could not start ingest: {exc}") from None
        session = sessions.record_launch(self.ctx.sessions, session.session_id, launched)
        try:
            self.ctx.prewarmer.prewarm()
        except Exception:  # pre-warming is an optimisation; never fail a start for it
            log.exception("gpu pre-warm failed", extra={"session": session.session_id})
        log.info("session started", extra={"session": session.session_id, "meeting": meeting_id})
        return self._publishing(session, launched)

    def _publishing(self, session: Session, launched: LaunchResult) -> dict[str, Any]:
        """Where and with what key to publish (the owner's answer to start and rotate)."""
        return {
            **session.public_view(),
            "stream_key": session.stream_key,
            "rtmp_server": launched.rtmp_url.rpartition("/")[0],
            "page_url": self.ctx.page_url(session.session_id) if self.ctx.page_url else None,
        }

    def get_session(self, body: Mapping[str, Any], caller: Caller) -> dict[str, Any]:
        """The session report: state, progress, speakers (and which were named by voice), notes."""
        session = self._session_for(body, caller)
        report = self.ctx.report(session).to_dict()
        if self.ctx.voices is not None:
            namings = self.ctx.voices.library.namings(session.session_id)
            report["named_by_voice"] = {label: n.to_dict() for label, n in namings.items()}
        return report

    def end_session(self, body: Mapping[str, Any], caller: Caller) -> dict[str, Any]:
        """Stop ingest (end-of-stream record first), then start the workflow."""
        session = self._session_for(body, caller)
        try:
            session = sessions.end(self.ctx.sessions, session.session_id)
        except StateConflict as exc:
            raise HttpError(409, "invalid_state", str(exc)) from None
        self.ctx.launcher.stop(session)
        session = sessions.start_processing(self.ctx.sessions, session.session_id)
        execution = self.ctx.workflow.start(session.session_id)
        log.info("session ending", extra={"session": session.session_id, "workflow": execution})
        return {**session.public_view(), "workflow": execution}

    def rotate_stream_key(self, body: Mapping[str, Any], caller: Caller) -> dict[str, Any]:
        """A new stream key for a session taking audio; the old one is refused from now on."""
        session = self._session_for(body, caller)
        launcher = self.ctx.launcher
        if not isinstance(launcher, KeyRotation):
            raise HttpError(
                501, "not_supported", "this deployment's producers cannot change key; end the session and start another"
            )
        if session.state not in sessions.ACTIVE:
            raise HttpError(409, "invalid_state", f"session is {session.state.value}; only a live session has a key")
        key = secrets.token_urlsafe(24)
        try:
            launched = launcher.rotate_key(replace(session, stream_key=key))
            session = sessions.rotate_key(self.ctx.sessions, session.session_id, key, launched)
        except (LaunchError, KeyError, ValueError, StateConflict) as exc:  # it ended meanwhile
            raise HttpError(409, "invalid_state", f"the stream key could not be changed: {exc}") from None
        log.info("stream key rotated", extra={"session": session.session_id})
        return self._publishing(session, launched)

    def rename_speaker(self, body: Mapping[str, Any], caller: Caller) -> dict[str, Any]:
        """Name a session speaker ("S2" -> "Dana"); ``"remember": true`` also keeps the voice."""
        session = self._session_for(body, caller)
        label = _str_field(body, "speaker", max_len=32)
        name = _str_field(body, "name", max_len=100)
        remember = body.get("remember", False)
        if not isinstance(remember, bool):
            raise HttpError(400, "invalid_field", "'remember' must be true or false")
        known = self.ctx.transcripts.speakers(session.session_id)
        if label not in known:
            raise HttpError(
                404,
                "unknown_speaker",
                f"session has no speaker {label!r}; known: {', '.join(known) or 'none yet'}",
            )
        answer: dict[str, Any] = {"session_id": session.session_id}
        if remember:
            # Before the rename: a voice that cannot be remembered leaves the session as it was.
            try:
                answer["voice"] = self._voices().remember(session, label, name).public_view()
            except VoiceError as exc:
                raise HttpError(409, "voice_not_remembered", str(exc)) from None
        self.ctx.transcripts.rename_speaker(session.session_id, label, name)
        if self.ctx.voices is not None:
            self.ctx.voices.renamed_by_owner(session, label, name)
        speakers = self.ctx.transcripts.speakers(session.session_id)
        self._rename_in_notes(session.session_id, speakers)
        return {**answer, "speakers": speakers}

    def undo_voice_name(self, body: Mapping[str, Any], caller: Caller) -> dict[str, Any]:
        """Undo a name given by voice: the speaker gets its label back, in the notes too."""
        session = self._session_for(body, caller)
        label = _str_field(body, "speaker", max_len=32)
        try:
            undone = self._voices().undo(session, label)
        except VoiceError as exc:
            raise HttpError(409, "not_named_by_voice", str(exc)) from None
        speakers = self.ctx.transcripts.speakers(session.session_id)
        self._rename_in_notes(session.session_id, speakers)
        return {"session_id": session.session_id, "speakers": speakers, "undone": {label: undone.to_dict()}}

    def _voices(self) -> Voices:
        if self.ctx.voices is None:
            raise HttpError(409, "no_voice_library", "this deployment keeps no voice library")
        return self.ctx.voices

    def _owner(self, body: Mapping[str, Any], caller: Caller) -> str:
        """Whose voice library a request is about: the caller's own, or any user's for an operator."""
        user_id = _str_field(body, "user_id", required=caller.is_operator, max_len=128)
        if not caller.is_operator:
            user_id = user_id or caller.user_id or ""
            if not may_access(caller, user_id):
                raise HttpError(403, "forbidden", "user_id does not match the caller")
        return user_id

    def list_voices(self, body: Mapping[str, Any], caller: Caller) -> dict[str, Any]:
        """The owner's remembered voices: names and sizes, never the embeddings."""
        owner = self._owner(body, caller)
        voices = self._voices().library.voices(owner)
        return {"user_id": owner, "voices": [v.public_view() for v in voices]}

    def forget_voice(self, body: Mapping[str, Any], caller: Caller) -> dict[str, Any]:
        """Delete one of the owner's voices, embedding included."""
        owner = self._owner(body, caller)
        voice_id = _str_field(body, "voice_id", max_len=64)
        if not self._voices().library.forget_voice(owner, voice_id):
            # Same answer for another owner's voice: don't reveal it exists.
            raise HttpError(404, "unknown_voice", f"no voice {voice_id!r}")
        log.info("voice forgotten", extra={"voice": voice_id})
        return {"user_id": owner, "voice_id": voice_id, "forgotten": True}

    def list_sessions(self, body: Mapping[str, Any], caller: Caller) -> dict[str, Any]:
        """The meetings the caller may read, newest first."""
        limit = _int_field(body, "limit", default=library.MAX_MEETINGS, lo=1, hi=library.MAX_MEETINGS)
        meetings = library.list_meetings(self.ctx.sessions, self.ctx.transcripts, caller, limit=limit)
        return {"sessions": [m.to_dict() for m in meetings]}

    def search(self, body: Mapping[str, Any], caller: Caller) -> dict[str, Any]:
        """Full-text search over every session the caller may read."""
        query = _str_field(body, "query", max_len=500)
        if not search_words(query):
            raise HttpError(400, "invalid_field", "'query' has no words to search for")
        limit = _int_field(body, "limit", default=20, lo=1, hi=library.MAX_HITS)
        hits = library.search_meetings(
            self.ctx.sessions, self.ctx.transcripts, caller, query, limit=limit, page_url=self.ctx.page_url
        )
        return {"query": query, "hits": [h.to_dict() for h in hits]}

    def retranscribe(self, body: Mapping[str, Any], caller: Caller) -> dict[str, Any]:
        """Re-transcribe a finished session from its archived audio, as its next revision."""
        session = self._session_for(body, caller)
        model = _str_field(body, "model", required=False, max_len=100) or None
        language = _str_field(body, "language", required=False, max_len=8) or None
        # API callers choose among the models this machine ships or serves, never a path on it.
        if model is not None and not (model.startswith("bundled:") or model == self.ctx.settings.asr_model):
            raise HttpError(
                400, "invalid_field", f"'model' must be a bundled:NAME model or {self.ctx.settings.asr_model!r}"
            )
        if language is not None and not _LANGUAGE.fullmatch(language):
            raise HttpError(400, "invalid_field", "'language' must be a language code such as 'en' or 'de'")
        if self.ctx.retranscribe is None:
            raise HttpError(
                501, "not_supported", "re-transcription runs where a processor runs: flowbot retranscribe SESSION"
            )
        try:
            revision = self.ctx.retranscribe(session.session_id, model, language)
        except ValueError as exc:
            raise HttpError(409, "invalid_state", str(exc)) from None
        log.info("re-transcription started", extra={"session": session.session_id, "revision": revision.session_id})
        page = self.ctx.page_url(revision.session_id) if self.ctx.page_url else None
        return {**revision.public_view(), "page_url": page}

    def _rename_in_notes(self, session_id: str, speakers: Mapping[str, str]) -> None:
        """Notes already written name people as they were called then: apply the rename to them too."""
        stored = self.ctx.transcripts.get_notes(session_id)
        if not stored:
            return
        try:
            notes = MeetingNotes.from_dict(stored)
        except InvalidNotes:
            log.warning("stored notes unreadable; rename not applied to them", extra={"session": session_id})
            return
        renamed = notes.renamed(speakers)
        if renamed != notes:
            self.ctx.transcripts.put_notes(session_id, renamed.to_dict())
