"""After a restart, every session a crash left in a non-terminal state carries on.

The coordinator's steps are each durable in the session store, so a crash can
only stop a session *between* them. One table says how each state continues;
:func:`recover_sessions` applies it at start-up (``flowbot serve`` calls it
before it accepts requests):

- ``starting``, ``live``: the publisher may come back; ingest takes the
  session's key again and continues its timeline (``resume_ingest``).
- ``ending``: ``end_session`` was cut off before the end-of-stream record was
  certainly written: ingest is resumed and stopped (the launcher writes the
  record only if the stream does not already end with one), then as below.
- ``processing``: the end-of-session workflow was cut off: it starts again from
  what the store holds. Its steps are idempotent (notes are rewritten, the
  final state is a conditional transition), and the wait for windows starts a
  fresh ``workflow_timeout_seconds``.

Terminal states (completed, partial, failed) need nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from control import sessions
from control.context import ControlContext
from stores.base import Session, SessionState, StateConflict

log = logging.getLogger(__name__)

#: What a restart does for a session in each non-terminal state (see the module doc);
#: the terminal states are :data:`control.sessions.TERMINAL`.
RECOVERY: dict[SessionState, str] = {
    SessionState.STARTING: "resume ingest",
    SessionState.LIVE: "resume ingest",
    SessionState.ENDING: "resume ingest, end the stream, run the workflow",
    SessionState.PROCESSING: "run the workflow",
}


def recover_sessions(ctx: ControlContext, resume_ingest: Callable[[Session], None]) -> dict[str, str]:
    """Continue every non-terminal session; returns session id -> what was done.

    ``resume_ingest(session)`` makes ingest accept the session's key again,
    continuing its timeline (it does nothing for a stream that already ended).
    One session that cannot be recovered is logged and does not stop the others.
    """
    done: dict[str, str] = {}
    for session in ctx.sessions.list(list(RECOVERY)):
        try:
            _recover(ctx, session, resume_ingest)
            done[session.session_id] = RECOVERY[session.state]
            log.info(
                "session recovered",
                extra={"session": session.session_id, "state": session.state.value, "action": RECOVERY[session.state]},
            )
        except Exception:
            log.exception("session recovery failed", extra={"session": session.session_id})
    return done


def _recover(ctx: ControlContext, session: Session, resume_ingest: Callable[[Session], None]) -> None:
    if session.state in (SessionState.STARTING, SessionState.LIVE, SessionState.ENDING):
        resume_ingest(session)
    if session.state == SessionState.ENDING:
        ctx.launcher.stop(session)
        try:
            session = sessions.start_processing(ctx.sessions, session.session_id)
        except StateConflict:
            return  # moved on meanwhile (another coordinator)
    if session.state == SessionState.PROCESSING:
        ctx.workflow.start(session.session_id)
