"""What the coordinator works with, wired once for the single machine or for AWS.

:class:`ControlContext` is frozen: everything is known when it is built, and
what only becomes known later (the web front's address) is passed as a
callable that is asked when a request needs it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from contracts.settings import Settings, TranscriptBackend
from control.access import Caller
from control.launch import GpuPrewarmer, NoPrewarm, ProducerLauncher, WorkflowStarter
from control.sessions import SessionReport
from control.workflow import LocalWorkflowStarter, default_steps
from stores.base import Session, SessionStore, TranscriptStore
from stores.factory import session_store, transcript_store, voice_library
from stores.voice_naming import Voices


@dataclass(frozen=True)
class ControlContext:
    """Stores, launcher, pre-warmer, workflow and auth used by the coordinator."""

    settings: Settings
    sessions: SessionStore
    transcripts: TranscriptStore
    launcher: ProducerLauncher
    workflow: WorkflowStarter
    prewarmer: GpuPrewarmer = NoPrewarm()
    #: Who is calling (raises PermissionError for bad credentials); None: the local API token rule.
    authenticate: Callable[[Mapping[str, str]], Caller] | None = None
    #: ``owns(user_id, meeting_id)``: may this user start a session of this meeting?
    owns_meeting: Callable[[str, str], bool] | None = None
    #: The URL of a session's page, where this process serves one.
    page_url: Callable[[str], str] | None = None
    #: Called right after a session is created (Supabase needs the session row first).
    on_session_created: Callable[[Session], None] | None = None
    #: Per-session interim-caption counters (passes run, dropped), where captions run here.
    interim_stats: Callable[[str], dict[str, Any]] | None = None
    #: ``retranscribe(session_id, model, language)``: store the next revision of a finished session
    #: and start transcribing it from the archive; raises ValueError when it cannot. None where no
    #: processor runs in this process (the Lambda coordinator): ``flowbot retranscribe`` does it there.
    retranscribe: Callable[[str, str | None, str | None], Session] | None = None
    #: The owners' voice libraries (``rename_speaker`` remember, ``list_voices``, ``forget_voice``).
    voices: Voices | None = None

    def report(self, session: Session) -> SessionReport:
        """The full report of ``session`` (``get_session``'s answer)."""
        return SessionReport.read(
            session,
            self.transcripts,
            window_seconds=self.settings.window_seconds,
            interim_stats=self.interim_stats,
        )


def build_local_context(
    settings: Settings,
    launcher: ProducerLauncher,
    *,
    base_url: Callable[[], str] | None = None,
    interim_stats: Callable[[str], dict[str, Any]] | None = None,
    retranscribe: Callable[[str, str | None, str | None], Session] | None = None,
) -> ControlContext:
    """Single machine: SQLite stores, in-process ingest, workflow in a thread.

    ``base_url()`` is where the web front is reached (asked per request: the port
    may be chosen by the OS); without it, the address in ``settings``.
    """
    sessions = session_store(settings)
    transcripts = transcript_store(settings)
    steps = default_steps(sessions, transcripts, settings)
    voices = Voices.from_settings(voice_library(settings), transcripts, settings)
    configured = f"http://{settings.public_host or settings.host}:{settings.port}"
    base = base_url or (lambda: configured)
    return ControlContext(
        settings=settings,
        sessions=sessions,
        transcripts=transcripts,
        launcher=launcher,
        workflow=LocalWorkflowStarter(steps, settings.workflow_timeout_seconds),
        page_url=lambda sid: f"{base()}/sessions/{sid}",
        interim_stats=interim_stats,
        retranscribe=retranscribe,
        voices=voices,
    )


def build_context(settings: Settings) -> ControlContext:
    """AWS: DynamoDB sessions, Supabase transcripts, ECS producers, Step Functions workflow."""
    import boto3

    from control.aws_launcher import AsgPrewarmer, EcsProducerLauncher
    from control.sfn import StepFunctionsStarter

    on_created = None
    if settings.store == TranscriptBackend.SUPABASE:
        from stores.supabase import SupabaseMeetingStatus

        on_created = SupabaseMeetingStatus.from_settings(settings).register_session
    authenticate = None
    owns_meeting = None
    if settings.supabase_jwt_secret:
        from control import auth

        authenticate = lambda headers: auth.authenticate(headers, settings)  # noqa: E731
        owns_meeting = auth.owns_meeting_factory(settings)
    session = boto3.session.Session(region_name=settings.aws_region)
    transcripts = transcript_store(settings)
    return ControlContext(
        settings=settings,
        sessions=session_store(settings),
        transcripts=transcripts,
        launcher=EcsProducerLauncher(settings, session.client("ecs"), session.client("ec2")),
        workflow=StepFunctionsStarter(settings, session.client("stepfunctions")),
        prewarmer=AsgPrewarmer(settings, session.client("autoscaling")),
        authenticate=authenticate,
        owns_meeting=owns_meeting,
        on_session_created=on_created,
        voices=Voices.from_settings(voice_library(settings), transcripts, settings),
    )
