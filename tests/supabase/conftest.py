"""Fixtures: one real PostgreSQL 15 + PostgREST stack per test session (tests/supabase)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest

from stores.base import Session, SessionState
from stores.supabase import RetryPolicy, SupabaseMeetingStatus
from testkit.supabase_stack import StackUnavailable, SupabaseStack


@pytest.fixture(scope="session")
def stack() -> Iterator[SupabaseStack]:
    """Postgres + bootstrap + migrations + PostgREST + gateway, shared by the tests."""
    try:
        s = SupabaseStack().start()
    except StackUnavailable as e:
        # CI must have it (scripts/setup.d/40-supabase.sh): fail loudly there.
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"Supabase test stack unavailable in CI: {e}")
        pytest.skip(f"Supabase test stack unavailable: {e}")
    yield s
    s.close()


@pytest.fixture()
def fast_retry() -> RetryPolicy:
    """Retries quick enough for tests, long enough to ride out a PostgREST restart."""
    return RetryPolicy(attempts=40, base_delay=0.05, max_delay=0.5, deadline_s=30)


@pytest.fixture()
def meetings(stack: SupabaseStack, fast_retry: RetryPolicy) -> SupabaseMeetingStatus:
    """Service-role meeting/session writer."""
    return SupabaseMeetingStatus(stack.url, stack.service_key, retry=fast_retry)


@pytest.fixture()
def new_session(meetings: SupabaseMeetingStatus) -> Callable[..., Session]:
    """Factory: register a fresh meeting + session owned by a user; returns the Session."""

    def make(owner: str | None = None, topic: str = "standup") -> Session:
        sid = "s-" + uuid.uuid4().hex[:12]
        session = Session(
            session_id=sid,
            meeting_id="m-" + uuid.uuid4().hex[:12],
            user_id=owner or str(uuid.uuid4()),
            topic=topic,
            stream_key="k-" + sid,
            state=SessionState.LIVE,
        )
        meetings.register_session(session)
        return session

    return make
