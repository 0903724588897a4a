"""A test double of Supabase Realtime's ``postgres_changes`` channel protocol.

The real Realtime server cannot run here (it needs Elixir >= 1.16 and Hex
packages). This double speaks the same Phoenix websocket protocol to the real
async supabase-py client (phx_join with ``config.postgres_changes`` bindings ->
phx_reply carrying binding ids, heartbeat, access_token, phx_leave, and
``postgres_changes`` messages), and feeds it real changes from the test
PostgreSQL:

* changes are captured by a trigger on every table of the
  ``supabase_realtime`` publication (so only published tables produce
  messages) into an outbox table, polled in commit order;
* each change goes to the bindings whose table, event and ``col=eq.value``
  filter match, and only if the subscriber's JWT can read the row through
  PostgREST, i.e. row-level security decides, as in Realtime (which also
  sends DELETEs unchecked).

What it does not reproduce: Realtime's WAL decoding details (it sends
``to_jsonb`` of the row), rate limits, presence and broadcast.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
from websockets.asyncio.server import Server, ServerConnection, serve

from testkit.supabase_stack import JWT_SECRET, SupabaseStack

OUTBOX_SQL = Path(__file__).with_name("fake_realtime.sql")
PRIMARY_KEYS = {
    "meetings": ["id"],
    "sessions": ["id"],
    "transcript_segments": ["session_id", "window_index", "segment_index"],
    "transcript_windows": ["session_id", "window_index"],
    "session_speakers": ["session_id", "label"],
    "meeting_notes": ["session_id"],
    "voice_namings": ["session_id", "label"],
}


@dataclass
class Binding:
    """One postgres_changes binding of a joined channel."""

    id: int
    event: str
    schema: str
    table: str
    filter: str | None

    def matches(self, table: str, op: str, row: dict[str, Any]) -> bool:
        if self.table not in ("*", table) or self.event not in ("*", op):
            return False
        if not self.filter:
            return True
        for cond in self.filter.split(","):
            column, _, rest = cond.partition("=")
            opname, _, value = rest.partition(".")
            if opname != "eq":
                raise ValueError(f"fake Realtime only supports eq filters, got {cond!r}")
            if str(row.get(column)) != value:
                return False
        return True


@dataclass
class Subscription:
    """A joined channel on one socket."""

    ws: ServerConnection
    topic: str
    token: str
    bindings: list[Binding] = field(default_factory=list)


class FakeRealtime:
    """Realtime double on 127.0.0.1, reachable through the stack's gateway at /realtime/v1."""

    def __init__(self, stack: SupabaseStack, poll_s: float = 0.05) -> None:
        self.stack = stack
        self.poll_s = poll_s
        self.subs: list[Subscription] = []
        self.sent: list[dict[str, Any]] = []  # every postgres_changes message sent
        self.joins: list[dict[str, Any]] = []  # every phx_join payload received
        self._next_id = 1000
        self._last = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: Server | None = None
        self._poller: asyncio.Task[None] | None = None
        self.port = 0

    def start(self) -> FakeRealtime:
        """Install the outbox trigger, listen, route /realtime/v1 to us, start polling."""
        self.stack.pg.psql(file=OUTBOX_SQL)
        self._last = int(self.stack.pg.query("SELECT coalesce(max(id), 0) FROM flowbot_test.outbox")[0][0])
        self._thread.start()

        async def boot() -> None:
            self._server = await serve(self._handle, "127.0.0.1", 0)
            self._poller = asyncio.create_task(self._poll())

        asyncio.run_coroutine_threadsafe(boot(), self._loop).result(10)
        assert self._server is not None
        self.port = int(next(iter(self._server.sockets)).getsockname()[1])
        self.stack.gateway.routes["/realtime/v1"] = self.port
        return self

    def close(self) -> None:
        """Stop the server and the thread; leave the outbox trigger (harmless)."""
        self.stack.gateway.routes.pop("/realtime/v1", None)

        async def shutdown() -> None:
            if self._poller is not None:
                self._poller.cancel()
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    # --- protocol ------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlparse(ws.request.path).query) if ws.request else {}
        apikey = (query.get("apikey") or [""])[0]
        try:
            async for raw in ws:
                msg = json.loads(raw)
                topic, event, payload, ref = msg["topic"], msg["event"], msg["payload"], msg.get("ref")
                if event == "heartbeat":
                    await self._reply(ws, topic, ref, "ok", {})
                elif event == "phx_join":
                    await self._join(ws, topic, ref, payload, apikey)
                elif event == "access_token":
                    for sub in self.subs:
                        if sub.ws is ws and sub.topic == topic:
                            sub.token = payload["access_token"]
                elif event == "phx_leave":
                    self.subs = [s for s in self.subs if not (s.ws is ws and s.topic == topic)]
                    await self._reply(ws, topic, ref, "ok", {})
        finally:
            self.subs = [s for s in self.subs if s.ws is not ws]

    async def _join(
        self, ws: ServerConnection, topic: str, ref: str | None, payload: dict[str, Any], apikey: str
    ) -> None:
        self.joins.append(payload)
        token = payload.get("access_token") or apikey
        try:
            jwt.decode(token, JWT_SECRET, algorithms=["HS256"], options={"verify_aud": False})
        except jwt.InvalidTokenError as e:
            await self._reply(ws, topic, ref, "error", {"reason": f"Invalid JWT: {e}"})
            return
        sub = Subscription(ws, topic, token)
        reply = []
        for b in payload.get("config", {}).get("postgres_changes") or []:
            self._next_id += 1
            binding = Binding(
                self._next_id, b["event"], b.get("schema", "public"), b.get("table", "*"), b.get("filter")
            )
            sub.bindings.append(binding)
            item = {"id": binding.id, "event": b["event"], "schema": binding.schema, "table": binding.table}
            if binding.filter:
                item["filter"] = binding.filter
            reply.append(item)
        self.subs.append(sub)
        await self._reply(ws, topic, ref, "ok", {"postgres_changes": reply})
        await ws.send(
            json.dumps(
                {
                    "topic": topic,
                    "event": "system",
                    "ref": None,
                    "payload": {
                        "channel": topic.removeprefix("realtime:"),
                        "extension": "postgres_changes",
                        "message": "Subscribed to PostgreSQL",
                        "status": "ok",
                    },
                }
            )
        )

    @staticmethod
    async def _reply(ws: ServerConnection, topic: str, ref: str | None, status: str, response: dict[str, Any]) -> None:
        await ws.send(
            json.dumps(
                {"topic": topic, "event": "phx_reply", "ref": ref, "payload": {"status": status, "response": response}}
            )
        )

    # --- changes -------------------------------------------------------------

    async def _poll(self) -> None:
        while True:
            rows = await asyncio.to_thread(
                self.stack.pg.query,
                "SELECT id, tbl, op, coalesce(rec::text, 'null'), coalesce(old::text, 'null'), "
                f"at FROM flowbot_test.outbox WHERE id > {self._last} ORDER BY id",
            )
            for row in rows:
                self._last = int(row[0])
                table, op = row[1], row[2]
                record, old = json.loads(row[3]), json.loads(row[4])
                await self._dispatch(table, op, record, old, row[5])
            await asyncio.sleep(self.poll_s)

    async def _visible(self, token: str, table: str, row: dict[str, Any]) -> bool:
        params = {k: f"eq.{row[k]}" for k in PRIMARY_KEYS[table]}
        async with httpx.AsyncClient(timeout=10) as http:
            r = await http.get(
                f"{self.stack.url}/rest/v1/{table}",
                params=params,
                headers={"apikey": self.stack.anon_key, "Authorization": f"Bearer {token}"},
            )
        return r.status_code == 200 and bool(r.json())

    async def _dispatch(self, table: str, op: str, record: Any, old: Any, at: str) -> None:
        row = record if op != "DELETE" else old
        for sub in list(self.subs):
            ids = [b.id for b in sub.bindings if b.matches(table, op, row)]
            if not ids:
                continue
            if op != "DELETE" and not await self._visible(sub.token, table, row):
                continue  # RLS: this subscriber may not see the row
            data: dict[str, Any] = {
                "schema": "public",
                "table": table,
                "commit_timestamp": at,
                "type": op,
                "errors": None,
                "columns": [{"name": k, "type": "unknown"} for k in row],
            }
            if op != "DELETE":
                data["record"] = record
            if op != "INSERT":
                pk = PRIMARY_KEYS[table]
                data["old_record"] = {k: old[k] for k in pk} if op == "DELETE" else old
            message = {
                "topic": sub.topic,
                "event": "postgres_changes",
                "ref": None,
                "payload": {"data": data, "ids": ids},
            }
            self.sent.append(message)
            with contextlib.suppress(Exception):
                await sub.ws.send(json.dumps(message))

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        """Block until ``predicate(self)`` holds."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                raise TimeoutError("fake realtime condition not met")
            time.sleep(0.02)
