"""Executing one approved recommendation through the EC2 (and ELBv2) API, recording every call it makes.

A replacement runs in phases, each a few calls, and stops at the first that fails:
1. the source as EC2 has it now (DescribeInstances), still what was recommended and *eligible*: no
   data volume, secondary ENI or secondary private IP, placement group, termination protection or
   group membership (each refusal says why, before any mutating call);
2. its launch spec, read back faithfully: UserData and termination protection (DescribeInstanceAttribute),
   the root volume (DescribeVolumes), credit specification for burstable types, the Elastic IP
   (DescribeAddresses) and ELBv2 target-group registrations (DescribeTargetGroups / DescribeTargetHealth);
3. RunInstances with that spec, the target type/market and a ClientToken derived from the
   recommendation id (a re-run returns the same instance, never a second one);
4. launch before terminate: DescribeInstanceStatus until the new instance runs and passes both status
   checks; RegisterTargets and DescribeTargetHealth until it is healthy in every target group; the
   Elastic IP moves (AssociateAddress); the source is deregistered; only then is it retired (terminated;
   an on-demand source may be stopped instead). A replacement that is not healthy within the timeout
   is rolled back: its registrations undone, the EIP returned, the replacement terminated, the source
   untouched;
5. the new instance read back for the inventory.

In dry-run only the read calls are made, the mutating ones are probed with EC2's `DryRun=True` where
the API offers it and recorded, with their exact parameters, as `planned`. Every call becomes a `Call`
handed to `record` as it finishes, so a crash leaves an audit trail of what did happen.
"""

from __future__ import annotations

import base64
import time
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
ASG_TAG = "aws:autoscaling:groupName"
DENIED = ("UnauthorizedOperation", "AccessDenied", "AccessDeniedException", "AuthFailure")
NO_CAPACITY = (
    "InsufficientInstanceCapacity",
    "InsufficientCapacity",
    "SpotMaxPriceTooLow",
    "MaxSpotInstanceCountExceeded",
)
# The IAM service prefix of each client's operations (an audit row names the operation only).
IAM_PREFIX = {"ec2": "ec2", "elbv2": "elasticloadbalancing", "autoscaling": "autoscaling"}


def client_token(recommendation_id: int) -> str:
    return f"spot-pipelines-rec-{recommendation_id}"


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
    group_key: str | None = None  # "tag=value" of the group managing the instance
    candidate_types: tuple[str, ...] = ()  # the qualifying pools' instance types, best first


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
    retired: str | None = None  # terminate | stop: what happened to the source
    verdict: str | None = None  # dry-run: "replaceable", or why not


@dataclass(frozen=True)
class WaitPolicy:
    """How long a replacement has to become healthy before it is rolled back."""

    timeout_seconds: float = 600.0
    poll_seconds: float = 15.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic


@dataclass
class _Spec:
    """What the replacement must carry over from the source."""

    instance: dict[str, Any]
    run_params: dict[str, Any]
    eip: dict[str, Any] | None = None  # the source's Elastic IP (DescribeAddresses)
    targets: list[dict[str, Any]] = field(default_factory=list)  # {"TargetGroupArn", "Port"}
    moved: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # cut-over steps done, for the rollback


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


def _error_text(exc: Exception, operation: str, account: str, service: str = "ec2") -> str:
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code in DENIED:
            action = f"{IAM_PREFIX[service]}:{operation}"
            return (
                f"account {account!r}: the credentials lack permission for {action} ({code}); "
                f"grant {action} to the account's role or user"
            )
    return f"{operation} failed: {describe(exc) if isinstance(exc, (ClientError, BotoCoreError)) else exc}"


def eligibility(instance: dict[str, Any]) -> list[str]:
    """Why a replacement could not be faithful, in words (empty: replaceable). Pure: from DescribeInstances."""
    reasons = []
    iid = instance.get("InstanceId")
    root = instance.get("RootDeviceName")
    data = [
        f"{(m.get('Ebs') or {}).get('VolumeId')} at {m.get('DeviceName')}"
        for m in instance.get("BlockDeviceMappings", [])
        if m.get("DeviceName") != root
    ]
    if data:
        reasons.append(f"data volume(s) {', '.join(data)} would be left behind")
    enis = instance.get("NetworkInterfaces", [])
    if len(enis) > 1:
        reasons.append(f"{len(enis)} network interfaces: a secondary ENI cannot move with the replacement")
    fixed = [ip["PrivateIpAddress"] for e in enis for ip in e.get("PrivateIpAddresses", []) if not ip.get("Primary")]
    if fixed:
        reasons.append(f"secondary private IP(s) {', '.join(fixed)} cannot move with the replacement")
    group = (instance.get("Placement") or {}).get("GroupName")
    if group:
        reasons.append(f"in placement group {group!r}")
    managed = [f"{t['Key']}={t['Value']}" for t in instance.get("Tags", []) if t["Key"] in GROUP_TAGS]
    if managed:
        reasons.append(
            f"managed by {managed[0]}: replacing it behind the group's back would be undone; change the "
            "group's instance mix (mixed instances policy / node pool) instead"
        )
    return [f"instance {iid} is not replaceable: {r}" for r in reasons]


