"""`recommendations list|show --json` parse and round-trip, the filters narrow, `show` carries the audit trail."""

from __future__ import annotations

import json
from datetime import timedelta
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from spot_pipelines.cli import main
from spot_pipelines.core.clock import utcnow
from spot_pipelines.db import execution as execution_rows
from spot_pipelines.db import optimization as opt
from spot_pipelines.db.engine import transaction
from tests.commitments.test_cli_net import rec
from tests.support.accounts import add_account


@pytest.fixture
def fleet(sqlite_url):
    prod, dev = add_account(sqlite_url, "prod"), add_account(sqlite_url, "dev", aws_account_id="444455556666")
    rows = [
        rec(prod, "i-a", list_usd=50.0, net_usd=40.0, covered=0.0, monthly=40.0),
        {**rec(prod, "i-b", list_usd=20.0, net_usd=20.0, covered=0.0, monthly=20.0), "region": "eu-west-1"},
        {**rec(dev, "i-c", list_usd=0.0, net_usd=0.0, covered=1.0, monthly=0.0), "action": "stay_on_demand"},
    ]
    with transaction(sqlite_url) as session:
        opt.write_recommendations(session, rows, generated_at=utcnow())
        ids = {r.instance_id: r.id for r in opt.list_recommendations(session)}
        opt.approve(session, [ids["i-a"]], by="alice")
    return sqlite_url, ids


def cli(url, *args):
    out = CliRunner().invoke(main, ["recommendations", *args], env={"DATABASE_URL": url})
    assert out.exit_code == 0, out.output
    return out.output


def test_list_json_round_trips_through_show_and_filters_narrow(fleet):
    url, ids = fleet
    listed = json.loads(cli(url, "list", "--json"))
    assert [r["instance_id"] for r in listed] == ["i-a", "i-b", "i-c"]  # biggest net first
    assert {r["instance_id"]: r["account"] for r in listed} == {"i-a": "prod", "i-b": "prod", "i-c": "dev"}
    for row in listed:
        shown = json.loads(cli(url, "show", str(row["id"]), "--json"))
        assert shown.pop("calls") == [] and shown == row
    assert json.loads(json.dumps(listed)) == listed

    def instances(*filters):
        return [r["instance_id"] for r in json.loads(cli(url, "list", "--json", *filters))]

    assert instances("--account", "dev") == ["i-c"]
    assert instances("--region", "eu-west-1") == ["i-b"]
    assert instances("--action", "stay_on_demand") == ["i-c"]
    assert instances("--account", "prod", "--status", "approved") == ["i-a"]
    assert instances("--account", "prod", "--region", "eu-west-1", "--action", "stay_on_demand") == []
    text = cli(url, "list", "--account", "prod")
    assert text.splitlines()[0].split()[:4] == ["id", "status", "account", "region"] and "eu-west-1" in text


def test_an_unknown_account_filter_is_a_clear_error(fleet):
    url, _ = fleet
    out = CliRunner().invoke(main, ["recommendations", "list", "--account", "nope"], env={"DATABASE_URL": url})
    assert out.exit_code != 0 and "--account" in out.output and "'nope'" in out.output


def test_show_json_has_the_whole_audit_trail(fleet):
    url, ids = fleet
    started = utcnow()
    with transaction(url) as session:
        row = session.get(opt.SpotRecommendation, ids["i-a"])
        for step, (operation, dry_run) in enumerate([("RunInstances", True), ("RunInstances", False)], start=1):
            call = SimpleNamespace(
                step=step,
                operation=operation,
                params={},
                before_state=None,
                after_state=None,
                outcome="succeeded",
                error=None,
                started_at=started + timedelta(seconds=step),
                finished_at=started + timedelta(seconds=step + 1),
            )
            execution_rows.record_call(session, row.id, "run-1", dry_run, call)
        row.status, row.executed_at, row.replacement_instance_id = opt.EXECUTED, utcnow(), "i-new"
        row.realised_hourly_usd, row.realised_price_basis = 0.07, "spot price in force at launch"
    shown = json.loads(cli(url, "show", str(ids["i-a"]), "--json"))
    assert shown["approved_by"] == "alice" and shown["approved_at"] is not None
    assert shown["replacement_instance_id"] == "i-new" and shown["realised_hourly_usd"] == 0.07
    assert [(c["step"], c["mode"], c["operation"]) for c in shown["calls"]] == [
        (1, "dry-run", "RunInstances"),
        (2, "live", "RunInstances"),
    ]
    text = cli(url, "show", str(ids["i-a"]))
    assert "approved by alice at " in text and "new instance i-new" in text and "$0.07/h" in text
    assert "dry-run step 1 RunInstances succeeded" in text and "live step 2 RunInstances succeeded" in text
