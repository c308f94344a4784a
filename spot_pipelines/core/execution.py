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
    calls: list[Call] = []
    step = 0

    def call(
        operation: str,
        params: dict[str, Any],
        fn: Callable[[], dict] | None,
        before: dict | None = None,
        after: Callable[[dict], dict | None] | None = None,
    ) -> tuple[Call, dict | None]:
        nonlocal step
        step += 1
        c = Call(step=step, operation=operation, params=params, outcome="planned", before_state=before)
        response = None
        if fn is not None:
            try:
                response = fn()
                c.outcome = "succeeded"
                if after is not None:
                    c.after_state = after(response)
            except (ClientError, BotoCoreError) as exc:
                c.outcome, c.error = "failed", _error_text(exc, operation, rec.account_name)
        c.finished_at = utcnow()
        calls.append(c)
        record(c)
        return c, response

    def fail(message: str) -> Outcome:
        return Outcome(status="failed", error=message, calls=calls)

    if rec.action not in ("move_to_spot", "diversify", "return_to_on_demand"):
        return fail(f"recommendation {rec.id}: action {rec.action!r} has nothing to execute")
    if not rec.target_instance_type or rec.target_market not in ("spot", "on-demand"):
        return fail(f"recommendation {rec.id}: no target instance type or market recorded")

    describe_params = {"InstanceIds": [rec.instance_id]}

    def first_instance(resp: dict) -> dict | None:
        found = [i for r in resp.get("Reservations", []) for i in r.get("Instances", [])]
        return found[0] if found else None

    c, resp = call(
        "DescribeInstances",
        describe_params,
        lambda: ec2.describe_instances(**describe_params),
        after=lambda r: _state(first_instance(r)) if first_instance(r) else None,
    )
    if c.outcome == "failed":
        if "InvalidInstanceID" in (c.error or ""):
            return fail(f"instance {rec.instance_id} no longer exists ({c.error})")
        return fail(c.error)
    instance = first_instance(resp)
    if instance is None:
        return fail(f"instance {rec.instance_id} no longer exists")
    before = _state(instance)
    if before["State"] != "running":
        return fail(f"instance {rec.instance_id} is {before['State']}, not running: the recommendation is stale")
    if before["InstanceType"] != rec.current_instance_type:
        return fail(
            f"instance {rec.instance_id} is now {before['InstanceType']}, not "
            f"{rec.current_instance_type}: the recommendation is stale"
        )
    managed = {t["Key"]: t["Value"] for t in instance.get("Tags", []) if t["Key"] in GROUP_TAGS}
    if managed:
        key, value = next(iter(managed.items()))
        return fail(
            f"instance {rec.instance_id} is managed by {key}={value}: replacing it behind the group's "
            "back would be undone; change the group's instance mix (mixed instances policy / node pool) "
            "instead"
        )

    subnet_id = instance.get("SubnetId")
    current_az_id = (instance.get("Placement") or {}).get("AvailabilityZoneId")
    if rec.target_availability_zone_id and current_az_id and rec.target_availability_zone_id != current_az_id:
        sp = {
            "Filters": [
                {"Name": "vpc-id", "Values": [instance.get("VpcId", "")]},
                {"Name": "availability-zone-id", "Values": [rec.target_availability_zone_id]},
            ]
        }
        c, resp = call("DescribeSubnets", sp, lambda: ec2.describe_subnets(**sp))
        if c.outcome == "failed":
            return fail(c.error)
        subnets = resp.get("Subnets", [])
        if not subnets:
            return fail(f"no subnet of {instance.get('VpcId')} in {rec.target_availability_zone_id}")
        subnet_id = sorted(subnets, key=lambda s: -s.get("AvailableIpAddressCount", 0))[0]["SubnetId"]
    if not subnet_id:
        return fail(f"instance {rec.instance_id} has no subnet (EC2-Classic?); cannot place a replacement")

    run_params = build_run_params(rec, instance, subnet_id)
    retire_op = "TerminateInstances" if retire == "terminate" else "StopInstances"
    retire_params = {"InstanceIds": [rec.instance_id]}
    if dry_run:
        call("RunInstances", run_params, None, before=before)
        call(retire_op, retire_params, None, before=before)
        return Outcome(status="approved", calls=calls)

    c, resp = call(
        "RunInstances",
        run_params,
        lambda: ec2.run_instances(**run_params),
        before=before,
        after=lambda r: _state(r["Instances"][0]),
    )
    if c.outcome == "failed":
        return fail(c.error + "; nothing was launched and the old instance is untouched")
    launched = resp["Instances"][0]
    new_id = launched["InstanceId"]
    fn = (
        (lambda: ec2.terminate_instances(**retire_params))
        if retire == "terminate"
        else (lambda: ec2.stop_instances(**retire_params))
    )

    def retired(r: dict) -> dict:
        changes = r.get("TerminatingInstances") or r.get("StoppingInstances") or []
        return {
            "InstanceId": rec.instance_id,
            "ReplacedBy": new_id,
            "State": (changes[0].get("CurrentState") or {}).get("Name") if changes else None,
        }

    c, resp = call(retire_op, retire_params, fn, before=before, after=retired)
    retire_error = c.error if c.outcome == "failed" else None

    # The inventory records the new instance at once: read back what RunInstances' answer lacks. A failed
    # read-back only leaves a field empty (audited) until the next discovery; the replacement did happen.
    raw = launched
    if not _inventory_complete(raw):
        new_params = {"InstanceIds": [new_id]}
        c, resp = call(
            "DescribeInstances",
            new_params,
            lambda: ec2.describe_instances(**new_params),
            after=lambda r: _state(first_instance(r)) if first_instance(r) else None,
        )
        raw = (first_instance(resp) if c.outcome == "succeeded" else None) or launched
    az_ids: dict[str, str] = {}
    if not (raw.get("Placement") or {}).get("AvailabilityZoneId"):
        # The subnet names its AZ ID (DescribeSubnets is already in the execution role's policy).
        net_params = {"SubnetIds": [raw.get("SubnetId") or run_params["SubnetId"]]}
        c, resp = call("DescribeSubnets", net_params, lambda: ec2.describe_subnets(**net_params))
        if c.outcome == "succeeded":
            az_ids = {
                s["AvailabilityZone"]: s["AvailabilityZoneId"]
                for s in resp.get("Subnets", [])
                if s.get("AvailabilityZoneId")
            }
    replacement = instance_row(raw, rec.region, az_ids)

    if retire_error:
        out = fail(
            f"replacement {new_id} was launched, but retiring {rec.instance_id} failed: {retire_error}; "
            "both instances are running"
        )
        out.replacement_instance_id, out.replacement = new_id, replacement
        return out
    return Outcome(status="executed", replacement_instance_id=new_id, calls=calls, replacement=replacement)
