"""Scanning an account's EC2 fleet: regions concurrently, pages through paginators.

Plain functions over boto3 clients; no Dagster and no database here.
"""

from __future__ import annotations

import gc
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from xml.etree import ElementTree

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import DEFAULT_TIMESTAMP_PARSER

from spot_pipelines.core.aws_errors import CREDENTIAL_ERRORS, REGION_SKIP_ERRORS, describe, error_code, is_permanent
from spot_pipelines.core.errors import CredentialError, ValidationError

PAGE_SIZE = 1000
MAX_REGION_WORKERS = 32
LIFECYCLES = {"spot": "spot", "scheduled": "scheduled", "capacity-block": "capacity-block"}
NOT_ENABLED = "region not enabled (opt-in required)"


@dataclass
class AccountScan:
    instances: list[dict[str, Any]] = field(default_factory=list)
    scanned_regions: list[str] = field(default_factory=list)
    skipped_regions: dict[str, str] = field(default_factory=dict)  # region -> reason
    failed_regions: dict[str, str] = field(default_factory=dict)  # region -> cause
    retryable_regions: set[str] = field(default_factory=set)  # failed regions a retry may fix
    api_calls: int = 0


def resolve_regions(ec2_home, configured: list[str] | None) -> tuple[list[str], dict[str, str]]:
    """Regions to scan and those to skip: an opt-in region that is not enabled is skipped.

    Only regions of the caller's partition count (aws, aws-cn, aws-us-gov): credentials of one
    partition are never valid in another (and emulators list them all).
    """
    partition = partition_of(ec2_home.meta.region_name)
    regions = [
        r
        for r in ec2_home.describe_regions(AllRegions=True).get("Regions", [])
        if r.get("RegionName") and partition_of(r["RegionName"]) == partition
    ]
    enabled = {r["RegionName"] for r in regions if r.get("OptInStatus") != "not-opted-in"}
    known = {r["RegionName"] for r in regions}
    if configured is None:
        return sorted(enabled), {r: NOT_ENABLED for r in sorted(known - enabled)}
    skipped = {}
    for region in configured:
        if region not in known:
            skipped[region] = "unknown region"
        elif region not in enabled:
            skipped[region] = NOT_ENABLED
    return sorted(r for r in configured if r in enabled), skipped


