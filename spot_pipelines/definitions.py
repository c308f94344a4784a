"""The one Definitions object of the spot_pipelines code location."""

import dagster as dg

from spot_pipelines.assets.discovery import discovered_instances
from spot_pipelines.assets.market_data import MarketDataAPIs, market_data_assets
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.resources.credential_vault import CredentialVault
from spot_pipelines.sensors.market_schedule import daily_market_data_schedule, market_data_jobs
from spot_pipelines.sensors.onboarding import (
    account_onboarding_sensor,
    discovery_job,
    nightly_rediscovery_schedule,
)

defs = dg.Definitions(
    assets=[discovered_instances, *market_data_assets],
    jobs=[discovery_job, *market_data_jobs],
    sensors=[account_onboarding_sensor],
    schedules=[nightly_rediscovery_schedule, daily_market_data_schedule],
    resources={
        "app_db": AppDatabase(),
        "market_apis": MarketDataAPIs(),
        "vault": CredentialVault(encryption_key=dg.EnvVar("ENCRYPTION_KEY")),
    },
)
