"""Terraform formatting, validation and the security scan (no cloud, no emulator)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.infra.conftest import ROOT, TERRAFORM_DIR, terraform, terraform_env, terraform_init

SKIP_RE = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?")


def test_fmt_check(terraform_bin: str) -> None:
    """Every .tf file is in canonical format."""
    for folder in (TERRAFORM_DIR, ROOT / "tests" / "infra" / "emulator"):
        proc = subprocess.run(
            [terraform_bin, "fmt", "-check", "-recursive", "-diff", str(folder)],
            capture_output=True,
            text=True,
            env=terraform_env(),
        )
        assert proc.returncode == 0, f"terraform fmt -check found changes:\n{proc.stdout}"


@pytest.mark.parametrize(
    "folder",
    [
        "infra/terraform",
        "infra/terraform/modules/data",
        "infra/terraform/modules/network",
        "infra/terraform/modules/compute",
        "infra/terraform/modules/monitoring",
        "tests/infra/emulator",
    ],
)
def test_validate(tf_copy: Path, folder: str) -> None:
    """The root, each module alone, and the emulator root validate."""
    cwd = tf_copy / folder
    terraform_init(cwd)
    proc = terraform(["validate", "-json", "-no-color"], cwd)
    result = json.loads(proc.stdout)
    assert result["valid"], result
    assert result["error_count"] == 0


def test_every_suppression_has_a_reason() -> None:
    """A checkov skip without a written reason is not allowed."""
    skips = []
    for path in sorted(TERRAFORM_DIR.rglob("*.tf")):
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            m = SKIP_RE.search(line)
            if m:
                skips.append((path, lineno, m.group(1), (m.group(2) or "").strip()))
    assert skips, "expected the documented suppressions to be found"
    missing = [f"{p.relative_to(ROOT)}:{n} {cid}" for p, n, cid, why in skips if len(why) < 20]
    assert not missing, f"suppressions without a reason: {missing}"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("framework", "targets"),
    [
        ("terraform", ["-d", str(TERRAFORM_DIR)]),
        ("dockerfile", ["-f", str(ROOT / "producer" / "Dockerfile"), "-f", str(ROOT / "processor" / "Dockerfile")]),
    ],
)
def test_checkov_has_no_failed_checks(checkov_bin: str, tmp_path: Path, framework: str, targets: list[str]) -> None:
    """checkov reports zero failed checks (suppressions carry reasons, see above)."""
    out = tmp_path / "checkov"
    cmd = [
        checkov_bin,
        *targets,
        "--framework",
        framework,
        "--skip-download",
        "-o",
        "json",
        "--output-file-path",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    report_file = next(out.glob("*.json"), None)
    assert report_file is not None, f"checkov wrote no report:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    data = json.loads(report_file.read_text())
    reports = data if isinstance(data, list) else [data]
    failed = []
    passed = 0
    for report in reports:
        passed += int(report.get("summary", {}).get("passed", 0))
        for check in report.get("results", {}).get("failed_checks", []):
            failed.append(
                f"{check['check_id']} {check['resource']} ({check['file_path']}) severity={check.get('severity')}"
            )
    assert passed > 50, f"checkov scanned suspiciously little ({passed} passed)"
    assert not failed, "checkov failed checks:\n" + "\n".join(failed)
