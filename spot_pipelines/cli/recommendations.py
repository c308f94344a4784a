"""`spot-pipelines recommendations list|show|approve|reject`: the operator's side of execution."""

from __future__ import annotations

import getpass
import json
from datetime import datetime

import click

from spot_pipelines.cli import Group
from spot_pipelines.cli.keys import encryption_key
from spot_pipelines.core.errors import SpotPipelinesError, ValidationError
from spot_pipelines.core.execution import ASG_TAG, node_pool_snippet, revert_group_plan
from spot_pipelines.db import accounts as account_rows
from spot_pipelines.db import execution as execution_rows
from spot_pipelines.db import optimization as opt
from spot_pipelines.db.accounts import Account
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.resources.credential_vault import CredentialVault
from spot_pipelines.resources.notifications import Notifier


def _operator(by: str | None) -> str:
    if by:
        return by
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


@click.group(cls=Group)
def recommendations() -> None:
    """Spot recommendations: review, approve or reject; the execute_approved_recommendations job acts."""


ACTIONS = ("move_to_spot", "diversify", "stay_on_demand", "return_to_on_demand")
LIST_COLUMNS = ["id", "status", "account", "region", "instance", "action", "from", "to", "net $/month", "list $/month"]


@recommendations.command("list")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(opt.REC_STATUSES),
    help="Only these statuses (repeatable). Default: proposed and approved.",
)
@click.option("--account", "account_names", multiple=True, help="Only these accounts, by name (repeatable).")
@click.option("--region", "regions", multiple=True, help="Only these regions (repeatable).")
@click.option("--action", "actions", multiple=True, type=click.Choice(ACTIONS), help="Only these actions (repeatable).")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output: a JSON list, every field.")
def list_cmd(statuses, account_names, regions, actions, limit: int, as_json: bool) -> None:
    """Recommendations, biggest net monthly savings first (net: under the account's RIs and Savings Plans)."""
    with AppDatabase().transaction() as session:
        names = account_rows.account_names(session.connection())
        ids = {v: k for k, v in names.items()}
        unknown = [n for n in account_names if n not in ids]
        if unknown:
            raise ValidationError("--account", f"no account named {', '.join(map(repr, unknown))}")
        rows = opt.list_recommendations(
            session,
            statuses or (opt.PROPOSED, opt.APPROVED),
            limit=limit,
            account_ids=[ids[n] for n in account_names],
            regions=regions,
            actions=actions,
        )
        found = [_as_dict(r, names.get(r.account_id)) for r in rows]
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    if not found:
        click.echo("no recommendations match (materialize spot_recommendations first, or widen the filters)")
        return
    table = [_list_row(r) for r in found]
    widths = {c: max(len(c), *(len(str(t[c])) for t in table)) for c in LIST_COLUMNS + ["covered"]}
    for line in [dict(zip(widths, widths)), *table]:
        click.echo("  ".join(str(line[c]).ljust(widths[c]) for c in widths).rstrip())


def _as_dict(rec: opt.SpotRecommendation, account: str | None, actions: list | None = None) -> dict:
    """Every stored field of a recommendation in JSON types (times as ISO 8601 UTC), with its account's name;
    with `actions`, the audit trail: who decided when, and each call the execution made or planned."""
    row = {c.name: getattr(rec, c.name) for c in opt.SpotRecommendation.__table__.columns}
    row = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}
    row["account"] = account
    if actions is not None:
        row["calls"] = [
            {
                "step": a.step,
                "operation": a.operation,
                "mode": "dry-run" if a.dry_run else "live",
                "outcome": a.outcome,
                "error": a.error,
                "run_id": a.run_id,
                "started_at": a.started_at.isoformat(),
                "finished_at": a.finished_at.isoformat() if a.finished_at else None,
            }
            for a in actions
        ]
    return row


def _list_row(r: dict) -> dict:
    return {
        "id": r["id"],
        "status": r["status"],
        "account": r["account"] or r["account_id"],
        "region": r["region"],
        "instance": r["instance_id"],
        "action": r["action"],
        "from": f"{r['current_instance_type']} ({r['current_lifecycle']})",
        "to": f"{r['target_instance_type']} {r['target_market']} {r['target_availability_zone_id']}"
        if r["target_instance_type"]
        else "-",
        "net $/month": _money(r["net_monthly_savings_usd"], r["monthly_savings_usd"]),
        "list $/month": _money(r["list_monthly_savings_usd"], r["monthly_savings_usd"]),
        "covered": f"{r['commitment_covered_fraction']:.0%}" if r["commitment_covered_fraction"] is not None else "-",
    }


def _money(value: float | None, fallback: float) -> str:
    """Rows written before net savings existed (migration 0007) have only the list figure."""
    return f"{value if value is not None else fallback:,.2f}"


@recommendations.command("show")
@click.argument("rec_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output: every field and the audit trail.")
def show_cmd(rec_id: int, as_json: bool) -> None:
    """One recommendation with its reason, candidates and audit trail (who decided when, each call, dry-run or
    live, the new instance id and its realised price)."""
    with AppDatabase().transaction() as session:
        rec = session.get(opt.SpotRecommendation, rec_id)
        if rec is None:
            raise SpotPipelinesError(f"unknown recommendation id {rec_id}")
        account = account_rows.account_names(session.connection()).get(rec.account_id)
        row = _as_dict(rec, account, execution_rows.actions_for(session, rec.id))
        if as_json:
            click.echo(json.dumps(row, indent=2))
            return
        _echo_recommendation(row)
        _echo_group_plan(rec)


