"""``Authorization: Bearer <token>``: the one parser every credential check uses.

RFC 9110 makes the scheme name case-insensitive (``bearer``, ``BEARER`` and
``Bearer`` are the same), and header names are case-insensitive too. The local
API token, the Supabase JWT, the page/feed token and the WHIP stream key are
all read through :func:`bearer_token`; comparisons of secrets use
:func:`same_secret` (constant time).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping


class BearerError(PermissionError):
    """No usable bearer credentials: ``reason`` is ``missing`` or ``malformed``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def bearer_token(headers: Mapping[str, str]) -> str:
    """The token of an ``Authorization: Bearer`` header (any header-name or scheme case).

    Raises :class:`BearerError` when the header is absent or is not ``Bearer <token>``.
    """
    value = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    if not value.strip():
        raise BearerError("missing", "missing Authorization header")
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise BearerError("malformed", "Authorization must be 'Bearer <token>'")
    return token.strip()


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison of two secrets (False when either is empty)."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())
