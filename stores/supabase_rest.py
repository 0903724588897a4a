"""The PostgREST client every Supabase store shares: one sync client, retries, error classes.

Failures are sorted in two:

* transient (connection errors, timeouts, HTTP 5xx, 429, Postgres connection /
  serialization errors) are retried with exponential backoff until the retry
  policy's deadline, then raised as :class:`StoreUnavailableError`;
* permanent (any other 4xx: bad JWT, constraint violation, unknown session) are
  raised at once as :class:`stores.base.PermanentStoreError`. The engine treats
  that as a failure of the window it was committing.

Both derive from :class:`stores.base.StoreError` and carry the HTTP status and
the Postgres/PostgREST code. :class:`SupabaseClient` is the base of every
Supabase-backed store (transcripts, meetings, voices): it builds the client from
settings or a URL and key, so each store only writes its queries.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self, TypeVar

import httpx
from postgrest import APIError

from contracts.settings import Settings
from stores.base import PermanentStoreError, StoreError
from supabase import Client, ClientOptions, create_client

log = logging.getLogger("flowbot.stores.supabase")

T = TypeVar("T")

# Postgres SQLSTATEs worth another try: connection loss, admin shutdown,
# serialization failures and deadlocks, too many connections.
_TRANSIENT_SQLSTATE_PREFIXES = ("08", "40", "53", "57P")
# PostgREST codes for "cannot reach / lost the database".
_TRANSIENT_PGRST = {"PGRST000", "PGRST001", "PGRST002", "PGRST003"}


class StoreUnavailableError(StoreError):
    """Supabase stayed unreachable or failing (5xx, 429, network) past the retry deadline."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded by attempts and a deadline."""

    attempts: int = 8
    base_delay: float = 0.2
    max_delay: float = 5.0
    deadline_s: float = 60.0

    def delay(self, attempt: int) -> float:
        """Sleep before retry number ``attempt`` (1-based)."""
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


class Rest:
    """A sync supabase-py client plus the retry/classification rules."""

    def __init__(self, url: str, service_key: str, retry: RetryPolicy, timeout: float) -> None:
        if not url or not service_key:
            raise ValueError("Supabase store needs FLOWBOT_SUPABASE_URL and FLOWBOT_SUPABASE_SERVICE_KEY")
        self.retry = retry
        self._status = threading.local()
        # We retry ourselves (writes too, which postgrest-py never retries), so
        # its GET-only retry is off; the hook records each reply's HTTP status,
        # which postgrest-py's APIError does not carry.
        http = httpx.Client(timeout=timeout, event_hooks={"response": [self._record_status]})
        options = ClientOptions(
            postgrest_client_retry=False,
            httpx_client=http,
            auto_refresh_token=False,
            persist_session=False,
        )
        self.client: Client = create_client(url, service_key, options)

    def _record_status(self, response: httpx.Response) -> None:
        self._status.value = response.status_code

    def call(self, what: str, fn: Callable[[], T], *, session: str | None = None, **log_fields: Any) -> T:
        """Run ``fn`` (one HTTP request), retrying transient failures."""
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            self._status.value = None
            try:
                return fn()
            except httpx.TransportError as e:
                error: StoreError = StoreUnavailableError(f"{what}: {type(e).__name__}: {e}")
            except APIError as e:
                error = self._classify(what, e)
            fields = {"session": session, "op": what, "error": str(error), **log_fields}
            delay = self._retry_delay(error, attempt, time.monotonic() - started, fields)
            retry = {"attempt": attempt, "delay_s": round(delay, 3)}
            log.warning("supabase request failed, retrying", extra={**fields, **retry})
            time.sleep(delay)

    def _retry_delay(self, error: StoreError, attempt: int, elapsed: float, fields: dict[str, Any]) -> float:
        """The sleep before the next attempt, or ``error`` raised when there is to be none."""
        if isinstance(error, PermanentStoreError):
            log.error("supabase request refused", extra={"status": error.status, "code": error.code, **fields})
            raise error
        delay = self.retry.delay(attempt)
        if attempt >= self.retry.attempts or elapsed + delay > self.retry.deadline_s:
            log.error("supabase unavailable, giving up", extra={**fields, "attempts": attempt})
            raise StoreUnavailableError(
                f"{error} (gave up after {attempt} attempts in {elapsed:.1f}s)",
                status=error.status,
                code=error.code,
            ) from error
        return delay

    def _classify(self, what: str, e: APIError) -> StoreError:
        status: int | None = getattr(self._status, "value", None)
        code = e.code or ""
        if status is None and code.isdigit():
            status = int(code)  # postgrest-py puts the HTTP status there for non-JSON replies
        message = f"{what}: HTTP {status} {code}: {e.message}"
        if e.hint:
            message += f" (hint: {e.hint})"
        if code == "23503":
            message += " (session not registered in Supabase: call register_session first)"
        if code in {"PGRST301", "PGRST302"} or status == 401:
            message += " (check FLOWBOT_SUPABASE_SERVICE_KEY)"
        transient = (
            (status is not None and (status >= 500 or status in (408, 429)))
            or code in _TRANSIENT_PGRST
            or (len(code) == 5 and code.startswith(_TRANSIENT_SQLSTATE_PREFIXES))
        )
        cls = StoreUnavailableError if transient else PermanentStoreError
        return cls(message, status=status, code=code or None)


def result(builder: Any) -> Any:
    """Execute a postgrest-py request; its ``data`` is plain JSON (typed loosely here)."""
    return builder.execute().data


class SupabaseClient:
    """Base of the Supabase stores: ``Store(settings)`` or ``Store(url, service_key)``."""

    def __init__(
        self,
        url: str | Settings,
        service_key: str | None = None,
        *,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
    ) -> None:
        """Build from ``settings``, or from ``url`` and ``service_key`` (the service-role key)."""
        if isinstance(url, Settings):
            service_key = url.supabase_service_key
            url = url.supabase_url
        self._rest = Rest(url, service_key or "", retry or RetryPolicy(), timeout)
        self._db = self._rest.client

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Build from ``FLOWBOT_SUPABASE_URL`` and ``FLOWBOT_SUPABASE_SERVICE_KEY``."""
        return cls(settings)
