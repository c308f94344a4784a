"""spot_interruption_sensor and spot_interruption_events against moto's SQS."""

import json
from datetime import timedelta

import boto3
import dagster as dg
import pytest
from sqlalchemy import select

from spot_pipelines.assets.interruptions import spot_interruption_events
from spot_pipelines.core.interruptions import (
    Message,
    Rejected,
    StoreResult,
    drain_queue,
    eventbridge_event,
    parse_message,
)
from spot_pipelines.db.engine import session_factory
from spot_pipelines.db.interruptions import DeadLetter, SpotInterruptionEvent
from spot_pipelines.db.system_log import SystemLog
from spot_pipelines.partitions import AWS_ACCOUNTS_PARTITION
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.sensors.interruptions import (
    SpotInterruptionQueue,
    spot_interruption_events_job,
    spot_interruption_sensor,
)
from tests.support.accounts import NOW, add_account, add_instance

T = NOW - timedelta(minutes=30)
ACCOUNT = "111122223333"


def event(
    event_type="spot_interruption_warning",
    event_id="e-1",
    account=ACCOUNT,
    instance="i-0abc123def4567890",
    zone="us-east-1a",
    **kw,
) -> dict:
    return eventbridge_event(
        event_type,
        event_id=event_id,
        account=account,
        region="us-east-1",
        instance_id=instance,
        time_=T,
        zone=zone,
        **kw,
    )


@pytest.fixture
def queue(aws, monkeypatch):
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="spot-interruptions")["QueueUrl"]
    monkeypatch.setenv("SPOT_INTERRUPTION_QUEUE_URL", url)
    return sqs, url


def send(sqs, url, bodies) -> None:
    for start in range(0, len(bodies), 10):
        sqs.send_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "MessageBody": b if isinstance(b, str) else json.dumps(b)}
                for i, b in enumerate(bodies[start : start + 10])
            ],
        )


def queue_depth(sqs, url) -> int:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def tick(url_db, instance, **queue_kw):
    context = dg.build_sensor_context(
        instance=instance,
        resources={"app_db": AppDatabase(url=url_db), "interruption_queue": SpotInterruptionQueue(**queue_kw)},
    )
    return spot_interruption_sensor(context)


# --- parsing ---------------------------------------------------------------------------------


def test_parse_each_event_type():
    warning = parse_message(json.dumps(event()))
    assert warning.event_type == "spot_interruption_warning" and warning.action_or_state == "terminate"
    assert warning.availability_zone == "us-east-1a" and warning.event_time == T
    state = parse_message(json.dumps(event("state_change", zone=None, action_or_state="stopping")))
    assert state.event_type == "state_change" and state.action_or_state == "stopping"
    assert state.availability_zone is None
    rebalance = parse_message(json.dumps(event("rebalance_recommendation")))
    assert rebalance.event_type == "rebalance_recommendation" and rebalance.action_or_state is None
    # EventBridge → SNS → SQS wraps the event in a notification.
    wrapped = parse_message(json.dumps({"Type": "Notification", "Message": json.dumps(event())}))
    assert wrapped == warning


@pytest.mark.parametrize(
    "body,field",
    [
        ("not json {", "not JSON"),
        ("[1, 2]", "not an EventBridge event object"),
        (json.dumps({**event(), "detail-type": "EC2 Fleet Error"}), "detail-type"),
        (json.dumps({**event(), "account": "123"}), "account"),
        (json.dumps({**event(), "region": "mars-1"}), "region"),
        (json.dumps({**event(), "time": "yesterday"}), "time"),
        (json.dumps({**event(), "detail": {"instance-id": "vm-1"}}), "detail.instance-id"),
        (json.dumps({k: v for k, v in event().items() if k != "id"}), "id"),
    ],
)
def test_parse_rejects_with_the_field(body, field):
    parsed = parse_message(body)
    assert isinstance(parsed, Rejected) and field in parsed.reason


# --- the sensor ------------------------------------------------------------------------------


