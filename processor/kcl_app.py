"""The processor as a KCL v3 application under the MultiLangDaemon (``--source kinesis``).

Two halves:

- :func:`run_daemon` writes the KCL properties file from :class:`Settings`, starts
  ``java ... MultiLangDaemon`` with the jars bundled in ``kclpy-ext``, forwards
  SIGTERM/SIGINT to the java process only (KCL then shuts down gracefully and
  our processor gets ``shutdown_requested`` and checkpoints), and returns its
  exit code.
- ``python -m processor.kcl_app`` is the child the daemon starts once per shard
  lease. It speaks the multilang protocol on stdin/stdout (so nothing else may
  write to fd 1: it is re-pointed at stderr) and drives the same
  :class:`streams.base.RecordProcessor` as the single-machine mode, built by
  ``processor.build.build_shard_processor(settings)`` unless
  ``FLOWBOT_KCL_PROCESSOR=module:callable`` names another factory.

The delegate runs behind a :class:`streams.poison.PoisonGuard`: a failing
record is replayed in place with growing pauses and quarantined after a
bounded number of attempts, so the other sessions of the shard move on. An
exception the guard cannot handle in place is never swallowed (kclpy's default
would report the batch as done and move on, losing it): the child exits
non-zero, the daemon stops, and a restarted daemon replays from the last
checkpoint.

The java daemon dies with the Python process that launched it: it gets
SIGTERM from the kernel when its parent dies (``PR_SET_PDEATHSIG``), so a
SIGKILLed ``flowbot process`` leaves no orphan polling Kinesis.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from amazon_kclpy.kcl import CheckpointError, KCLProcess
from amazon_kclpy.v3 import processor as kcl_v3

from contracts.logs import configure_logging
from contracts.settings import Settings
from streams.base import RecordProcessor, StreamRecord
from streams.poison import PoisonGuard

log = logging.getLogger(__name__)

#: Environment variable naming the processor factory for the child (``module:callable``).
FACTORY_ENV = "FLOWBOT_KCL_PROCESSOR"
DEFAULT_FACTORY = "processor.build:build_shard_processor"
MAIN_CLASS = "software.amazon.kinesis.multilang.MultiLangDaemon"

#: KCL checkpoint errors worth another try after a pause (kclpy's documented semantics).
_CHECKPOINT_RETRIES = 5
_CHECKPOINT_PAUSE_S = 1.0


class KclCheckpointer:
    """:class:`streams.base.Checkpointer` over kclpy's checkpointer.

    - ``ThrottlingException``: DynamoDB is busy; pause and retry.
    - ``ShutdownException``: the lease is gone (another worker has the shard);
      skip, that worker resumes from the last stored checkpoint.
    - anything else (``InvalidStateException``, ...): logged and retried; if
      it never passes the checkpoint stays behind, which only means replay.
    """

    def __init__(self, kcl_checkpointer: Any, shard_id: str, pause_s: float = _CHECKPOINT_PAUSE_S):
        self._cp = kcl_checkpointer
        self.shard_id = shard_id
        self.pause_s = pause_s

    def checkpoint(self, sequence_number: str | None = None) -> None:
        """Checkpoint at ``sequence_number`` (None = everything delivered so far)."""
        for attempt in range(1, _CHECKPOINT_RETRIES + 1):
            try:
                self._cp.checkpoint(sequence_number, None)
                log.debug("checkpointed", extra={"shard": self.shard_id, "seq": sequence_number})
                return
            except CheckpointError as exc:
                if exc.value == "ShutdownException":
                    log.warning(
                        "checkpoint skipped: lease is gone", extra={"shard": self.shard_id, "seq": sequence_number}
                    )
                    return
                log.warning(
                    "checkpoint failed",
                    extra={"shard": self.shard_id, "seq": sequence_number, "error": exc.value, "attempt": attempt},
                )
                if attempt == _CHECKPOINT_RETRIES:
                    log.error(
                        "giving up on this checkpoint; records after the last one replay",
                        extra={"shard": self.shard_id, "seq": sequence_number},
                    )
                    return
                time.sleep(self.pause_s * attempt)


class KclRecordProcessor(kcl_v3.RecordProcessorBase):
    """amazon_kclpy v3 record processor that drives one of our RecordProcessors."""

    def __init__(self, delegate: RecordProcessor) -> None:
        self.delegate = delegate
        self.shard_id = ""
        self.counters: Counter[str] = Counter()

    def initialize(self, initialize_input: Any) -> None:
        """Lease taken: tell the delegate the shard and where its checkpoint is."""
        self.shard_id = str(initialize_input.shard_id)
        seq = initialize_input.sequence_number
        # TRIM_HORIZON / LATEST / AT_TIMESTAMP are positions, not records.
        start = str(seq) if seq is not None and str(seq).isdigit() else None
        log.info("kcl lease initialized", extra={"shard": self.shard_id, "checkpoint": seq})
        self.delegate.initialize(self.shard_id, start)

    def process_records(self, process_records_input: Any) -> None:
        """Convert KCL records (base64 JSON) to StreamRecords and hand them on."""
        records: list[StreamRecord] = []
        for rec in process_records_input.records:
            try:
                data = rec.binary_data
            except (ValueError, TypeError) as exc:  # binascii.Error is a ValueError
                self.counters["undecodable_records"] += 1
                log.warning(
                    "record with undecodable data skipped",
                    extra={
                        "shard": self.shard_id,
                        "seq": rec.sequence_number,
                        "error": str(exc),
                        "undecodable_total": self.counters["undecodable_records"],
                    },
                )
                continue
            records.append(
                StreamRecord(
                    sequence_number=str(rec.sequence_number),
                    partition_key=str(rec.partition_key),
                    data=bytes(data),
                    arrival_time=rec.timestamp_millis / 1000.0,
                    shard_id=self.shard_id,
                )
            )
        self.counters["records"] += len(records)
        checkpointer = KclCheckpointer(process_records_input.checkpointer, self.shard_id)
        try:
            self.delegate.process_records(records, checkpointer)
        except Exception:
            # kclpy would log this and report the batch done, skipping it for good.
            log.critical(
                "record processor failed; exiting so the batch is replayed",
                extra={"shard": self.shard_id, "records": len(records)},
                exc_info=True,
            )
            raise SystemExit(1) from None

    def lease_lost(self, lease_lost_input: Any) -> None:
        """Another worker took the shard: the delegate drops its state, writes nothing."""
        log.warning("kcl lease lost", extra={"shard": self.shard_id})
        self.delegate.lease_lost()

    def shard_ended(self, shard_ended_input: Any) -> None:
        """Resharding: the delegate finishes and checkpoints the shard end."""
        log.info("kcl shard ended", extra={"shard": self.shard_id})
        self.delegate.shard_ended(KclCheckpointer(shard_ended_input.checkpointer, self.shard_id))

    def shutdown_requested(self, shutdown_requested_input: Any) -> None:
        """Graceful shutdown: the delegate checkpoints what is committed."""
        log.info("kcl shutdown requested", extra={"shard": self.shard_id})
        self.delegate.shutdown_requested(KclCheckpointer(shutdown_requested_input.checkpointer, self.shard_id))


def load_factory(spec: str) -> Callable[[Settings], RecordProcessor]:
    """Resolve ``module:callable`` to a processor factory."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{FACTORY_ENV}={spec!r}: expected 'module:callable'")
    factory = getattr(importlib.import_module(module_name), attr)
    if not callable(factory):
        raise ValueError(f"{spec} is not callable")
    return factory


