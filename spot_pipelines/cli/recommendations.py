"""`spot-pipelines recommendations list|show|approve|reject`: the operator's side of execution."""

from __future__ import annotations

import getpass

import click

from spot_pipelines.cli import Group
from spot_pipelines.cli.keys import encryption_key
from spot_pipelines.core.errors import SpotPipelinesError
from spot_pipelines.core.execution import ASG_TAG, node_pool_snippet, revert_group_plan
from spot_pipelines.db import execution as execution_rows
from spot_pipelines.db import optimization as opt
from spot_pipelines.db.accounts import Account
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.resources.credential_vault import CredentialVault


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


@recommendations.command("list")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(opt.REC_STATUSES),
    help="Only these statuses (repeatable). Default: proposed and approved.",
)
@click.option("--limit", default=50, show_default=True)
def list_cmd(statuses: tuple[str, ...], limit: int) -> None:
    """Recommendations, biggest net monthly savings first (net: under the account's RIs and Savings Plans)."""
    with AppDatabase().transaction() as session:
        rows = opt.list_recommendations(session, statuses or (opt.PROPOSED, opt.APPROVED), limit=limit)
        if not rows:
            click.echo("no recommendations with that status (materialize spot_recommendations first)")
            return
        columns = ["id", "status", "instance", "action", "from", "to", "net $/month", "list $/month", "covered"]
        table = [
            {
                "id": r.id,
                "status": r.status,
                "instance": r.instance_id,
                "action": r.action,
                "from": f"{r.current_instance_type} ({r.current_lifecycle})",
                "to": f"{r.target_instance_type} {r.target_market} {r.target_availability_zone_id}"
                if r.target_instance_type
                else "-",
                "net $/month": _money(r.net_monthly_savings_usd, r.monthly_savings_usd),
                "list $/month": _money(r.list_monthly_savings_usd, r.monthly_savings_usd),
                "covered": f"{r.commitment_covered_fraction:.0%}" if r.commitment_covered_fraction is not None else "-",
            }
            for r in rows
        ]
    widths = {c: max(len(c), *(len(str(t[c])) for t in table)) for c in columns}
    click.echo("  ".join(c.ljust(widths[c]) for c in columns))
    for t in table:
        click.echo("  ".join(str(t[c]).ljust(widths[c]) for c in columns))


def _money(value: float | None, fallback: float) -> str:
    """Rows written before net savings existed (migration 0007) have only the list figure."""
    return f"{value if value is not None else fallback:,.2f}"


@recommendations.command("show")
@click.argument("rec_id", type=int)
def show_cmd(rec_id: int) -> None:
    """One recommendation with its reason, candidates and audit trail."""
    with AppDatabase().transaction() as session:
        rec = session.get(opt.SpotRecommendation, rec_id)
        if rec is None:
            raise SpotPipelinesError(f"unknown recommendation id {rec_id}")
        click.echo(
            f"#{rec.id} {rec.status}: {rec.action} for {rec.instance_id} ({rec.current_instance_type}, "
            f"{rec.current_lifecycle}) — net ${_money(rec.net_monthly_savings_usd, rec.monthly_savings_usd)}/month, "
            f"list ${_money(rec.list_monthly_savings_usd, rec.monthly_savings_usd)}/month"
        )
        click.echo(f"reason: {rec.reason}")
        for c in rec.candidates:
            click.echo(
                f"  candidate {c['instance_type']} in {c['availability_zone_id']}: spot ${c['spot_price']}/h, "
                f"P(int.) {c['p_interruption']}, risk-adjusted ${c['risk_adjusted_hourly_cost']}/h"
            )
        _echo_group_plan(rec)
        if rec.error:
            click.echo(f"error: {rec.error}")
        for a in execution_rows.actions_for(session, rec.id):
            click.echo(
                f"  {a.started_at:%Y-%m-%d %H:%M:%S} {'dry-run ' if a.dry_run else ''}{a.operation} "
                f"{a.outcome}{': ' + a.error if a.error else ''}"
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
    with AppDatabase().transaction() as session:
        recs = opt.approve(session, ids, by=_operator(by))
        done = [r.id for r in recs]
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
