"""Who is calling the coordinator, and whose sessions they may act on: the one ownership rule.

Callers are a signed-in Supabase user (``authenticated``, with their user id),
the Supabase service role (server-to-server), or the operator of a local server
(``local``: the API token, or anyone on a loopback server without one). The
rule, :func:`may_access`: the service role and the local operator act for any
user; a user acts only for themselves, so they start sessions under their own
id and read, end or rename only sessions they own. Meeting ownership for a new
session is checked separately against Supabase (:func:`control.auth.owns_meeting_factory`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: ``authenticated``: a signed-in user; ``service_role``: the Supabase service key;
#: ``local``: the operator of a single-machine server.
Role = Literal["authenticated", "service_role", "local"]
USER: Role = "authenticated"
SERVICE_ROLE: Role = "service_role"
LOCAL: Role = "local"
_OPERATORS: frozenset[Role] = frozenset({SERVICE_ROLE, LOCAL})


@dataclass(frozen=True)
class Caller:
    """Who is calling the API: a Supabase user, the service role, or the local operator."""

    user_id: str | None
    role: Role

    @property
    def is_operator(self) -> bool:
        """True for the service role and the local operator (they act for any user)."""
        return self.role in _OPERATORS


def may_access(caller: Caller, owner_user_id: str) -> bool:
    """True if ``caller`` may act on sessions owned by ``owner_user_id``."""
    if caller.is_operator:
        return True
    return caller.user_id is not None and caller.user_id == owner_user_id
