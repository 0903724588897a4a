"""The routes of the web front, one router per kind of client, each route with its access need.

- :func:`page_routes`: the start page and page assets;
- :func:`api_routes`: the coordinator (``POST /api``);
- :func:`session_routes`: one session's page, ``/info``, downloads and audio (owner or viewer);
- :func:`whip_routes`: WHIP offers and hang-ups (the stream key is the credential).

The live feed (``/sessions/{sid}/events``) is :class:`flowbot.web.live.LiveFeed`, answered
before Starlette's stack (see :class:`flowbot.web.app.WebFront`). Host and Origin are checked
for all of them by :class:`flowbot.web.guard.RequestGuard`; who may call is
:class:`flowbot.web.access.AccessPolicy`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from contracts.errors import HttpError
from contracts.frames import validate_session_id
from contracts.settings import ArchiveBackend
from control import library
from control.api import MAX_BODY_BYTES, Coordinator
from control.bearer import BearerError, bearer_token
from control.context import ControlContext
from flowbot.formats import FORMATS, render
from flowbot.web.access import AccessPolicy
from flowbot.web.guard import Access, ascii_number, read_body, require_content_type
from flowbot.web.views import owner_voice_namings, viewer_segments, viewer_session
from processor.rttm import window_turns
from producer.whip import MAX_OFFER_BYTES, WhipIngest
from stores.archive import window_key
from stores.base import Session

HTML = "text/html; charset=utf-8"
_STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".html": HTML}
_NO_STORE = {"cache-control": "no-store"}


def static_files() -> dict[str, tuple[bytes, str]]:
    """The page assets shipped in ``flowbot/static``: name -> (bytes, media type)."""
    root = resources.files("flowbot").joinpath("static")
    return {
        f.name: (f.read_bytes(), _STATIC_TYPES[Path(f.name).suffix])
        for f in root.iterdir()
        if Path(f.name).suffix in _STATIC_TYPES
    }


def page_routes(policy: AccessPolicy, static: dict[str, tuple[bytes, str]]) -> list[BaseRoute]:
    """``/healthz``, ``/static/{name}`` (open) and the start page (owner)."""

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def static_file(request: Request) -> Response:
        name = request.path_params["name"]
        found = static.get(name)
        if found is None or name.endswith(".html"):
            raise HttpError(404, "not_found", "no such file")
        return Response(found[0], media_type=found[1], headers={"cache-control": "no-cache"})

    async def index(request: Request) -> Response:
        return Response(static["index.html"][0], media_type=HTML)

    return [
        Route("/healthz", healthz),
        Mount("/static", routes=[Route("/{name}", static_file)]),
        Route("/", policy.owner_only(index)),
    ]


def api_routes(policy: AccessPolicy, coordinator: Coordinator, body_seconds: float) -> list[BaseRoute]:
    """``POST /api``: JSON only (a cross-site form cannot send it), the owner only."""

    async def api(request: Request) -> Response:
        require_content_type(request, "application/json")
        policy.owner(request)
        body = await read_body(request, MAX_BODY_BYTES, body_seconds)
        resp = await run_in_threadpool(coordinator.handle, "POST", dict(request.headers), body)
        return Response(resp.json(), resp.status, media_type="application/json", headers=_NO_STORE)

    return [Route("/api", api, methods=["POST"])]


def session_routes(policy: AccessPolicy, ctx: ControlContext, page: str) -> list[BaseRoute]:
    """One session's page, ``/info``, ``/transcript`` and ``/audio/{window}``: owner or viewer."""
    pages = _SessionPages(policy, ctx, page)
    reader = policy.session_reader
    # The Mount answers every /sessions/{sid}/... path: routes of their own (WHIP) come first.
    return [
        Route("/sessions/{sid}", reader(pages.session_page)),
        Mount(
            "/sessions/{sid}",
            routes=[
                Route("/info", reader(pages.info)),
                Route("/transcript", reader(pages.transcript)),
                Route("/audio/{window}", reader(pages.audio)),
            ],
        ),
    ]


