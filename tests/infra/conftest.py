"""Fixtures for the deployment checks: Terraform, checkov and the AWS emulators.

Tools missing here skip locally but FAIL in CI (CI=true), so a broken CI image
cannot pass by skipping. The emulators (LocalStack for Kinesis, S3, Secrets
Manager, Step Functions, IAM, KMS, CloudWatch; moto for DynamoDB and the EC2,
ECS and Auto Scaling calls of the launcher tests) are started here as
subprocesses on 127.0.0.1 and stopped at the end of the session.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from testkit.net import free_port

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM_DIR = ROOT / "infra" / "terraform"
EMULATOR_ROOT = ROOT / "tests" / "infra" / "emulator"
LS_VENV = Path(os.environ.get("INFRA_LS_VENV", ROOT / ".cache" / "infra-localstack-venv"))
CHECKOV = Path(os.environ.get("CHECKOV_VENV", ROOT / ".cache" / "checkov-venv")) / "bin" / "checkov"
KINESIS_MOCK_LIBS = Path("/opt/flowbot-localstack/libs")
LS_SERVICES = "kinesis,s3,secretsmanager,stepfunctions,iam,sts,kms,logs,cloudwatch"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require(condition: bool, why: str) -> None:
    """Skip locally, fail in CI, when a prerequisite is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"prerequisite missing in CI: {why} (run scripts/setup.d/50-infra.sh)")
    pytest.skip(why)


def terraform_env() -> dict[str, str]:
    """Environment for terraform runs: no CLI config, no prompts, no colour."""
    env = dict(os.environ)
    env.update({"TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "CHECKPOINT_DISABLE": "1"})
    if not os.path.exists(env.get("TF_CLI_CONFIG_FILE", "/nonexistent")):
        env["TF_CLI_CONFIG_FILE"] = "/dev/null"
    return env


def plugin_dir() -> str | None:
    """Folder holding registry.terraform.io/hashicorp/aws (offline provider mirror), if any."""
    override = os.environ.get("TF_PLUGIN_MIRROR")
    if override:
        return override
    for pattern in (
        "/opt/tf-plugins",
        "/usr/share/terraform/plugins",
        os.path.expanduser("~/.terraform.d/plugins"),
    ):
        for hit in glob.glob(f"{pattern}/registry.terraform.io/hashicorp/aws/5.*"):
            return str(Path(hit).parents[3])
    return None


def terraform(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run terraform and fail with its output when it fails."""
    proc = subprocess.run(
        ["terraform", "-chdir=" + str(cwd), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=terraform_env(),
    )
    if proc.returncode != 0:
        pytest.fail(f"terraform {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def terraform_init(cwd: Path) -> None:
    """``init -backend=false`` from the local mirror when there is one (users run plain init)."""
    args = ["init", "-backend=false", "-no-color"]
    mirror = plugin_dir()
    if mirror:
        args.append(f"-plugin-dir={mirror}")
    terraform(args, cwd)


@pytest.fixture(scope="session")
def terraform_bin() -> str:
    """The terraform binary."""
    path = shutil.which("terraform")
    require(path is not None, "terraform is not installed")
    return str(path)


@pytest.fixture
def tf_copy(tmp_path: Path, terraform_bin: str) -> Path:
    """A private copy of infra/ and the emulator root (lock files and .terraform stay out of the repo)."""
    shutil.copytree(ROOT / "infra", tmp_path / "infra", ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))
    shutil.copytree(
        EMULATOR_ROOT,
        tmp_path / "tests" / "infra" / "emulator",
        ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"),
    )
    return tmp_path


def _wait_http(url: str, seconds: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{url} exited early:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"{url} did not answer in {seconds} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    # Started with start_new_session: the group is exactly this server and its children.
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@dataclass(frozen=True)
class Emulators:
    """Endpoints of the running emulators."""

    localstack: str
    moto: str
    region: str = "us-east-1"

    def client(self, service: str, *, moto: bool = False) -> object:
        """A boto3 client of ``service`` on LocalStack (or moto)."""
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.moto if moto else self.localstack,
            region_name=self.region,
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )


@pytest.fixture(scope="session")
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulators]:
    """LocalStack (host mode) and moto, each on a free loopback port."""
    python = LS_VENV / "bin" / "python"
    require(python.exists(), f"LocalStack venv missing at {LS_VENV}")
    run = tmp_path_factory.mktemp("emulators")
    (run / "fs" / "usr" / "lib").mkdir(parents=True)
    (run / "tmp").mkdir()
    if KINESIS_MOCK_LIBS.exists():
        # The pre-installed kinesis-mock, so LocalStack does not npm-install it on first use.
        (run / "fs" / "usr" / "lib" / "localstack").symlink_to(KINESIS_MOCK_LIBS)
    ls_port, moto_port = free_port(), free_port()
    env = dict(os.environ)
    env.update(
        {
            "OVERRIDE_IN_DOCKER": "0",
            "FILESYSTEM_ROOT": str(run / "fs"),
            "TMPDIR": str(run / "tmp"),
            "GATEWAY_LISTEN": f"127.0.0.1:{ls_port}",
            "GATEWAY_SERVER": "hypercorn",
            "DNS_ADDRESS": "0",
            "DISABLE_EVENTS": "1",
            "SKIP_SSL_CERT_DOWNLOAD": "1",
            "SERVICES": LS_SERVICES,
            "KINESIS_LATENCY": "0",
        }
    )
    loopback = ROOT / "localstack" / "loopback.js"
    if loopback.exists():
        # Keeps kinesis-mock's node server on 127.0.0.1 (it binds 0.0.0.0 otherwise).
        env["NODE_OPTIONS"] = f"--require {loopback}"
    ls_log, moto_log = run / "localstack.log", run / "moto.log"
    ls = subprocess.Popen(
        [str(python), "-m", "localstack.runtime.main"],
        cwd=run,
        env=env,
        stdout=ls_log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    moto = subprocess.Popen(
        [str(LS_VENV / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)],
        cwd=run,
        stdout=moto_log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_http(f"http://127.0.0.1:{ls_port}/_localstack/health", 120, ls, ls_log)
        _wait_http(f"http://127.0.0.1:{moto_port}/moto-api/", 60, moto, moto_log)
        yield Emulators(f"http://127.0.0.1:{ls_port}", f"http://127.0.0.1:{moto_port}")
    finally:
        _stop(ls)
        _stop(moto)


@pytest.fixture(scope="session")
def checkov_bin() -> str:
    """checkov from its own venv (scripts/setup.d/50-infra.sh)."""
    require(CHECKOV.exists(), f"checkov missing at {CHECKOV}")
    return str(CHECKOV)
