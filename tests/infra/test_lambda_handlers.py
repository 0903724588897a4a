"""The Lambda handlers with the real workflow code, real stores and emulated AWS.

Stores: SQLite transcripts (the workflow logic is store-agnostic) and, for the
function-URL test, the DynamoDB session store on moto. Secrets Manager and
CloudWatch are LocalStack.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts.segments import TranscriptSegment, WindowRecord, WindowStatus
from control import lambda_handlers
from stores.base import Session, SessionProgress, SessionState
from stores.sqlite import SqliteSessionStore, SqliteTranscriptStore
from tests.infra.conftest import Emulators


@pytest.fixture
def handler_env(emulators: Emulators, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A fresh 'container': settings in the environment, caches reset."""
    namespace = f"FlowBotTest{uuid.uuid4().hex[:8]}"
    env = {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "FLOWBOT_AWS_REGION": "us-east-1",
        "FLOWBOT_DATA_DIR": str(tmp_path),
        "FLOWBOT_STORE": "sqlite",
        "FLOWBOT_SESSION_STORE": "sqlite",
        "FLOWBOT_CLOUDWATCH_ENDPOINT": emulators.localstack,
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": emulators.localstack,
        "METRICS_NAMESPACE": namespace,
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for k in ("SECRETS_TO_ENV", "FLOWBOT_SUPABASE_JWT_SECRET", "FLOWBOT_API_TOKEN"):
        # setenv first, so monkeypatch restores "absent" afterwards: the handler under test
        # copies secrets into os.environ, and they must not leak into later tests.
        monkeypatch.setenv(k, "")
        monkeypatch.delenv(k)
    lambda_handlers.reset()
    yield {"db": tmp_path / "flowbot.db", "namespace": namespace}
    lambda_handlers.reset()


def _processing_session(db: Path) -> str:
    sessions = SqliteSessionStore(db)
    sid = str(uuid.uuid4())
    sessions.create(Session(session_id=sid, meeting_id="m", user_id="u", topic="t", stream_key="k" + sid))
    sessions.transition(sid, [SessionState.STARTING], SessionState.PROCESSING)
    return sid


def _commit(db: Path, sid: str, index: int, status: str, ended: bool) -> None:
    store = SqliteTranscriptStore(db)
    start, end = index * 480_000, (index + 1) * 480_000
    segments = []
    if status == "done":
        segments = [
            TranscriptSegment(sid, index, 0, index * 30.0, index * 30.0 + 5, "we decided to ship on friday", "S1")
        ]
    store.commit_window(
        WindowRecord(sid, index, start, end, WindowStatus(status), error=None if status == "done" else "cuda oom"),
        segments,
        SessionProgress(sid, next_window_index=index + 1, committed_sample=end, ended_sample=end if ended else None),
    )


def test_workflow_handlers_drive_a_partial_session(handler_env: dict[str, Any], emulators: Emulators) -> None:
    db = handler_env["db"]
    sid = _processing_session(db)
    _commit(db, sid, 0, "done", ended=False)

    first = lambda_handlers.check_windows_handler({"session_id": sid}, None)
    assert first["done"] is False and first["windows_done"] == 1
    json.dumps(first)  # Step Functions needs JSON-serialisable output

    _commit(db, sid, 1, "failed", ended=True)
    second = lambda_handlers.check_windows_handler({"session_id": sid}, None)
    assert second["done"] is True
    assert second["windows_failed"] == 1
    assert second["failed"][0]["error"] == "cuda oom"

    notes = lambda_handlers.generate_notes_handler({"session_id": sid}, None)
    assert notes["session_id"] == sid
    assert SqliteTranscriptStore(db).get_notes(sid) is not None

    final = lambda_handlers.finalize_handler(
        {"session_id": sid, "timed_out": False, "windows_failed": second["windows_failed"]}, None
    )
    assert final["state"] == "partial"
    assert "1 window(s) failed" in final["reason"]
    assert SqliteSessionStore(db).get(sid).state is SessionState.PARTIAL

    cloudwatch: Any = emulators.client("cloudwatch")
    metrics = cloudwatch.list_metrics(Namespace=handler_env["namespace"])["Metrics"]
    assert [m["MetricName"] for m in metrics] == ["FailedWindows"]


def test_workflow_handlers_reject_bad_events(handler_env: dict[str, Any]) -> None:
    with pytest.raises(lambda_handlers.BadEvent, match="session_id"):
        lambda_handlers.check_windows_handler({}, None)
    with pytest.raises(lambda_handlers.BadEvent, match="JSON object"):
        lambda_handlers.generate_notes_handler(["x"], None)  # type: ignore[arg-type]
    sid = _processing_session(handler_env["db"])
    with pytest.raises(lambda_handlers.BadEvent, match="timed_out"):
        lambda_handlers.finalize_handler({"session_id": sid, "timed_out": "yes"}, None)
    with pytest.raises(lambda_handlers.BadEvent, match="windows_failed"):
        lambda_handlers.finalize_handler({"session_id": sid, "windows_failed": -1}, None)
    # Nothing was changed by the rejected calls.
    assert SqliteSessionStore(handler_env["db"]).get(sid).state is SessionState.PROCESSING


def test_secrets_are_loaded_into_the_environment(handler_env: dict[str, Any], emulators: Emulators) -> None:
    sm: Any = emulators.client("secretsmanager")
    name = f"flowbot-test/{uuid.uuid4().hex[:8]}"
    arn = sm.create_secret(Name=name, SecretString="s3cr3t-value")["ARN"]
    env = {
        "SECRETS_TO_ENV": json.dumps({"FLOWBOT_SUPABASE_JWT_SECRET": arn, "FLOWBOT_API_TOKEN": arn}),
        "FLOWBOT_API_TOKEN": "explicit",
    }
    loaded = lambda_handlers.load_secrets(env, sm)
    assert loaded == ["FLOWBOT_SUPABASE_JWT_SECRET"]
    assert env["FLOWBOT_SUPABASE_JWT_SECRET"] == "s3cr3t-value"
    assert env["FLOWBOT_API_TOKEN"] == "explicit"  # explicit configuration wins
    with pytest.raises(ValueError, match="not JSON"):
        lambda_handlers.load_secrets({"SECRETS_TO_ENV": "{nope"}, sm)
    with pytest.raises(ValueError, match="JSON object"):
        lambda_handlers.load_secrets({"SECRETS_TO_ENV": "[1]"}, sm)
    sm.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)