def _protocol_stdout() -> TextIO:
    """Keep fd 1 for the multilang protocol only; everything else printed goes to stderr.

    Native libraries (CTranslate2, torch) may write to fd 1 directly, so the fd
    itself is swapped, not just ``sys.stdout``.
    """
    sys.stdout.flush()
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(protocol_fd, "w", buffering=1)


def main() -> None:
    """Entry point of the child process the MultiLangDaemon runs for each shard."""
    protocol_out = _protocol_stdout()
    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    spec = os.environ.get(FACTORY_ENV, DEFAULT_FACTORY)
    delegate = load_factory(spec)(settings)
    log.info("kcl child ready", extra={"factory": spec, "pid": os.getpid()})
    KCLProcess(
        KclRecordProcessor(PoisonGuard(delegate)),
        input_file=sys.stdin,
        output_file=protocol_out,
        error_file=sys.stderr,
    ).run()


# -- the daemon -------------------------------------------------------------------
def jars_dir() -> Path:
    """Folder of the KCL jars shipped inside the kclpy-ext wheel."""
    import amazon_kclpy

    return Path(amazon_kclpy.__file__).parent / "jars"


def kcl_properties(
    settings: Settings,
    *,
    executable: str | None = None,
    extra: Mapping[str, str | int | float | bool] | None = None,
) -> dict[str, str]:
    """KCL MultiLangDaemon properties for ``settings`` (``extra`` wins on conflicts).

    Lease balancing: KCL 3 assigns leases by each worker's CPU utilisation, but
    a flowbot worker is GPU-bound and its CPU says little about its load. CPU
    metrics are therefore disabled (KCL then balances by shard throughput, which
    is proportional to the number of live sessions a shard carries: 32 KB/s
    each), and ``maxLeasesForWorker`` caps the shards one worker takes at what
    its GPU can transcribe (``FLOWBOT_KCL_MAX_LEASES_PER_WORKER``; see
    docs/kinesis.md).
    """
    emulated = bool(settings.kinesis_endpoint)
    props: dict[str, str] = {
        "executableName": executable or f"{sys.executable} -m processor.kcl_app",
        "streamName": settings.kinesis_stream_name,
        "applicationName": settings.kcl_application_name,
        "regionName": settings.aws_region,
        # Audio from before the first lease must not be skipped.
        "initialPositionInStream": "TRIM_HORIZON",
        "AWSCredentialsProvider": (
            "EnvironmentVariableCredentialsProvider" if emulated else "DefaultCredentialsProvider"
        ),
        "metricsLevel": "NONE" if emulated else "SUMMARY",
        "shutdownGraceMillis": "20000",
        "leaseTableDeletionProtectionEnabled": "false",
        "disableWorkerMetrics": "true",
        "idleTimeBetweenReadsInMillis": "250",
        "maxRecords": "100",
    }
    if settings.kcl_max_leases_per_worker > 0:
        props["maxLeasesForWorker"] = str(settings.kcl_max_leases_per_worker)
    if settings.kinesis_endpoint:
        props["kinesisEndpoint"] = settings.kinesis_endpoint
        # Enhanced fan-out needs SubscribeToShard over HTTP/2, which emulators lack.
        props["retrievalMode"] = "POLLING"
    if settings.dynamodb_endpoint:
        props["dynamoDBEndpoint"] = settings.dynamodb_endpoint
    if settings.cloudwatch_endpoint:
        props["cloudWatchClient.endpointOverride"] = settings.cloudwatch_endpoint
    for key, value in (extra or {}).items():
        props[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return props


_LOGBACK = """<configuration>
  <appender name="STDERR" class="ch.qos.logback.core.ConsoleAppender">
    <target>System.err</target>
    <encoder><pattern>%d{HH:mm:ss.SSS} %-5level kcl %logger{0}: %msg%n</pattern></encoder>
  </appender>
  <!-- The daemon echoes each child stderr line itself; this logger would repeat it as ERROR. -->
  <logger name="software.amazon.kinesis.multilang.DrainChildSTDERRTask" level="OFF"/>
  <root level="{level}"><appender-ref ref="STDERR"/></root>
</configuration>
"""


def write_properties(props: Mapping[str, str], folder: Path) -> Path:
    """Write ``kcl.properties`` (and a logback config) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "kcl.properties"
    lines = [f"{k} = {v}" for k, v in props.items()]
    header = "# generated by processor.kcl_app from FLOWBOT_* settings\n"
    path.write_text(header + "\n".join(lines) + "\n")
    return path


def daemon_command(properties_file: Path, *, java: str = "java", log_level: str = "INFO") -> list[str]:
    """The java command line that runs the MultiLangDaemon on ``properties_file``."""
    folder = properties_file.parent
    logback = folder / "logback.xml"
    logback.write_text(_LOGBACK.replace("{level}", log_level.upper()))
    classpath = f"{jars_dir()}/*{os.pathsep}{folder}"
    cmd = [java, f"-Dlogback.configurationFile={logback}"]
    return [*cmd, "-cp", classpath, MAIN_CLASS, "--properties-file", str(properties_file)]


_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, signum: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive ``signum`` when ``parent_pid`` dies (Linux).

    The kernel sends it when the thread that forked the child exits, so the
    launcher must wait for the child in that same thread (``run_daemon`` does).
    If the parent is already gone by the time the child runs this, the child
    signals itself. None where there is no ``prctl`` (not Linux).
    """
    libc_name = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
    if libc_name is None:
        return None
    # Resolved before the fork: the child only makes the call (no imports, no loading).
    prctl = ctypes.CDLL(libc_name, use_errno=True).prctl

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signum)

    return preexec


