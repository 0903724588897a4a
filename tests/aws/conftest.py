"""AWS-mode fixtures: LocalStack (Kinesis, S3) + moto (DynamoDB) started for the run.

If ``FLOWBOT_KINESIS_ENDPOINT`` is already set (e.g. ``eval "$(localstack/up --docker)"``),
the running emulators are used as they are. Otherwise ``localstack/up`` starts them on
free loopback ports in a temporary run folder and ``localstack/down`` stops them at the
end. Missing prerequisites skip the tests on a developer machine and fail them in CI.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest

from contracts.settings import Settings
from testkit.emulators import parse_exports
from testkit.net import free_port

ROOT = Path(__file__).resolve().parents[2]
LS_HOME = Path(os.environ.get("FLOWBOT_LOCALSTACK_HOME", "/opt/flowbot-localstack"))


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"AWS test prerequisite missing in CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def aws_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """FLOWBOT_*/AWS_* variables of running emulators (started here if needed)."""
    if os.environ.get("FLOWBOT_KINESIS_ENDPOINT"):
        yield {k: v for k, v in os.environ.items() if k.startswith(("FLOWBOT_", "AWS_"))}
        return
    if not (LS_HOME / "venv" / "bin" / "python").exists():
        _missing(f"LocalStack not installed in {LS_HOME}; run scripts/setup.d/30-localstack.sh")
    if shutil.which("java") is None:
        _missing("java not found (the KCL MultiLangDaemon needs Java 17)")
    run = tmp_path_factory.mktemp("localstack-run")
    env = dict(os.environ)
    env.update(
        FLOWBOT_LOCALSTACK_RUN=str(run),
        FLOWBOT_LOCALSTACK_PORT=str(free_port()),
        FLOWBOT_MOTO_PORT=str(free_port()),
        PYTHON=str(ROOT / ".venv" / "bin" / "python")
        if (ROOT / ".venv").exists()
        else shutil.which("python3") or "python3",
    )
    try:
        up = subprocess.run(
            [str(ROOT / "localstack" / "up")],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        if up.returncode != 0:
            logs = "".join(p.read_text(errors="replace")[-3000:] for p in run.glob("*.log"))
            pytest.fail(f"localstack/up failed ({up.returncode}):\n{up.stderr}\n{logs}")
        exports = parse_exports(up.stdout)
        yield exports
    finally:
        subprocess.run([str(ROOT / "localstack" / "down")], env=env, timeout=60, check=False)


@pytest.fixture(scope="session")
def aws_settings(aws_env: dict[str, str]) -> Iterator[Settings]:
    """Settings pointing at the emulators; AWS_* credentials exported for boto3 and KCL."""
    saved = {k: os.environ.get(k) for k in aws_env}
    os.environ.update({k: v for k, v in aws_env.items() if k.startswith("AWS_")})
    yield Settings.from_env(aws_env)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def make_stream(aws_settings: Settings) -> Iterator[Callable[..., str]]:
    """Create a fresh Kinesis stream (unique name); deleted after the test."""
    client = boto3.client("kinesis", endpoint_url=aws_settings.kinesis_endpoint, region_name=aws_settings.aws_region)
    made: list[str] = []

    def make(shards: int = 1) -> str:
        name = f"t-{uuid.uuid4().hex[:10]}"
        client.create_stream(StreamName=name, ShardCount=shards)
        client.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 300})
        made.append(name)
        return name

    yield make
    for name in made:
        with contextlib.suppress(Exception):  # the emulator may be gone at teardown
            client.delete_stream(StreamName=name, EnforceConsumerDeletion=True)


def read_stream(settings: Settings, stream: str) -> list[dict]:
    """Every record of every shard, in shard order (GetRecords from TRIM_HORIZON)."""
    client = boto3.client("kinesis", endpoint_url=settings.kinesis_endpoint, region_name=settings.aws_region)
    out: list[dict] = []
    for shard in client.list_shards(StreamName=stream)["Shards"]:
        it = client.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")[
            "ShardIterator"
        ]
        while it:
            resp = client.get_records(ShardIterator=it, Limit=10_000)
            out.extend(dict(r, ShardId=shard["ShardId"]) for r in resp["Records"])
            if not resp["Records"] and resp.get("MillisBehindLatest", 0) == 0:
                break
            it = resp.get("NextShardIterator")
    return out
