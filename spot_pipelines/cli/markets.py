"""`spot-pipelines markets show TYPE --region R`: one instance type's price analytics per AZ ID and window."""

from __future__ import annotations

import json

import click

from spot_pipelines.cli import Group
from spot_pipelines.core.clock import utcnow
from spot_pipelines.core.markets import AnalyticsConfig, price_analytics, window_start
from spot_pipelines.core.reporting import records
from spot_pipelines.db import market_data as market_rows
from spot_pipelines.db import markets as market_reads
from spot_pipelines.resources.app_database import AppDatabase


@click.group(cls=Group)
def markets() -> None:
    """Spot markets: price analytics from the stored spot_price_history."""


@markets.command("show")
@click.argument("instance_type")
@click.option("--region", required=True, help="AWS region, e.g. us-east-1.")
@click.option(
    "--below-pct",
    default=AnalyticsConfig.below_pct,
    show_default=True,
    type=float,
    help="Share of hours below this percent of on-demand.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output: every market and window, all fields.")
def show_cmd(instance_type: str, region: str, below_pct: float, as_json: bool) -> None:
    """p50/p95 price, volatility and the share of cheap hours over 7/30/90 days, per AZ ID (list prices)."""
    config = AnalyticsConfig(below_pct=below_pct)
    now = utcnow()
    with AppDatabase().connection() as conn:
        prices = market_reads.read_type_prices(
            conn, instance_type, region, window_start(now, config).date(), now.date()
        )
        on_demand = market_rows.read_on_demand(conn)
    table = price_analytics(prices, on_demand, as_of=now, config=config)
    if as_json:  # missing values (no on-demand price, one hour of history) are null, never a made-up number
        windows_end = now.replace(hour=0, minute=0, second=0, microsecond=0)
        order = ["availability_zone_id", "product_description", "window_days"]
        click.echo(
            json.dumps(
                {
                    "instance_type": instance_type,
                    "region": region,
                    "windows_end": windows_end.isoformat(),
                    "below_pct": below_pct,
                    "prices": "list USD/h",
                    "markets": records(table.sort_values(order)) if len(table) else [],
                },
                indent=2,
            )
        )
        return
    if table.empty:
        click.echo(f"no spot price history stored for {instance_type} in {region} in the last 90 days")
        return
    od = table["on_demand"].iloc[0]
    click.echo(
        f"{instance_type} in {region}, windows ending {now:%Y-%m-%d} 00:00 UTC; on-demand "
        + (f"${od:.4f}/h" if od == od else "unknown (no share below it)")
    )
    columns = ["az_id", "product", "days", "hours", "p50 $/h", "p95 $/h", "volatility", f"< {below_pct:g}% OD"]
    rows = [
        [
            r.availability_zone_id,
            r.product_description,
            r.window_days,
            r.hours,
            f"{r.p50:.4f}",
            f"{r.p95:.4f}",
            "-" if r.volatility != r.volatility else f"{r.volatility:.4f}",
            "-" if r.share_below != r.share_below else f"{r.share_below:.0%}",
        ]
        for r in table.sort_values(["availability_zone_id", "product_description", "window_days"]).itertuples()
    ]
    widths = [max(len(str(c)), *(len(str(row[i])) for row in rows)) for i, c in enumerate(columns)]
    click.echo("  ".join(str(c).ljust(w) for c, w in zip(columns, widths)))
    for row in rows:
        click.echo("  ".join(str(v).ljust(w) for v, w in zip(row, widths)))
