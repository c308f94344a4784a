"""`spot-pipelines recommendations list|show|approve|reject`: the operator's side of execution."""

from __future__ import annotations

import getpass

import click

from spot_pipelines.cli import Group
from spot_pipelines.core.errors import SpotPipelinesError
from spot_pipelines.db import execution as execution_rows
from spot_pipelines.db import optimization as opt
from spot_pipelines.resources.app_database import AppDatabase


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
    """Recommendations, biggest monthly savings first."""
    with AppDatabase().transaction() as session:
        rows = opt.list_recommendations(session, statuses or (opt.PROPOSED, opt.APPROVED), limit=limit)
        if not rows:
            click.echo("no recommendations with that status (materialize spot_recommendations first)")
            return
        columns = ["id", "status", "instance", "action", "from", "to", "$/month"]
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
                "$/month": f"{r.monthly_savings_usd:,.2f}",
            }
            for r in rows
        ]
    widths = {c: max(len(c), *(len(str(t[c])) for t in table)) for c in columns}
    click.echo("  ".join(c.ljust(widths[c]) for c in columns))
    for t in table:
        click.echo("  ".join(str(t[c]).ljust(widths[c]) for c in columns))


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
            f"{rec.current_lifecycle}) — ${rec.monthly_savings_usd:,.2f}/month"
        )
        click.echo(f"reason: {rec.reason}")
        for c in rec.candidates:
            click.echo(
                f"  candidate {c['instance_type']} in {c['availability_zone_id']}: spot ${c['spot_price']}/h, "
                f"P(int.) {c['p_interruption']}, risk-adjusted ${c['risk_adjusted_hourly_cost']}/h"
            )
        if rec.error:
            click.echo(f"error: {rec.error}")
        for a in execution_rows.actions_for(session, rec.id):
            click.echo(
                f"  {a.started_at:%Y-%m-%d %H:%M:%S} {'dry-run ' if a.dry_run else ''}{a.operation} "
                f"{a.outcome}{': ' + a.error if a.error else ''}"
            )


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
