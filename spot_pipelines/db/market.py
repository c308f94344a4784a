"""Market data tables: spot price history, on-demand prices, the Spot Advisor and the type catalog.

Models, readers and writers of the market-data domain. The tables are created by migration 0002.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Boolean, Date, Float, Index, Integer, PrimaryKeyConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from spot_pipelines.db.base import Base, UTCDateTime

__all__ = ["InstanceTypeSpec", "OnDemandPrice", "SpotAdvisorEntry", "SpotPrice"]


class SpotPrice(Base):
    """One spot price change of (AZ ID, type, product), partitioned by UTC `day`.

    `is_day_open` rows carry the price in force at the day's 00:00 UTC (the last change before the
    day, as AWS returns it): `ts` is then the day's midnight, so every day is self-contained.
    """

    __tablename__ = "spot_price_history"

    day: Mapped[date] = mapped_column(Date, nullable=False)
    ts: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    region: Mapped[str] = mapped_column(String(32), nullable=False)
    availability_zone: Mapped[str] = mapped_column(String(32), nullable=False)
    availability_zone_id: Mapped[str] = mapped_column(String(32), nullable=False)
    instance_type: Mapped[str] = mapped_column(String(64), nullable=False)
    product_description: Mapped[str] = mapped_column(String(64), nullable=False)
    price: Mapped[float] = mapped_column(Float, nullable=False)
    is_day_open: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)

    __table_args__ = (
        PrimaryKeyConstraint("availability_zone_id", "instance_type", "product_description", "ts",
                             name="pk_spot_price_history"),
        Index("ix_spot_price_history_type_az_ts", "instance_type", "availability_zone_id", "ts"),
        Index("ix_spot_price_history_day", "day"),
    )


class OnDemandPrice(Base):
    __tablename__ = "on_demand_prices"

    region: Mapped[str] = mapped_column(String(32), primary_key=True)
    instance_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    operating_system: Mapped[str] = mapped_column(String(16), primary_key=True)  # Linux
    usd_per_hour: Mapped[float] = mapped_column(Float, nullable=False)
    source: Mapped[str] = mapped_column(String(32), nullable=False)  # price_list_api | bundled_snapshot
    as_of: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class SpotAdvisorEntry(Base):
    __tablename__ = "spot_advisor"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    region: Mapped[str] = mapped_column(String(32), primary_key=True)
    operating_system: Mapped[str] = mapped_column(String(16), primary_key=True)  # Linux | Windows
    instance_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    interruption_band: Mapped[int] = mapped_column(Integer, nullable=False)  # 0..4, the feed's `r`
    savings_pct: Mapped[int] = mapped_column(Integer, nullable=False)  # the feed's `s`
    source: Mapped[str] = mapped_column(String(32), nullable=False)  # feed | bundled_snapshot

    __table_args__ = (Index("ix_spot_advisor_type_region", "instance_type", "region"),)


class InstanceTypeSpec(Base):
    __tablename__ = "instance_types"

    instance_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    family: Mapped[str] = mapped_column(String(32), nullable=False)
    vcpu: Mapped[int | None] = mapped_column(Integer)
    memory_gib: Mapped[float | None] = mapped_column(Float)
    architecture: Mapped[str] = mapped_column(String(16), nullable=False)  # x86_64 | arm64
    source: Mapped[str] = mapped_column(String(32), nullable=False)
