"""The ASGI application of ``flowbot serve``: API, pages, live feed, downloads, audio and WHIP.

Starlette, not FastAPI: the coordinator API is one ``POST`` whose body is
validated by :class:`control.api.Coordinator` (shared with the Lambda function),
so FastAPI's model validation and OpenAPI would describe nothing the handler
does not already own, and would pull in pydantic. Starlette gives routing,
requests, streaming responses and lifespan, and nothing else.

Routes (``{sid}`` is a session id):

=====================================  ===================================================
``GET /``                              start page
``GET /healthz``                       ``{"ok": true}``
``GET /static/{name}``                 page scripts and styles (no credentials needed)
``POST /api``                          the coordinator (JSON only; Origin checked)
``GET /sessions/{sid}``                the session page
``GET /sessions/{sid}/info``           what the page needs first (topic, state, rights)
``GET /sessions/{sid}/events``         live feed (SSE, ``Last-Event-ID`` resume; :class:`WebFront`)
``GET /sessions/{sid}/transcript``     ``?format=text|srt|vtt|rttm|json[&download=1]``
``GET /sessions/{sid}/audio/{n}``      window ``n``'s archived audio (FLAC)
``POST /sessions/{sid}/whip``          WHIP offer (``application/sdp``, Bearer stream key)
``DELETE /sessions/{sid}/whip/{res}``  end a WHIP publish
=====================================  ===================================================
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from contracts.errors import HttpError
from contracts.frames import validate_session_id
from contracts.settings import ArchiveBackend
from control import library
from control.api import MAX_BODY_BYTES, Coordinator
from control.bearer import BearerError, bearer_token
from control.context import ControlContext
from flowbot.formats import FORMATS, render
from flowbot.web.feed import Cursor, FeedHub
from flowbot.web.guard import (
    SECURITY_HEADERS,
    Access,
    Guard,
    error_response,
    read_body,
    require_content_type,
)
from processor.rttm import window_turns
from producer.whip import MAX_OFFER_BYTES, WhipIngest
from stores.archive import window_key
from stores.base import Session, SessionNotFound

# Request lines are logged under flowbot.serve (path only: a query may hold ?token=).
request_log = logging.getLogger("flowbot.serve.http")
log = logging.getLogger(__name__)

_STATIC_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
}


class WebFront:
    """The ASGI callable: security headers and the request log line around every response,
    and the live feed's fast path.

    A pure ASGI wrapper, not Starlette's ``BaseHTTPMiddleware``. The live feed
    (``GET /sessions/<id>/events``) is answered here, outside Starlette's
    middleware stack: each event is one ``send`` per viewer, and 1,000 viewers
    made the four send-wrapping layers a third of the fan-out's cost.
    """

    def __init__(self, app: Starlette, hub: FeedHub, guard: Guard, ctx: ControlContext) -> None:
        self.app, self.hub, self.guard, self.ctx = app, hub, guard, ctx
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

        parts = scope["path"].split("/")
        if len(parts) == 4 and parts[1] == "sessions" and parts[3] == "events" and scope["method"] == "GET":
            await self.events(scope, receive, send_with_headers, send, parts[2])
            return
        await self.app(scope, receive, send_with_headers)

    async def events(self, scope: Scope, receive: Receive, send_start: Send, send: Send, raw_sid: str) -> None:
        """The live feed of one session: checks, then the stream until the session ends or the viewer goes."""
        request = Request(scope, receive)
        try:
            self.guard.check_host(request)
            session, _ = await session_access(self.guard, self.ctx, request, raw_sid)
            sid = session.session_id
            raw = request.headers.get("last-event-id", "").strip()
            if raw and not (raw.isdigit() and len(raw) <= 18):
                raise HttpError(400, "invalid_last_event_id", "Last-Event-ID must be a revision number")
        except HttpError as exc:
            await error_response(exc)(scope, receive, send_start)
            return
        await send_start(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    # no-transform / X-Accel-Buffering: proxies must pass events through as they come.
                    (b"cache-control", b"no-store, no-transform"),
                    (b"x-accel-buffering", b"no"),
                ],
            }
        )

        async def stream() -> None:
            feed = self.hub.join(sid)
            try:
                await feed.ready.wait()
                cursor = Cursor(int(raw or 0))
                while True:
                    changed = feed.waiter()
                    body, finished = feed.take(cursor)
                    if body:
                        await send({"type": "http.response.body", "body": body, "more_body": True})
                    if finished:
                        return
                    await changed
            finally:
                self.hub.leave(feed)

        # uvicorn drops writes to a closed connection silently: a second task waits for the
        # disconnect and stops the stream, so a departed viewer's state is freed at once.
        streamer = asyncio.ensure_future(stream())

        async def until_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            streamer.cancel()

        listener = asyncio.ensure_future(until_disconnect())
        try:
            await streamer
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not listener.done():
                raise  # the server is cancelling us, not the viewer leaving
        finally:
            listener.cancel()


async def session_access(guard: Guard, ctx: ControlContext, request: Request, raw_sid: str) -> tuple[Session, Access]:
    """The path's session (404 for a bad or unknown id) and the caller's rights over it (401)."""
    try:
        sid = validate_session_id(raw_sid)
    except ValueError:
        raise HttpError(404, "unknown_session", "no such session") from None
    access = guard.require(request, sid)
    try:
        session = await run_in_threadpool(ctx.sessions.get, sid)
    except SessionNotFound:
        raise HttpError(404, "unknown_session", "no such session") from None
    return session, access


def _static_files() -> dict[str, tuple[bytes, str]]:
    root = resources.files("flowbot").joinpath("static")
    return {
        f.name: (f.read_bytes(), _STATIC_TYPES[Path(f.name).suffix])
        for f in root.iterdir()
        if Path(f.name).suffix in _STATIC_TYPES
    }


def build_app(
    ctx: ControlContext,
    coordinator: Coordinator,
    whip: WhipIngest | None = None,
    *,
    body_seconds: float = 10.0,
) -> WebFront:
    """The web front over one control context (stores, coordinator, WHIP ingest)."""
    guard = Guard(ctx.settings)
    hub = FeedHub(ctx)
    static = _static_files()
    page = static["session.html"][0].decode()
    archive_root = ctx.settings.data_dir / "archive" if ctx.settings.archive == ArchiveBackend.LOCAL else None

    async def session_for(request: Request) -> tuple[Session, Access]:
        return await session_access(guard, ctx, request, request.path_params["sid"])

    # -- routes -------------------------------------------------------------------------
    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def static_file(request: Request) -> Response:
        found = static.get(request.path_params["name"])
        if found is None or request.path_params["name"].endswith(".html"):
            raise HttpError(404, "not_found", "no such file")
        return Response(found[0], media_type=found[1], headers={"cache-control": "no-cache"})

    async def index(request: Request) -> Response:
        guard.require(request)
        return Response(static["index.html"][0], media_type=_STATIC_TYPES[".html"])

    async def api(request: Request) -> Response:
        guard.check_origin(request)
        require_content_type(request, "application/json")
        body = await read_body(request, MAX_BODY_BYTES, body_seconds)
        resp = await run_in_threadpool(coordinator.handle, "POST", dict(request.headers), body)
        return Response(resp.json(), resp.status, media_type="application/json", headers={"cache-control": "no-store"})

    async def session_page(request: Request) -> Response:
        session, _ = await session_for(request)
        html = page.replace("__SESSION_ID__", session.session_id)
        return Response(html, media_type=_STATIC_TYPES[".html"], headers={"cache-control": "no-store"})

    async def info(request: Request) -> Response:
        session, access = await session_for(request)
        report = await run_in_threadpool(ctx.report, session)
        view = report.session.public_view()
        view.pop("user_id", None)
        share = None
        if access is Access.OWNER:
            token = guard.view_token(session.session_id)
            share = f"/sessions/{session.session_id}" + (f"?view={token}" if token else "")
        lineage = await run_in_threadpool(library.revisions, ctx.sessions, session)
        body = {
            "session": view,
            "revisions": [
                {"session_id": s.session_id, "revision": s.revision, "asr_model": s.asr_model, "state": s.state}
                for s in lineage
            ],
            "speakers": report.speakers,
            "can_edit": access is Access.OWNER,
            "share_path": share,
            "formats": list(FORMATS),
        }
        return JSONResponse(body, headers={"cache-control": "no-store"})

    async def transcript(request: Request) -> Response:
        session, _ = await session_for(request)
        fmt = request.query_params.get("format", "json")
        if fmt not in FORMATS:
            raise HttpError(400, "invalid_format", f"format must be one of {', '.join(FORMATS)}")
        sid = session.session_id

        def rendered() -> str:
            t = ctx.transcripts
            turns = window_turns(t.windows(sid))
            return render(fmt, sid, t.segments(sid), t.speakers(sid), t.get_notes(sid), turns=turns)

        headers = {"cache-control": "no-store"}
        if request.query_params.get("download") == "1":
            headers["content-disposition"] = f'attachment; filename="{sid}.{FORMATS[fmt].extension}"'
        return Response(await run_in_threadpool(rendered), media_type=FORMATS[fmt].media_type, headers=headers)

    async def audio(request: Request) -> Response:
        session, _ = await session_for(request)
        raw = request.path_params["window"]
        if not raw.isdigit() or len(raw) > 9:
            raise HttpError(400, "invalid_window", "the window is a non-negative integer")
        path = archive_root / window_key(session.session_id, int(raw)) if archive_root else None
        if path is None or not path.is_file():
            raise HttpError(404, "no_audio", "no archived audio for that window")
        return FileResponse(path, media_type="audio/flac", headers={"cache-control": "private, max-age=3600"})

    async def whip_offer(request: Request) -> Response:
        sid = validate_whip(request)
        guard.check_origin(request)
        require_content_type(request, "application/sdp")
        body = await read_body(request, MAX_OFFER_BYTES, body_seconds)
        key = stream_key(request)
        peer = f"{request.client.host}:{request.client.port}" if request.client else "?"
        location, answer = await active_whip().answer(sid, key, body, peer)
        return Response(
            answer, 201, media_type="application/sdp", headers={"location": location, "cache-control": "no-store"}
        )

    async def whip_delete(request: Request) -> Response:
        sid = validate_whip(request)
        guard.check_origin(request)
        await active_whip().hang_up(sid, request.path_params["resource"], stream_key(request))
        return Response(b"", 200, headers={"cache-control": "no-store"})

    def validate_whip(request: Request) -> str:
        try:
            return validate_session_id(request.path_params["sid"])
        except ValueError as exc:
            raise HttpError(404, "unknown_session", str(exc)) from None

    def active_whip() -> WhipIngest:
        if whip is None:
            raise HttpError(501, "whip_unavailable", "WHIP ingest is not part of this server")
        return whip

    def stream_key(request: Request) -> str:
        try:
            return bearer_token(request.headers)
        except BearerError:
            raise HttpError(401, "unauthorized", "Authorization: Bearer <stream key> is required") from None

    # -- errors: every refusal is JSON ---------------------------------------------------------
    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HttpError)  # WHIP's refusals too (producer.whip.WhipError)
        return error_response(exc)

    async def on_starlette_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        message = f"no route for {request.method} {request.url.path}" if exc.status_code in (404, 405) else exc.detail
        return error_response(HttpError(exc.status_code, code, message))

    async def on_crash(request: Request, exc: Exception) -> Response:
        log.error("web request failed", extra={"path": request.url.path, "error": repr(exc)}, exc_info=exc)
        return error_response(HttpError(500, "internal", "internal error; see logs"))

    # Host check on everything but health and page assets.
    def host_checked(endpoint: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def checked(request: Request) -> Response:
            guard.check_host(request)
            return await endpoint(request)

        return checked

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if whip is not None:
            await whip.attach()
        yield
        hub.close()

    routes = [
        Route("/healthz", healthz),
        Route("/static/{name}", static_file),
        Route("/", host_checked(index)),
        Route("/api", host_checked(api), methods=["POST"]),
        Route("/sessions/{sid}", host_checked(session_page)),
        Route("/sessions/{sid}/info", host_checked(info)),
        Route("/sessions/{sid}/transcript", host_checked(transcript)),
        Route("/sessions/{sid}/audio/{window}", host_checked(audio)),
        Route("/sessions/{sid}/whip", host_checked(whip_offer), methods=["POST"]),
        Route("/sessions/{sid}/whip/{resource}", host_checked(whip_delete), methods=["DELETE"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            HttpError: on_http_error,
            HTTPException: on_starlette_error,
            Exception: on_crash,
        },
    )
    return WebFront(app, hub, guard, ctx)
