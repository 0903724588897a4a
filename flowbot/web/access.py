"""Who may use each route of the web front: one access model for pages, feed, downloads and API.

Every route names what it needs, and :class:`AccessPolicy` decides it the same way for all
of them, through :meth:`flowbot.web.guard.Guard.require`:

=============  ======================================================  ==========================
need           who                                                     routes
=============  ======================================================  ==========================
``open``       anyone                                                  ``/healthz``, ``/static``
``owner``      the API token (or anyone on a loopback server without)  ``/``, ``/api``
``session``    the owner, or the view token of the path's session      the session's page, feed,
                                                                       ``/info``, downloads, audio
``publisher``  the session's stream key (checked by the ingest hub)    WHIP offer and hang-up
=============  ======================================================  ==========================

What a ``session`` reader is shown is :mod:`flowbot.web.views`'s: never what publishes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from contracts.errors import HttpError
from contracts.frames import validate_session_id
from flowbot.web.guard import Access, Guard
from stores.base import Session, SessionNotFound, SessionStore

Endpoint = Callable[[Request], Awaitable[Response]]
SessionEndpoint = Callable[[Request, Session, Access], Awaitable[Response]]


@dataclass(frozen=True)
class AccessPolicy:
    """The access rules above, over one server's guard and session store."""

    guard: Guard
    sessions: SessionStore

    def owner(self, request: Request) -> None:
        """Refuse (401) anyone but the owner."""
        self.guard.require(request)

    async def session(self, request: Request, raw_sid: str) -> tuple[Session, Access]:
        """The path's session (404 for a bad or unknown id) and the caller's rights over it (401)."""
        try:
            sid = validate_session_id(raw_sid)
        except ValueError:
            raise HttpError(404, "unknown_session", "no such session") from None
        access = self.guard.require(request, sid)
        try:
            session = await run_in_threadpool(self.sessions.get, sid)
        except SessionNotFound:
            raise HttpError(404, "unknown_session", "no such session") from None
        return session, access

    # -- per-route declarations -------------------------------------------------------------
    def owner_only(self, endpoint: Endpoint) -> Endpoint:
        """``endpoint`` for the owner only."""

        async def checked(request: Request) -> Response:
            self.owner(request)
            return await endpoint(request)

        return checked

    def session_reader(self, endpoint: SessionEndpoint) -> Endpoint:
        """``endpoint(request, session, access)`` for the owner or a viewer of ``{sid}``."""

        async def checked(request: Request) -> Response:
            session, access = await self.session(request, request.path_params["sid"])
            return await endpoint(request, session, access)

        return checked
