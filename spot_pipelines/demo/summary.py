"""The savings summary the demo prints: the running fleet (per the inventory) and its open recommendations."""

from __future__ import annotations

from spot_pipelines.db.accounts import account_names
from spot_pipelines.db.optimization import covered_stays, fleet_savings
from spot_pipelines.resources.app_database import AppDatabase


def savings_summary(url: str, top: int = 5) -> str:
    with AppDatabase(url=url).transaction() as session:
        stats, open_rows = fleet_savings(session)
        names = account_names(session.connection())
        kept = covered_stays(session)
    if not stats:
        return "No instances yet."
    lines = [
        "",
        "Savings summary (risk-adjusted, USD/month; net = under the RIs and Savings Plans, list = against list "
        "on-demand prices; executed = replacements still running)",
        "",
    ]
    lines.append(
        f"  {'account':<16} {'instances':>9} {'to change':>9} {'net/month':>11} {'list/month':>11} {'executed':>8} "
        f"{'saved/month':>11}"
    )
    listed: dict[int, float] = {}
    for rec in open_rows:
        listed[rec.account_id] = listed.get(rec.account_id, 0.0) + (
            rec.list_monthly_savings_usd if rec.list_monthly_savings_usd is not None else rec.monthly_savings_usd
        )
    by_name = sorted((names.get(a, str(a)), a, s) for a, s in stats.items())
    for name, a, s in by_name:
        lines.append(
            f"  {name:<16} {s['instances']:>9} {s['to_change']:>9} {s['monthly']:>11,.2f} {listed.get(a, 0.0):>11,.2f} "
            f"{s['executed']:>8} {s['executed_monthly']:>11,.2f}"
        )
    total = sum(s["monthly"] for s in stats.values())
    saved = sum(s["executed_monthly"] for s in stats.values())
    lines += [
        f"  {'total':<16} {'':>9} {'':>9} {total:>11,.2f} {sum(listed.values()):>11,.2f} {'':>8} {saved:>11,.2f}",
        "",
        "Top recommendations:",
    ]
    for rec in open_rows[:top]:
        lines.append(
            f"  {names.get(rec.account_id)}/{rec.instance_id} {rec.current_instance_type} → {rec.action}"
            f" (${rec.monthly_savings_usd:,.2f}/month, {rec.status}): {rec.reason}"
        )
    if kept:
        lines += ["", "Kept on-demand because a commitment covers them:"]
        lines += [
            f"  {names.get(r.account_id)}/{r.instance_id} {r.current_instance_type}: {r.reason}" for r in kept[:top]
        ]
    return "\n".join(lines) + "\n"
