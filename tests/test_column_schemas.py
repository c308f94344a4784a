"""Every asset that stores a table declares it (`dagster/table_name`, `dagster/column_schema`) on its definition,
each column with a description, and the declared columns are the ones the migrated database really has."""

import dagster as dg
import sqlalchemy as sa

from spot_pipelines.definitions import defs

# Stores several tables (reserved_instances, savings_plans, savings_plan_rates): one table name cannot say that;
# its materializations preview each.
# realised_savings stores none: it derives its ledger from the stored recommendations on each run.
# recommendation_backtest and spot_market_analytics also derive what they report without a table of their own.
SEVERAL_TABLES = {"aws_commitments", "realised_savings", "recommendation_backtest", "spot_market_analytics"}


def declared() -> dict[str, dict]:
    graph = defs.resolve_asset_graph()
    return {k.to_user_string(): graph.get(k).metadata for k in graph.get_all_asset_keys()}


def test_each_stored_table_is_declared_with_described_columns():
    specs = declared()
    assert {name for name, meta in specs.items() if "dagster/table_name" not in meta} == SEVERAL_TABLES
    for name, meta in specs.items():
        if name in SEVERAL_TABLES:
            continue
        schema = meta["dagster/column_schema"]
        assert isinstance(schema, dg.TableSchema), name
        undescribed = [c.name for c in schema.columns if not c.description]
        assert not undescribed, f"{name}: columns without a description: {undescribed}"


def test_declared_columns_match_the_migrated_database(sqlite_url):
    inspector = sa.inspect(sa.create_engine(sqlite_url))
    for name, meta in declared().items():
        if name in SEVERAL_TABLES:
            continue
        table = meta["dagster/table_name"]
        stored = [c["name"] for c in inspector.get_columns(table)]
        assert sorted(c.name for c in meta["dagster/column_schema"].columns) == sorted(stored), (name, table)
