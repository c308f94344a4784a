"""The bundled data snapshots (spot_pipelines/data, see data/PROVENANCE.md): located and read in one place."""

from __future__ import annotations

import csv
import json
from functools import cache
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
BUNDLED_ADVISOR = DATA_DIR / "spot-advisor-data.json"
BUNDLED_ON_DEMAND = DATA_DIR / "on-demand-prices-us-east-1.csv"


@cache
def bundled_advisor() -> dict:
    """The bundled Spot Advisor document, parsed once (shared: callers must not mutate it)."""
    return json.loads(BUNDLED_ADVISOR.read_bytes())


@cache
def bundled_on_demand_rows() -> tuple[dict[str, str], ...]:
    """The bundled Price List snapshot's CSV rows, as strings (region, instance_type, operating_system, usd_per_hour)."""
    with open(BUNDLED_ON_DEMAND, newline="") as handle:
        return tuple(csv.DictReader(handle))