def partition_of(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    if region.startswith("us-iso"):
        return "aws-iso"
    return "aws"


def instance_row(raw: dict[str, Any], region: str, az_ids: dict[str, str]) -> dict[str, Any]:
    """One stored row. Every member of the API's answer is optional; without an instance ID or
    type the row cannot be keyed or priced, and a zone name without an ID cannot be joined, so
    those fail the region (its stored rows stay untouched) instead of storing a guess."""
    instance_id, instance_type = raw.get("InstanceId"), raw.get("InstanceType")
    if not instance_id:
        raise ValidationError(
            "DescribeInstances.Reservations[].Instances[].InstanceId", f"missing for an instance in {region}"
        )
    if not instance_type:
        raise ValidationError(
            "DescribeInstances.Reservations[].Instances[].InstanceType", f"missing for {instance_id} in {region}"
        )
    placement = raw.get("Placement") or {}
    az = placement.get("AvailabilityZone")
    az_id = placement.get("AvailabilityZoneId") or az_ids.get(az)
    if az and not az_id:
        raise ValidationError(
            "DescribeAvailabilityZones.AvailabilityZones[].ZoneId",
            f"no AZ ID for {az} (instance {instance_id}) in {region}",
        )
    return {
        "instance_id": instance_id,
        "region": region,
        "availability_zone": az,
        "availability_zone_id": az_id,
        "instance_type": instance_type,
        "lifecycle": LIFECYCLES.get(raw.get("InstanceLifecycle", ""), "on-demand"),
        "state": (raw.get("State") or {}).get("Name") or "unknown",
        "platform": raw.get("PlatformDetails") or ("Windows" if raw.get("Platform") == "windows" else "Linux/UNIX"),
        "architecture": raw.get("Architecture"),
        "launch_time": raw.get("LaunchTime"),
        "tags": {t["Key"]: t.get("Value", "") for t in raw.get("Tags") or [] if t.get("Key")},
    }


# ---------------------------------------------------------------------------- lean DescribeInstances answers

LEAN_EVENT = "before-parse.ec2.DescribeInstances"
# The members of an instance that instance_row reads, by their XML element name in the EC2 query protocol.
_TEXT_MEMBERS = {
    "instanceId": "InstanceId",
    "instanceType": "InstanceType",
    "instanceLifecycle": "InstanceLifecycle",
    "platform": "Platform",
    "platformDetails": "PlatformDetails",
    "architecture": "Architecture",
}


def lean_instances(response_dict: dict, customized_response_dict: dict, **_) -> None:
    """botocore `before-parse` hook: build Reservations[].Instances[] with only what instance_row reads.

    botocore's parser walks the whole output shape of every instance (block devices, network
    interfaces, ...) into dicts: ~80% of a page's parse CPU once the XML itself is read. Here the
    reservation set is read into lean dicts and removed from the body; botocore parses the rest
    as always (request ID, NextToken for its paginator) and merges these Reservations into its
    answer. Errors and anything unexpected are left to botocore's parser untouched.
    """
    if response_dict.get("status_code", 500) >= 300 or not response_dict.get("body"):
        return
    try:
        root = ElementTree.fromstring(response_dict["body"])
    except ElementTree.ParseError:
        return
    ns = root.tag[: root.tag.find("}") + 1]  # "{http://ec2.amazonaws.com/doc/...}" or ""
    reservations = root.find(f"{ns}reservationSet")
    if reservations is None:
        return
    customized_response_dict["Reservations"] = [
        {"Instances": [_lean_instance(i, ns) for i in r.iterfind(f"{ns}instancesSet/{ns}item")]}
        for r in reservations.iterfind(f"{ns}item")
    ]
    root.remove(reservations)
    response_dict["body"] = ElementTree.tostring(root)


def _lean_instance(node, ns: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for child in node:
        tag = child.tag[len(ns) :]
        if tag in _TEXT_MEMBERS:
            out[_TEXT_MEMBERS[tag]] = child.text or ""
        elif tag == "launchTime":
            out["LaunchTime"] = fast_timestamp(child.text or "")
        elif tag == "placement":
            out["Placement"] = _members(
                child, ns, {"availabilityZone": "AvailabilityZone", "availabilityZoneId": "AvailabilityZoneId"}
            )
        elif tag == "instanceState":
            out["State"] = _members(child, ns, {"name": "Name"})
        elif tag == "tagSet":
            out["Tags"] = [_members(item, ns, {"key": "Key", "value": "Value"}) for item in child.iterfind(f"{ns}item")]
    return out


def _members(node, ns: str, names: dict[str, str]) -> dict[str, str]:
    return {names[c.tag[len(ns) :]]: c.text or "" for c in node if c.tag[len(ns) :] in names}


def fast_timestamp(value):
    """botocore's timestamp parser without dateutil for the ISO-8601 strings AWS sends.

    dateutil was ~40% of the CPU spent parsing a DescribeInstances page (three timestamps per
    instance). Anything that is not an offset-aware ISO string falls back to botocore's parser.
    """
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed
    return DEFAULT_TIMESTAMP_PARSER(value)


def scan_region(ec2, region: str) -> tuple[list[dict[str, Any]], int]:
    """All instances of one region, and how many API calls that took.

    Raises ValidationError when the answer lacks what a row needs (see instance_row).
    """
    raws, calls = [], 0
    ec2.meta.events.register(LEAN_EVENT, lean_instances, unique_id=LEAN_EVENT)
    try:
        for page in ec2.get_paginator("describe_instances").paginate(PaginationConfig={"PageSize": PAGE_SIZE}):
            calls += 1
            for reservation in page.get("Reservations", []):
                raws.extend(reservation.get("Instances", []))
    finally:
        ec2.meta.events.unregister(LEAN_EVENT, unique_id=LEAN_EVENT)
    az_ids: dict[str, str] = {}
    if any(
        (r.get("Placement") or {}).get("AvailabilityZone") and not r["Placement"].get("AvailabilityZoneId")
        for r in raws
    ):
        # Older responses lack the AZ ID: one lookup maps names (which differ per account) to IDs.
        calls += 1
        zones = ec2.describe_availability_zones(AllAvailabilityZones=True).get("AvailabilityZones", [])
        az_ids = {z["ZoneName"]: z["ZoneId"] for z in zones if z.get("ZoneName") and z.get("ZoneId")}
    return [instance_row(r, region, az_ids) for r in raws], calls


_gc_lock = threading.Lock()
_gc_scans = 0  # scans running in this process
_gc_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """CPython's cyclic GC off while any scan of this process runs, back on (if it was) after the last.

    Parsing DescribeInstances allocates millions of short-lived, acyclic containers: every
    allocation threshold crossed started a collection that walked them (and the parsed fleet
    and botocore's service model) to free nothing. That was ~40% of a page's parse CPU
    (measured December 2026). Reference counting still frees everything acyclic meanwhile;
    cyclic garbage waits until the scan ends.
    """
    global _gc_scans, _gc_was_enabled
    with _gc_lock:
        if _gc_scans == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_scans += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_scans -= 1
            if _gc_scans == 0 and _gc_was_enabled:
                gc.enable()


def scan_account(
    client_for: Callable[[str], Any],
    configured_regions: list[str] | None,
    home_region: str = "us-east-1",
    max_workers: int = MAX_REGION_WORKERS,
) -> AccountScan:
    """Scan every enabled region of an account concurrently, isolating per-region errors.

    Raises CredentialError when the account's credentials are rejected outright, or AWS denies
    the scan in every region (retrying cannot fix either).
    """
    with gc_paused():
        return _scan_account(client_for, configured_regions, home_region, max_workers)


def _scan_account(client_for, configured_regions, home_region, max_workers) -> AccountScan:
    scan = AccountScan()
    try:
        home = client_for(home_region)
        regions, scan.skipped_regions = resolve_regions(home, configured_regions)
        scan.api_calls += 1
    except ClientError as exc:
        if error_code(exc) in CREDENTIAL_ERRORS:
            raise CredentialError(f"AWS rejected the credentials ({describe(exc)})") from None
        raise

    def one(region: str, client):
        try:
            return region, scan_region(client, region), None
        except (ClientError, BotoCoreError, ValidationError) as exc:
            return region, None, exc

    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(regions)))) as pool:
        # Clients are still created on this thread (client_for need not be thread-safe), but each
        # region starts scanning as soon as its client exists: creating an EC2 client costs
        # CPU (~14 ms each, measured in December 2026), so building all 17 first delayed every region.
        # The home region's client already exists (it listed the regions): one client per region.
        futures = [
            pool.submit(one, region, home if region == home_region else client_for(region)) for region in regions
        ]
        for future in futures:
            region, result, exc = future.result()
            if exc is None:
                rows, calls = result
                scan.instances.extend(rows)
                scan.scanned_regions.append(region)
                scan.api_calls += calls
            elif error_code(exc) in REGION_SKIP_ERRORS:
                scan.skipped_regions[region] = describe(exc)
            else:
                scan.failed_regions[region] = describe(exc)
                if not is_permanent(exc):
                    scan.retryable_regions.add(region)
    denied = [region for region in regions if region in scan.skipped_regions]
    if denied and len(denied) == len(regions):
        # Denied everywhere is a missing permission, not a fleet of zero instances.
        raise CredentialError(f"AWS denied discovery in every region ({denied[0]}: {scan.skipped_regions[denied[0]]})")
    return scan


# --------------------------------------------------------------------------- what discovered_instances' checks assert


def duplicate_instance_ids(instances: list[dict[str, Any]]) -> list[str]:
    """Instance IDs a scan of one account returned more than once (an upsert would silently keep one)."""
    counts = Counter(row["instance_id"] for row in instances)
    return sorted(iid for iid, n in counts.items() if n > 1)


def missing_az_ids(instances: list[dict[str, Any]]) -> list[str]:
    """Instances without an AZ ID: they cannot be joined to a spot market."""
    return sorted(row["instance_id"] for row in instances if not row.get("availability_zone_id"))
