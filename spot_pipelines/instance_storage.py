"""Dagster instance storage chosen by the environment: Postgres when DAGSTER_PG_URL or
DAGSTER_PG_* is set, embedded SQLite under $DAGSTER_HOME otherwise.

`dagster.yaml` cannot branch on the environment, so it names this class as `storage: custom`.
Why the private imports below stay (checked against dagster 1.13):
- `storage: postgres:` with `postgres_url: {env: DAGSTER_PG_URL}` cannot fall back: an `{env: ...}`
  value whose variable is unset is a load error (dagster/_config/source.py `_ensure_env_variable`),
  and StringSource has no default, so one yaml can never mean "SQLite when unset".
- A DAGSTER_HOME-selected yaml, or two yaml variants picked by the Makefile/deploy, moves the choice
  from DAGSTER_PG_* (the documented contract, ARCHITECTURE.md "Configuration") to whoever copies the
  file, and every command that copies the one dagster.yaml (make, the demo, the tests) would pick wrong.
- `storage: custom` needs a ConfigurableClass that is a DagsterStorage; neither is exported by
  `dagster` (only `dagster._serdes` and `dagster._core.storage` define them).
"""

from __future__ import annotations

import os
from urllib.parse import quote

import dagster as dg
from dagster._core.storage.base_storage import DagsterStorage
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage
from dagster._serdes import ConfigurableClass, ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage

from spot_pipelines.settings import dagster_home


def dagster_pg_url(environ: os._Environ[str] | dict[str, str] = os.environ) -> str | None:
    """`DAGSTER_PG_URL`, or one built from DAGSTER_PG_HOST/PORT/USER/PASSWORD/DB."""
    url = environ.get("DAGSTER_PG_URL")
    if not url and environ.get("DAGSTER_PG_HOST"):
        user = quote(environ.get("DAGSTER_PG_USER", "postgres"), safe="")
        password = environ.get("DAGSTER_PG_PASSWORD")
        auth = f"{user}:{quote(password, safe='')}" if password else user
        url = (
            f"postgresql://{auth}@{environ['DAGSTER_PG_HOST']}:{environ.get('DAGSTER_PG_PORT', '5432')}"
            f"/{environ.get('DAGSTER_PG_DB', 'dagster')}"
        )
    if not url:
        return None
    # SQLAlchemy 2.1 no longer defaults a driver for dagster-postgres: name psycopg2.
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix) :]
    return url


class EnvSelectedStorage(DagsterStorage, ConfigurableClass):
    def __init__(self, base_dir: str | None = None, inst_data: ConfigurableClassData | None = None):
        self._inst_data = inst_data
        pg_url = dagster_pg_url()
        self.backend = "postgres" if pg_url else "sqlite"
        if pg_url:
            self._inner: DagsterStorage = DagsterPostgresStorage(postgres_url=pg_url)
        else:
            self._inner = DagsterSqliteStorage.from_local(base_dir or str(dagster_home() / "storage"))
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict:
        return {"base_dir": dg.Field(dg.StringSource, is_required=False)}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: dict) -> EnvSelectedStorage:
        return cls(base_dir=config_value.get("base_dir"), inst_data=inst_data)

    def register_instance(self, instance) -> None:
        super().register_instance(instance)
        self._inner.register_instance(instance)

    @property
    def event_log_storage(self):
        return self._inner.event_log_storage

    @property
    def run_storage(self):
        return self._inner.run_storage

    @property
    def schedule_storage(self):
        return self._inner.schedule_storage

    def dispose(self) -> None:
        self._inner.dispose()
