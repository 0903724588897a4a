"""control.auth: Supabase JWT verification and meeting ownership."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable

import jwt
import pytest

from contracts.settings import Settings
from control.access import Caller, may_access
from control.auth import AuthError, authenticate, owns_meeting_factory
from stores.base import Session
from testkit.supabase_stack import JWT_SECRET, SupabaseStack, make_jwt

SETTINGS = Settings.from_env({}, supabase_jwt_secret=JWT_SECRET)
USER = str(uuid.uuid4())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def reason_of(headers: dict[str, str], settings: Settings = SETTINGS) -> str:
    with pytest.raises(AuthError) as info:
        authenticate(headers, settings)
    assert isinstance(info.value, PermissionError)  # what control.api answers with 401
    return info.value.reason


def test_valid_user_token() -> None:
    caller = authenticate(bearer(make_jwt("authenticated", USER)), SETTINGS)
    assert caller == Caller(user_id=USER, role="authenticated")
    # Header names are case-insensitive; a list audience containing ours is fine.
    token = make_jwt("authenticated", USER, aud=["other", "authenticated"])
    assert authenticate({"authorization": f"bearer {token}"}, SETTINGS).user_id == USER


def test_service_role_key_acts_for_anyone() -> None:
    caller = authenticate(bearer(make_jwt("service_role", aud=None)), SETTINGS)
    assert caller == Caller(user_id=None, role="service_role")
    assert may_access(caller, USER)


def test_bad_signature() -> None:
    forged = make_jwt("authenticated", USER, secret="some-other-secret-that-is-long-enough")
    assert reason_of(bearer(forged)) == "bad_signature"
    forged_service = make_jwt("service_role", aud=None, secret="another-long-secret-for-a-forgery")
    assert reason_of(bearer(forged_service)) == "bad_signature"


def test_expired() -> None:
    assert reason_of(bearer(make_jwt("authenticated", USER, expires_in=-120))) == "expired"
    assert reason_of(bearer(make_jwt("service_role", aud=None, expires_in=-120))) == "expired"


def test_wrong_or_missing_audience() -> None:
    assert reason_of(bearer(make_jwt("authenticated", USER, aud="anon"))) == "wrong_audience"
    assert reason_of(bearer(make_jwt("authenticated", USER, aud=None))) == "wrong_audience"


def test_not_a_user() -> None:
    # The anon key verifies but is nobody.
    assert reason_of(bearer(make_jwt("anon", None, aud="authenticated"))) == "not_a_user"
    assert reason_of(bearer(make_jwt("authenticated", None))) == "no_subject"


def test_missing_and_malformed() -> None:
    assert reason_of({}) == "missing"
    assert reason_of({"Authorization": "Basic dXNlcjpwYXNz"}) == "malformed"
    assert reason_of(bearer("not.a.jwt")) == "malformed"
    no_exp = jwt.encode({"role": "authenticated", "sub": USER, "aud": "authenticated"}, JWT_SECRET, algorithm="HS256")
    assert reason_of(bearer(no_exp)) == "malformed"


@pytest.mark.filterwarnings("ignore:The HMAC key")  # the HS512 forgery's key length
def test_alg_none_and_other_algorithms_refused() -> None:
    def b64(d: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    claims = {"role": "authenticated", "sub": USER, "aud": "authenticated", "exp": 2**31}
    unsigned = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."
    assert reason_of(bearer(unsigned)) == "malformed"
    hs512 = jwt.encode(claims, JWT_SECRET, algorithm="HS512")
    assert reason_of(bearer(hs512)) == "malformed"


def test_unconfigured_secret_refuses_everything() -> None:
    bare = Settings.from_env({})
    assert reason_of(bearer(make_jwt("authenticated", USER)), bare) == "not_configured"


def test_may_access() -> None:
    assert may_access(Caller(USER, "authenticated"), USER)
    assert not may_access(Caller(USER, "authenticated"), str(uuid.uuid4()))
    assert not may_access(Caller(None, "authenticated"), USER)
    # The local operator (API token, or a loopback server) acts for anyone, like the service role.
    assert may_access(Caller(None, "local"), USER) and may_access(Caller(None, "service_role"), USER)


def test_owns_meeting_against_supabase(stack: SupabaseStack, new_session: Callable[..., Session]) -> None:
    settings = Settings.from_env(
        {}, supabase_url=stack.url, supabase_service_key=stack.service_key, supabase_jwt_secret=JWT_SECRET
    )
    owns = owns_meeting_factory(settings)
    assert owns is not None
    session = new_session(owner=USER)
    assert owns(USER, session.meeting_id)
    assert not owns(str(uuid.uuid4()), session.meeting_id)
    assert owns(str(uuid.uuid4()), "m-brand-new")  # a new meeting is the caller's to create
    assert owns_meeting_factory(Settings.from_env({})) is None
