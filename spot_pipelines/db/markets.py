"""Readers for the price analytics (no table of their own: computed from spot_price_history on demand)."""

from __future__ import annotations

from datetime import date

import pandas as pd
from sqlalchemy import Connection, select

from spot_pipelines.db.frames import read_frame
from spot_pipelines.db.market_data import SpotPrice


def read_type_prices(conn: Connection, instance_type: str, region: str, start: date, end: date) -> pd.DataFrame:
    """One instance type's price rows in one region, days [start, end), ordered by market then time."""
    p = SpotPrice
    return read_frame(
        conn,
        select(
            p.ts, p.region, p.availability_zone, p.availability_zone_id, p.instance_type, p.product_description, p.price
        )
        .where(p.instance_type == instance_type, p.region == region, p.day >= start, p.day < end)
        .order_by(p.availability_zone_id, p.product_description, p.ts),
    )
