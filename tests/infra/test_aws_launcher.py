"""EcsProducerLauncher and AsgPrewarmer against emulated AWS APIs.

Emulators: moto (EC2 network interfaces with a public IP, Auto Scaling groups).
ECS RunTask / DescribeTasks / StopTask have NO working emulator here (LocalStack
ECS is not in the community edition; moto's RunTask answers 500 without
container instances), so those three calls go through botocore's Stubber,
which also checks every request against the real ECS API model.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from contracts.settings import Settings
from control.aws_launcher import (
    SESSION_ID_ENV,
    STREAM_KEY_ENV,
    AsgPrewarmer,
    EcsProducerLauncher,
)
from control.launch import LaunchError
from stores.base import Session
from tests.infra.conftest import Emulators

CLUSTER = "flowbot"
TASK_ARN = "arn:aws:ecs:us-east-1:123456789012:task/flowbot/0123456789abcdef"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")


@pytest.fixture
def public_eni(emulators: Emulators, aws_env: None) -> tuple[Any, str, str]:
    """A real (moto) ENI with an Elastic IP, as Fargate gives a task with assignPublicIp."""
    ec2: Any = emulators.client("ec2", moto=True)
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
    eni = ec2.create_network_interface(SubnetId=subnet)["NetworkInterface"]["NetworkInterfaceId"]
    alloc = ec2.allocate_address(Domain="vpc")
    ec2.associate_address(AllocationId=alloc["AllocationId"], NetworkInterfaceId=eni)
    return ec2, eni, alloc["PublicIp"]


def _settings(**kw: Any) -> Settings:
    base: dict[str, Any] = {
        "ecs_cluster": CLUSTER,
        "producer_task_definition": "flowbot-producer",
        "producer_subnets": "subnet-a, subnet-b",
        "producer_security_groups": "sg-1",
        "gpu_asg_name": "flowbot-gpu",
    }
    base.update(kw)
    return Settings(**base)


def _session() -> Session:
    return Session(session_id="s-1", meeting_id="m", user_id="u", topic="t", stream_key="KEY123")


def _task(status: str, eni: str | None = None, **extra: Any) -> dict[str, Any]:
    task: dict[str, Any] = {"taskArn": TASK_ARN, "lastStatus": status, **extra}
    if eni:
        task["attachments"] = [
            {
                "type": "ElasticNetworkInterface",
                "status": "ATTACHED",
                "details": [{"name": "subnetId", "value": "subnet-a"}, {"name": "networkInterfaceId", "value": eni}],
            }
        ]
    return task


def _run_task_request() -> dict[str, Any]:
    return {
        "cluster": CLUSTER,
        "taskDefinition": "flowbot-producer",
        "launchType": "FARGATE",
        "count": 1,
        "startedBy": "flowbot-s-1",
        "networkConfiguration": {
            "awsvpcConfiguration": {
                "subnets": ["subnet-a", "subnet-b"],
                "securityGroups": ["sg-1"],
                "assignPublicIp": "ENABLED",
            }
        },
        "overrides": {
            "containerOverrides": [
                {
                    "name": "producer",
                    "environment": [
                        {"name": SESSION_ID_ENV, "value": "s-1"},
                        {"name": STREAM_KEY_ENV, "value": "KEY123"},
                    ],
                }
            ]
        },
        "enableECSManagedTags": True,
        "tags": [{"key": "flowbot:session", "value": "s-1"}],
    }


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_launch_waits_for_public_ip_and_builds_rtmp_url(public_eni: tuple[Any, str, str]) -> None:
    ec2, eni, ip = public_eni
    ecs = boto3.client("ecs", region_name="us-east-1")
    clock = FakeClock()
    with Stubber(ecs) as stub:
        stub.add_response("run_task", {"tasks": [_task("PROVISIONING")], "failures": []}, _run_task_request())
        describe = {"cluster": CLUSTER, "tasks": [TASK_ARN]}
        stub.add_response("describe_tasks", {"tasks": [_task("PROVISIONING")]}, describe)
        stub.add_response("describe_tasks", {"tasks": [_task("PENDING", eni)]}, describe)
        launcher = EcsProducerLauncher(_settings(), ecs, ec2, clock=clock, sleep=clock.sleep)
        result = launcher.launch(_session())
        stub.assert_no_pending_responses()
    assert result.rtmp_url == f"rtmp://{ip}:1935/live/KEY123"
    assert result.producer_ref == TASK_ARN
    assert clock.now == 2.0  # one poll interval waited


def test_launch_times_out_and_stops_the_task(emulators: Emulators, aws_env: None) -> None:
    ec2: Any = emulators.client("ec2", moto=True)
    vpc = ec2.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.8.1.0/24")["Subnet"]["SubnetId"]
    private_only = ec2.create_network_interface(SubnetId=subnet)["NetworkInterface"]["NetworkInterfaceId"]
    ecs = boto3.client("ecs", region_name="us-east-1")
    clock = FakeClock()
    with Stubber(ecs) as stub:
        stub.add_response("run_task", {"tasks": [_task("PROVISIONING")]}, _run_task_request())
        for _ in range(4):
            stub.add_response(
                "describe_tasks",
                {"tasks": [_task("PENDING", private_only)]},
                {"cluster": CLUSTER, "tasks": [TASK_ARN]},
            )
        stub.add_response(
            "stop_task",
            {"task": _task("STOPPING")},
            {"cluster": CLUSTER, "task": TASK_ARN, "reason": "no public IP in time"},
        )
        launcher = EcsProducerLauncher(_settings(), ecs, ec2, ip_timeout=6, clock=clock, sleep=clock.sleep)
        with pytest.raises(LaunchError, match="no public IP after 6 s"):
            launcher.launch(_session())
        stub.assert_no_pending_responses()


def test_launch_reports_runtask_failures() -> None:
    ecs = boto3.client("ecs", region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")
    with Stubber(ecs) as stub:
        stub.add_response(
            "run_task",
            {"tasks": [], "failures": [{"arn": "arn:x", "reason": "RESOURCE:ENI"}]},
            _run_task_request(),
        )
        launcher = EcsProducerLauncher(_settings(), ecs, object())
        with pytest.raises(LaunchError, match="RESOURCE:ENI"):
            launcher.launch(_session())


def test_launch_reports_a_task_that_stopped() -> None:
    ecs = boto3.client("ecs", region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")
    with Stubber(ecs) as stub:
        stub.add_response("run_task", {"tasks": [_task("PROVISIONING")]}, _run_task_request())
        stub.add_response(
            "describe_tasks",
            {"tasks": [_task("STOPPED", stoppedReason="CannotPullContainerError")]},
            {"cluster": CLUSTER, "tasks": [TASK_ARN]},
        )
        stub.add_response(
            "stop_task", {"task": _task("STOPPED")}, {"cluster": CLUSTER, "task": TASK_ARN, "reason": ANY}
        )
        launcher = EcsProducerLauncher(_settings(), ecs, object())
        with pytest.raises(LaunchError, match="CannotPullContainerError"):
            launcher.launch(_session())


def test_stop_sends_stoptask_and_tolerates_a_gone_task() -> None:
    ecs = boto3.client("ecs", region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")
    session = Session(session_id="s-1", meeting_id="m", user_id="u", topic="t", stream_key="K", producer_ref=TASK_ARN)
    with Stubber(ecs) as stub:
        stub.add_response(
            "stop_task",
            {"task": _task("STOPPING")},
            {"cluster": CLUSTER, "task": TASK_ARN, "reason": "session ended"},
        )
        stub.add_client_error("stop_task", "InvalidParameterException", "The referenced task was not found.")
        launcher = EcsProducerLauncher(_settings(), ecs, object())
        launcher.stop(session)
        launcher.stop(session)  # second time: task already gone, no exception
        launcher.stop(_session())  # no producer_ref: nothing to call
        stub.assert_no_pending_responses()


def test_launcher_names_missing_settings() -> None:
    with pytest.raises(ValueError, match=r"FLOWBOT_ECS_CLUSTER.*FLOWBOT_PRODUCER_SUBNETS"):
        EcsProducerLauncher(Settings(producer_task_definition="x"), object(), object())


def test_prewarm_raises_to_one_and_never_lowers(emulators: Emulators, aws_env: None) -> None:
    ec2: Any = emulators.client("ec2", moto=True)
    asg: Any = emulators.client("autoscaling", moto=True)
    vpc = ec2.create_vpc(CidrBlock="10.7.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.7.1.0/24", AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
    ec2.create_launch_template(
        LaunchTemplateName="gpu-lt", LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "g4dn.xlarge"}
    )
    asg.create_auto_scaling_group(
        AutoScalingGroupName="flowbot-gpu",
        LaunchTemplate={"LaunchTemplateName": "gpu-lt", "Version": "$Latest"},
        MinSize=0,
        MaxSize=3,
        DesiredCapacity=0,
        VPCZoneIdentifier=subnet,
    )

    def desired() -> int:
        groups = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["flowbot-gpu"])
        return int(groups["AutoScalingGroups"][0]["DesiredCapacity"])

    AsgPrewarmer(_settings(), asg).prewarm()
    assert desired() == 1
    asg.set_desired_capacity(AutoScalingGroupName="flowbot-gpu", DesiredCapacity=3)
    AsgPrewarmer(_settings(), asg).prewarm()
    assert desired() == 3  # managed scaling's higher value is kept
    with pytest.raises(RuntimeError, match="does not exist"):
        AsgPrewarmer(_settings(gpu_asg_name="nope"), asg).prewarm()
    with pytest.raises(ValueError, match="FLOWBOT_GPU_ASG_NAME"):
        AsgPrewarmer(_settings(gpu_asg_name=""), asg)
