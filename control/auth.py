"""Coordinator auth in the AWS mode: Supabase user JWTs and meeting ownership.

A client signs in with Supabase Auth and calls the coordinator with its access
token (``Authorization: Bearer <jwt>``). :func:`authenticate` verifies it with
the project's JWT secret (HS256 only, so a token cannot pick a weaker
algorithm): signature, expiry, audience ``authenticated``, and a subject. The
service-role key is accepted too (server-to-server calls); it carries no
audience or subject and acts for any user. Anything else raises
:class:`AuthError`, a :class:`PermissionError` that the API answers with 401.

Ownership: a user may only start, read or end sessions of meetings they own.
:func:`owns_meeting_factory` is the check for new sessions (meetings rows in
Supabase name their owner; :func:`control.context.build_context` wires it into
the coordinator); :func:`control.access.may_access` is the rule for users and
sessions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import jwt

from contracts.settings import Settings
from control.access import SERVICE_ROLE, USER, Caller
from control.bearer import BearerError, bearer_token

log = logging.getLogger("flowbot.control.auth")

AUDIENCE = "authenticated"
# Clock skew tolerated between Supabase Auth and the coordinator.
LEEWAY_SECONDS = 10


class AuthError(PermissionError):
    """The request carries no valid Supabase credentials (maps to HTTP 401).

    ``reason`` is one of: missing, malformed, bad_signature, expired,
    wrong_audience, no_subject, not_a_user, not_configured.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def verify_token(token: str, secret: str, *, audience: str | None = AUDIENCE) -> dict[str, Any]:
    """Verified claims of a Supabase HS256 JWT; ``audience=None`` skips the audience check."""
    if not secret:
        raise AuthError("not_configured", "FLOWBOT_SUPABASE_JWT_SECRET is not set")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            audience=audience,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp"], "verify_aud": audience is not None},
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("expired", "token expired") from None
    except (jwt.InvalidAudienceError, jwt.MissingRequiredClaimError) as e:
        if isinstance(e, jwt.MissingRequiredClaimError) and e.claim != "aud":
            raise AuthError("malformed", f"token lacks the {e.claim!r} claim") from None
        raise AuthError("wrong_audience", f"token audience is not {audience!r}") from None
    except jwt.InvalidSignatureError:
        raise AuthError("bad_signature", "token signature does not verify") from None
    except jwt.InvalidAlgorithmError:
        raise AuthError("malformed", "token is not signed with HS256") from None
    except jwt.InvalidTokenError as e:
        raise AuthError("malformed", f"invalid token: {e}") from None
    return claims


def authenticate(headers: Mapping[str, str], settings: Settings) -> Caller:
    """Who is calling: ``Caller(sub, role)`` for a user, ``Caller(None, "service_role")`` for it.

    Raises :class:`AuthError` (-> 401) for anything else.
    """
    try:
        token = bearer_token(headers)
    except BearerError as exc:
        raise AuthError(exc.reason, str(exc)) from None
    # Read the role before verifying only to choose the audience rule; the
    # signature check below covers every claim either way.
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError as e:
        raise AuthError("malformed", f"invalid token: {e}") from None
    if unverified.get("role") == SERVICE_ROLE:
        claims = verify_token(token, settings.supabase_jwt_secret, audience=None)
        if claims.get("role") != SERVICE_ROLE:  # pragma: no cover - signature covers it
            raise AuthError("malformed", "role changed under verification")
        return Caller(user_id=None, role=SERVICE_ROLE)
    claims = verify_token(token, settings.supabase_jwt_secret, audience=AUDIENCE)
    role = str(claims.get("role") or "")
    if role != USER:
        raise AuthError("not_a_user", f"role {role or '(none)'!r} is not a signed-in user")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise AuthError("no_subject", "token has no subject (user id)")
    return Caller(user_id=sub, role=USER)


def owns_meeting_factory(settings: Settings) -> Callable[[str, str], bool] | None:
    """``owns(user_id, meeting_id)`` backed by Supabase's meetings table, or None if unconfigured.

    A meeting that does not exist yet is the caller's to create (it gets their
    id as owner when the session is registered); an existing meeting must be
    theirs.
    """
    if not (settings.supabase_url and settings.supabase_service_key):
        return None
    from stores.supabase import SupabaseMeetingStatus

    meetings = SupabaseMeetingStatus.from_settings(settings)

    def owns(user_id: str, meeting_id: str) -> bool:
        owner = meetings.owner_of(meeting_id)
        allowed = owner is None or owner == user_id
        if not allowed:
            log.warning("meeting owned by another user", extra={"meeting": meeting_id, "user": user_id})
        return allowed

    return owns
