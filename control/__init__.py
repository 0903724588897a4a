"""Control plane: the coordinator API, session life cycle and end-of-session workflow.

Exports :class:`Coordinator` (:mod:`control.api`), the session life cycle and
report (:mod:`control.sessions`), :class:`Caller` and the ownership rule
(:mod:`control.access`), :class:`ControlContext` and builders
(:mod:`control.context`), :class:`WorkflowSteps` (:mod:`control.workflow`) and
the notes generators (:mod:`control.notes`). The AWS Lambda entry points are in
:mod:`control.lambda_handlers`; the launcher protocols in :mod:`control.launch`.
"""

from control.access import Caller, may_access
from control.api import ApiResponse, Coordinator
from control.context import ControlContext, build_context, build_local_context
from control.notes import MeetingNotes, NotesGenerator, OfflineNotesGenerator
from control.sessions import Progress, SessionReport
from control.workflow import LocalWorkflowStarter, WorkflowSteps

__all__ = [
    "ApiResponse",
    "Caller",
    "ControlContext",
    "Coordinator",
    "LocalWorkflowStarter",
    "MeetingNotes",
    "NotesGenerator",
    "OfflineNotesGenerator",
    "Progress",
    "SessionReport",
    "WorkflowSteps",
    "build_context",
    "build_local_context",
    "may_access",
]
