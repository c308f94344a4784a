"""Small helpers for metadata a person reads in the Dagster UI."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def counts_by(rows: Iterable[Mapping[str, Any]], key: str) -> dict[str, int]:
    return dict(sorted(Counter(str(row.get(key)) for row in rows).items()))


def records(frame: pd.DataFrame) -> list[dict]:
    """Rows with Python scalars and None for missing values (what the DB drivers want)."""
    clean = frame.astype(object).where(frame.notna(), None)
    return clean.to_dict("records")
