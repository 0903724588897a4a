"""The ASGI application of ``flowbot serve``: API, pages, live feed, downloads, audio and WHIP.

Starlette, not FastAPI: the coordinator API is one ``POST`` whose body is
validated by :class:`control.api.Coordinator` (shared with the Lambda function),
so FastAPI's model validation and OpenAPI would describe nothing the handler
does not already own, and would pull in pydantic. Starlette gives routing,
requests, streaming responses and lifespan, and nothing else.

Routes (``{sid}`` is a session id; "need" is :mod:`flowbot.web.access`'s):

=====================================  =========  ===========================================
route                                  need       what
=====================================  =========  ===========================================
``GET /healthz``                       open       ``{"ok": true}``
``GET /static/{name}``                 open       page scripts and styles
``GET /``                              owner      start page
``POST /api``                          owner      the coordinator (JSON only)
``GET /sessions/{sid}``                session    the session page
``GET /sessions/{sid}/info``           session    what the page needs first (topic, state, rights)
``GET /sessions/{sid}/events``         session    live feed (SSE, ``Last-Event-ID``; :mod:`.live`)
``GET /sessions/{sid}/transcript``     session    ``?format=text|srt|vtt|rttm|json[&download=1]``
``GET /sessions/{sid}/audio/{n}``      session    window ``n``'s archived audio (FLAC)
``POST /sessions/{sid}/whip``          publisher  WHIP offer (``application/sdp``, Bearer stream key)
``DELETE /sessions/{sid}/whip/{res}``  publisher  end a WHIP publish
=====================================  =========  ===========================================

The layers, outside in: :class:`WebFront` (security headers and the request log line on
every response), :class:`flowbot.web.guard.RequestGuard` (Host and Origin), then the live
feed's endpoint or Starlette's routers (:mod:`flowbot.web.routes`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts.errors import HttpError
from control.api import Coordinator
from control.context import ControlContext
from flowbot.web.access import AccessPolicy
from flowbot.web.feed import FeedHub
from flowbot.web.guard import SECURITY_HEADERS, Guard, RequestGuard, error_response
from flowbot.web.live import LiveFeed, feed_session
from flowbot.web.routes import api_routes, page_routes, session_routes, static_files, whip_routes
from producer.whip import WhipIngest

# Request lines are logged under flowbot.serve (path only: a query may hold ?token=).
request_log = logging.getLogger("flowbot.serve.http")
log = logging.getLogger(__name__)


class WebFront:
    """The ASGI callable: security headers and the request log line around every response.

    A pure ASGI wrapper, not Starlette's ``BaseHTTPMiddleware``: it wraps ``send`` once, and
    the live feed's sends (one per viewer per event) pass through nothing else on their way
    to uvicorn (:class:`_Dispatch`).
    """

    def __init__(self, app: ASGIApp, hub: FeedHub, guard: Guard) -> None:
        self.app, self.hub, self.guard = app, hub, guard
        self.headers = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.headers]
                where = {"method": scope["method"], "path": scope["path"], "status": message["status"]}
                request_log.debug("http request", extra=where)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _Dispatch:
    """The live feed's path to its endpoint, everything else to Starlette."""

    def __init__(self, feed: LiveFeed, app: Starlette) -> None:
        self.feed, self.app = feed, app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and feed_session(scope["path"]) is not None:
            await self.feed(scope, receive, send)
        else:
            await self.app(scope, receive, send)


# -- errors: every refusal is JSON ---------------------------------------------------------------
async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HttpError)  # WHIP's refusals too (producer.whip.WhipError)
    return error_response(exc)


async def _on_starlette_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
    message = f"no route for {request.method} {request.url.path}" if exc.status_code in (404, 405) else exc.detail
    return error_response(HttpError(exc.status_code, code, message))


async def _on_crash(request: Request, exc: Exception) -> Response:
    log.error("web request failed", extra={"path": request.url.path, "error": repr(exc)}, exc_info=exc)
    return error_response(HttpError(500, "internal", "internal error; see logs"))


def build_app(
    ctx: ControlContext,
    coordinator: Coordinator,
    whip: WhipIngest | None = None,
    *,
    body_seconds: float = 10.0,
) -> WebFront:
    """The web front over one control context (stores, coordinator, WHIP ingest)."""
    guard = Guard(ctx.settings)
    policy = AccessPolicy(guard, ctx.sessions)
    hub = FeedHub(ctx)
    static = static_files()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if whip is not None:
            await whip.attach()
        yield
        hub.close()

    routes = [
        *page_routes(policy, static),
        *api_routes(policy, coordinator, body_seconds),
        *whip_routes(whip, body_seconds),
        *session_routes(policy, ctx, static["session.html"][0].decode()),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HttpError: _on_http_error, HTTPException: _on_starlette_error, Exception: _on_crash},
    )
    return WebFront(RequestGuard(_Dispatch(LiveFeed(hub, policy), app), guard), hub, guard)
