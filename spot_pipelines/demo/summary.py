"""The savings summary the demo prints: the latest recommendation generation, per account."""

from __future__ import annotations

from sqlalchemy import func, select

from spot_pipelines.db.engine import session_factory
from spot_pipelines.db.models import Account
from spot_pipelines.db.optimization import SpotRecommendation


def savings_summary(url: str, top: int = 5) -> str:
    with session_factory(url)() as session:
        latest = session.scalar(select(func.max(SpotRecommendation.generated_at)))
        if latest is None:
            return "No recommendations yet."
        rows = session.execute(
            select(Account.name, SpotRecommendation)
            .join(Account, Account.id == SpotRecommendation.account_id)
            .where(SpotRecommendation.generated_at == latest)
        ).all()
    by_account: dict[str, dict[str, float]] = {}
    for name, rec in rows:
        stats = by_account.setdefault(name, {"instances": 0, "actionable": 0, "monthly": 0.0})
        stats["instances"] += 1
        if rec.monthly_savings_usd > 0:
            stats["actionable"] += 1
            stats["monthly"] += rec.monthly_savings_usd
    lines = ["", "Savings summary (risk-adjusted, latest recommendations)", ""]
    lines.append(f"  {'account':<16} {'instances':>9} {'to change':>9} {'USD/month':>11}")
    for name, stats in sorted(by_account.items()):
        lines.append(f"  {name:<16} {stats['instances']:>9} {stats['actionable']:>9} {stats['monthly']:>11,.2f}")
    total = sum(s["monthly"] for s in by_account.values())
    lines += [f"  {'total':<16} {'':>9} {'':>9} {total:>11,.2f}", "", "Top recommendations:"]
    best = sorted(rows, key=lambda r: r[1].monthly_savings_usd, reverse=True)[:top]
    for name, rec in best:
        lines.append(f"  {name}/{rec.instance_id} {rec.current_instance_type} → {rec.action}"
                     f" (${rec.monthly_savings_usd:,.2f}/month): {rec.reason}")
    return "\n".join(lines) + "\n"
