"""nginx-rtmp front for AWS producer tasks: the config template and its renderer."""

from __future__ import annotations

import ctypes
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

TEMPLATE = Path(__file__).with_name("nginx.conf")
#: Where Debian's libnginx-mod-rtmp installs the module.
DEBIAN_RTMP_MODULE = "/usr/lib/nginx/modules/ngx_rtmp_module.so"
_PLACEHOLDER = re.compile(r"@@([A-Z_]+)@@")


def render_config(
    *,
    rtmp_listen: str,
    auth_port: int,
    ingest_port: int,
    run_dir: Path,
    error_log: str = "stderr",
    log_level: str = "info",
    rtmp_module: str = DEBIAN_RTMP_MODULE,
) -> str:
    """The nginx.conf text for one producer (all paths and ports filled in)."""
    values = {
        "RTMP_LISTEN": rtmp_listen,
        "AUTH_PORT": str(int(auth_port)),
        "INGEST_PORT": str(int(ingest_port)),
        "RUN_DIR": str(run_dir),
        "ERROR_LOG": error_log,
        "LOG_LEVEL": log_level,
        "RTMP_MODULE": rtmp_module,
    }
    text = TEMPLATE.read_text()
    missing = set(_PLACEHOLDER.findall(text)) - set(values)
    if missing:
        raise ValueError(f"nginx.conf template has unknown placeholders: {sorted(missing)}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM nginx if the producer dies, so no orphan keeps the port."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class NginxFront:
    """A running nginx with the rendered config (its own prefix folder, no root needed)."""

    def __init__(
        self,
        *,
        rtmp_listen: str,
        auth_port: int,
        ingest_port: int,
        work_dir: Path,
        nginx: str = "nginx",
    ) -> None:
        self.rtmp_listen = rtmp_listen
        self.work_dir = work_dir
        self.nginx = shutil.which(nginx) or shutil.which(nginx, path="/usr/sbin:/sbin") or nginx
        self.config = work_dir / "nginx.conf"
        work_dir.mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            render_config(
                rtmp_listen=rtmp_listen,
                auth_port=auth_port,
                ingest_port=ingest_port,
                run_dir=work_dir,
            )
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Start nginx and wait until its RTMP port accepts connections."""
        argv = [self.nginx, "-p", str(self.work_dir), "-c", str(self.config), "-e", "stderr"]
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        host, _, port = self.rtmp_listen.rpartition(":")
        probe_host = "127.0.0.1" if host in ("", "0.0.0.0", "*") else host.strip("[]")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited with status {self.process.returncode}")
            try:
                with socket.create_connection((probe_host, int(port)), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx did not listen on {self.rtmp_listen} within {timeout} s")

    def stop(self, timeout: float = 10.0) -> None:
        """Fast shutdown (SIGTERM): publishers and the push to ingest are closed."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
