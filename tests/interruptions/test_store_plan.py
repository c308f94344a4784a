"""The decisions of storing a batch (core.interruptions.plan_store), without a database."""

import json

from spot_pipelines.core.clock import utcnow
from spot_pipelines.core.interruptions import Message, plan_store, split
from tests.interruptions.test_interruptions import ACCOUNT, event

OTHER = "444455556666"
INSTANCE = "i-0abc123def4567890"


def msg(n: int, body) -> Message:
    return Message(f"m-{n}", f"r-{n}", body if isinstance(body, str) else json.dumps(body))


def test_plan_store_dedupes_dead_letters_enriches_and_names_affected_accounts():
    received_at = utcnow()
    batch = split(
        [
            msg(1, event(event_id="new", zone=None)),
            msg(2, event(event_id="new", zone=None)),
            msg(3, event(event_id="seen")),
            msg(4, event(event_id="stranger", account=OTHER)),
            msg(5, "not json"),
        ]
    )
    owners = {ACCOUNT: [(7, "prod"), (9, "prod-again")]}
    instances = {(9, INSTANCE): ("us-east-1b", "use1-az2", "m5.large")}
    plan = plan_store(batch, owners, {"seen"}, instances, received_at=received_at)

    [row] = plan.rows
    assert (row["event_id"], row["account_id"], row["received_at"]) == ("new", 7, received_at)
    # Enriched from whichever owner's inventory knows the instance; the event's own zone is absent here.
    assert (row["availability_zone"], row["availability_zone_id"], row["instance_type"]) == (
        "us-east-1b",
        "use1-az2",
        "m5.large",
    )
    assert plan.result.recorded == 1 and plan.result.duplicates == 2  # one in the batch, one already stored
    assert plan.result.affected_accounts == {"prod": ["new"], "prod-again": ["new"]}
    assert [m.message_id for m, _ in plan.rejected] == ["m-5", "m-4"]
    assert plan.result.dead_lettered == 2
    assert plan.result.dead_letter_reasons == {"not_json": 1, "unknown_account": 1}


def test_plan_store_without_inventory_keeps_the_events_own_zone():
    batch = split([msg(1, event(event_id="e-9", zone="us-east-1c"))])
    [row] = plan_store(batch, {ACCOUNT: [(7, "prod")]}, set(), {}, received_at=utcnow()).rows
    assert (row["availability_zone"], row["availability_zone_id"], row["instance_type"]) == ("us-east-1c", None, None)
