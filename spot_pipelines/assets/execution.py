"""execute_approved_recommendations: act on operator-approved recommendations, dry-run by default.

Each recommendation is its own transaction: it is marked `executing` before any mutating call and
ends `executed` or `failed` (with the error) after, in the same transaction that records the new
instance in the `instances` inventory and the old one as terminated/stopped; every EC2 call (or, in
dry-run, every call it would make, with its exact parameters) is an audit row in `recommendation_actions`. With
`stop_on_failure` the rest of the batch stays `approved`, so each row always tells the truth.
"""

import dagster as dg

from spot_pipelines.assets import preview_table
from spot_pipelines.core.clock import utcnow
from spot_pipelines.core.errors import CredentialError
from spot_pipelines.core.execution import (
    ASG_TAG,
    LEDGER_COLUMNS,
    Outcome,
    RecommendationView,
    WaitPolicy,
    apply_group_plan,
    execute,
    savings_ledger,
)
from spot_pipelines.db import execution as execution_rows
from spot_pipelines.db import optimization as opt
from spot_pipelines.db.accounts import Account, account_names
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.resources.credential_vault import CredentialVault


class ExecuteConfig(dg.Config):
    dry_run: bool = True
    recommendation_ids: list[int] = []
    retire: str = "terminate"  # or "stop": keep an on-demand source's volumes around (spot sources terminate)
    health_timeout_seconds: float = 600.0  # the replacement's time to pass status and target-group checks
    health_poll_seconds: float = 15.0
    stop_on_failure: bool = True
    max_recommendations: int = 50


@dg.op(
    description="Replace each approved recommendation's instance through EC2 (dry-run: record the calls only).",
    tags={"kind": "aws"},
    pool="aws_api",
)
def execute_approved(
    context: dg.OpExecutionContext, config: ExecuteConfig, app_db: AppDatabase, vault: CredentialVault
) -> dg.Output[dict]:
    if config.retire not in ("terminate", "stop"):
        raise dg.Failure(description=f"retire: must be 'terminate' or 'stop', got {config.retire!r}")
    approved = _approved(app_db, config.recommendation_ids)
    batch = approved[: config.max_recommendations]
    summary: list[dict] = []
    failures = 0
    for rec in batch:
        outcome = _execute_one(context, app_db, vault, rec.id, config)
        summary.append(_summary_row(rec, outcome))
        if outcome.status == opt.FAILED:
            failures += 1
            context.log.error(f"recommendation {rec.id}: {outcome.error}")
            if config.stop_on_failure:
                break
    untouched = len(approved) - len(summary)
    metadata = {
        "dry_run": config.dry_run,
        "approved": len(approved),
        "processed": len(summary),
        "failed": failures,
        "left_approved": _still_approved(app_db, approved),
        "results": preview_table(summary, SUMMARY_COLUMNS),
    }
    if failures:
        raise dg.Failure(
            description=f"{failures} recommendation(s) failed; {untouched} left approved and untouched. "
            f"First error: {next(s['error'] for s in summary if s['status'] == opt.FAILED)}",
            metadata=metadata,
            allow_retries=False,
        )
    return dg.Output(value={"processed": len(summary)}, metadata=metadata)


SUMMARY_COLUMNS = ["id", "instance_id", "action", "target", "status", "verdict", "replacement", "calls", "error"]


def _summary_row(rec: opt.SpotRecommendation, outcome: Outcome) -> dict:
    return {
        "id": rec.id,
        "instance_id": rec.instance_id,
        "action": rec.action,
        "target": rec.target_instance_type,
        "status": outcome.status,
        "verdict": outcome.verdict,
        "replacement": outcome.replacement_instance_id,
        "error": outcome.error,
        "calls": len(outcome.calls),
    }


def _still_approved(app_db: AppDatabase, approved: list) -> int:
    """How many of the batch's rows are still `approved` after it (dry runs and stop_on_failure leave some)."""
    if not approved:
        return 0
    with app_db.transaction() as session:
        return len(opt.approved_for_execution(session, [r.id for r in approved]))


def _approved(app_db: AppDatabase, recommendation_ids: list[int]) -> list:
    """The approved rows to execute; every id asked for by name must be one of them."""
    with app_db.transaction() as session:
        approved = opt.approved_for_execution(session, recommendation_ids or None)
    not_ready = sorted(set(recommendation_ids) - {r.id for r in approved})
    if not_ready:
        raise dg.Failure(
            description=f"recommendation(s) {', '.join(map(str, not_ready))} are unknown or not "
            "approved; approve them with `spot-pipelines recommendations approve`",
            allow_retries=False,
        )
    return approved