def test_sensor_records_once_dead_letters_and_requests_rediscovery(db_url, queue):
    sqs, url = queue
    account_id = add_account(db_url, "prod", ACCOUNT)
    add_instance(db_url, account_id, "i-0abc123def4567890", az_id="use1-az4", instance_type="m5.large")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(AWS_ACCOUNTS_PARTITION, ["prod"])
    send(
        sqs,
        url,
        [
            event(event_id="e-1"),
            event(event_id="e-1"),  # SQS at-least-once: the same event twice
            event("rebalance_recommendation", event_id="e-2", instance="i-0fff000000000000a"),
            event("state_change", event_id="e-3", action_or_state="shutting-down"),
            "definitely not json",
            {**event(event_id="e-4"), "detail-type": "AWS Health Event"},
            event(event_id="e-5", account="999999999999"),
        ],
    )

    result = tick(db_url, instance)

    assert queue_depth(sqs, url) == 0  # all stored (or dead-lettered), then deleted
    with session_factory(db_url)() as session:
        rows = {e.event_id: e for e in session.scalars(select(SpotInterruptionEvent))}
        letters = session.scalars(select(DeadLetter).order_by(DeadLetter.id)).all()
        logs = session.scalars(select(SystemLog).where(SystemLog.component == "spot_interruption_sensor")).all()
    assert sorted(rows) == ["e-1", "e-2", "e-3"]
    e1 = rows["e-1"]
    assert (
        e1.account_id,
        e1.aws_account_id,
        e1.region,
        e1.availability_zone,
        e1.availability_zone_id,
        e1.instance_type,
        e1.action_or_state,
    ) == (account_id, ACCOUNT, "us-east-1", "us-east-1a", "use1-az4", "m5.large", "terminate")
    assert rows["e-2"].instance_type is None and rows["e-2"].availability_zone_id is None  # not discovered yet
    assert rows["e-3"].event_type == "state_change" and rows["e-3"].action_or_state == "shutting-down"
    reasons = [letter.reason for letter in letters]
    assert len(letters) == 3
    assert any("not JSON" in r for r in reasons) and any("AWS Health Event" in r for r in reasons)
    assert any("999999999999 is not an onboarded account" in r for r in reasons)
    assert "definitely not json" in [letter.body for letter in letters]
    assert all(letter.message_id for letter in letters)
    assert len(logs) == 1 and logs[0].level == "WARNING"
    assert logs[0].details["recorded"] == 3 and logs[0].details["duplicates"] == 1
    assert logs[0].details["dead_letter_reasons"] == {"not_json": 1, "unknown_event_type": 1, "unknown_account": 1}

    discovery = [r for r in result.run_requests if r.job_name == "discover_accounts"]
    assert [r.partition_key for r in discovery] == ["prod"]
    assert discovery[0].run_key.startswith("interruption-prod-")
    assert discovery[0].tags["spot_pipelines/trigger"] == "spot_interruption"
    assert [r.job_name for r in result.run_requests if r not in discovery] == [spot_interruption_events_job.name]

    # The same event redelivered later is a duplicate: nothing recorded, nothing requested.
    send(sqs, url, [event(event_id="e-1"), event(event_id="e-3")])
    again = tick(db_url, instance)
    assert not again.run_requests and "no new events (2 duplicates" in again.skip_reason.skip_message
    assert queue_depth(sqs, url) == 0
    with session_factory(db_url)() as session:
        assert len(session.scalars(select(SpotInterruptionEvent)).all()) == 3


def test_run_keys_are_deterministic_per_event_set(sqlite_url, queue):
    sqs, url = queue
    add_account(sqlite_url, "prod", ACCOUNT)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(AWS_ACCOUNTS_PARTITION, ["prod"])
    send(sqs, url, [event(event_id="a"), event(event_id="b")])
    first = tick(sqlite_url, instance).run_requests[0].run_key
    from spot_pipelines.core.interruptions import event_digest

    assert first == f"interruption-prod-{event_digest(['b', 'a'])}"


def test_rediscovery_is_throttled_per_account_and_owed_events_are_followed_up(sqlite_url, queue):
    sqs, url = queue
    add_account(sqlite_url, "prod", ACCOUNT)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(AWS_ACCOUNTS_PARTITION, ["prod"])

    def run(cursor, **kw):
        context = dg.build_sensor_context(
            instance=instance,
            cursor=cursor,
            resources={"app_db": AppDatabase(url=sqlite_url), "interruption_queue": SpotInterruptionQueue(**kw)},
        )
        return spot_interruption_sensor(context)

    send(sqs, url, [event(event_id="a")])
    first = run(None)
    assert [r.job_name for r in first.run_requests] == ["discover_accounts", spot_interruption_events_job.name]
    send(sqs, url, [event(event_id="b"), event("state_change", event_id="c")])
    second = run(first.cursor)  # within the interval: recorded, but no second scan of the account
    assert [r.job_name for r in second.run_requests] == [spot_interruption_events_job.name]
    assert json.loads(second.cursor)["owed"] == {"prod": ["b", "c"]}
    third = run(second.cursor, rediscovery_min_interval_s=0)  # the interval passed, the queue is empty
    [request] = third.run_requests
    from spot_pipelines.core.interruptions import event_digest

    assert request.partition_key == "prod" and request.run_key == f"interruption-prod-{event_digest(['b', 'c'])}"
    assert request.tags["spot_pipelines/events"] == "2"
    assert json.loads(third.cursor)["owed"] == {}
    assert not run(third.cursor, rediscovery_min_interval_s=0).run_requests  # nothing owed any more


