"""The KCL application without a stream (issue 11): a poison record under the daemon's child,
and the daemon dying with the process that launched it (an orphan java kept polling)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import pytest

from streams.base import Checkpointer, StreamRecord
from streams.kinesis.child import KclRecordProcessor
from streams.poison import PoisonGuard, RetryPolicy

ROOT = Path(__file__).resolve().parents[1]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in state  # a zombie has exited; only its parent's reaping is left


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux")
def test_java_gets_sigterm_when_its_launcher_is_sigkilled(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pid_file = tmp_path / "java.pid"
    term_file = tmp_path / "java.term"
    # Stands in for the JVM: records its pid, and that it got SIGTERM (KCL's graceful shutdown).
    fake_java = bin_dir / "java"
    fake_java.write_text(
        f"#!/bin/sh\necho $$ > {pid_file}\ntrap 'echo term > {term_file}; exit 0' TERM\nwhile :; do sleep 0.1; done\n"
    )
    fake_java.chmod(0o755)
    # The launcher as deployed: `flowbot process --source kinesis` (java forked by its consumer thread).
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "TMPDIR": str(tmp_path),  # where the daemon writes kcl.properties
    }
    argv = ["--data-dir", str(tmp_path / "data"), "process", "--source", "kinesis"]
    launcher = subprocess.Popen([sys.executable, "-m", "flowbot.cli", *argv], cwd=ROOT, env=env)
    java_pid = 0
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists() or not pid_file.read_text().strip():
            assert time.monotonic() < deadline, "launcher never started java"
            assert launcher.poll() is None, "launcher exited early"
            time.sleep(0.05)
        java_pid = int(pid_file.read_text())
        assert _alive(java_pid)
        launcher.send_signal(signal.SIGKILL)  # no handler runs: only the kernel can tell java
        launcher.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(java_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(java_pid), "java outlived its launcher"
        assert term_file.read_text().strip() == "term"
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
        if java_pid and _alive(java_pid):
            os.kill(java_pid, signal.SIGKILL)


class _Refuses:
    """A delegate whose every attempt at one record raises (a bug that record triggers)."""

    def __init__(self, bad: str) -> None:
        self.bad = bad
        self.done: list[str] = []

    def initialize(self, shard_id: str, starting_sequence_number: str | None) -> None:
        pass

    def process_records(self, records: Sequence[StreamRecord], checkpointer: Checkpointer) -> None:
        for r in records:
            if r.sequence_number == self.bad:
                raise ValueError("cannot handle this one")
            self.done.append(r.sequence_number)
            checkpointer.checkpoint(r.sequence_number)

    def lease_lost(self) -> None:
        pass

    def shard_ended(self, checkpointer: Checkpointer) -> None:
        pass

    def shutdown_requested(self, checkpointer: Checkpointer) -> None:
        pass


class _KclCheckpointer:
    def __init__(self) -> None:
        self.values: list[str | None] = []

    def checkpoint(self, sequence_number: str | None = None, sub_sequence_number: int | None = None) -> None:
        self.values.append(sequence_number)


def _kcl_records(seqs: list[str]) -> list[SimpleNamespace]:
    return [SimpleNamespace(binary_data=b"x", sequence_number=s, partition_key="k", timestamp_millis=0) for s in seqs]


def test_a_poison_record_under_kcl_is_quarantined_instead_of_exiting_the_child() -> None:
    """Before, the child exited on every failure and the restarted daemon replayed it forever."""
    delegate = _Refuses(bad="12")
    guard = PoisonGuard(delegate, policy=RetryPolicy(attempts=3, first_delay=0.01), wait=lambda s: False)
    kcl = KclRecordProcessor(guard)
    kcl.initialize(SimpleNamespace(shard_id="shardId-0", sequence_number="TRIM_HORIZON"))
    cp = _KclCheckpointer()
    kcl.process_records(SimpleNamespace(records=_kcl_records(["10", "11", "12", "13"]), checkpointer=cp))
    kcl.process_records(SimpleNamespace(records=_kcl_records(["14"]), checkpointer=cp))
    assert guard.quarantined.keys() == {12}
    assert delegate.done[-2:] == ["13", "14"] and cp.values[-1] == "14"


def _fake_java(bin_dir: Path, pid_file: Path, term_file: Path, exit_code: int) -> dict[str, str]:
    """A ``java`` on PATH that records its pid and SIGTERM, then exits like the JVM does."""
    bin_dir.mkdir()
    java = bin_dir / "java"
    java.write_text(
        f"#!/bin/sh\necho $$ > {pid_file}\n"
        f"trap 'echo term > {term_file}; exit {exit_code}' TERM\nwhile :; do sleep 0.1; done\n"
    )
    java.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def test_flowbot_process_on_kinesis_runs_the_daemon_with_the_shard_processor_by_name(tmp_path: Path) -> None:
    """The configured backend picks the consumer; the KCL child builds the engine itself, here nothing loads."""
    from contracts.settings import Settings
    from flowbot.pipeline import LocalProcessors
    from processor.build import build_shard_processor
    from streams.factory import stream_consumer
    from streams.kinesis.child import load_factory
    from streams.kinesis.daemon import KclDaemon, kcl_properties

    settings = Settings.from_env({}, data_dir=tmp_path, stream="kinesis")
    processors = LocalProcessors(settings)
    consumer = stream_consumer(settings, processors.factory())
    assert isinstance(consumer, KclDaemon)
    command = kcl_properties(settings, consumer.factory)["executableName"].split(" ")
    assert command[1:3] == ["-m", "streams.kinesis.child"]
    assert load_factory(command[3]) is build_shard_processor
    assert processors.processors == [] and processors._parts is None  # no models in the launcher


def test_stopping_the_daemon_sends_sigterm_to_java_and_reports_the_clean_stop(tmp_path: Path) -> None:
    from contracts.settings import Settings
    from streams.kinesis.daemon import KclDaemon
    from streams.thread import ConsumerThread

    pid_file, term_file = tmp_path / "java.pid", tmp_path / "java.term"
    # The JVM exits 143 after SIGTERM even when KCL's graceful shutdown completed.
    env = _fake_java(tmp_path / "bin", pid_file, term_file, exit_code=143)
    settings = Settings.from_env({})
    # java is looked up on the PATH of ``env``, the daemon's environment.
    daemon = KclDaemon(settings, "testkit.kcl_factories:build_recorder", workdir=tmp_path / "kcl", env=env)
    thread = ConsumerThread(daemon).start()
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline and thread.is_alive(), "java never started"
        time.sleep(0.05)
    assert thread.stop(timeout=30) == 0
    assert term_file.read_text().strip() == "term"
    properties = (tmp_path / "kcl" / "kcl.properties").read_text()
    assert "-m streams.kinesis.child testkit.kcl_factories:build_recorder" in properties
    # Stopped before it ran: java is never started.
    early = KclDaemon(settings, "testkit.kcl_factories:build_recorder", workdir=tmp_path / "kcl2", env=env)
    early.stop()
    assert early.run() == 0 and not (tmp_path / "kcl2").exists()
