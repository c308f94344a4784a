"""Query results as DataFrames, for the readers that feed core/ (each domain's db module has its own)."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import Connection


def read_frame(conn: Connection, stmt) -> pd.DataFrame:
    result = conn.execute(stmt)
    return pd.DataFrame(result.fetchall(), columns=list(result.keys()))