def run_daemon(
    settings: Settings,
    *,
    factory: str | None = None,
    extra_properties: Mapping[str, str | int | float | bool] | None = None,
    workdir: Path | None = None,
    env: Mapping[str, str] | None = None,
    on_start: Callable[[subprocess.Popen[bytes]], None] | None = None,
) -> int:
    """Run the KCL MultiLangDaemon for ``settings`` until it exits; return its exit code.

    SIGTERM and SIGINT received by this process are forwarded to the java
    process only (and java gets SIGTERM from the kernel if this process dies);
    KCL then asks every record processor to checkpoint (``shutdown_requested``)
    within ``shutdownGraceMillis`` before exiting.
    ``on_start`` receives the java process (tests use it to kill it hard).
    """
    if not settings.kinesis_stream_name:
        raise ValueError("FLOWBOT_KINESIS_STREAM_NAME is empty")
    folder = workdir or Path(tempfile.mkdtemp(prefix="flowbot-kcl-"))
    props = kcl_properties(settings, extra=extra_properties)
    path = write_properties(props, folder)
    child_env = dict(os.environ if env is None else env)
    if factory:
        child_env[FACTORY_ENV] = factory
    repo_root = str(Path(__file__).resolve().parent.parent)
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (repo_root, child_env.get("PYTHONPATH", "")) if p)
    cmd = daemon_command(path, log_level="WARN" if settings.log_level == "INFO" else "INFO")
    log.info(
        "starting KCL MultiLangDaemon",
        extra={
            "stream": settings.kinesis_stream_name,
            "application": settings.kcl_application_name,
            "properties": str(path),
            "executable": props["executableName"],
        },
    )
    # Own process group: a terminal's Ctrl-C reaches only us; we decide what java gets.
    # SIGTERM when we die (even by SIGKILL): KCL shuts down gracefully instead of polling on.
    proc = subprocess.Popen(
        cmd, env=child_env, cwd=folder, start_new_session=True, preexec_fn=die_with_parent(os.getpid())
    )

    forwarded: list[int] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        forwarded.append(signum)
        log.info("forwarding signal to KCL daemon", extra={"signal": signal.Signals(signum).name, "pid": proc.pid})
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)

    in_main = threading.current_thread() is threading.main_thread()
    previous: dict[signal.Signals, Any] = {}
    if in_main:
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, forward)
    try:
        if on_start is not None:
            on_start(proc)
        code = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if forwarded and code in (128 + signal.SIGTERM, -signal.SIGTERM):
        # The JVM reports a SIGTERM-initiated shutdown as 143 even when KCL's
        # graceful shutdown completed; that is the clean stop we asked for.
        code = 0
    log.info("KCL daemon exited", extra={"code": code, "signalled": bool(forwarded)})
    return code


if __name__ == "__main__":
    main()