class _SessionPages:
    """The endpoints of one session, each given the session and the caller's access by the policy."""

    def __init__(self, policy: AccessPolicy, ctx: ControlContext, page: str) -> None:
        self.policy = policy
        self.ctx = ctx
        self.page = page
        self.archive_root = ctx.settings.data_dir / "archive" if ctx.settings.archive == ArchiveBackend.LOCAL else None

    async def session_page(self, request: Request, session: Session, access: Access) -> Response:
        """The session page (``flowbot/static``) for this session."""
        return Response(self.page.replace("__SESSION_ID__", session.session_id), media_type=HTML, headers=_NO_STORE)

    async def info(self, request: Request, session: Session, access: Access) -> Response:
        """The session as a viewer sees it, its revisions, speakers and what the caller may do."""
        report = await run_in_threadpool(self.ctx.report, session)
        share = self._share_path(session) if access is Access.OWNER else None
        lineage = await run_in_threadpool(library.revisions, self.ctx.sessions, session)
        body = {
            "session": viewer_session(report.session),
            "revisions": [
                {"session_id": s.session_id, "revision": s.revision, "asr_model": s.asr_model, "state": s.state}
                for s in lineage
            ],
            "speakers": report.speakers,
            "can_edit": access is Access.OWNER,
            "share_path": share,
            "formats": list(FORMATS),
        }
        if access is Access.OWNER and self.ctx.voices is not None:
            # Scores are the owner's only (flowbot/web/views.py): a viewer sees names, not how they came.
            namings = await run_in_threadpool(self.ctx.voices.library.namings, session.session_id)
            body["named_by_voice"] = owner_voice_namings(namings)
        return JSONResponse(body, headers=_NO_STORE)

    def _share_path(self, session: Session) -> str:
        """The page's path with the view token that lets viewers in (when the policy issues one)."""
        token = self.policy.guard.view_token(session.session_id)
        return f"/sessions/{session.session_id}" + (f"?view={token}" if token else "")

    async def transcript(self, request: Request, session: Session, access: Access) -> Response:
        """The transcript in ``?format=`` (a download with ``?download=1``)."""
        fmt = request.query_params.get("format", "json")
        if fmt not in FORMATS:
            raise HttpError(400, "invalid_format", f"format must be one of {', '.join(FORMATS)}")
        sid = session.session_id
        headers = dict(_NO_STORE)
        if request.query_params.get("download") == "1":
            headers["content-disposition"] = f'attachment; filename="{sid}.{FORMATS[fmt].extension}"'
        text = await run_in_threadpool(self._rendered, fmt, sid)
        return Response(text, media_type=FORMATS[fmt].media_type, headers=headers)

    def _rendered(self, fmt: str, sid: str) -> str:
        t = self.ctx.transcripts
        turns = window_turns(t.windows(sid))
        segments = viewer_segments(t.segments(sid))
        return render(fmt, sid, segments, t.speakers(sid), t.get_notes(sid), turns=turns)

    async def audio(self, request: Request, session: Session, access: Access) -> Response:
        """One window's archived audio (FLAC), when the archive is local."""
        window = ascii_number(request.path_params["window"], 9)
        if window is None:
            raise HttpError(400, "invalid_window", "the window is a non-negative integer")
        path = self.archive_root / window_key(session.session_id, window) if self.archive_root else None
        if path is None or not path.is_file():
            raise HttpError(404, "no_audio", "no archived audio for that window")
        return FileResponse(path, media_type="audio/flac", headers={"cache-control": "private, max-age=3600"})


def whip_routes(whip: WhipIngest | None, body_seconds: float) -> list[BaseRoute]:
    """WHIP: ``POST /sessions/{sid}/whip`` (an SDP offer) and ``DELETE .../whip/{resource}``.

    The credential is the session's stream key (``Authorization: Bearer``), which the ingest
    hub checks: publishing is not a page right, and no view token reaches the key.
    """

    async def whip_offer(request: Request) -> Response:
        sid = _whip_session(request)
        require_content_type(request, "application/sdp")
        body = await read_body(request, MAX_OFFER_BYTES, body_seconds)
        key = _stream_key(request)
        peer = f"{request.client.host}:{request.client.port}" if request.client else "?"
        location, answer = await _active(whip).answer(sid, key, body, peer)
        headers = {"location": location, **_NO_STORE}
        return Response(answer, 201, media_type="application/sdp", headers=headers)

    async def whip_delete(request: Request) -> Response:
        sid = _whip_session(request)
        await _active(whip).hang_up(sid, request.path_params["resource"], _stream_key(request))
        return Response(b"", 200, headers=_NO_STORE)

    return [
        Route("/sessions/{sid}/whip", whip_offer, methods=["POST"]),
        Route("/sessions/{sid}/whip/{resource}", whip_delete, methods=["DELETE"]),
    ]


def _whip_session(request: Request) -> str:
    try:
        return validate_session_id(request.path_params["sid"])
    except ValueError as exc:
        raise HttpError(404, "unknown_session", str(exc)) from None


def _active(whip: WhipIngest | None) -> WhipIngest:
    if whip is None:
        raise HttpError(501, "whip_unavailable", "WHIP ingest is not part of this server")
    return whip


def _stream_key(request: Request) -> str:
    try:
        return bearer_token(request.headers)
    except BearerError:
        raise HttpError(401, "unauthorized", "Authorization: Bearer <stream key> is required") from None
