"""`recommendations list` sorts by net and shows net and list side by side with the covered share."""

from __future__ import annotations

from click.testing import CliRunner

from spot_pipelines.cli import main
from spot_pipelines.core.clock import utcnow
from spot_pipelines.db import optimization as opt
from spot_pipelines.db.engine import transaction
from tests.support.accounts import add_account


def rec(account_id, iid, *, list_usd, net_usd, covered, monthly):
    return {
        "generation_id": "g1",
        "account_id": account_id,
        "instance_id": iid,
        "region": "us-east-1",
        "availability_zone_id": "use1-az1",
        "current_instance_type": "m5.xlarge",
        "current_lifecycle": "on-demand",
        "action": "move_to_spot",
        "target_instance_type": "m6i.xlarge",
        "target_availability_zone_id": "use1-az1",
        "target_market": "spot",
        "candidates": [],
        "on_demand_hourly_cost": 0.192,
        "current_hourly_cost": 0.192,
        "recommended_hourly_cost": 0.07,
        "monthly_savings_usd": monthly,
        "list_monthly_savings_usd": list_usd,
        "net_monthly_savings_usd": net_usd,
        "commitment_covered_fraction": covered,
        "reason": "r",
        "status": opt.PROPOSED,
        "generated_at": utcnow(),
    }


def test_list_is_sorted_by_net_with_list_beside_it(db_url):
    account = add_account(db_url)
    rows = [
        rec(account, "i-big-list", list_usd=90.0, net_usd=12.5, covered=1.0, monthly=12.5),
        rec(account, "i-big-net", list_usd=60.0, net_usd=60.0, covered=0.0, monthly=60.0),
        # written before migration 0007: only monthly_savings_usd (list) is known
        rec(account, "i-old", list_usd=None, net_usd=None, covered=None, monthly=30.0),
    ]
    with transaction(db_url) as session:
        opt.write_recommendations(session, rows, generated_at=utcnow())
    out = CliRunner().invoke(main, ["recommendations", "list"], env={"DATABASE_URL": db_url})
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].split() == [
        "id",
        "status",
        "account",
        "region",
        "instance",
        "action",
        "from",
        "to",
        "net",
        "$/month",
        "list",
        "$/month",
        "covered",
    ]
    order = [next(w for w in line.split() if w.startswith("i-")) for line in lines[1:]]
    assert order == ["i-big-net", "i-old", "i-big-list"]
    big_list = next(line for line in lines if "i-big-list" in line)
    assert "12.50" in big_list and "90.00" in big_list and "100%" in big_list
    old = next(line for line in lines if "i-old" in line)
    assert old.count("30.00") == 2 and old.rstrip().endswith("-")
