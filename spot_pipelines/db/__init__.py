"""The app database: SQLAlchemy models, engines and Alembic migrations.

Every model module is imported here, so `Base.metadata` (Alembic, foreign keys between domains' tables) is
complete whichever db module a caller imports first.
"""

from spot_pipelines.db import (  # noqa: F401
    accounts,
    discovery,
    execution,
    health,
    interruptions,
    kubernetes,
    market_data,
    ml,
    optimization,
    placement,
    risk,
    system_log,
)
