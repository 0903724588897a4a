"""AWS Lambda entry points: the coordinator's function URL and the workflow's steps.

One zip, four handlers (``infra/terraform/modules/compute/lambda.tf``):

- ``function_url_handler``: the coordinator API. A function-URL event becomes
  one call of :meth:`control.api.Coordinator.handle`, the same handler the
  local web front's ``POST /api`` calls (:func:`url_event_response`).
- ``check_windows_handler``, ``generate_notes_handler``, ``finalize_handler``:
  the Step Functions tasks, each a thin call of :class:`control.workflow.WorkflowSteps`.

Secrets are not in the function configuration: ``SECRETS_TO_ENV`` maps
``FLOWBOT_*`` variable names to Secrets Manager ARNs, read once per container
before :class:`contracts.settings.Settings` is built. An endpoint override for
tests comes from boto3's own ``AWS_ENDPOINT_URL_SECRETS_MANAGER``.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
from collections.abc import Mapping, MutableMapping
from typing import Any

from contracts.errors import error_body
from contracts.logs import configure_logging
from contracts.settings import Settings
from control.api import ApiResponse, Coordinator
from control.workflow import WorkflowSteps, default_steps
from stores.factory import session_store, transcript_store

log = logging.getLogger(__name__)

SECRETS_ENV = "SECRETS_TO_ENV"
METRICS_NAMESPACE_ENV = "METRICS_NAMESPACE"
DEFAULT_METRICS_NAMESPACE = "FlowBot"
FAILED_WINDOWS_METRIC = "FailedWindows"

_lock = threading.Lock()
_secrets_loaded = False
_steps: WorkflowSteps | None = None
_coordinator: Coordinator | None = None


class BadEvent(ValueError):
    """A workflow task got an event it cannot act on (names the missing or bad field)."""


def load_secrets(environ: MutableMapping[str, str] | None = None, client: Any = None) -> list[str]:
    """Copy the secrets named in ``SECRETS_TO_ENV`` into ``environ``; returns the names set.

    A variable that already has a non-empty value keeps it (explicit configuration wins).
    """
    env = os.environ if environ is None else environ
    raw = env.get(SECRETS_ENV, "").strip()
    if not raw:
        return []
    try:
        mapping = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{SECRETS_ENV} is not JSON: {exc}") from None
    if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
        raise ValueError(f"{SECRETS_ENV} must be a JSON object of variable name -> secret ARN")
    if client is None:
        import boto3

        region = env.get("FLOWBOT_AWS_REGION") or env.get("AWS_REGION") or "us-east-1"
        client = boto3.client("secretsmanager", region_name=region)
    loaded = []
    for var, arn in mapping.items():
        if env.get(var):
            continue
        env[var] = str(client.get_secret_value(SecretId=arn)["SecretString"])
        loaded.append(var)
    return loaded


def _ensure_secrets() -> None:
    global _secrets_loaded
    with _lock:
        if not _secrets_loaded:
            names = load_secrets()
            _secrets_loaded = True
            if names:
                log.info("secrets loaded", extra={"variables": ",".join(names)})


def reset() -> None:
    """Forget cached secrets state, coordinator and workflow steps (a new container; for tests)."""
    global _secrets_loaded, _steps, _coordinator
    with _lock:
        _secrets_loaded = False
        _steps = None
        _coordinator = None


def function_url_handler(event: Mapping[str, Any], context: object = None) -> dict[str, Any]:
    """Coordinator API behind the Lambda function URL (auth: Supabase JWT or API token, in the handler)."""
    global _coordinator
    _ensure_secrets()
    with _lock:
        if _coordinator is None:
            settings = Settings.from_env()
            # Fail closed: without a JWT secret or API token the API would treat every
            # caller as the local operator, which is never right behind a public URL.
            if not (settings.supabase_jwt_secret or settings.api_token):
                log.error("coordinator has no caller authentication configured; refusing requests")
                refused = ApiResponse(503, error_body("auth_not_configured", "authentication is not configured"))
                return _url_response(refused)
            from control.context import build_context

            _coordinator = Coordinator(build_context(settings))
        coordinator = _coordinator
    return url_event_response(coordinator, event)


def url_event_response(coordinator: Coordinator, event: Mapping[str, Any]) -> dict[str, Any]:
    """A function-URL event (payload v2) answered by :meth:`Coordinator.handle`."""
    http = (event.get("requestContext") or {}).get("http") or {}
    body = event.get("body") or ""
    raw = base64.b64decode(body) if event.get("isBase64Encoded") else str(body).encode()
    return _url_response(coordinator.handle(str(http.get("method", "POST")), event.get("headers") or {}, raw))


def _url_response(resp: ApiResponse) -> dict[str, Any]:
    return {"statusCode": resp.status, "headers": {"content-type": "application/json"}, "body": resp.json()}


def _workflow_steps() -> WorkflowSteps:
    global _steps
    _ensure_secrets()
    with _lock:
        if _steps is None:
            settings = Settings.from_env()
            configure_logging(settings.log_level, settings.log_format)
            _steps = default_steps(session_store(settings), transcript_store(settings), settings)
        return _steps


def _session_id(event: Any) -> str:
    if not isinstance(event, Mapping):
        raise BadEvent(f"event must be a JSON object, got {type(event).__name__}")
    sid = event.get("session_id")
    if not isinstance(sid, str) or not sid.strip():
        raise BadEvent("event needs a non-empty string 'session_id'")
    return sid


def check_windows_handler(event: Mapping[str, Any], context: object = None) -> dict[str, Any]:
    """Step Functions task: has every window up to the END record been committed?"""
    return _workflow_steps().check_windows(_session_id(event))


def generate_notes_handler(event: Mapping[str, Any], context: object = None) -> dict[str, Any]:
    """Step Functions task: reconcile the speakers once, then notes from whatever transcript exists."""
    return _workflow_steps().generate_notes(_session_id(event))


def finalize_handler(event: Mapping[str, Any], context: object = None) -> dict[str, Any]:
    """Step Functions task: set completed / partial (with reason) / failed.

    ``windows_failed`` (from the last window check) is published as the
    ``FailedWindows`` metric that the failed-windows alarm watches.
    """
    sid = _session_id(event)
    timed_out = event.get("timed_out", False)
    if not isinstance(timed_out, bool):
        raise BadEvent("'timed_out' must be true or false")
    failed = event.get("windows_failed")
    if failed is not None and (isinstance(failed, bool) or not isinstance(failed, int) or failed < 0):
        raise BadEvent("'windows_failed' must be a non-negative integer")
    result = _workflow_steps().finalize(sid, timed_out=timed_out)
    if failed is not None:
        _publish_failed_windows(sid, failed)
    return result


def _publish_failed_windows(session_id: str, count: int) -> None:
    settings = Settings.from_env()
    namespace = os.environ.get(METRICS_NAMESPACE_ENV, DEFAULT_METRICS_NAMESPACE)
    try:
        import boto3

        cloudwatch = boto3.client(
            "cloudwatch",
            region_name=settings.aws_region,
            endpoint_url=settings.cloudwatch_endpoint or None,
        )
        cloudwatch.put_metric_data(
            Namespace=namespace,
            MetricData=[{"MetricName": FAILED_WINDOWS_METRIC, "Value": float(count), "Unit": "Count"}],
        )
    except Exception:
        # The session status is already final; a lost data point must not undo that.
        log.exception("failed-windows metric not published", extra={"session": session_id})
