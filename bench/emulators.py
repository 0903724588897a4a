"""Start the LocalStack + moto emulators for a benchmark run (``localstack/up`` on free ports)."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A free loopback TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
    exports = {}
    for line in out.splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export ") :].partition("=")
            exports[key] = value
    return exports, env
