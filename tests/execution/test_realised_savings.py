"""realised_savings: hours since execution × (previous − realised hourly cost), per account per month; a missing
price is skipped with a reason, never priced at zero."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from spot_pipelines.assets.execution import realised_savings
from spot_pipelines.core.clock import utcnow
from spot_pipelines.core.execution import month_slices, savings_ledger
from spot_pipelines.db import optimization as opt
from spot_pipelines.db.engine import transaction
from spot_pipelines.resources.app_database import AppDatabase
from tests.commitments.test_cli_net import rec
from tests.support.accounts import add_account


def month_start(t):
    return t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def test_an_interval_across_a_month_boundary_is_split_by_the_hour():
    boundary = month_start(utcnow())
    start, end = boundary - timedelta(hours=5), boundary + timedelta(hours=7)
    assert month_slices(start, end) == [(f"{start:%Y-%m}", 5.0), (f"{boundary:%Y-%m}", 7.0)]


def test_ledger_per_account_and_month_and_skips_missing_prices():
    now = month_start(utcnow()) + timedelta(days=2)
    executed = [
        {
            "id": 1,
            "account_id": 1,
            "executed_at": now - timedelta(days=3),
            "previous_hourly_usd": 0.2,
            "realised_hourly_usd": 0.05,
        },
        # its replacement ended 10 hours after execution: only those count
        {
            "id": 2,
            "account_id": 1,
            "executed_at": now - timedelta(hours=20),
            "ended_at": now - timedelta(hours=10),
            "previous_hourly_usd": 0.1,
            "realised_hourly_usd": 0.04,
        },
        {
            "id": 3,
            "account_id": 2,
            "executed_at": now - timedelta(hours=1),
            "previous_hourly_usd": 0.1,
            "realised_hourly_usd": None,
        },
    ]
    rows, skipped = savings_ledger(executed, now)
    this, last = f"{now:%Y-%m}", f"{now - timedelta(days=3):%Y-%m}"
    # id 1 ran 24 h last month and 48 h this month; id 2 ran 10 h this month
    assert rows == [
        {
            "account_id": 1,
            "month": last,
            "recommendations": 1,
            "hours": 24.0,
            "realised_savings_usd": round(24 * 0.15, 2),
        },
        {
            "account_id": 1,
            "month": this,
            "recommendations": 2,
            "hours": 58.0,
            "realised_savings_usd": round(48 * 0.15 + 10 * 0.06, 2),
        },
    ]
    assert skipped == [{"id": 3, "reason": "no stored realised hourly cost"}]


def test_the_asset_reports_the_ledger_and_the_total(sqlite_url):
    account = add_account(sqlite_url, "prod")
    with transaction(sqlite_url) as session:
        opt.write_recommendations(
            session,
            [rec(account, "i-a", list_usd=90.0, net_usd=80.0, covered=0.0, monthly=80.0)],
            generated_at=utcnow(),
        )
        [row] = opt.list_recommendations(session)
        row.status, row.executed_at, row.replacement_instance_id = opt.EXECUTED, utcnow() - timedelta(hours=3), "i-new"
        row.realised_hourly_usd = 0.05
    result = dg.materialize([realised_savings], resources={"app_db": AppDatabase(url=sqlite_url)})
    meta = result.asset_materializations_for_node("realised_savings")[0].metadata
    expected = 3 * (0.192 - 0.05)  # the stored on-demand price of rec() minus the realised price
    assert abs(meta["realised_savings_usd"].value - expected) < 0.02
    [ledger] = [r.data for r in meta["ledger"].records]
    assert ledger["account_id"] == "prod" and ledger["recommendations"] == 1
