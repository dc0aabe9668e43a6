"""The dashboard's web server: the page, a stream of snapshots, and the actions.

Why Starlette and uvicorn: the page needs one streaming response (server-sent events), a few
JSON routes and static files; Starlette does that in a few hundred lines of pure Python with
one dependency (anyio), and its ``TestClient`` tests the routes and the security model
in-process. uvicorn (h11, click) serves it. aiohttp would do too, but brings its own C
extensions (multidict, yarl, frozenlist) for nothing more here. Server-sent events, not a
WebSocket: the page only listens; its actions are plain POSTs, each carrying the token, and
``EventSource`` reconnects by itself.

The security model (the README's "Dashboard" section says the same to users). The dashboard
can start jobs: it is a control surface.

- It binds 127.0.0.1 unless told otherwise (``--host``), and warns when it is.
- Every request must name an allowed host in ``Host`` (localhost names, the bound address,
  ``--allow-host``): a DNS-rebinding page cannot read it through a name of its own.
- A token (printed at start, or read from ``--token-file``) proves the user. The page URL
  carries it in the fragment (``/#token=...``), which the browser never sends to a server
  nor puts in a Referer. The page's script trades it once for a session cookie
  (``POST /api/session``, token in the ``X-Distproc-Token`` header) that is ``HttpOnly``
  and ``SameSite=Strict``, and keeps it in ``sessionStorage`` for its own requests.
- Reading (``/api/state``, ``/api/events``) needs the session cookie.
- Changing anything (``POST /api/job``, ``/api/cancel``, ``/api/check``) needs the cookie
  AND the token in the ``X-Distproc-Token`` header AND, when the browser sends them, an
  ``Origin`` equal to the dashboard's own and a ``Sec-Fetch-Site`` of ``same-origin``.
  Another site's form cannot set a header, its script cannot send one without a CORS
  preflight that this server never approves, and a strict cookie does not travel with a
  cross-site request. No GET changes anything. A refusal is a 403 with nothing done.
- The page is never framed (``frame-ancestors 'none'``), loads scripts from itself only
  (CSP ``script-src 'self'``), and nothing from a CDN.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..model import OrchestrateError
from .poller import Busy, Poller

STATIC = Path(__file__).parent / "static"
TOKEN_HEADER = "X-Distproc-Token"
COOKIE = "distproc_dashboard"
LOCAL_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")
MIN_TOKEN = 16  # characters of a token read from a file
SEND_EVERY = 1.0  # a page gets a snapshot at least this often, even if nothing changed
CHECK_EVERY = 0.2  # how often a stream looks for a new snapshot
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'none'; "
    "base-uri 'none'"
)


def new_token() -> str:
    return secrets.token_urlsafe(24)


def read_token(path: Path) -> str:
    """A token from a file (stripped); refused when shorter than ``MIN_TOKEN``."""
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise OrchestrateError(f"--token-file {path}: {exc.strerror}") from None
    if len(token) < MIN_TOKEN:
        raise OrchestrateError(f"--token-file {path}: a token needs {MIN_TOKEN}+ characters")
    return token


def allowed_hosts(bind: str, extra: list[str] | None = None) -> set[str]:
    """The names a request's ``Host`` may give: localhost's, the bound address (unless a
    wildcard), and those given."""
    names = {*LOCAL_NAMES, *(extra or [])}
    if bind not in ("0.0.0.0", "::", ""):
        names.add(bind)
    return {n.lower() for n in names}


def _host_name(host_header: str) -> str:
    """``Host`` without its port (``[::1]:8050`` -> ``[::1]``)."""
    if host_header.startswith("["):
        return host_header.split("]")[0] + "]"
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


class Security(BaseHTTPMiddleware):
    """``Host`` checked on every request; security headers on every response."""

    def __init__(self, app: Any, hosts: set[str], any_ip: bool) -> None:
        super().__init__(app)
        self.hosts = hosts
        self.any_ip = any_ip  # bound to a wildcard: any IP literal is the user's own address

    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        name = _host_name(request.headers.get("host", "")).lower()
        if name not in self.hosts and not (self.any_ip and _is_ip(name)):
            return JSONResponse({"error": f"host {name!r} not allowed"}, status_code=403)
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response


def create_app(poller: Poller, token: str, hosts: set[str], any_ip: bool = False) -> Starlette:
    """The dashboard's app, for ``poller``'s cluster, guarded by ``token``."""
    session = secrets.token_urlsafe(32)  # the cookie's value: proof that the token was shown

    def has_session(request: Request) -> bool:
        return hmac.compare_digest(request.cookies.get(COOKIE, ""), session)

    def has_token(request: Request) -> bool:
        return hmac.compare_digest(request.headers.get(TOKEN_HEADER, ""), token)

    def same_origin(request: Request) -> bool:
        origin = request.headers.get("origin")
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return False
        return origin is None or origin == f"{request.url.scheme}://{request.headers['host']}"

    def refused(why: str) -> JSONResponse:
        return JSONResponse({"error": why}, status_code=403)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def login(request: Request) -> Response:
        if not same_origin(request):
            return refused("cross-origin request refused")
        if not has_token(request):
            return refused("wrong or missing token")
        response = JSONResponse({"ok": True, "cluster": poller.cluster.name})
        response.set_cookie(COOKIE, session, httponly=True, samesite="strict", path="/")
        return response

    async def state(request: Request) -> Response:
        if not has_session(request):
            return refused("no session: open the URL with the token that was printed")
        return Response(poller.latest()[1], media_type="application/json")

    async def events(request: Request) -> Response:
        if not has_session(request):
            return refused("no session: open the URL with the token that was printed")
        return StreamingResponse(_stream(poller, request), media_type="text/event-stream")

    def action(work: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[..., Any]:
        async def handler(request: Request) -> Response:
            if not same_origin(request):
                return refused("cross-origin request refused")
            if not (has_session(request) and has_token(request)):
                return refused("wrong or missing token")
            try:
                body = await request.json() if await request.body() else {}
            except ValueError:
                return JSONResponse({"error": "the body is not JSON"}, status_code=400)
            if not isinstance(body, dict):
                return JSONResponse({"error": "the body is not a JSON object"}, status_code=400)
            try:
                result = await asyncio.to_thread(work, body)
            except Busy as exc:
                return JSONResponse({"error": str(exc)}, status_code=409)
            except (OrchestrateError, ValueError, TypeError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            return JSONResponse(result)

        return handler

    routes = [
        Route("/", index),
        Route("/api/session", login, methods=["POST"]),
        Route("/api/state", state),
        Route("/api/events", events),
        Route(
            "/api/job", action(lambda body: poller.start_job(_job_fields(body))), methods=["POST"]
        ),
        Route("/api/cancel", action(lambda body: poller.cancel()), methods=["POST"]),
        Route("/api/check", action(lambda body: poller.check()), methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(Security, hosts=hosts, any_ip=any_ip)])


def _job_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The form's fields, typed as the Job model wants them ("" means: the file's)."""
    from distproc.spec import job_fields

    known = {f.name: f for f in job_fields()}
    out: dict[str, Any] = {}
    for name, value in body.items():
        if name not in known:
            raise ValueError(f"unknown job field {name!r}")
        if value in ("", None):
            continue
        out[name] = known[name].parse(str(value)) if isinstance(value, str) else value
    return out


