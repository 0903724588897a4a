"""How the coordinator gets a producer ready for a session, and pre-warms GPUs.

Embedded mode: the in-process RTMP/WHIP front registers the session's stream
key. AWS mode: an ECS task per session (RunTask) and the GPU Auto Scaling
group's desired capacity raised. Both implement these protocols.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from stores.base import Session


@dataclass(frozen=True)
class LaunchResult:
    """Where the publisher should send the meeting, and a handle to stop it."""

    rtmp_url: str
    producer_ref: str


class LaunchError(RuntimeError):
    """The producer for a session could not be started."""


class ProducerLauncher(Protocol):
    """Starts and stops the producer of one session."""

    def launch(self, session: Session) -> LaunchResult:
        """Make ingest ready for ``session`` (its stream key) and say where to publish."""

    def stop(self, session: Session) -> None:
        """Stop ingest; the producer writes the session's end-of-stream record first."""


@runtime_checkable
class KeyRotation(Protocol):
    """A launcher whose running producer can take a new stream key (``rotate_stream_key``)."""

    def rotate_key(self, session: Session) -> LaunchResult:
        """From now on accept only ``session.stream_key`` (the new key) and cut off a publisher
        of the old one; says where to publish now. :class:`LaunchError` (or ``KeyError`` /
        ``ValueError`` from ingest) if the session no longer takes audio."""


class GpuPrewarmer(Protocol):
    """Raises GPU capacity ahead of the audio (no-op on one machine)."""

    def prewarm(self) -> None:
        """Ask for at least one GPU worker."""


class NoPrewarm:
    """Single machine: the processor is already running."""

    def prewarm(self) -> None:
        """Nothing to do."""


class WorkflowStarter(Protocol):
    """Starts the end-of-session workflow (a thread locally, Step Functions on AWS)."""

    def start(self, session_id: str) -> str:
        """Start it; returns an execution reference."""
