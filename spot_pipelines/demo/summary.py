"""The savings summary the demo prints: the running fleet (per the inventory) and its open recommendations."""

from __future__ import annotations

from spot_pipelines.db.accounts import account_names
from spot_pipelines.db.optimization import fleet_savings
from spot_pipelines.resources.app_database import AppDatabase


def savings_summary(url: str, top: int = 5) -> str:
    with AppDatabase(url=url).transaction() as session:
        stats, open_rows = fleet_savings(session)
        names = account_names(session.connection())
    if not stats:
        return "No instances yet."
    lines = ["", "Savings summary (risk-adjusted, USD/month; executed = replacements still running)", ""]
    lines.append(
        f"  {'account':<16} {'instances':>9} {'to change':>9} {'USD/month':>11} {'executed':>8} {'saved/month':>11}"
    )
    by_name = sorted((names.get(a, str(a)), s) for a, s in stats.items())
    for name, s in by_name:
        lines.append(
            f"  {name:<16} {s['instances']:>9} {s['to_change']:>9} {s['monthly']:>11,.2f} "
            f"{s['executed']:>8} {s['executed_monthly']:>11,.2f}"
        )
    total = sum(s["monthly"] for s in stats.values())
    saved = sum(s["executed_monthly"] for s in stats.values())
    lines += [f"  {'total':<16} {'':>9} {'':>9} {total:>11,.2f} {'':>8} {saved:>11,.2f}", "", "Top recommendations:"]
    for rec in open_rows[:top]:
        lines.append(
            f"  {names.get(rec.account_id)}/{rec.instance_id} {rec.current_instance_type} → {rec.action}"
            f" (${rec.monthly_savings_usd:,.2f}/month, {rec.status}): {rec.reason}"
        )
    return "\n".join(lines) + "\n"