async def _stream(poller: Poller, request: Request) -> AsyncIterator[str]:
    """Server-sent events: a snapshot whenever a new one exists, and at least every
    ``SEND_EVERY`` seconds; the page counts on that to tell a live stream from a dead one."""
    poller.subscribe()
    try:
        sent, last = -1, 0.0
        loop = asyncio.get_running_loop()
        while True:
            version, text = poller.latest()
            now = loop.time()
            if version != sent or now - last >= SEND_EVERY:
                yield f"id: {version}\nevent: state\ndata: {text}\n\n"
                sent, last = version, now
            await asyncio.sleep(CHECK_EVERY)
            if await request.is_disconnected():
                return
    finally:
        poller.unsubscribe()


def serve(
    poller: Poller,
    host: str,
    port: int,
    token: str,
    extra_hosts: list[str] | None = None,
    on_started: Callable[[str], None] | None = None,
    in_thread: bool = False,
) -> Any:
    """Serve the dashboard (blocking; with ``in_thread``, in a daemon thread, returning the
    uvicorn server to ``should_exit`` later). ``on_started(url)`` runs once it listens."""
    import threading

    import uvicorn

    wildcard = host in ("0.0.0.0", "::")
    app = create_app(poller, token, allowed_hosts(host, extra_hosts), any_ip=wildcard)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    shown = f"[{host}]" if ":" in host else host
    shown = "127.0.0.1" if wildcard else shown
    url = f"http://{shown}:{port}/#token={token}"

    def announce() -> None:
        while not server.started and not server.should_exit:
            threading.Event().wait(0.05)
        if server.started and on_started is not None:
            on_started(url)

    poller.start()
    threading.Thread(target=announce, name="dashboard-announce", daemon=True).start()
    if in_thread:
        threading.Thread(target=server.run, name="dashboard-server", daemon=True).start()
        return server
    try:
        server.run()
    finally:
        poller.stop()
    return server
