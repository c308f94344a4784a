"""run_failure_alert_sensor writes a system_logs row with the run, the asset and the error."""

import dagster as dg
from sqlalchemy import select

from spot_pipelines.db.engine import session_factory
from spot_pipelines.db.models import SystemLog
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.sensors.run_failure import run_failure_alert_sensor

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@dg.asset(name="spot_price_history_demo")
def broken_asset() -> None:
    raise RuntimeError(f"DescribeSpotPriceHistory exploded with key {SECRET}")


def test_failed_run_is_logged_with_run_asset_and_redacted_error(db_url):
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([broken_asset], instance=instance, raise_on_error=False, tags={"spot_pipelines/trigger": "t"})
    assert not result.success
    run = instance.get_run_by_id(result.run_id)
    failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
    context = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alert_sensor", dagster_event=failure, dagster_instance=instance, dagster_run=run,
        resources={"app_db": AppDatabase(url=db_url)}).for_run_failure()
    run_failure_alert_sensor(context)

    with session_factory(db_url)() as session:
        row = session.scalars(select(SystemLog).where(SystemLog.component == "run_failure")).one()
    assert row.level == "ERROR" and row.run_id == result.run_id
    assert "spot_price_history_demo" in row.message and "DescribeSpotPriceHistory exploded" in row.message
    assert row.details["assets"] == ["spot_price_history_demo"]
    assert row.details["failed_steps"][0]["step"] == "spot_price_history_demo"
    assert "RuntimeError" in row.details["failed_steps"][0]["error"]
    assert row.details["tags"] == {"spot_pipelines/trigger": "t"}
    assert SECRET not in row.message + str(row.details)
