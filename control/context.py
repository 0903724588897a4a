"""What the coordinator works with, wired for the single machine or for AWS."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from contracts.settings import Settings
from control.access import Caller
from control.launch import GpuPrewarmer, NoPrewarm, ProducerLauncher, WorkflowStarter
from control.sessions import SessionReport
from control.workflow import LocalWorkflowStarter, WorkflowSteps, default_steps
from stores.base import Session, SessionStore, TranscriptStore
from stores.factory import session_store, transcript_store


@dataclass
class ControlContext:
    """Stores, launcher, pre-warmer, workflow and auth used by the coordinator."""

    settings: Settings
    sessions: SessionStore
    transcripts: TranscriptStore
    launcher: ProducerLauncher
    workflow: WorkflowStarter
    steps: WorkflowSteps
    prewarmer: GpuPrewarmer = NoPrewarm()
    authenticate: Callable[[Mapping[str, str]], Caller] | None = None
    owns_meeting: Callable[[str, str], bool] | None = None
    page_url: Callable[[str], str] | None = None
    #: Called right after a session is created (Supabase needs the session row first).
    on_session_created: Callable[[Session], None] | None = None
    #: Per-session interim-caption counters (passes run, dropped), where captions run here.
    interim_stats: Callable[[str], dict[str, Any]] | None = None

    def report(self, session: Session) -> SessionReport:
        """The full report of ``session`` (``get_session``'s answer)."""
        return SessionReport.read(
            session,
            self.transcripts,
            window_seconds=self.settings.window_seconds,
            interim_stats=self.interim_stats,
        )


def build_local_context(settings: Settings, launcher: ProducerLauncher) -> ControlContext:
    """Single machine: SQLite stores, in-process ingest, workflow in a thread."""
    sessions = session_store(settings)
    transcripts = transcript_store(settings)
    steps = default_steps(sessions, transcripts, settings)
    scheme_host = f"http://{settings.public_host or settings.host}:{settings.port}"
    return ControlContext(
        settings=settings,
        sessions=sessions,
        transcripts=transcripts,
        launcher=launcher,
        workflow=LocalWorkflowStarter(steps, settings.workflow_timeout_seconds),
        steps=steps,
        page_url=lambda sid: f"{scheme_host}/sessions/{sid}",
    )


def build_context(settings: Settings) -> ControlContext:
    """AWS: DynamoDB sessions, Supabase transcripts, ECS producers, Step Functions workflow."""
    import boto3

    from control.aws_launcher import AsgPrewarmer, EcsProducerLauncher
    from control.sfn import StepFunctionsStarter

    sessions = session_store(settings)
    transcripts = transcript_store(settings)
    steps = default_steps(sessions, transcripts, settings)
    on_created = None
    if settings.store == "supabase":
        from stores.supabase import SupabaseMeetingStatus

        meetings = SupabaseMeetingStatus.from_settings(settings)
        on_created = meetings.register_session
        steps.on_finalized = lambda s, state, notes, reason: meetings.update(
            s.meeting_id, state, notes, session_id=s.session_id, reason=reason
        )
    authenticate = None
    owns_meeting = None
    if settings.supabase_jwt_secret:
        from control import auth

        authenticate = lambda headers: auth.authenticate(headers, settings)  # noqa: E731
        owns_meeting = auth.owns_meeting_factory(settings)
    session = boto3.session.Session(region_name=settings.aws_region)
    return ControlContext(
        settings=settings,
        sessions=sessions,
        transcripts=transcripts,
        launcher=EcsProducerLauncher(settings, session.client("ecs"), session.client("ec2")),
        workflow=StepFunctionsStarter(settings, session.client("stepfunctions")),
        steps=steps,
        prewarmer=AsgPrewarmer(settings, session.client("autoscaling")),
        authenticate=authenticate,
        owns_meeting=owns_meeting,
        on_session_created=on_created,
    )
