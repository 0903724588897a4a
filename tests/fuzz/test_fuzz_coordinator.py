"""Fuzzing the coordinator's JSON bodies (issue 11): any body gets a clear 2xx/4xx, never a 500.

Bodies are JSON documents hypothesis builds (any action, any fields, values of
every JSON type: huge integers, NaN, lone surrogates, deep nesting) and raw
bytes. A refused body changes nothing: no session appears.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.settings import Settings
from control.api import Coordinator
from control.context import build_local_context
from tests.test_api_bodies import NoIngest

ACTIONS = ["start_session", "get_session", "end_session", "rename_speaker"]
FIELDS = ["action", "session_id", "meeting_id", "user_id", "topic", "speaker", "name"]

any_text = st.text(alphabet=st.characters(exclude_categories=()), max_size=300)  # surrogates included
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**4300, max_value=10**5000),  # past Python's int-string limit
    st.floats(allow_nan=True, allow_infinity=True),
    any_text,
    st.sampled_from(ACTIONS),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(any_text, inner, max_size=4)),
    max_leaves=10,
)
bodies = st.one_of(
    st.dictionaries(st.sampled_from(FIELDS), values, max_size=7),
    st.fixed_dictionaries({"action": st.sampled_from(ACTIONS)}, optional={f: values for f in FIELDS[1:]}),
    values,
)


def _encode(body: object) -> bytes:
    # Python's encoder writes what hypothesis built, huge ints, NaN and lone surrogates included.
    return json.dumps(body, allow_nan=True).encode()


_coordinator: Coordinator | None = None


def coordinator() -> Coordinator:
    global _coordinator
    if _coordinator is None:
        folder = Path(tempfile.mkdtemp(prefix="fuzz-coordinator-"))
        settings = Settings.from_env({}, data_dir=folder, diarization="none")
        _coordinator = Coordinator(build_local_context(settings, NoIngest()))
    return _coordinator


def _check(raw: bytes) -> None:
    api = coordinator()
    before = len(api.ctx.sessions.list())
    resp = api.handle("POST", {}, raw)
    assert resp.status < 500, (raw[:200], resp.body)
    json.dumps(resp.body)
    if resp.status >= 400:
        assert set(resp.body) == {"error"} and resp.body["error"]["code"] != "internal"
        assert len(api.ctx.sessions.list()) == before  # nothing accepted, nothing touched


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies)
def test_any_json_body(body: object) -> None:
    try:
        raw = _encode(body)
    except (ValueError, RecursionError):
        return  # nothing a client could send either
    _check(raw)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=500))
def test_any_bytes(raw: bytes) -> None:
    _check(raw)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 40_000), st.sampled_from(["[", '{"a":', "-", '"\\ud800"']))
def test_deep_and_odd(depth: int, piece: str) -> None:
    _check((piece * depth).encode()[: 64 * 1024])
