"""Executing one approved recommendation through the EC2 API, recording every call it makes.

A replacement is: DescribeInstances (the before state, and a check that the instance is still what
was recommended) → [DescribeSubnets when the target AZ ID differs] → RunInstances (same image,
subnet, security groups, key, profile and tags; the target type; spot market options for spot
targets; an idempotent ClientToken) → TerminateInstances or StopInstances of the old instance →
[DescribeInstances / DescribeSubnets of the new instance, for what RunInstances' answer lacks and the
inventory records, such as the AZ ID].

In dry-run only the read calls are made; the mutating calls are recorded, with their exact
parameters, as `planned`. Every call becomes a `Call` handed to `record` as it finishes, so a
crash leaves an audit trail of what did happen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from spot_pipelines.core.aws_errors import describe
from spot_pipelines.core.clock import utcnow
from spot_pipelines.core.discovery import instance_row
from spot_pipelines.core.errors import SpotPipelinesError
from spot_pipelines.core.optimization import GROUP_TAGS

TAG_REPLACES = "spot-pipelines:replaces"
TAG_RECOMMENDATION = "spot-pipelines:recommendation-id"


class ExecutionError(SpotPipelinesError):
    pass


@dataclass(frozen=True)
class RecommendationView:
    id: int
    account_name: str
    instance_id: str
    region: str
    current_instance_type: str
    current_lifecycle: str
    action: str
    target_instance_type: str | None
    target_availability_zone_id: str | None
    target_market: str | None


@dataclass
class Call:
    step: int
    operation: str
    params: dict[str, Any]
    outcome: str  # planned | succeeded | failed
    before_state: dict[str, Any] | None = None
    after_state: dict[str, Any] | None = None
    error: str | None = None
    started_at: datetime = field(default_factory=utcnow)
    finished_at: datetime | None = None


@dataclass
class Outcome:
    status: str  # executed | failed | approved (dry-run: still approved)
    replacement_instance_id: str | None = None
    error: str | None = None
    calls: list[Call] = field(default_factory=list)
    replacement: dict[str, Any] | None = None  # the launched instance as an inventory row (instance_row)


def _state(instance: dict[str, Any]) -> dict[str, Any]:
    return {
        "InstanceId": instance.get("InstanceId"),
        "InstanceType": instance.get("InstanceType"),
        "State": (instance.get("State") or {}).get("Name"),
        "InstanceLifecycle": instance.get("InstanceLifecycle", "on-demand"),
        "AvailabilityZone": (instance.get("Placement") or {}).get("AvailabilityZone"),
        "SubnetId": instance.get("SubnetId"),
    }


def _inventory_complete(instance: dict[str, Any]) -> bool:
    """Whether an EC2 answer holds every inventory field (RunInstances' often lacks the AZ ID)."""
    placement = instance.get("Placement") or {}
    return bool(
        placement.get("AvailabilityZone")
        and placement.get("AvailabilityZoneId")
        and (instance.get("State") or {}).get("Name")
        and "Tags" in instance
    )


def _error_text(exc: Exception, operation: str, account: str) -> str:
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("UnauthorizedOperation", "AccessDenied", "AccessDeniedException", "AuthFailure"):
            action = "ec2:" + operation
            return (
                f"account {account!r}: the credentials lack permission for {action} ({code}); "
                f"grant {action} to the account's role or user"
            )
    return f"{operation} failed: {describe(exc) if isinstance(exc, (ClientError, BotoCoreError)) else exc}"


def build_run_params(rec: RecommendationView, instance: dict[str, Any], subnet_id: str) -> dict[str, Any]:
    tags = [t for t in instance.get("Tags", []) if not t["Key"].startswith("aws:")]
    tags += [{"Key": TAG_REPLACES, "Value": rec.instance_id}, {"Key": TAG_RECOMMENDATION, "Value": str(rec.id)}]
    params: dict[str, Any] = {
        "ImageId": instance["ImageId"],
        "InstanceType": rec.target_instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "SubnetId": subnet_id,
        "ClientToken": f"spot-pipelines-rec-{rec.id}",
        "TagSpecifications": [{"ResourceType": "instance", "Tags": tags}],
    }
    groups = [g["GroupId"] for g in instance.get("SecurityGroups", []) if g.get("GroupId")]
    if groups:
        params["SecurityGroupIds"] = groups
    if instance.get("KeyName"):
        params["KeyName"] = instance["KeyName"]
    if (instance.get("IamInstanceProfile") or {}).get("Arn"):
        params["IamInstanceProfile"] = {"Arn": instance["IamInstanceProfile"]["Arn"]}
    if rec.target_market == "spot":
        params["InstanceMarketOptions"] = {
            "MarketType": "spot",
            "SpotOptions": {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"},
        }
    return params


class _Stop(Exception):
    """Ends a run early: the message is the failed row's error."""


class _Run:
    """The calls of one execution, numbered and recorded as each finishes."""

    def __init__(self, ec2, rec: RecommendationView, record: Callable[[Call], None]):
        self.ec2, self.rec, self.record = ec2, rec, record
        self.calls: list[Call] = []

    def call(
        self,
        operation: str,
        params: dict[str, Any],
        fn: Callable[[], dict] | None,
        before: dict | None = None,
        after: Callable[[dict], dict | None] | None = None,
    ) -> tuple[Call, dict | None]:
        c = Call(step=len(self.calls) + 1, operation=operation, params=params, outcome="planned", before_state=before)
        response = None
        if fn is not None:
            try:
                response = fn()
                c.outcome = "succeeded"
                if after is not None:
                    c.after_state = after(response)
            except (ClientError, BotoCoreError) as exc:
                c.outcome, c.error = "failed", _error_text(exc, operation, self.rec.account_name)
        c.finished_at = utcnow()
        self.calls.append(c)
        self.record(c)
        return c, response


def _first_instance(resp: dict) -> dict | None:
    found = [i for r in resp.get("Reservations", []) for i in r.get("Instances", [])]
    return found[0] if found else None


def _describe_state(resp: dict) -> dict | None:
    found = _first_instance(resp)
    return _state(found) if found else None


def execute(
    ec2,
    rec: RecommendationView,
    *,
    dry_run: bool,
    retire: str = "terminate",
    record: Callable[[Call], None] = lambda call: None,
) -> Outcome:
    """Replace the recommended instance (or plan to). Never raises for AWS errors: returns the outcome."""
    if retire not in ("terminate", "stop"):
        raise ExecutionError(f"retire: must be 'terminate' or 'stop', got {retire!r}")
    run = _Run(ec2, rec, record)
    launched: dict | None = None
    try:
        _check_recommendation(rec)
        instance = _current_source(run)
        run_params = build_run_params(rec, instance, _target_subnet(run, instance))
        retire_op = "TerminateInstances" if retire == "terminate" else "StopInstances"
        if dry_run:
            run.call("RunInstances", run_params, None, before=_state(instance))
            run.call(retire_op, {"InstanceIds": [rec.instance_id]}, None, before=_state(instance))
            return Outcome(status="approved", calls=run.calls)
        launched = _launch(run, run_params, _state(instance))
        retire_error = _retire(run, retire_op, launched["InstanceId"], _state(instance))
    except _Stop as stop:
        return Outcome(status="failed", error=str(stop), calls=run.calls)
    new_id = launched["InstanceId"]
    replacement = _read_back(run, launched, run_params["SubnetId"])
    if retire_error:
        error = (
            f"replacement {new_id} was launched, but retiring {rec.instance_id} failed: {retire_error}; "
            "both instances are running"
        )
        return Outcome("failed", new_id, error, run.calls, replacement)
    return Outcome(status="executed", replacement_instance_id=new_id, calls=run.calls, replacement=replacement)


def _check_recommendation(rec: RecommendationView) -> None:
    if rec.action not in ("move_to_spot", "diversify", "return_to_on_demand"):
        raise _Stop(f"recommendation {rec.id}: action {rec.action!r} has nothing to execute")
    if not rec.target_instance_type or rec.target_market not in ("spot", "on-demand"):
        raise _Stop(f"recommendation {rec.id}: no target instance type or market recorded")


def _current_source(run: _Run) -> dict[str, Any]:
    """The source instance as EC2 has it now; stops when it is no longer what was recommended."""
    rec = run.rec
    params = {"InstanceIds": [rec.instance_id]}
    c, resp = run.call("DescribeInstances", params, lambda: run.ec2.describe_instances(**params), after=_describe_state)
    if c.outcome == "failed":
        if "InvalidInstanceID" in (c.error or ""):
            raise _Stop(f"instance {rec.instance_id} no longer exists ({c.error})")
        raise _Stop(c.error)
    instance = _first_instance(resp)
    if instance is None:
        raise _Stop(f"instance {rec.instance_id} no longer exists")
    before = _state(instance)
    if before["State"] != "running":
        raise _Stop(f"instance {rec.instance_id} is {before['State']}, not running: the recommendation is stale")
    if before["InstanceType"] != rec.current_instance_type:
        raise _Stop(
            f"instance {rec.instance_id} is now {before['InstanceType']}, not "
            f"{rec.current_instance_type}: the recommendation is stale"
        )
    managed = {t["Key"]: t["Value"] for t in instance.get("Tags", []) if t["Key"] in GROUP_TAGS}
    if managed:
        key, value = next(iter(managed.items()))
        raise _Stop(
            f"instance {rec.instance_id} is managed by {key}={value}: replacing it behind the group's "
            "back would be undone; change the group's instance mix (mixed instances policy / node pool) "
            "instead"
        )
    return instance


def _target_subnet(run: _Run, instance: dict[str, Any]) -> str:
    """The source's subnet, or the roomiest subnet of its VPC in the target AZ ID."""
    rec = run.rec
    subnet_id = instance.get("SubnetId")
    current_az_id = (instance.get("Placement") or {}).get("AvailabilityZoneId")
    if rec.target_availability_zone_id and current_az_id and rec.target_availability_zone_id != current_az_id:
        sp = {
            "Filters": [
                {"Name": "vpc-id", "Values": [instance.get("VpcId", "")]},
                {"Name": "availability-zone-id", "Values": [rec.target_availability_zone_id]},
            ]
        }
        c, resp = run.call("DescribeSubnets", sp, lambda: run.ec2.describe_subnets(**sp))
        if c.outcome == "failed":
            raise _Stop(c.error)
        subnets = resp.get("Subnets", [])
        if not subnets:
            raise _Stop(f"no subnet of {instance.get('VpcId')} in {rec.target_availability_zone_id}")
        subnet_id = sorted(subnets, key=lambda s: -s.get("AvailableIpAddressCount", 0))[0]["SubnetId"]
    if not subnet_id:
        raise _Stop(f"instance {rec.instance_id} has no subnet (EC2-Classic?); cannot place a replacement")
    return subnet_id


def _launch(run: _Run, run_params: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    c, resp = run.call(
        "RunInstances",
        run_params,
        lambda: run.ec2.run_instances(**run_params),
        before=before,
        after=lambda r: _state(r["Instances"][0]),
    )
    if c.outcome == "failed":
        raise _Stop(c.error + "; nothing was launched and the old instance is untouched")
    return resp["Instances"][0]


def _retire(run: _Run, retire_op: str, new_id: str, before: dict[str, Any]) -> str | None:
    """Terminate or stop the source; the error text when that failed (the replacement is running)."""
    params = {"InstanceIds": [run.rec.instance_id]}
    fn = run.ec2.terminate_instances if retire_op == "TerminateInstances" else run.ec2.stop_instances

    def retired(r: dict) -> dict:
        changes = r.get("TerminatingInstances") or r.get("StoppingInstances") or []
        return {
            "InstanceId": run.rec.instance_id,
            "ReplacedBy": new_id,
            "State": (changes[0].get("CurrentState") or {}).get("Name") if changes else None,
        }

    c, _ = run.call(retire_op, params, lambda: fn(**params), before=before, after=retired)
    return c.error if c.outcome == "failed" else None


def _read_back(run: _Run, launched: dict[str, Any], subnet_id: str) -> dict[str, Any]:
    """The new instance as an inventory row. RunInstances' answer often lacks fields (the AZ ID): read
    them back. A failed read-back only leaves a field empty (audited) until the next discovery."""
    raw = launched
    if not _inventory_complete(raw):
        params = {"InstanceIds": [launched["InstanceId"]]}
        c, resp = run.call(
            "DescribeInstances", params, lambda: run.ec2.describe_instances(**params), after=_describe_state
        )
        raw = (_first_instance(resp) if c.outcome == "succeeded" else None) or launched
    az_ids: dict[str, str] = {}
    if not (raw.get("Placement") or {}).get("AvailabilityZoneId"):
        # The subnet names its AZ ID (DescribeSubnets is already in the execution role's policy).
        params = {"SubnetIds": [raw.get("SubnetId") or subnet_id]}
        c, resp = run.call("DescribeSubnets", params, lambda: run.ec2.describe_subnets(**params))
        if c.outcome == "succeeded":
            az_ids = {
                s["AvailabilityZone"]: s["AvailabilityZoneId"]
                for s in resp.get("Subnets", [])
                if s.get("AvailabilityZoneId")
            }
    return instance_row(raw, run.rec.region, az_ids)
