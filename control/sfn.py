"""Start the end-of-session workflow on AWS Step Functions."""

from __future__ import annotations

import json
from typing import Any

from contracts.settings import Settings


class StepFunctionsStarter:
    """:class:`control.launch.WorkflowStarter` that starts a state-machine execution."""

    def __init__(self, settings: Settings, client: Any) -> None:
        if not settings.state_machine_arn:
            raise ValueError("FLOWBOT_STATE_MACHINE_ARN is not set")
        self.arn = settings.state_machine_arn
        self.timeout = settings.workflow_timeout_seconds
        self.client = client

    def start(self, session_id: str) -> str:
        """One execution per session: the name is the session id, so a retry cannot start two."""
        try:
            resp = self.client.start_execution(
                stateMachineArn=self.arn,
                name=session_id,
                input=json.dumps({"session_id": session_id, "timeout_seconds": self.timeout}),
            )
        except self.client.exceptions.ExecutionAlreadyExists:
            return f"{self.arn.replace(':stateMachine:', ':execution:')}:{session_id}"
        return str(resp["executionArn"])
