"""LocalStack + moto for a run: ``localstack/up`` on free loopback ports (benches, tests/aws)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from testkit.net import free_port

ROOT = Path(__file__).resolve().parents[1]


def start_emulators(run: Path) -> tuple[dict[str, str], dict[str, str]]:
    """localstack/up on free loopback ports; returns (its exports, env for localstack/down)."""
    env = dict(
        os.environ,
        FLOWBOT_LOCALSTACK_RUN=str(run),
        FLOWBOT_LOCALSTACK_PORT=str(free_port()),
        FLOWBOT_MOTO_PORT=str(free_port()),
    )
    out = subprocess.run(
        [str(ROOT / "localstack" / "up")], env=env, capture_output=True, text=True, check=True, timeout=240
    ).stdout
    return parse_exports(out), env


def parse_exports(text: str) -> dict[str, str]:
    """The ``export KEY=VALUE`` lines ``localstack/up`` prints, as a dict."""
    env = {}
    for line in text.splitlines():
        if line.startswith("export ") and "=" in line:
            key, _, value = line[len("export ") :].partition("=")
            env[key] = value
    return env