def _execute_one(context, app_db: AppDatabase, vault: CredentialVault, rec_id: int, config: ExecuteConfig) -> Outcome:
    run_id, dry_run = context.run_id, config.dry_run
    with app_db.transaction() as session:
        rec = session.get(opt.SpotRecommendation, rec_id, with_for_update=True)
        if rec is None or rec.status != opt.APPROVED:  # changed since the batch was read
            return Outcome(status=rec.status if rec else "missing", error=None)
        account = session.get(Account, rec.account_id)
        view = execution_rows.recommendation_view(rec, account)
        if not dry_run:
            rec.status, rec.status_changed_at = opt.EXECUTING, utcnow()

    def record(call) -> None:
        # Each call is committed as it completes: a crash still leaves what really happened.
        with app_db.transaction() as s:
            execution_rows.record_call(s, rec_id, run_id, dry_run, call)

    try:
        outcome = _act(vault, account, view, config, record)
    except CredentialError as exc:
        outcome = Outcome(status=opt.FAILED, error=str(exc))
    except Exception as exc:  # a bug must not leave the row `executing`
        outcome = Outcome(status=opt.FAILED, error=f"unexpected {type(exc).__name__}: {exc}")
    if dry_run:
        if outcome.status == opt.FAILED:
            with app_db.transaction() as session:
                session.get(opt.SpotRecommendation, rec_id).error = f"dry-run: {outcome.error}"
        return outcome  # a dry run changes no status and no inventory
    try:
        with app_db.transaction() as session:
            execution_rows.record_outcome(session, rec_id, outcome)
    except Exception as exc:  # the EC2 calls are done: the row must say so, never claim a clean success
        outcome = Outcome(
            status=opt.FAILED,
            replacement_instance_id=outcome.replacement_instance_id,
            calls=outcome.calls,
            error=_not_recorded(outcome, exc),
        )
        with app_db.transaction() as session:  # if this fails too, the row stays `executing`
            execution_rows.record_outcome(session, rec_id, outcome)
    return outcome


def _act(vault: CredentialVault, account: Account, view: RecommendationView, config: ExecuteConfig, record) -> Outcome:
    """A group member changes its Auto Scaling group's instance mix; any other instance is replaced."""
    session = vault.session_for(account)
    if (view.group_key or "").startswith(ASG_TAG + "="):
        autoscaling = vault.client(session, "autoscaling", view.region)
        group = view.group_key.split("=", 1)[1]
        types = [view.target_instance_type, *view.candidate_types]
        return apply_group_plan(autoscaling, view, group, types, dry_run=config.dry_run, record=record)
    ec2, elbv2 = vault.client(session, "ec2", view.region), vault.client(session, "elbv2", view.region)
    wait = WaitPolicy(timeout_seconds=config.health_timeout_seconds, poll_seconds=config.health_poll_seconds)
    return execute(ec2, view, dry_run=config.dry_run, retire=config.retire, record=record, elbv2=elbv2, wait=wait)


def _not_recorded(outcome: Outcome, exc: Exception) -> str:
    # The driver's own message, first line only: SQLAlchemy's text adds the SQL and its parameters.
    text = str(getattr(exc, "orig", None) or exc)
    cause = f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
    done = (
        f"EC2 outcome: {outcome.status}"
        + (f", replacement {outcome.replacement_instance_id} launched" if outcome.replacement_instance_id else "")
        + (f" ({outcome.error})" if outcome.error else "")
    )
    return (
        f"{done}; but recording it in the database failed ({cause}): the inventory is stale until the next "
        "discovery of the account; see recommendation_actions for every call made"
    )


@dg.job(
    description="Execute operator-approved spot recommendations (dry-run unless config dry_run: false), with an "
    "audit row per EC2 call in recommendation_actions.",
    tags={"team": "optimization"},
)
def execute_approved_recommendations():
    execute_approved()


@dg.asset(
    group_name="optimization",
    kinds={"sql"},
    owners=["team:optimization"],
    deps=[dg.AssetKey("spot_recommendations")],
    description="The realised-savings ledger: per account and month, the hours each executed recommendation's "
    "replacement has run × (previous hourly cost − its realised hourly list price), both stored with the "
    "recommendation. Rows with a price missing are skipped with the reason, never priced at zero. Derived on "
    "each materialization from the stored rows (it stores no table of its own).",
)
def realised_savings(app_db: AppDatabase) -> dg.MaterializeResult:
    with app_db.transaction() as session:
        executed = execution_rows.executed_for_ledger(session)
        names = account_names(session.connection())
    rows, skipped = savings_ledger(executed, utcnow())
    named = [{**r, "account_id": names.get(r["account_id"], r["account_id"])} for r in rows]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(rows),
            "realised_savings_usd": round(sum(r["realised_savings_usd"] for r in rows), 2),  # the Plots series
            "executed_recommendations": len(executed) - len(skipped),
            "ledger": preview_table(named, LEDGER_COLUMNS, 60, LEDGER_DESCRIPTIONS),
            "skipped": preview_table(skipped, ["id", "reason"]),
        }
    )


LEDGER_DESCRIPTIONS = {
    "account_id": "account name",
    "month": "calendar month (UTC), YYYY-MM",
    "recommendations": "executed recommendations whose replacement ran in the month",
    "hours": "hours the replacements ran in the month",
    "realised_savings_usd": "USD, list prices: hours × (previous hourly cost − realised hourly cost)",
}