def _url_event(body: dict[str, Any], token: str | None) -> dict[str, Any]:
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return {
        "version": "2.0",
        "rawPath": "/",
        "headers": headers,
        "requestContext": {"http": {"method": "POST", "path": "/"}},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


def test_function_url_handler_fails_closed_without_auth(handler_env: dict[str, Any]) -> None:
    resp = lambda_handlers.function_url_handler(_url_event({"action": "get_session"}, None), None)
    assert resp["statusCode"] == 503
    assert json.loads(resp["body"])["error"]["code"] == "auth_not_configured"


def test_function_url_handler_serves_the_coordinator_api(
    handler_env: dict[str, Any], emulators: Emulators, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Full wiring: secrets from Secrets Manager, DynamoDB session store on moto, control.api."""
    from stores.dynamodb import create_sessions_table

    table = f"sessions-{uuid.uuid4().hex[:8]}"
    create_sessions_table(emulators.client("dynamodb", moto=True), table)
    sm: Any = emulators.client("secretsmanager")
    arn = sm.create_secret(Name=f"flowbot-test/{uuid.uuid4().hex[:8]}", SecretString="tok-123")["ARN"]
    for k, v in {
        "FLOWBOT_SESSION_STORE": "dynamodb",
        "FLOWBOT_SESSIONS_TABLE": table,
        "FLOWBOT_DYNAMODB_ENDPOINT": emulators.moto,
        "FLOWBOT_ECS_CLUSTER": "flowbot",
        "FLOWBOT_PRODUCER_TASK_DEFINITION": "flowbot-producer",
        "FLOWBOT_PRODUCER_SUBNETS": "subnet-a",
        "FLOWBOT_GPU_ASG_NAME": "flowbot-gpu",
        "FLOWBOT_STATE_MACHINE_ARN": "arn:aws:states:us-east-1:000000000000:stateMachine:wf",
        "SECRETS_TO_ENV": json.dumps({"FLOWBOT_API_TOKEN": arn}),
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(lambda_handlers, "_coordinator", None)

    denied = lambda_handlers.function_url_handler(_url_event({"action": "get_session", "session_id": "x"}, None), None)
    assert denied["statusCode"] == 401
    missing = lambda_handlers.function_url_handler(
        _url_event({"action": "get_session", "session_id": str(uuid.uuid4())}, "tok-123"), None
    )
    assert missing["statusCode"] == 404, missing
    bad = lambda_handlers.function_url_handler(_url_event({"action": "dance"}, "tok-123"), None)
    assert bad["statusCode"] == 400
    assert json.loads(bad["body"])["error"]["code"] == "unknown_action"
    monkeypatch.setattr(lambda_handlers, "_coordinator", None)
    sm.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
