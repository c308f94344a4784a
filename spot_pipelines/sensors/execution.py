"""execution_reconciler_sensor: settles recommendations a killed run left `executing`.

A run killed between its first mutating call and its final write leaves the row `executing`. Past
STUCK_AFTER (well beyond the replacement's health timeout) this sensor asks EC2 what happened, through
the recommendation tag every replacement carries, and writes it: `executed` (the replacement runs, the
source is retired), or `failed` saying what runs and what an operator must do. Read calls only, each an
audit row; a settled row is no longer `executing`, so a second tick changes nothing.
"""

from datetime import timedelta

import dagster as dg

from spot_pipelines.core.clock import utcnow
from spot_pipelines.core.errors import CredentialError
from spot_pipelines.core.execution import reconcile
from spot_pipelines.db import execution as execution_rows
from spot_pipelines.db.accounts import Account
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.resources.credential_vault import CredentialVault

STUCK_AFTER = timedelta(minutes=30)


@dg.sensor(
    name="execution_reconciler_sensor",
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Settles recommendations left `executing` by a killed run, from what EC2 says.",
)
def execution_reconciler_sensor(context: dg.SensorEvaluationContext, app_db: AppDatabase, vault: CredentialVault):
    with app_db.transaction() as session:
        stuck = [
            (
                rec.id,
                execution_rows.recommendation_view(rec, session.get(Account, rec.account_id)),
                session.get(Account, rec.account_id),
            )
            for rec in execution_rows.stuck_executing(session, utcnow() - STUCK_AFTER)
        ]
    settled = []
    for rec_id, view, account in stuck:
        try:
            ec2 = vault.client(vault.session_for(account), "ec2", view.region)
        except CredentialError as exc:
            context.log.warning(f"recommendation {rec_id}: not reconciled yet: {exc}")
            continue
        outcome = reconcile(ec2, view, record=lambda call, rid=rec_id: _record(app_db, rid, call))
        if outcome.status == "executing":  # EC2 did not answer: try again next tick
            context.log.warning(f"recommendation {rec_id}: {outcome.error}")
            continue
        with app_db.transaction() as session:
            execution_rows.record_outcome(session, rec_id, outcome)
        settled.append(f"{rec_id}: {outcome.status}")
    return dg.SkipReason(f"settled {', '.join(settled)}" if settled else f"{len(stuck)} stuck, none settled")


def _record(app_db: AppDatabase, rec_id: int, call) -> None:
    with app_db.transaction() as session:
        execution_rows.record_call(session, rec_id, "execution_reconciler_sensor", False, call)