def _echo_recommendation(r: dict) -> None:
    net = _money(r["net_monthly_savings_usd"], r["monthly_savings_usd"])
    click.echo(
        f"#{r['id']} {r['status']}: {r['action']} for {r['instance_id']} ({r['current_instance_type']}, "
        f"{r['current_lifecycle']}) in account {r['account']}, {r['region']} — net ${net}/month, "
        f"list ${_money(r['list_monthly_savings_usd'], r['monthly_savings_usd'])}/month"
    )
    click.echo(f"reason: {r['reason']}")
    for c in r["candidates"]:
        click.echo(
            f"  candidate {c['instance_type']} in {c['availability_zone_id']}: spot ${c['spot_price']}/h, "
            f"P(int.) {c['p_interruption']}, risk-adjusted ${c['risk_adjusted_hourly_cost']}/h"
        )
    click.echo(f"generated: {r['generated_at']}")
    if r["approved_by"]:
        verb = "rejected" if r["status"] == opt.REJECTED else "approved"
        click.echo(f"{verb} by {r['approved_by']} at {r['approved_at'] or r['status_changed_at']}")
    if r["executed_at"]:
        click.echo(f"executed: {r['executed_at']}, new instance {r['replacement_instance_id'] or '-'}")
    if r["realised_hourly_usd"] is not None:
        click.echo(f"realised price: ${r['realised_hourly_usd']}/h ({r['realised_price_basis']})")
    if r["error"]:
        click.echo(f"error: {r['error']}")
    for a in r["calls"]:
        click.echo(
            f"  {a['started_at']} {a['mode']} step {a['step']} {a['operation']} {a['outcome']}"
            f"{': ' + a['error'] if a['error'] else ''}"
        )


def _group_types(rec: opt.SpotRecommendation) -> list[str]:
    return list(dict.fromkeys([rec.target_instance_type, *(c["instance_type"] for c in rec.candidates or [])]))


def _echo_group_plan(rec: opt.SpotRecommendation) -> None:
    """A group member's plan: the Auto Scaling change the job applies, or the node-pool artifact its owner applies."""
    if not rec.group_key or not rec.target_instance_type:
        return
    tag, name = rec.group_key.split("=", 1)
    if tag == ASG_TAG:
        click.echo(
            f"group plan: UpdateAutoScalingGroup {name} MixedInstancesPolicy, overrides "
            f"{', '.join(_group_types(rec))}, price-capacity-optimized (execute_approved_recommendations applies "
            f"it, dry-run by default; `spot-pipelines recommendations revert-group {rec.id}` undoes it)"
        )
    else:
        click.echo("artifact (for the group's owner to apply):")
        click.echo(node_pool_snippet(tag, name, _group_types(rec)).rstrip())


@recommendations.command("revert-group")
@click.argument("rec_id", type=int)
@click.option("--apply", "apply_", is_flag=True, help="Make the change (default: dry-run, record the call only).")
def revert_group_cmd(rec_id: int, apply_: bool) -> None:
    """Put an Auto Scaling group's previous configuration back (from the executed plan's audit row)."""
    db = AppDatabase()
    with db.transaction() as session:
        rec = session.get(opt.SpotRecommendation, rec_id)
        if rec is None or not (rec.group_key or "").startswith(ASG_TAG + "="):
            raise SpotPipelinesError(f"recommendation {rec_id} is not an Auto Scaling group plan")
        applied = [
            a
            for a in execution_rows.actions_for(session, rec_id)
            if a.operation == "UpdateAutoScalingGroup" and a.outcome == "succeeded" and not a.dry_run
        ]
        if not applied:
            raise SpotPipelinesError(f"recommendation {rec_id}: no applied UpdateAutoScalingGroup to revert")
        previous, account = applied[0].before_state, session.get(Account, rec.account_id)
        view = execution_rows.recommendation_view(rec, account)
    vault = CredentialVault(encryption_key=encryption_key(db))
    client = vault.client(vault.session_for(account), "autoscaling", view.region)

    def record(call) -> None:
        with db.transaction() as s:
            execution_rows.record_call(s, rec_id, "cli:revert-group", not apply_, call)

    out = revert_group_plan(client, view, rec.group_key.split("=", 1)[1], previous, dry_run=not apply_, record=record)
    if out.status == opt.FAILED:
        raise SpotPipelinesError(out.error)
    click.echo(f"{'reverted' if apply_ else 'dry-run: would revert'} {rec.group_key} to {previous}")


@recommendations.command("approve")
@click.argument("ids", nargs=-1, type=int, required=True)
@click.option("--by", help="Who approves (default: the current user).")
def approve_cmd(ids: tuple[int, ...], by: str | None) -> None:
    """Approve proposed recommendations (all or nothing)."""
    operator = _operator(by)
    with AppDatabase().transaction() as session:
        done = [r.id for r in opt.approve(session, ids, by=operator)]
    Notifier().approval(done, by=operator)  # configured by env; off by default, never fails the CLI
    click.echo(
        f"approved {len(done)} recommendation(s): {', '.join(map(str, done))}. Run the "
        "execute_approved_recommendations job (dry-run by default; set dry_run: false to act)."
    )


@recommendations.command("reject")
@click.argument("ids", nargs=-1, type=int, required=True)
@click.option("--by", help="Who rejects (default: the current user).")
def reject_cmd(ids: tuple[int, ...], by: str | None) -> None:
    """Reject proposed or approved recommendations (all or nothing)."""
    with AppDatabase().transaction() as session:
        recs = opt.reject(session, ids, by=_operator(by))
        done = [r.id for r in recs]
    click.echo(f"rejected {len(done)} recommendation(s): {', '.join(map(str, done))}")