def build_run_params(rec: RecommendationView, instance: dict[str, Any], subnet_id: str) -> dict[str, Any]:
    """RunInstances for the replacement from what DescribeInstances says of the source."""
    tags = [t for t in instance.get("Tags", []) if not t["Key"].startswith("aws:")]
    tags += [{"Key": TAG_REPLACES, "Value": rec.instance_id}, {"Key": TAG_RECOMMENDATION, "Value": str(rec.id)}]
    params: dict[str, Any] = {
        "ImageId": instance["ImageId"],
        "InstanceType": rec.target_instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "SubnetId": subnet_id,
        "ClientToken": client_token(rec.id),
        "TagSpecifications": [{"ResourceType": "instance", "Tags": tags}],
    }
    groups = [g["GroupId"] for g in instance.get("SecurityGroups", []) if g.get("GroupId")]
    if groups:
        params["SecurityGroupIds"] = groups
    if instance.get("KeyName"):
        params["KeyName"] = instance["KeyName"]
    if (instance.get("IamInstanceProfile") or {}).get("Arn"):
        params["IamInstanceProfile"] = {"Arn": instance["IamInstanceProfile"]["Arn"]}
    metadata = {
        k: v
        for k, v in (instance.get("MetadataOptions") or {}).items()
        if k in ("HttpTokens", "HttpPutResponseHopLimit", "HttpEndpoint", "HttpProtocolIpv6", "InstanceMetadataTags")
    }
    if metadata:
        params["MetadataOptions"] = metadata
    if (instance.get("Monitoring") or {}).get("State") in ("enabled", "pending"):
        params["Monitoring"] = {"Enabled": True}
    if "EbsOptimized" in instance:
        params["EbsOptimized"] = bool(instance["EbsOptimized"])
    if rec.target_market == "spot":
        params["InstanceMarketOptions"] = {
            "MarketType": "spot",
            "SpotOptions": {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"},
        }
    return params


def root_volume_mapping(device: str, volume: dict[str, Any]) -> dict[str, Any]:
    """The replacement's root volume as DescribeVolumes has the source's: size, type, iops, throughput, encryption."""
    ebs: dict[str, Any] = {
        "VolumeSize": volume["Size"],
        "VolumeType": volume["VolumeType"],
        "DeleteOnTermination": True,
    }
    if volume.get("Iops") and volume["VolumeType"] in ("io1", "io2", "gp3"):
        ebs["Iops"] = volume["Iops"]
    if volume.get("Throughput") and volume["VolumeType"] == "gp3":
        ebs["Throughput"] = volume["Throughput"]
    if volume.get("Encrypted"):
        ebs["Encrypted"] = True
        if volume.get("KmsKeyId"):
            ebs["KmsKeyId"] = volume["KmsKeyId"]
    return {"DeviceName": device, "Ebs": ebs}


class _Stop(Exception):
    """Ends a run early: the message is the failed row's error."""


class _Run:
    """The calls of one execution, numbered and recorded as each finishes."""

    def __init__(self, ec2, elbv2, rec: RecommendationView, record: Callable[[Call], None], dry_run: bool):
        self.ec2, self.elbv2, self.rec, self.record, self.dry_run = ec2, elbv2, rec, record, dry_run
        self.calls: list[Call] = []

    def call(
        self,
        operation: str,
        params: dict[str, Any],
        fn: Callable[[], dict] | None,
        before: dict | None = None,
        after: Callable[[dict], dict | None] | None = None,
        service: str = "ec2",
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
                c.outcome, c.error = "failed", _error_text(exc, operation, self.rec.account_name, service)
        c.finished_at = utcnow()
        self.calls.append(c)
        self.record(c)
        return c, response

    def read(self, operation: str, params: dict[str, Any], fn: Callable[..., dict], **kw) -> dict:
        """A read call that must succeed for the run to go on."""
        c, resp = self.call(operation, params, lambda: fn(**params), **kw)
        if c.outcome == "failed":
            raise _Stop(c.error)
        return resp

    def probe(self, operation: str, params: dict[str, Any], fn: Callable[..., dict]) -> None:
        """EC2's DryRun=True: a permission check that changes nothing; refuses the row when denied."""
        probe_params = {**params, "DryRun": True}
        c = Call(step=len(self.calls) + 1, operation=operation, params=probe_params, outcome="succeeded")
        try:
            fn(**probe_params)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "DryRunOperation":
                c.outcome, c.error = "failed", _error_text(exc, operation, self.rec.account_name)
        except BotoCoreError as exc:
            c.outcome, c.error = "failed", _error_text(exc, operation, self.rec.account_name)
        c.after_state = {"permitted": c.outcome == "succeeded"}
        c.finished_at = utcnow()
        self.calls.append(c)
        self.record(c)
        if c.outcome == "failed":
            raise _Stop(c.error)


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
    elbv2=None,
    wait: WaitPolicy = WaitPolicy(),
) -> Outcome:
    """Replace the recommended instance (or plan to). Never raises for AWS errors: returns the outcome.

    `retire` applies to on-demand sources; a spot source is always terminated (a one-time spot
    instance cannot be stopped). Without an `elbv2` client, target groups are not looked up."""
    if retire not in ("terminate", "stop"):
        raise ExecutionError(f"retire: must be 'terminate' or 'stop', got {retire!r}")
    run = _Run(ec2, elbv2, rec, record, dry_run)
    try:
        _check_recommendation(rec)
        instance = _current_source(run)
        spec = _launch_spec(run, instance, _target_subnet(run, instance))
        retire = "terminate" if instance.get("InstanceLifecycle") == "spot" else retire
        if dry_run:
            _plan(run, spec, retire)
            return Outcome(status="approved", calls=run.calls, verdict="replaceable", retired=retire)
        launched = _adopted(run) or _launch(run, spec)
    except _Stop as stop:
        return Outcome(status="failed", error=str(stop), calls=run.calls, verdict=str(stop))
    new_id = launched["InstanceId"]
    cause = _cut_over(run, spec, new_id, wait)
    if cause:
        return Outcome(status="failed", error=cause + "; " + _roll_back(run, spec, new_id), calls=run.calls)
    retire_error = _retire(run, retire, new_id, _state(instance))
    replacement = _read_back(run, launched, spec.run_params["SubnetId"])
    if retire_error:
        error = (
            f"replacement {new_id} was launched, but retiring {rec.instance_id} failed: {retire_error}; "
            "both instances are running"
        )
        return Outcome("failed", new_id, error, run.calls, replacement)
    return Outcome("executed", new_id, None, run.calls, replacement, retired=retire)


def _check_recommendation(rec: RecommendationView) -> None:
    if rec.action not in ("move_to_spot", "diversify", "return_to_on_demand"):
        raise _Stop(f"recommendation {rec.id}: action {rec.action!r} has nothing to execute")
    if not rec.target_instance_type or rec.target_market not in ("spot", "on-demand"):
        raise _Stop(f"recommendation {rec.id}: no target instance type or market recorded")


def _current_source(run: _Run) -> dict[str, Any]:
    """The source instance as EC2 has it now; stops when it is no longer what was recommended or not eligible."""
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
    if before["InstanceLifecycle"] != rec.current_lifecycle:
        raise _Stop(
            f"instance {rec.instance_id} is now {before['InstanceLifecycle']}, not "
            f"{rec.current_lifecycle}: the recommendation is stale"
        )
    reasons = eligibility(instance)
    if reasons:
        raise _Stop("; ".join(reasons))
    attr = {"InstanceId": rec.instance_id, "Attribute": "disableApiTermination"}
    resp = run.read("DescribeInstanceAttribute", attr, run.ec2.describe_instance_attribute)
    if (resp.get("DisableApiTermination") or {}).get("Value"):
        raise _Stop(f"instance {rec.instance_id} is not replaceable: it is termination-protected")
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
        subnets = run.read("DescribeSubnets", sp, run.ec2.describe_subnets).get("Subnets", [])
        if not subnets:
            raise _Stop(f"no subnet of {instance.get('VpcId')} in {rec.target_availability_zone_id}")
        subnet_id = sorted(subnets, key=lambda s: -s.get("AvailableIpAddressCount", 0))[0]["SubnetId"]
    if not subnet_id:
        raise _Stop(f"instance {rec.instance_id} has no subnet (EC2-Classic?); cannot place a replacement")
    return subnet_id


def _launch_spec(run: _Run, instance: dict[str, Any], subnet_id: str) -> _Spec:
    """Everything the replacement carries over, read from EC2 (and ELBv2) now."""
    iid, ec2 = run.rec.instance_id, run.ec2
    params = build_run_params(run.rec, instance, subnet_id)
    user_data = run.read(
        "DescribeInstanceAttribute", {"InstanceId": iid, "Attribute": "userData"}, ec2.describe_instance_attribute
    )
    if (user_data.get("UserData") or {}).get("Value"):
        # DescribeInstanceAttribute answers base64; boto3 base64-encodes RunInstances' UserData itself.
        params["UserData"] = base64.b64decode(user_data["UserData"]["Value"]).decode()
    root = next(
        (m for m in instance.get("BlockDeviceMappings", []) if m.get("DeviceName") == instance.get("RootDeviceName")),
        None,
    )
    if root and (root.get("Ebs") or {}).get("VolumeId"):
        vols = run.read("DescribeVolumes", {"VolumeIds": [root["Ebs"]["VolumeId"]]}, ec2.describe_volumes)["Volumes"]
        params["BlockDeviceMappings"] = [root_volume_mapping(root["DeviceName"], vols[0])]
    if (run.rec.target_instance_type or "").startswith("t") and instance["InstanceType"].startswith("t"):
        credits = run.read(
            "DescribeInstanceCreditSpecifications", {"InstanceIds": [iid]}, ec2.describe_instance_credit_specifications
        )["InstanceCreditSpecifications"]
        if credits:
            params["CreditSpecification"] = {"CpuCredits": credits[0]["CpuCredits"]}
    addresses = run.read(
        "DescribeAddresses", {"Filters": [{"Name": "instance-id", "Values": [iid]}]}, ec2.describe_addresses
    )["Addresses"]
    spec = _Spec(instance, params, eip=addresses[0] if addresses else None)
    if run.elbv2 is not None:
        spec.targets = _registrations(run, instance)
    return spec


def _registrations(run: _Run, instance: dict[str, Any]) -> list[dict[str, Any]]:
    """The ELBv2 target groups (instance targets in the source's VPC) the source is registered in."""
    groups, params = [], {}
    while True:  # every page: a registration missed here would be dropped when the source retires
        page = run.read("DescribeTargetGroups", params, run.elbv2.describe_target_groups, service="elbv2")
        groups += page.get("TargetGroups", [])
        if not page.get("NextMarker"):
            break
        params = {"Marker": page["NextMarker"]}
    found = []
    for group in groups:
        if group.get("TargetType", "instance") != "instance" or group.get("VpcId") != instance.get("VpcId"):
            continue
        arn = group["TargetGroupArn"]
        health = run.read(
            "DescribeTargetHealth", {"TargetGroupArn": arn}, run.elbv2.describe_target_health, service="elbv2"
        )
        for target in health.get("TargetHealthDescriptions", []):
            if target["Target"]["Id"] == run.rec.instance_id:
                found.append({"TargetGroupArn": arn, "Port": target["Target"].get("Port") or group.get("Port")})
    return found


def _plan(run: _Run, spec: _Spec, retire: str) -> None:
    """Dry-run: probe the EC2 permissions that offer DryRun, record every mutating call as planned."""
    ec2, iid = run.ec2, run.rec.instance_id
    run.probe("RunInstances", spec.run_params, ec2.run_instances)
    retire_op, retire_fn = _retire_call(run, retire)
    run.probe(retire_op, {"InstanceIds": [iid]}, retire_fn)
    if spec.eip:
        run.probe("AssociateAddress", _eip_params(spec, iid), ec2.associate_address)
    run.call("RunInstances", spec.run_params, None, before=_state(spec.instance))
    new = "<replacement>"
    for target in spec.targets:
        run.call("RegisterTargets", _target_params(target, new), None, service="elbv2")
    if spec.eip:
        run.call("AssociateAddress", _eip_params(spec, new), None)
    for target in spec.targets:
        run.call("DeregisterTargets", _target_params(target, iid), None, service="elbv2")
    run.call(retire_op, {"InstanceIds": [iid]}, None, before=_state(spec.instance))


def _eip_params(spec: _Spec, instance_id: str) -> dict[str, Any]:
    return {"AllocationId": spec.eip["AllocationId"], "InstanceId": instance_id, "AllowReassociation": True}


def _target_params(target: dict[str, Any], instance_id: str) -> dict[str, Any]:
    entry = {"Id": instance_id, **({"Port": target["Port"]} if target.get("Port") else {})}
    return {"TargetGroupArn": target["TargetGroupArn"], "Targets": [entry]}


def _tagged(run: _Run, states: list[str]) -> list[dict[str, Any]]:
    """The instances carrying this recommendation's tag (every replacement launched for it), in `states`."""
    params = {
        "Filters": [
            {"Name": f"tag:{TAG_RECOMMENDATION}", "Values": [str(run.rec.id)]},
            {"Name": "instance-state-name", "Values": states},
        ]
    }
    resp = run.read("DescribeInstances", params, run.ec2.describe_instances)
    return [i for r in resp.get("Reservations", []) for i in r.get("Instances", [])]


def _adopted(run: _Run) -> dict[str, Any] | None:
    """A live replacement an earlier, interrupted run launched: carried on with, never launched twice
    (the ClientToken makes RunInstances idempotent too, but only for identical parameters)."""
    live = _tagged(run, ["pending", "running"])
    if len(live) > 1:
        raise _Stop(f"needs an operator: {len(live)} live replacements {[i['InstanceId'] for i in live]} carry the tag")
    return live[0] if live else None


def reconcile(ec2, rec: RecommendationView, record: Callable[[Call], None] = lambda call: None) -> Outcome:
    """Settle a row a killed run left `executing`, from what EC2 says now (read calls only)."""
    if (rec.group_key or "").startswith(ASG_TAG + "="):  # a group plan launches nothing to look for
        return Outcome(
            "failed",
            error=f"reconciled after the run stopped mid-execution: needs an operator: whether the group plan "
            f"reached {rec.group_key} is unknown; compare the group with `spot-pipelines recommendations show "
            f"{rec.id}` (revert-group puts the previous configuration back)",
        )
    run = _Run(ec2, None, rec, record, dry_run=False)
    try:
        replacements = _tagged(run, ["pending", "running", "stopping", "stopped", "shutting-down", "terminated"])
        params = {"InstanceIds": [rec.instance_id]}
        c, resp = run.call("DescribeInstances", params, lambda: ec2.describe_instances(**params))
        if c.outcome == "failed" and "InvalidInstanceID" not in (c.error or ""):
            raise _Stop(c.error)
    except _Stop as stop:
        return Outcome(status="executing", error=f"not reconciled yet: {stop}", calls=run.calls)
    out = settle(rec, _first_instance(resp or {}), replacements)
    if out.replacement is not None:  # the live replacement, as an inventory row
        out.replacement = _read_back(run, out.replacement, out.replacement.get("SubnetId"))
    out.calls = run.calls
    return out


def settle(rec: RecommendationView, source: dict[str, Any] | None, replacements: list[dict[str, Any]]) -> Outcome:
    """The truthful final state of an interrupted execution. Pure."""
    live = [i for i in replacements if (i.get("State") or {}).get("Name") in ("pending", "running")]
    state = (source.get("State") or {}).get("Name") if source else "gone"
    src_live = state in ("pending", "running")
    prefix = "reconciled after the run stopped mid-execution: "
    if len(live) > 1:
        ids = ", ".join(i["InstanceId"] for i in live)
        return Outcome("failed", error=prefix + f"needs an operator: {len(live)} live replacements ({ids})")
    if live and not src_live:
        new = live[0]
        retired = "stop" if state in ("stopping", "stopped") else "terminate"
        return Outcome("executed", new["InstanceId"], None, replacement=new, retired=retired)
    if live:
        new_id = live[0]["InstanceId"]
        return Outcome(
            "failed",
            new_id,
            prefix + f"needs an operator: both the source {rec.instance_id} and its replacement {new_id} are "
            f"running; re-approve to finish the move (the run carries on with {new_id}, it launches no "
            f"second instance) or terminate {new_id}",
            replacement=live[0],
        )
    if src_live:
        return Outcome("failed", error=prefix + f"no replacement is running; the source {rec.instance_id} is untouched")
    return Outcome(
        "failed",
        error=prefix
        + f"needs an operator: neither the source {rec.instance_id} ({state}) nor a replacement is running",
    )


def _launch(run: _Run, spec: _Spec) -> dict[str, Any]:
    c, resp = run.call(
        "RunInstances",
        spec.run_params,
        lambda: run.ec2.run_instances(**spec.run_params),
        before=_state(spec.instance),
        after=lambda r: _state(r["Instances"][0]),
    )
    if c.outcome == "failed":
        rec = run.rec
        if any(code in (c.error or "") for code in NO_CAPACITY):
            raise _Stop(
                f"no {rec.target_market} capacity for {rec.target_instance_type} in "
                f"{rec.target_availability_zone_id or 'the source subnet'} ({c.error}); nothing was launched "
                "and the old instance is untouched; the next spot_recommendations proposes another pool"
            )
        raise _Stop(c.error + "; nothing was launched and the old instance is untouched")
    return resp["Instances"][0]


def _poll(run: _Run, wait: WaitPolicy, check: Callable[[], str | None], what: str) -> str | None:
    """Call `check` until it returns "" (done) or a cause (give up), within the timeout; the cause of failure."""
    deadline = wait.clock() + wait.timeout_seconds
    while True:
        cause = check()
        if cause is not None:
            return cause or None
        if wait.clock() >= deadline:
            return f"{what} within {wait.timeout_seconds:g}s"
        wait.sleep(wait.poll_seconds)


def _cut_over(run: _Run, spec: _Spec, new_id: str, wait: WaitPolicy) -> str | None:
    """Launch before terminate: the new instance healthy, registered and healthy in each target group, the
    EIP moved, the source deregistered. The cause when it went wrong (then the caller rolls back)."""
    cause = _poll(run, wait, lambda: _instance_ok(run, new_id), f"replacement {new_id} did not pass its status checks")
    if cause:
        return cause
    for target in spec.targets:
        c, _ = run.call(
            "RegisterTargets",
            _target_params(target, new_id),
            lambda t=target: run.elbv2.register_targets(**_target_params(t, new_id)),
            service="elbv2",
        )
        if c.outcome == "failed":
            return c.error
        spec.moved.append(("registered", target))
    for target in spec.targets:
        what = f"replacement {new_id} did not become healthy in {target['TargetGroupArn']}"
        cause = _poll(run, wait, lambda t=target: _target_ok(run, t, new_id), what)
        if cause:
            return cause
    if spec.eip:
        c, _ = run.call(
            "AssociateAddress",
            _eip_params(spec, new_id),
            lambda: run.ec2.associate_address(**_eip_params(spec, new_id)),
        )
        if c.outcome == "failed":
            return c.error
        spec.moved.append(("eip", spec.eip))
    for target in spec.targets:
        params = _target_params(target, run.rec.instance_id)
        c, _ = run.call(
            "DeregisterTargets", params, lambda p=params: run.elbv2.deregister_targets(**p), service="elbv2"
        )
        if c.outcome == "failed":
            return c.error
    return None


def _instance_ok(run: _Run, new_id: str) -> str | None:
    params = {"InstanceIds": [new_id], "IncludeAllInstances": True}
    c, resp = run.call(
        "DescribeInstanceStatus",
        params,
        lambda: run.ec2.describe_instance_status(**params),
        after=lambda r: {"statuses": [_status_summary(s) for s in r.get("InstanceStatuses", [])]},
    )
    if c.outcome == "failed":
        return c.error
    statuses = resp.get("InstanceStatuses", [])
    if not statuses:
        return None  # not visible yet: EC2 is eventually consistent
    status = statuses[0]
    state = (status.get("InstanceState") or {}).get("Name")
    if state in ("shutting-down", "terminated", "stopping", "stopped"):
        return f"replacement {new_id} is {state}"
    checks = ((status.get("InstanceStatus") or {}).get("Status"), (status.get("SystemStatus") or {}).get("Status"))
    return "" if state == "running" and checks == ("ok", "ok") else None


def _status_summary(status: dict[str, Any]) -> dict[str, Any]:
    return {
        "State": (status.get("InstanceState") or {}).get("Name"),
        "InstanceStatus": (status.get("InstanceStatus") or {}).get("Status"),
        "SystemStatus": (status.get("SystemStatus") or {}).get("Status"),
    }


def _target_ok(run: _Run, target: dict[str, Any], new_id: str) -> str | None:
    params = _target_params(target, new_id)
    c, resp = run.call(
        "DescribeTargetHealth",
        params,
        lambda: run.elbv2.describe_target_health(**params),
        after=lambda r: {"states": [d["TargetHealth"]["State"] for d in r.get("TargetHealthDescriptions", [])]},
        service="elbv2",
    )
    if c.outcome == "failed":
        return c.error
    states = [d["TargetHealth"]["State"] for d in resp.get("TargetHealthDescriptions", [])]
    return "" if states and all(s == "healthy" for s in states) else None


def _roll_back(run: _Run, spec: _Spec, new_id: str) -> str:
    """Undo the cut-over: registrations and the EIP back, the replacement terminated; the source was never touched."""
    undone = []
    for kind, what in reversed(spec.moved):
        if kind == "eip":
            params = _eip_params(spec, run.rec.instance_id)
            c, _ = run.call("AssociateAddress", params, lambda p=params: run.ec2.associate_address(**p))
        else:
            params = _target_params(what, new_id)
            c, _ = run.call(
                "DeregisterTargets", params, lambda p=params: run.elbv2.deregister_targets(**p), service="elbv2"
            )
        if c.outcome == "failed":
            undone.append(c.error)
    params = {"InstanceIds": [new_id]}
    c, _ = run.call("TerminateInstances", params, lambda: run.ec2.terminate_instances(**params))
    if c.outcome == "failed":
        undone.append(c.error)
    if undone:
        return f"rolling back failed ({'; '.join(undone)}): needs an operator; the source {run.rec.instance_id} was not retired"
    return f"rolled back: replacement {new_id} terminated, source {run.rec.instance_id} untouched"


def _retire_call(run: _Run, retire: str) -> tuple[str, Callable[..., dict]]:
    if retire == "terminate":
        return "TerminateInstances", run.ec2.terminate_instances
    return "StopInstances", run.ec2.stop_instances


def _retire(run: _Run, retire: str, new_id: str, before: dict[str, Any]) -> str | None:
    """Terminate or stop the source; the error text when that failed (the replacement is running)."""
    params = {"InstanceIds": [run.rec.instance_id]}
    retire_op, fn = _retire_call(run, retire)

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


# --- group-aware plans: change the group's instance mix instead of replacing its members -------------


def group_policy(
    group: dict[str, Any], instance_types: list[str], *, on_demand_base: int = 0, on_demand_percentage: int = 0
) -> dict[str, Any]:
    """The MixedInstancesPolicy for an Auto Scaling group (DescribeAutoScalingGroups' entry): its launch
    template, the qualifying types as overrides, price-capacity-optimized spot above an on-demand base."""
    name = group.get("AutoScalingGroupName")
    if group.get("LaunchConfigurationName"):
        raise ExecutionError(
            f"Auto Scaling group {name!r} uses launch configuration {group['LaunchConfigurationName']!r}: a "
            "mixed instances policy needs a launch template; migrate the group to one first"
        )
    current = group.get("MixedInstancesPolicy") or {}
    spec = (current.get("LaunchTemplate") or {}).get("LaunchTemplateSpecification") or group.get("LaunchTemplate")
    if not spec:
        raise ExecutionError(f"Auto Scaling group {name!r} has no launch template")
    if not instance_types:
        raise ExecutionError(f"instance_types: no qualifying instance type for Auto Scaling group {name!r}")
    if on_demand_base < 0 or not 0 <= on_demand_percentage <= 100:
        raise ExecutionError(
            f"on_demand_base must be >= 0 and on_demand_percentage in 0..100, got {on_demand_base}, {on_demand_percentage}"
        )
    template = {k: v for k, v in spec.items() if k in ("LaunchTemplateId", "Version")} or dict(spec)
    return {
        "LaunchTemplate": {
            "LaunchTemplateSpecification": template,
            "Overrides": [{"InstanceType": t} for t in dict.fromkeys(instance_types)],
        },
        "InstancesDistribution": {
            "OnDemandBaseCapacity": on_demand_base,
            "OnDemandPercentageAboveBaseCapacity": on_demand_percentage,
            "SpotAllocationStrategy": "price-capacity-optimized",
        },
    }


def group_config(group: dict[str, Any]) -> dict[str, Any]:
    """What UpdateAutoScalingGroup takes to put the group's instance configuration back as it is now."""
    if group.get("MixedInstancesPolicy"):
        return {"MixedInstancesPolicy": group["MixedInstancesPolicy"]}
    spec = group.get("LaunchTemplate") or {}
    return {"LaunchTemplate": {k: v for k, v in spec.items() if k in ("LaunchTemplateId", "Version")}}


def apply_group_plan(
    autoscaling,
    rec: RecommendationView,
    group_name: str,
    instance_types: list[str],
    *,
    dry_run: bool,
    record: Callable[[Call], None] = lambda call: None,
    on_demand_base: int = 0,
    on_demand_percentage: int = 0,
) -> Outcome:
    """UpdateAutoScalingGroup with a MixedInstancesPolicy (dry-run: planned only). The audit row keeps the
    previous configuration as its before_state: `revert_group_plan` puts it back."""
    run = _Run(None, None, rec, record, dry_run)
    try:
        group = _group(run, autoscaling, group_name)
        try:
            policy = group_policy(
                group, instance_types, on_demand_base=on_demand_base, on_demand_percentage=on_demand_percentage
            )
        except ExecutionError as exc:
            raise _Stop(str(exc)) from None
        params = {"AutoScalingGroupName": group_name, "MixedInstancesPolicy": policy}
        _update_group(run, autoscaling, params, before=group_config(group))
    except _Stop as stop:
        return Outcome(status="failed", error=str(stop), calls=run.calls, verdict=str(stop))
    return Outcome(status="approved" if dry_run else "executed", calls=run.calls, verdict="group plan")


def revert_group_plan(
    autoscaling,
    rec: RecommendationView,
    group_name: str,
    previous: dict[str, Any],
    *,
    dry_run: bool,
    record: Callable[[Call], None] = lambda call: None,
) -> Outcome:
    """Put back the configuration an applied plan recorded (its UpdateAutoScalingGroup's before_state)."""
    run = _Run(None, None, rec, record, dry_run)
    try:
        group = _group(run, autoscaling, group_name)
        _update_group(run, autoscaling, {"AutoScalingGroupName": group_name, **previous}, before=group_config(group))
    except _Stop as stop:
        return Outcome(status="failed", error=str(stop), calls=run.calls)
    return Outcome(status="approved" if dry_run else "executed", calls=run.calls)


def _group(run: _Run, autoscaling, group_name: str) -> dict[str, Any]:
    params = {"AutoScalingGroupNames": [group_name]}
    groups = run.read(
        "DescribeAutoScalingGroups", params, autoscaling.describe_auto_scaling_groups, service="autoscaling"
    ).get("AutoScalingGroups", [])
    if not groups:
        raise _Stop(f"Auto Scaling group {group_name!r} no longer exists")
    return groups[0]


def _update_group(run: _Run, autoscaling, params: dict[str, Any], before: dict[str, Any]) -> None:
    fn = None if run.dry_run else (lambda: autoscaling.update_auto_scaling_group(**params))
    c, _ = run.call("UpdateAutoScalingGroup", params, fn, before=before, service="autoscaling")
    if c.outcome == "failed":
        raise _Stop(c.error)


def node_pool_snippet(group_tag: str, group_name: str, instance_types: list[str]) -> str:
    """The change a Karpenter NodePool's or an EKS managed node group's owner applies (we never edit them)."""
    types = list(dict.fromkeys(instance_types))
    if group_tag.startswith("karpenter.sh/"):
        values = ", ".join(f'"{t}"' for t in types)
        return (
            f"# Karpenter NodePool {group_name}: spec.template.spec.requirements\n"
            '- key: "karpenter.sh/capacity-type"\n  operator: In\n  values: ["spot", "on-demand"]\n'
            f'- key: "node.kubernetes.io/instance-type"\n  operator: In\n  values: [{values}]\n'
        )
    return (
        f"# EKS managed node group {group_name}: a spot node group beside it (capacityType cannot change in place)\n"
        f"aws eks create-nodegroup --nodegroup-name {group_name}-spot --capacity-type SPOT "
        f"--instance-types {' '.join(types)} ...  # same cluster, subnets, node role and labels as {group_name}\n"
    )


# --------------------------------------------------------------------------- realised savings ledger

LEDGER_COLUMNS = ["account_id", "month", "recommendations", "hours", "realised_savings_usd"]


def month_slices(start: datetime, end: datetime) -> list[tuple[str, float]]:
    """(YYYY-MM, hours) for each calendar month (UTC) the interval [start, end) touches."""
    slices, at = [], start
    while at < end:
        nxt = datetime(at.year + at.month // 12, at.month % 12 + 1, 1, tzinfo=at.tzinfo)
        until = min(nxt, end)
        slices.append((f"{at:%Y-%m}", (until - at).total_seconds() / 3600))
        at = until
    return slices


def savings_ledger(executed: list[dict[str, Any]], now: datetime) -> tuple[list[dict], list[dict]]:
    """Per account and month: hours the replacements ran since execution × (previous hourly cost − the
    replacement's realised hourly cost), both list prices stored with the recommendation. A row with either price
    missing or not positive is skipped with the reason, never priced at zero. Returns (ledger rows, skipped)."""
    ledger: dict[tuple[int, str], dict[str, Any]] = {}
    skipped = []
    for rec in executed:
        before, after = rec.get("previous_hourly_usd"), rec.get("realised_hourly_usd")
        if not before or before <= 0 or not after or after <= 0 or not rec.get("executed_at"):
            missing = "previous hourly cost" if not before or before <= 0 else "realised hourly cost"
            skipped.append(
                {"id": rec["id"], "reason": f"no stored {missing}" if rec.get("executed_at") else "no executed_at"}
            )
            continue
        end = min(now, rec.get("ended_at") or now)
        for month, hours in month_slices(rec["executed_at"], end):
            row = ledger.setdefault(
                (rec["account_id"], month),
                {
                    "account_id": rec["account_id"],
                    "month": month,
                    "recommendations": set(),
                    "hours": 0.0,
                    "realised_savings_usd": 0.0,
                },
            )
            row["recommendations"].add(rec["id"])
            row["hours"] += hours
            row["realised_savings_usd"] += hours * (before - after)
    rows = [
        {
            **r,
            "recommendations": len(r["recommendations"]),
            "hours": round(r["hours"], 2),
            "realised_savings_usd": round(r["realised_savings_usd"], 2),
        }
        for _, r in sorted(ledger.items())
    ]
    return rows, skipped
