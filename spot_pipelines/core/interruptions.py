"""EventBridge EC2 events delivered through SQS: parsing, and draining a queue in one sensor tick.

The three rules the platform subscribes to (EventBridge `detail-type`):

- `EC2 Spot Instance Interruption Warning`  → `spot_interruption_warning` (detail: instance-id, instance-action)
- `EC2 Instance Rebalance Recommendation`    → `rebalance_recommendation`  (detail: instance-id)
- `EC2 Instance State-change Notification`   → `state_change`              (detail: instance-id, state)

A message is either an `InterruptionEvent` or a `Rejected` with a reason; nothing raises.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

DETAIL_TYPES = {
    "EC2 Spot Instance Interruption Warning": "spot_interruption_warning",
    "EC2 Instance Rebalance Recommendation": "rebalance_recommendation",
    "EC2 Instance State-change Notification": "state_change",
}
_ACCOUNT = re.compile(r"\d{12}")
_INSTANCE = re.compile(r"i-[0-9a-f]{8,17}")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d")
_AZ_IN_ARN = re.compile(r"arn:aws[\w-]*:ec2:(?P<zone>[a-z]{2}(?:-[a-z]+)+-\d[a-z]):")
MAX_DEAD_LETTER_BODY = 65_536


@dataclass(frozen=True)
class InterruptionEvent:
    event_id: str
    event_type: str
    event_time: datetime
    aws_account_id: str
    region: str
    availability_zone: str | None
    instance_id: str
    action_or_state: str | None
    detail: dict[str, Any]


@dataclass(frozen=True)
class Rejected:
    reason: str


def reason_kind(reason: str) -> str:
    """A short category of a dead-letter reason, for counts in metadata and logs."""
    if reason.startswith("body is"):
        return "not_json"
    if reason.startswith("detail-type:"):
        return "unknown_event_type"
    if reason.startswith("account:") and "not an onboarded account" in reason:
        return "unknown_account"
    return "invalid_event"


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        # astimezone overflows for offsets at the calendar's ends ("0001-01-01T00:00:00+05:00").
        return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        return None


def _zone_from_resources(resources: Any, region: str) -> str | None:
    """Spot interruption warnings name the AZ in the instance ARN (`arn:aws:ec2:us-east-2a:instance/…`)."""
    for arn in resources if isinstance(resources, list) else []:
        match = _AZ_IN_ARN.match(arn) if isinstance(arn, str) else None
        if match and match.group("zone").startswith(region):
            return match.group("zone")
    return None


def parse_message(body: str) -> InterruptionEvent | Rejected:
    """One SQS message body: an EventBridge event, directly or wrapped in an SNS notification."""
    try:
        event = json.loads(body)
    except (TypeError, ValueError) as exc:
        return Rejected(f"body is not JSON ({exc.__class__.__name__}: {str(exc)[:80]})")
    if isinstance(event, dict) and event.get("Type") == "Notification" and isinstance(event.get("Message"), str):
        return parse_message(event["Message"])  # delivered through an SNS topic
    if not isinstance(event, dict):
        return Rejected(f"body is JSON {type(event).__name__}, not an EventBridge event object")
    detail_type = event.get("detail-type")
    if not isinstance(detail_type, str) or detail_type not in DETAIL_TYPES:  # a list/object is unhashable
        return Rejected(
            f"detail-type: unknown event type {str(detail_type)[:100]!r} "
            f"(expected one of {', '.join(sorted(DETAIL_TYPES))})"
        )
    event_id = event.get("id")
    if not isinstance(event_id, str) or not event_id or len(event_id) > 64:
        return Rejected("id: missing or not an EventBridge event id")
    account = event.get("account")
    if not isinstance(account, str) or not _ACCOUNT.fullmatch(account):
        return Rejected(f"account: {str(account)[:20]!r} is not a 12-digit AWS account id")
    region = event.get("region")
    if not isinstance(region, str) or not _REGION.fullmatch(region):
        return Rejected(f"region: {str(region)[:40]!r} is not an AWS region")
    event_time = _parse_time(event.get("time"))
    if event_time is None:
        return Rejected(f"time: {str(event.get('time'))[:40]!r} is not an ISO-8601 timestamp")
    detail = event.get("detail")
    if not isinstance(detail, dict):
        return Rejected("detail: missing or not an object")
    instance_id = detail.get("instance-id")
    if not isinstance(instance_id, str) or not _INSTANCE.fullmatch(instance_id):
        return Rejected(f"detail.instance-id: {str(instance_id)[:40]!r} is not an EC2 instance id")
    event_type = DETAIL_TYPES[detail_type]
    action = detail.get("state") if event_type == "state_change" else detail.get("instance-action")
    return InterruptionEvent(
        event_id=event_id,
        event_type=event_type,
        event_time=event_time,
        aws_account_id=account,
        region=region,
        availability_zone=_zone_from_resources(event.get("resources"), region),
        instance_id=instance_id,
        action_or_state=str(action)[:32] if action is not None else None,
        detail=detail,
    )


def eventbridge_event(
    event_type: str,
    *,
    event_id: str,
    account: str,
    region: str,
    instance_id: str,
    time_: datetime,
    zone: str | None = None,
    action_or_state: str | None = None,
) -> dict:
    """A realistic EventBridge event (used by tests, the demo and benchmarks)."""
    detail_type = {v: k for k, v in DETAIL_TYPES.items()}[event_type]
    detail: dict[str, Any] = {"instance-id": instance_id}
    if event_type == "spot_interruption_warning":
        detail["instance-action"] = action_or_state or "terminate"
    elif event_type == "state_change":
        detail["state"] = action_or_state or "shutting-down"
    return {
        "version": "0",
        "id": event_id,
        "detail-type": detail_type,
        "source": "aws.ec2",
        "account": account,
        "time": time_.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:ec2:{zone or region}:instance/{instance_id}"]
        if zone
        else [f"arn:aws:ec2:{region}:{account}:instance/{instance_id}"],
        "detail": detail,
    }


# ---------------------------------------------------------------------------------------------
# Draining the queue


@dataclass(frozen=True)
class Message:
    message_id: str
    receipt_handle: str
    body: str


@dataclass
class StoreResult:
    """What storing one batch did; `affected_accounts` maps account name → new event ids."""

    recorded: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    affected_accounts: dict[str, list[str]] = field(default_factory=dict)
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)

    def add(self, other: StoreResult) -> None:
        self.recorded += other.recorded
        self.duplicates += other.duplicates
        self.dead_lettered += other.dead_lettered
        for name, ids in other.affected_accounts.items():
            self.affected_accounts.setdefault(name, []).extend(ids)
        for reason, n in other.dead_letter_reasons.items():
            self.dead_letter_reasons[reason] = self.dead_letter_reasons.get(reason, 0) + n


@dataclass
class DrainResult(StoreResult):
    received: int = 0
    deleted: int = 0
    delete_failures: int = 0
    batches: int = 0
    stopped_by: str = "queue empty"  # queue empty | time budget | message limit | error
    seconds: float = 0.0
    error: str | None = None  # an SQS failure that ended the drain early (what was stored stays)


def _receive(sqs, queue_url: str, visibility_timeout: int, wait_s: int = 0) -> list[Message]:
    response = sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_s, VisibilityTimeout=visibility_timeout
    )
    return [Message(m["MessageId"], m["ReceiptHandle"], m.get("Body", "")) for m in response.get("Messages", [])]


def _delete(sqs, queue_url: str, messages: Sequence[Message]) -> tuple[int, int]:
    deleted = failed = 0
    for start in range(0, len(messages), 10):
        chunk = messages[start : start + 10]
        response = sqs.delete_message_batch(
            QueueUrl=queue_url, Entries=[{"Id": str(i), "ReceiptHandle": m.receipt_handle} for i, m in enumerate(chunk)]
        )
        deleted += len(response.get("Successful", []))
        failed += len(response.get("Failed", []))
    return deleted, failed


def drain_queue(
    sqs,
    queue_url: str,
    store: Callable[[list[Message]], StoreResult],
    *,
    time_budget_s: float = 40.0,
    max_messages: int = 20_000,
    chunk: int = 500,
    visibility_timeout: int = 300,
    clock: Callable[[], float] = time.monotonic,
    describe_error: Callable[[BaseException], str] = lambda e: f"{type(e).__name__}: {e}",
    workers: int = 4,
    wait_time_s: int = 0,
) -> DrainResult:
    """Receive in batches of 10, store each chunk in one transaction, then delete what was stored.

    A message is deleted only after `store` returned (its transaction committed); if `store`
    raises, the chunk is left to reappear after the visibility timeout and the error propagates.
    An SQS error (receive or delete) ends the drain with `error` set: what was already stored
    stays stored and is reported, undeleted messages come back and are recognised as duplicates.

    `workers` receive calls run at once (each is a network round trip), and a stored chunk's
    delete batches run in the background while the next chunk is received.

    With `wait_time_s` 0 (short polling) the drain stops when a whole round of receives came back
    empty. With `wait_time_s` > 0 (long polling, at most SQS's 20 s) it keeps the queue drained
    until the time budget: once a round finds the queue caught up (a batch short of 10), what was
    received is stored at once and one receive waits up to `wait_time_s` for the next message,
    never past the budget, so an event arriving mid-tick is stored within about a second.
    Either way it stops at the time budget or after `max_messages` were received.
    """
    from concurrent.futures import ThreadPoolExecutor

    if not 0 <= wait_time_s <= 20:
        raise ValueError(f"wait_time_s must be between 0 and 20 (SQS's limit), got {wait_time_s!r}")
    started = clock()
    result = DrainResult()
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="sqs-drain")
    deletes: list = []

    def collect_deletes() -> None:
        for future in deletes:
            deleted, failed = future.result()
            result.deleted += deleted
            result.delete_failures += failed
        deletes.clear()

    try:
        drained = caught_up = False
        while not drained:
            left = time_budget_s - (clock() - started)
            if left < 0 or (caught_up and left < 2):  # too little left for a 1 s long poll
                result.stopped_by = "time budget"
                break
            if result.received >= max_messages:
                result.stopped_by = "message limit"
                break
            pending: list[Message] = []
            receive_error: _SqsError | None = None
            while len(pending) < chunk and result.received + len(pending) < max_messages:
                # Long-poll only once caught up (one call, never waiting past the budget);
                # a backlog is read by short polls in parallel.
                wait = min(wait_time_s, int(time_budget_s - (clock() - started)) - 1) if caught_up else 0
                if caught_up and wait < 1:
                    break
                calls = (
                    1
                    if caught_up
                    else max(
                        1,
                        min(
                            workers,
                            (chunk - len(pending) + 9) // 10,
                            (max_messages - result.received - len(pending) + 9) // 10,
                        ),
                    )
                )
                futures = [pool.submit(_sqs, _receive, sqs, queue_url, visibility_timeout, wait) for _ in range(calls)]
                batches = []
                for future in futures:
                    try:
                        batches.append(future.result())
                    except _SqsError as failure:
                        receive_error = receive_error or failure
                for batch in batches:
                    pending.extend(batch)
                if receive_error is not None:
                    break
                if not wait_time_s:
                    if not any(batches):
                        drained = True
                        break
                else:
                    caught_up = any(len(batch) < 10 for batch in batches)
                    if caught_up and pending:
                        break  # store what arrived now rather than wait for a full chunk
                if clock() - started > time_budget_s:
                    break
            result.received += len(pending)
            if pending:
                result.add(store(pending))  # committed: only now may the messages be deleted
                result.batches += 1
                deletes.extend(
                    pool.submit(_sqs, _delete, sqs, queue_url, pending[i : i + 10]) for i in range(0, len(pending), 10)
                )
            if receive_error is not None:
                raise receive_error  # what was received before it is stored and being deleted
        collect_deletes()
    except _SqsError as failure:
        try:
            collect_deletes()
        except _SqsError:
            pass
        result.error = describe_error(failure.cause)
        result.stopped_by = "error"
    finally:
        pool.shutdown(wait=True)
    result.seconds = clock() - started
    return result


class _SqsError(Exception):
    def __init__(self, cause: BaseException):
        super().__init__(str(cause))
        self.cause = cause


def _sqs(fn: Callable, *args):
    """Run one SQS call; its failure becomes `_SqsError` (store failures stay what they are)."""
    try:
        return fn(*args)
    except Exception as exc:
        raise _SqsError(exc) from exc


@dataclass
class ParsedBatch:
    events: list[tuple[Message, InterruptionEvent]] = field(default_factory=list)  # first copy of each id
    rejected: list[tuple[Message, str]] = field(default_factory=list)  # (message, reason)
    duplicates_in_batch: int = 0


def split(messages: Iterable[Message]) -> ParsedBatch:
    """Parse a batch; later copies of an event id already in the batch count as duplicates."""
    batch = ParsedBatch()
    seen: set[str] = set()
    for message in messages:
        parsed = parse_message(message.body)
        if isinstance(parsed, Rejected):
            batch.rejected.append((message, parsed.reason))
        elif parsed.event_id in seen:
            batch.duplicates_in_batch += 1
        else:
            seen.add(parsed.event_id)
            batch.events.append((message, parsed))
    return batch


@dataclass
class StorePlan:
    """What to write for one batch: event rows, (message, reason) dead letters, and the counts."""

    rows: list[dict[str, Any]]
    rejected: list[tuple[Message, str]]
    result: StoreResult


def plan_store(
    batch: ParsedBatch,
    owners: Mapping[str, Sequence[tuple[int, str]]],
    existing: set[str],
    instances: Mapping[tuple[int, str], tuple[str | None, str | None, str | None]],
    *,
    received_at: datetime,
) -> StorePlan:
    """Decide a parsed batch against what is stored: `owners` maps an AWS account id to its onboarded
    (account id, name) pairs, `existing` the event ids already recorded, `instances` (account id,
    instance id) to the discovered (AZ, AZ ID, type). An event of an account not onboarded is
    dead-lettered; an event already recorded is a duplicate; each new one is enriched from the inventory."""
    result = StoreResult(duplicates=batch.duplicates_in_batch)
    rejected = list(batch.rejected)
    known = []
    for message, event in batch.events:
        if event.aws_account_id in owners:
            known.append(event)
        else:
            rejected.append(
                (
                    message,
                    f"account: {event.aws_account_id} is not an onboarded account "
                    f"(event {event.event_id}, {event.event_type} for {event.instance_id})",
                )
            )
    new = [e for e in known if e.event_id not in existing]
    result.duplicates += len(known) - len(new)
    rows = []
    for event in new:
        accounts = owners[event.aws_account_id]
        az, az_id, itype = next(
            (instances[(a, event.instance_id)] for a, _ in accounts if (a, event.instance_id) in instances),
            (None, None, None),
        )
        rows.append(
            {
                "event_id": event.event_id,
                "event_type": event.event_type,
                "event_time": event.event_time,
                "received_at": received_at,
                "aws_account_id": event.aws_account_id,
                "account_id": accounts[0][0],
                "region": event.region,
                "availability_zone": event.availability_zone or az,
                "availability_zone_id": az_id,
                "instance_id": event.instance_id,
                "instance_type": itype,
                "action_or_state": event.action_or_state,
                "detail": event.detail,
            }
        )
        for _, name in accounts:
            result.affected_accounts.setdefault(name, []).append(event.event_id)
    result.recorded = len(rows)
    result.dead_lettered = len(rejected)
    for _, reason in rejected:
        key = reason_kind(reason)
        result.dead_letter_reasons[key] = result.dead_letter_reasons.get(key, 0) + 1
    return StorePlan(rows, rejected, result)


# ---------------------------------------------------------------------------------------------
# Re-discovery requests, at most one per account per interval

MAX_OWED_IDS = 100


def event_digest(ids: Iterable[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]


@dataclass
class RediscoveryPlan:
    requests: list[tuple[str, str, int]]  # (account name, run key, events it follows up)
    deferred: list[str]  # accounts asked for within the interval: requested by a later tick
    without_partition: list[str]  # accounts not (yet) in the partitions: their first discovery covers it
    state: dict[str, Any]  # the sensor cursor's state


def plan_rediscovery(
    affected: dict[str, list[str]],
    state: dict[str, Any],
    existing_partitions: set[str],
    *,
    now_s: float,
    min_interval_s: float,
) -> RediscoveryPlan:
    """Which accounts to re-discover now.

    A burst of events (an AZ-wide reclaim, an autoscaling storm of state changes) must not queue
    a full-account scan every tick: an account is re-discovered at most once per
    `min_interval_s`; events arriving in between are owed and followed up by a later tick, even
    one that receives nothing. Run keys are derived from the followed-up event ids (the first
    `MAX_OWED_IDS` of them), so a re-evaluated tick requests nothing twice.
    """
    last: dict[str, float] = dict(state.get("last", {}))
    owed: dict[str, list[str]] = {n: list(ids) for n, ids in state.get("owed", {}).items()}
    owed_n: dict[str, int] = dict(state.get("owed_n", {}))
    for name, ids in affected.items():
        owed[name] = (owed.get(name, []) + list(ids))[:MAX_OWED_IDS]
        owed_n[name] = owed_n.get(name, 0) + len(ids)
    requests, deferred, without = [], [], []
    for name in sorted(owed):
        if name not in existing_partitions:
            without.append(name)
            owed.pop(name)
            owed_n.pop(name, None)
        elif now_s - last.get(name, float("-inf")) < min_interval_s:
            deferred.append(name)
        else:
            ids = owed.pop(name)
            requests.append((name, f"interruption-{name}-{event_digest(ids)}", owed_n.pop(name, len(ids))))
            last[name] = now_s
    last = {n: t for n, t in last.items() if now_s - t < min_interval_s}
    return RediscoveryPlan(requests, deferred, without, {"last": last, "owed": owed, "owed_n": owed_n})
