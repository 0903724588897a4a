"""AWS implementations of the coordinator's launch protocols.

:class:`EcsProducerLauncher` starts one Fargate task of the producer per
session (``RunTask``) and returns where to publish; :class:`AsgPrewarmer`
raises the GPU Auto Scaling group so a worker is booting before audio arrives.

Producer contract (``producer/service.py``):

- The task gets ``PRODUCER_SESSION_ID`` and ``PRODUCER_STREAM_KEY`` as container
  environment overrides; nginx-rtmp listens on port 1935, application ``live``,
  and accepts only that session's stream key.
- Stopping: ``StopTask`` makes ECS send SIGTERM. The producer stops taking
  audio, flushes, writes the session's END record to the stream and exits. ECS
  waits the container's ``stopTimeout`` (120 s in the task definition) before
  SIGKILL, so the END record is written before the task goes away.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from contracts.settings import Settings
from control.launch import LaunchError, LaunchResult
from stores.base import Session

log = logging.getLogger(__name__)

SESSION_ID_ENV = "PRODUCER_SESSION_ID"
STREAM_KEY_ENV = "PRODUCER_STREAM_KEY"
PRODUCER_CONTAINER = "producer"
RTMP_PORT = 1935
RTMP_APP = "live"


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


class EcsProducerLauncher:
    """:class:`control.launch.ProducerLauncher` that runs a producer task per session on ECS."""

    def __init__(
        self,
        settings: Settings,
        ecs_client: Any,
        ec2_client: Any,
        *,
        container_name: str = PRODUCER_CONTAINER,
        ip_timeout: float = 90.0,
        poll_interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        missing = [
            var
            for var, value in (
                ("FLOWBOT_ECS_CLUSTER", settings.ecs_cluster),
                ("FLOWBOT_PRODUCER_TASK_DEFINITION", settings.producer_task_definition),
                ("FLOWBOT_PRODUCER_SUBNETS", settings.producer_subnets),
            )
            if not value
        ]
        if missing:
            raise ValueError(f"EcsProducerLauncher needs {', '.join(missing)}")
        self.cluster = settings.ecs_cluster
        self.task_definition = settings.producer_task_definition
        self.subnets = _csv(settings.producer_subnets)
        self.security_groups = _csv(settings.producer_security_groups)
        self.ecs = ecs_client
        self.ec2 = ec2_client
        self.container_name = container_name
        self.ip_timeout = ip_timeout
        self.poll_interval = poll_interval
        self._clock = clock
        self._sleep = sleep

    def launch(self, session: Session) -> LaunchResult:
        """Run the session's producer task and wait (bounded) for its public IP."""
        sid = session.session_id
        try:
            resp = self.ecs.run_task(
                cluster=self.cluster,
                taskDefinition=self.task_definition,
                launchType="FARGATE",
                count=1,
                startedBy=f"flowbot-{sid}"[:128],
                networkConfiguration={
                    "awsvpcConfiguration": {
                        "subnets": self.subnets,
                        "securityGroups": self.security_groups,
                        # The publisher (Zoom) connects from the internet.
                        "assignPublicIp": "ENABLED",
                    }
                },
                overrides={
                    "containerOverrides": [
                        {
                            "name": self.container_name,
                            "environment": [
                                {"name": SESSION_ID_ENV, "value": sid},
                                {"name": STREAM_KEY_ENV, "value": session.stream_key},
                            ],
                        }
                    ]
                },
                enableECSManagedTags=True,
                tags=[{"key": "flowbot:session", "value": sid}],
            )
        except (ClientError, BotoCoreError) as exc:
            raise LaunchError(f"RunTask failed: {exc}") from exc
        tasks = resp.get("tasks") or []
        if not tasks:
            reasons = "; ".join(f"{f.get('arn', '?')}: {f.get('reason', '?')}" for f in resp.get("failures") or [])
            raise LaunchError(f"RunTask started no task ({reasons or 'no reason given'})")
        task_arn = str(tasks[0]["taskArn"])
        log.info("producer task started", extra={"session": sid, "task": task_arn})
        try:
            ip = self._wait_public_ip(task_arn, sid)
        except LaunchError:
            # Do not leave a task running that nobody can publish to.
            self._stop_task(task_arn, sid, "no public IP in time")
            raise
        url = f"rtmp://{ip}:{RTMP_PORT}/{RTMP_APP}/{session.stream_key}"
        log.info("producer reachable", extra={"session": sid, "task": task_arn, "ip": ip})
        return LaunchResult(rtmp_url=url, producer_ref=task_arn)

    def stop(self, session: Session) -> None:
        """StopTask: SIGTERM makes the producer write the END record before it exits."""
        if not session.producer_ref:
            log.warning("no producer task to stop", extra={"session": session.session_id})
            return
        self._stop_task(session.producer_ref, session.session_id, "session ended")

    def _stop_task(self, task_arn: str, sid: str, reason: str) -> None:
        try:
            self.ecs.stop_task(cluster=self.cluster, task=task_arn, reason=reason[:255])
        except ClientError as exc:
            # Already stopped (or gone): the END record was written when it stopped.
            log.warning(
                "producer task could not be stopped",
                extra={"session": sid, "task": task_arn, "error": str(exc)},
            )
            return
        log.info("producer task stopping", extra={"session": sid, "task": task_arn, "reason": reason})

    def _wait_public_ip(self, task_arn: str, sid: str) -> str:
        deadline = self._clock() + self.ip_timeout
        status = "unknown"
        while True:
            try:
                task = self._describe(task_arn)
                status = str(task.get("lastStatus", "unknown"))
                if status in ("DEACTIVATING", "STOPPING", "DEPROVISIONING", "STOPPED"):
                    raise LaunchError(f"producer task {status.lower()}: {task.get('stoppedReason', 'no reason given')}")
                eni = self._eni_id(task)
                if eni:
                    ip = self._public_ip(eni)
                    if ip:
                        return ip
            except (ClientError, BotoCoreError) as exc:
                # Eventual consistency right after RunTask: keep polling until the deadline.
                log.info("waiting for producer task", extra={"session": sid, "error": str(exc)})
            if self._clock() >= deadline:
                raise LaunchError(
                    f"producer task had no public IP after {self.ip_timeout:.0f} s (last status {status})"
                )
            self._sleep(self.poll_interval)

    def _describe(self, task_arn: str) -> dict[str, Any]:
        resp = self.ecs.describe_tasks(cluster=self.cluster, tasks=[task_arn])
        tasks = resp.get("tasks") or []
        if not tasks:
            return {"lastStatus": "PROVISIONING"}
        return dict(tasks[0])

    @staticmethod
    def _eni_id(task: dict[str, Any]) -> str | None:
        for attachment in task.get("attachments") or []:
            if attachment.get("type") != "ElasticNetworkInterface":
                continue
            for detail in attachment.get("details") or []:
                if detail.get("name") == "networkInterfaceId" and detail.get("value"):
                    return str(detail["value"])
        return None

    def _public_ip(self, eni_id: str) -> str | None:
        resp = self.ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])
        for nic in resp.get("NetworkInterfaces") or []:
            ip = (nic.get("Association") or {}).get("PublicIp")
            if ip:
                return str(ip)
        return None


