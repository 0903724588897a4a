"""Apply the data-plane module to LocalStack + moto, check what it made, run the workflow, destroy.

The real state machine calls Lambda tasks; LocalStack's Lambda needs Docker, so
its definition is validated (ValidateStateMachineDefinition) and the SAME
template, rendered with ``mock = true`` (each Lambda task replaced by a Pass
state replaying recorded outputs from ``$.mock``), is executed on LocalStack to
exercise the polling, backoff, time-out and partial-failure paths. The
handlers themselves are tested against the real workflow code in
test_lambda_handlers.py.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.infra.conftest import EMULATOR_ROOT, ROOT, Emulators, terraform, terraform_init

pytestmark = pytest.mark.slow

NAME = "flowbot-ci"


class Applied:
    """Outputs of the applied emulator root, and a way to destroy it once."""

    def __init__(self, cwd: Path, emulators: Emulators, outputs: dict[str, Any]) -> None:
        self.cwd = cwd
        self.emulators = emulators
        self.outputs = outputs
        self.destroyed = False

    def var_args(self) -> list[str]:
        return [
            f"-var=localstack_endpoint={self.emulators.localstack}",
            f"-var=dynamodb_endpoint={self.emulators.moto}",
        ]

    def destroy(self) -> None:
        if not self.destroyed:
            terraform(["destroy", "-auto-approve", "-no-color", *self.var_args()], self.cwd)
            self.destroyed = True


@pytest.fixture(scope="module")
def applied(emulators: Emulators, terraform_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Applied]:
    """``terraform apply`` of modules/data against the emulators (destroyed at the end)."""
    tmp = tmp_path_factory.mktemp("tf")
    shutil.copytree(ROOT / "infra", tmp / "infra", ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))
    cwd = tmp / "tests" / "infra" / "emulator"
    shutil.copytree(EMULATOR_ROOT, cwd, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))
    terraform_init(cwd)
    state = Applied(cwd, emulators, {})
    started = time.monotonic()
    try:
        terraform(["apply", "-auto-approve", "-no-color", *state.var_args()], cwd, timeout=900)
        out = terraform(["output", "-json"], cwd)
        state.outputs = {k: v["value"] for k, v in json.loads(out.stdout).items()}
        print(f"apply took {time.monotonic() - started:.1f} s")
        yield state
    finally:
        if not state.destroyed:
            with contextlib.suppress(BaseException):
                state.destroy()


def test_stream_is_encrypted_on_demand(applied: Applied) -> None:
    kinesis: Any = applied.emulators.client("kinesis")
    desc = kinesis.describe_stream_summary(StreamName=applied.outputs["stream_name"])["StreamDescriptionSummary"]
    assert desc["StreamStatus"] == "ACTIVE"
    assert desc["StreamModeDetails"]["StreamMode"] == "ON_DEMAND"
    assert desc["RetentionPeriodHours"] == 24
    assert desc["EncryptionType"] == "KMS"
    assert desc["KeyId"] == applied.outputs["kms_key_arn"]


def test_archive_bucket_is_locked_down(applied: Applied) -> None:
    s3: Any = applied.emulators.client("s3")
    bucket = applied.outputs["archive_bucket"]
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    deny = policy["Statement"][0]
    assert deny["Effect"] == "Deny"
    assert deny["Condition"]["Bool"]["aws:SecureTransport"] == "false"
    rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    assert rules["expire-window-audio"]["Expiration"]["Days"] == 30
    assert rules["abort-incomplete-uploads"]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 1


def test_secrets_exist_and_only_given_values_are_stored(applied: Applied) -> None:
    sm: Any = applied.emulators.client("secretsmanager")
    arns = applied.outputs["secret_arns"]
    assert set(arns) == {"supabase_service_key", "supabase_jwt_secret", "huggingface_token"}
    assert sm.get_secret_value(SecretId=arns["supabase_service_key"])["SecretString"] == "emulator-service-key"
    assert sm.get_secret_value(SecretId=arns["supabase_jwt_secret"])["SecretString"] == "emulator-jwt-secret"
    assert set(applied.outputs["secrets_with_value"]) == {"supabase_service_key", "supabase_jwt_secret"}
    with pytest.raises(sm.exceptions.ResourceNotFoundException):
        sm.get_secret_value(SecretId=arns["huggingface_token"])  # no value given, none stored


def test_sessions_table_works_with_the_session_store(applied: Applied, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Terraform table is the one stores/dynamodb.py expects: a real create/transition/lookup."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    from contracts.settings import Settings
    from stores.base import Session, SessionState, StateConflict
    from stores.dynamodb import DynamoSessionStore

    ddb: Any = applied.emulators.client("dynamodb", moto=True)
    table = ddb.describe_table(TableName=applied.outputs["sessions_table"])["Table"]
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert [i["IndexName"] for i in table["GlobalSecondaryIndexes"]] == ["by_state"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    pitr = ddb.describe_continuous_backups(TableName=applied.outputs["sessions_table"])
    recovery = pitr["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
    assert recovery["PointInTimeRecoveryStatus"] == "ENABLED"

    settings = Settings(
        session_store="dynamodb",
        sessions_table=applied.outputs["sessions_table"],
        dynamodb_endpoint=applied.emulators.moto,
        aws_region="us-east-1",
    )
    store = DynamoSessionStore(settings)
    sid = str(uuid.uuid4())
    store.create(Session(session_id=sid, meeting_id="m", user_id="u", topic="t", stream_key="key-" + sid))
    assert store.find_by_stream_key("key-" + sid).session_id == sid  # type: ignore[union-attr]
    store.transition(sid, [SessionState.STARTING], SessionState.LIVE)
    with pytest.raises(StateConflict):
        store.transition(sid, [SessionState.STARTING], SessionState.LIVE)
    assert store.get(sid).state is SessionState.LIVE
    assert sid in [s.session_id for s in store.list([SessionState.LIVE])]


def test_processor_role_is_scoped_to_kcl_tables(applied: Applied) -> None:
    iam: Any = applied.emulators.client("iam")
    doc = iam.get_role_policy(RoleName=f"{NAME}-processor-task", PolicyName="processor")["PolicyDocument"]
    if isinstance(doc, str):
        doc = json.loads(doc)
    by_sid = {s["Sid"]: s for s in doc["Statement"]}
    lease = by_sid["KclLeaseTable"]["Resource"]
    assert lease.endswith(f":table/{NAME}-processor")
    others = by_sid["KclCoordinatorAndWorkerMetricsTables"]["Resource"]
    assert sorted(r.rsplit("/", 1)[1] for r in others) == [
        f"{NAME}-processor-CoordinatorState",
        f"{NAME}-processor-WorkerMetricStats",
    ]
    for statement in doc["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert "*" not in actions and not any(a.endswith(":*") for a in actions)


def test_only_the_notes_function_may_invoke_bedrock_and_only_one_model(applied: Applied) -> None:
    iam: Any = applied.emulators.client("iam")
    granted: dict[str, list[str]] = {}
    for fn in ("coordinator", "check-windows", "generate-notes", "finalize"):
        doc = iam.get_role_policy(RoleName=f"{NAME}-{fn}-lambda", PolicyName="function")["PolicyDocument"]
        if isinstance(doc, str):
            doc = json.loads(doc)
        for statement in doc["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if any(a.startswith("bedrock:") for a in actions):
                assert actions == ["bedrock:InvokeModel"], actions
                resources = statement["Resource"]
                granted[fn] = resources if isinstance(resources, list) else [resources]
    assert granted == {
        "generate-notes": ["arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0"]
    }


def test_real_state_machine_definition_validates(applied: Applied) -> None:
    sfn: Any = applied.emulators.client("stepfunctions")
    desc = sfn.describe_state_machine(stateMachineArn=applied.outputs["state_machine_arn"])
    definition = json.loads(desc["definition"])
    tasks = [s for s in definition["States"].values() if s["Type"] == "Task"]
    assert {t["Parameters"]["FunctionName"].rsplit(":", 1)[1] for t in tasks} == {
        f"{NAME}-check-windows",
        f"{NAME}-generate-notes",
        f"{NAME}-finalize",
    }
    result = sfn.validate_state_machine_definition(definition=desc["definition"], type="STANDARD")
    assert result["result"] == "OK", result.get("diagnostics")
    mock = sfn.validate_state_machine_definition(
        definition=applied.outputs["workflow_mock_definition"], type="STANDARD"
    )
    assert mock["result"] == "OK", mock.get("diagnostics")


def _not_done(n: int = 0) -> dict[str, Any]:
    return {"done": False, "ended": False, "windows_done": n, "windows_failed": 0, "failed": []}


def _run_mock(applied: Applied, payload: dict[str, Any], timeout: float = 90) -> dict[str, Any]:
    sfn: Any = applied.emulators.client("stepfunctions")
    name = f"mock-{uuid.uuid4().hex[:8]}"
    arn = sfn.create_state_machine(
        name=name,
        definition=applied.outputs["workflow_mock_definition"],
        roleArn=applied.outputs["workflow_role_arn"],
    )["stateMachineArn"]
    try:
        execution = sfn.start_execution(stateMachineArn=arn, input=json.dumps(payload))["executionArn"]
        deadline = time.monotonic() + timeout
        while True:
            desc = sfn.describe_execution(executionArn=execution)
            if desc["status"] != "RUNNING":
                break
            assert time.monotonic() < deadline, "mock execution did not finish"
            time.sleep(0.5)
        history = sfn.get_execution_history(executionArn=execution, maxResults=1000)["events"]
        return {
            "status": desc["status"],
            "output": json.loads(desc.get("output") or "null"),
            "entered": [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e],
        }
    finally:
        sfn.delete_state_machine(stateMachineArn=arn)


def test_workflow_all_windows_done_at_first_check(applied: Applied) -> None:
    done = {"done": True, "ended": True, "windows_done": 4, "windows_failed": 0, "failed": []}
    run = _run_mock(
        applied,
        {
            "session_id": "s1",
            "timeout_seconds": 30,
            "mock": {
                "check_windows": [done],
                "generate_notes": {"action_items": 1},
                "finalize": {"state": "completed", "reason": None},
            },
        },
    )
    assert run["status"] == "SUCCEEDED"
    out = run["output"]
    assert out["timed_out"] is False
    assert out["final"]["payload"] == {"session_id": "s1", "timed_out": False, "windows_failed": 0}
    assert "WaitBeforeNextCheck" not in run["entered"]
    assert run["entered"][-1] == "Done"


def test_workflow_polls_with_backoff_then_reports_partial_failure(applied: Applied) -> None:
    failed = {
        "done": True,
        "ended": True,
        "windows_done": 5,
        "windows_failed": 2,
        "failed": [{"window_index": 1, "start": 30.0, "end": 60.0, "error": "cuda oom"}],
    }
    run = _run_mock(
        applied,
        {
            "session_id": "s2",
            "timeout_seconds": 60,
            "mock": {
                "check_windows": [_not_done(1), _not_done(3), _not_done(4), failed],
                "generate_notes": {"action_items": 0},
                "finalize": {"state": "partial", "reason": "2 window(s) failed"},
            },
        },
    )
    assert run["status"] == "SUCCEEDED"
    out = run["output"]
    # Waits of 1, 2, 2 s: first poll 1 s, doubled, capped at the 2 s maximum.
    assert out["poll"]["attempt"] == 3
    assert out["poll"]["waited"] == 5
    assert out["poll"]["wait_seconds"] == 2
    assert run["entered"].count("CheckWindows") == 4
    assert run["entered"].count("CapInterval") >= 1
    assert out["final"]["payload"] == {"session_id": "s2", "timed_out": False, "windows_failed": 2}
    assert out["final"]["result"]["state"] == "partial"
    assert run["entered"].index("GenerateNotes") < run["entered"].index("Finalize")


def test_workflow_gives_up_after_max_wait_and_still_writes_notes(applied: Applied) -> None:
    run = _run_mock(
        applied,
        {
            "session_id": "s3",
            "timeout_seconds": 3,
            "mock": {
                "check_windows": [_not_done(i) for i in range(10)],
                "generate_notes": {"action_items": 0},
                "finalize": {"state": "partial", "reason": "timed out"},
            },
        },
    )
    assert run["status"] == "SUCCEEDED"
    out = run["output"]
    assert out["timed_out"] is True
    assert out["poll"]["waited"] >= 3
    assert out["poll"]["waited"] <= 3 + 2  # bounded: at most one extra interval
    assert "GiveUpWaiting" in run["entered"]
    assert "GenerateNotes" in run["entered"]
    assert out["final"]["payload"]["timed_out"] is True


def test_workflow_uses_template_default_when_input_has_no_timeout(applied: Applied) -> None:
    run = _run_mock(
        applied,
        {
            "session_id": "s4",
            "mock": {
                "check_windows": [_not_done(i) for i in range(10)],
                "generate_notes": {},
                "finalize": {"state": "partial", "reason": "timed out"},
            },
        },
    )
    assert run["status"] == "SUCCEEDED"
    assert run["output"]["poll"]["max_wait"] == 5  # workflow_max_wait_seconds of the emulator root
    assert "InitDefault" in run["entered"]
    assert run["output"]["timed_out"] is True


def test_destroy_cleans_up(applied: Applied) -> None:
    """Runs last in this module: destroy, then nothing of it is left."""
    applied.destroy()
    kinesis: Any = applied.emulators.client("kinesis")
    assert applied.outputs["stream_name"] not in kinesis.list_streams()["StreamNames"]
    s3: Any = applied.emulators.client("s3")
    assert applied.outputs["archive_bucket"] not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    ddb: Any = applied.emulators.client("dynamodb", moto=True)
    assert applied.outputs["sessions_table"] not in ddb.list_tables()["TableNames"]
    sfn: Any = applied.emulators.client("stepfunctions")
    assert applied.outputs["state_machine_arn"] not in [
        m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]
    ]
    sm: Any = applied.emulators.client("secretsmanager")
    names = [s["Name"] for s in sm.list_secrets()["SecretList"]]
    assert not [n for n in names if n.startswith(f"{NAME}/")]
    iam: Any = applied.emulators.client("iam")
    assert not [r for r in iam.list_roles()["Roles"] if r["RoleName"].startswith(NAME)]