def test_a_corrupt_cursor_is_ignored(sqlite_url, queue):
    sqs, url = queue
    add_account(sqlite_url, "prod", ACCOUNT)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(AWS_ACCOUNTS_PARTITION, ["prod"])
    send(sqs, url, [event(event_id="a")])
    context = dg.build_sensor_context(
        instance=instance,
        cursor="not json",
        resources={"app_db": AppDatabase(url=sqlite_url), "interruption_queue": SpotInterruptionQueue()},
    )
    assert [r.partition_key for r in spot_interruption_sensor(context).run_requests] == ["prod", None]


def test_affected_account_without_partition_is_reported_not_requested(sqlite_url, queue):
    sqs, url = queue
    add_account(sqlite_url, "fresh", ACCOUNT, status="connected")
    send(sqs, url, [event()])
    result = tick(sqlite_url, dg.DagsterInstance.ephemeral())
    assert [r.job_name for r in result.run_requests] == [spot_interruption_events_job.name]
    with session_factory(sqlite_url)() as session:
        log = session.scalars(select(SystemLog)).one()
    assert log.details["accounts_without_partition"] == ["fresh"] and log.level == "WARNING"
    assert json.loads(result.cursor)["owed"] == {}  # its first discovery (onboarding) covers the events


def test_no_queue_configured_skips(sqlite_url, monkeypatch):
    monkeypatch.delenv("SPOT_INTERRUPTION_QUEUE_URL", raising=False)
    result = tick(sqlite_url, dg.DagsterInstance.ephemeral())
    assert "SPOT_INTERRUPTION_QUEUE_URL is not set" in result.skip_reason.skip_message


def test_missing_queue_is_visible_not_a_crash(sqlite_url, aws):
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/does-not-exist"
    result = tick(sqlite_url, dg.DagsterInstance.ephemeral(), queue_url=url)
    assert "SQS error" in result.skip_reason.skip_message
    with session_factory(sqlite_url)() as session:
        log = session.scalars(select(SystemLog)).one()
    assert log.level == "ERROR" and "NonExistentQueue" in log.message


def test_messages_are_not_deleted_when_storing_fails(queue):
    sqs, url = queue
    send(sqs, url, [event(event_id=f"e-{i}") for i in range(25)])

    def store(_messages):
        raise RuntimeError("database is down")

    with pytest.raises(RuntimeError):
        drain_queue(sqs, url, store, chunk=10, visibility_timeout=0)
    assert queue_depth(sqs, url) == 25