class AsgPrewarmer:
    """:class:`control.launch.GpuPrewarmer`: raise the GPU group to at least ``minimum`` instances.

    Never lowers the desired capacity (ECS managed scaling may already have
    raised it for running tasks) and never exceeds the group's maximum. ECS
    managed scaling takes an unused instance back after its scale-in period
    (about 15 minutes), so a pre-warm that no audio follows costs at most that.
    """

    def __init__(self, settings: Settings, autoscaling_client: Any, *, minimum: int = 1) -> None:
        if not settings.gpu_asg_name:
            raise ValueError("AsgPrewarmer needs FLOWBOT_GPU_ASG_NAME")
        self.group = settings.gpu_asg_name
        self.client = autoscaling_client
        self.minimum = minimum

    def prewarm(self) -> None:
        """Set the desired capacity to ``minimum`` if it is below that; otherwise leave it."""
        groups = self.client.describe_auto_scaling_groups(AutoScalingGroupNames=[self.group])["AutoScalingGroups"]
        if not groups:
            raise RuntimeError(f"GPU Auto Scaling group {self.group!r} does not exist")
        group = groups[0]
        current = int(group["DesiredCapacity"])
        target = min(self.minimum, int(group["MaxSize"]))
        if current >= target:
            log.info(
                "gpu group already warm",
                extra={"group": self.group, "desired": current, "minimum": target},
            )
            return
        # The describe/set pair is not atomic: the window is one API round trip,
        # and a concurrent raise by ECS is re-applied by its next evaluation.
        self.client.set_desired_capacity(AutoScalingGroupName=self.group, DesiredCapacity=target, HonorCooldown=False)
        log.info("gpu group pre-warmed", extra={"group": self.group, "from": current, "to": target})