def test_an_sqs_error_mid_drain_keeps_what_was_stored(queue):
    """A receive that fails after some messages arrived: those are stored, deleted, reported."""
    sqs, url = queue
    send(sqs, url, [event(event_id=f"e-{i}") for i in range(30)])
    calls = {"n": 0}
    real_receive = sqs.receive_message

    def flaky_receive(**kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            from botocore.exceptions import EndpointConnectionError

            raise EndpointConnectionError(endpoint_url=url)
        return real_receive(**kwargs)

    sqs.receive_message = flaky_receive
    stored: list[Message] = []

    def store(messages):
        stored.extend(messages)
        return StoreResult(recorded=len(messages))

    result = drain_queue(sqs, url, store, workers=1, chunk=100)
    assert result.stopped_by == "error" and "EndpointConnectionError" in result.error
    assert result.received == len(stored) == 20 and result.deleted == 20
    assert queue_depth(sqs, url) == 10


def test_drain_respects_budget_and_limit(queue):
    sqs, url = queue
    send(sqs, url, [event(event_id=f"e-{i}") for i in range(30)])
    stored: list[Message] = []

    def store(messages):
        stored.extend(messages)
        return StoreResult(recorded=len(messages))

    limited = drain_queue(sqs, url, store, max_messages=10, chunk=5)
    assert limited.stopped_by == "message limit" and limited.received == 10 and limited.deleted == 10
    ticks = iter(range(0, 1000, 10))
    budgeted = drain_queue(sqs, url, store, time_budget_s=15, clock=lambda: next(ticks), workers=1)
    assert budgeted.stopped_by == "time budget" and budgeted.received == 10
    rest = drain_queue(sqs, url, store)  # 4 concurrent receives: SQS (and moto) may hand one message out twice
    assert rest.stopped_by == "queue empty" and rest.received >= 10 and queue_depth(sqs, url) == 0
    assert len({m.message_id for m in stored}) == 30  # at least once each, none lost


def test_long_polling_stores_an_event_sent_mid_tick_as_it_arrives(queue):
    """Caught up, the drain waits on SQS (never past its budget) and stores an event as it arrives."""
    import threading
    import time

    sqs, url = queue
    waits: list[int] = []
    real_receive = sqs.receive_message

    def spying_receive(**kwargs):
        waits.append(kwargs["WaitTimeSeconds"])
        return real_receive(**kwargs)

    sqs.receive_message = spying_receive
    stored_at: dict[str, float] = {}

    def store(messages):
        stored_at.update((json.loads(m.body)["id"], time.monotonic()) for m in messages)
        return StoreResult(recorded=len(messages))

    sent_at = {}

    def producer():
        for event_id in ("late-1", "late-2"):
            time.sleep(1.0)
            sent_at[event_id] = time.monotonic()
            send(sqs, url, [event(event_id=event_id)])

    send(sqs, url, [event(event_id="early")])
    thread = threading.Thread(target=producer)
    started = time.monotonic()
    thread.start()
    # A budget well past the producer's 2 s, so a loaded machine still sees both late events mid-tick.
    budget = 8
    result = drain_queue(sqs, url, store, time_budget_s=budget, wait_time_s=2, workers=2)
    thread.join()
    elapsed = time.monotonic() - started

    assert set(stored_at) == {"early", "late-1", "late-2"} and result.deleted == 3
    # Stored while the long poll was waiting (a short-poll loop sleeping wait_time_s would lag by up to 2 s).
    assert all(stored_at[e] - sent_at[e] < 1.0 for e in ("late-1", "late-2")), (stored_at, sent_at)
    assert result.stopped_by == "time budget" and budget - 2 <= elapsed < budget + 0.5  # kept waiting, within budget
    assert max(waits) == 2 and 0 in waits  # the backlog short-polled, then long polls
    assert queue_depth(sqs, url) == 0


def test_long_poll_wait_beyond_sqs_limit_is_refused(queue):
    sqs, url = queue
    with pytest.raises(ValueError, match="wait_time_s"):
        drain_queue(sqs, url, lambda m: StoreResult(), wait_time_s=21)


def test_sensor_long_polls_within_its_budget(sqlite_url, queue):
    import threading
    import time

    sqs, url = queue
    add_account(sqlite_url, "prod", ACCOUNT)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(AWS_ACCOUNTS_PARTITION, ["prod"])
    timer = threading.Timer(1.0, send, (sqs, url, [event(event_id="mid-tick")]))
    started = time.monotonic()
    timer.start()
    # A budget with room for a loaded 2-core runner: the event sent after 1 s must still land inside it.
    result = tick(sqlite_url, instance, wait_time_s=2, time_budget_s=6)
    timer.join()
    assert time.monotonic() - started < 8
    assert [r.partition_key for r in result.run_requests] == ["prod", None]
    with session_factory(sqlite_url)() as session:
        assert [e.event_id for e in session.scalars(select(SpotInterruptionEvent))] == ["mid-tick"]
        assert session.scalars(select(SystemLog)).one().details["stopped_by"] == "time budget"


def test_events_asset_summarises_the_table(sqlite_url, queue):
    sqs, url = queue
    account_id = add_account(sqlite_url, "prod", ACCOUNT)
    add_instance(sqlite_url, account_id, "i-0abc123def4567890")
    send(sqs, url, [event(event_id="e-1"), event("rebalance_recommendation", event_id="e-2"), "junk"])
    tick(sqlite_url, dg.DagsterInstance.ephemeral())
    result = dg.materialize([spot_interruption_events], resources={"app_db": AppDatabase(url=sqlite_url)})
    assert result.success
    meta = result.asset_materializations_for_node("spot_interruption_events")[0].metadata
    assert meta["dagster/row_count"].value == 2
    assert meta["dead_letters_24h"].value == 1
    assert "use1-az4" in {r.data["availability_zone_id"] for r in meta["warnings_7d_by_pool"].records}
