"""aws_commitments: each onboarded account's Reserved Instances and Savings Plans, one partition per account."""

import dagster as dg
from botocore.exceptions import BotoCoreError, ClientError

from spot_pipelines.assets import aws_failure, preview_table
from spot_pipelines.core.clock import utcnow
from spot_pipelines.core.commitments import fetch_commitments
from spot_pipelines.core.discovery import resolve_regions
from spot_pipelines.core.errors import SpotPipelinesError
from spot_pipelines.db import accounts
from spot_pipelines.db import commitments as commitment_rows
from spot_pipelines.partitions import aws_accounts_partitions
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.resources.credential_vault import AWS_RETRY_POLICY, CredentialVault

RI_PREVIEW = ["commitment_id", "region", "scope", "availability_zone_id", "instance_type", "instance_count", "end"]
SP_PREVIEW = ["commitment_id", "plan_type", "region", "instance_family", "commitment_usd_per_hour", "end"]


@dg.asset(
    partitions_def=aws_accounts_partitions,
    group_name="discovery",
    kinds={"aws", "ec2"},
    owners=["team:optimization"],
    pool="aws_api",
    retry_policy=AWS_RETRY_POLICY,
    description=(
        "Active Reserved Instances (every enabled region) and Savings Plans with their EC2 rates of one account, "
        "plus 30-day utilization where Cost Explorer answers; one snapshot per refresh (history kept). What the "
        "account's role may not read is stated in `gaps`, never taken as 'no commitments'."
    ),
)
def aws_commitments(
    context: dg.AssetExecutionContext, app_db: AppDatabase, vault: CredentialVault
) -> dg.MaterializeResult:
    name = context.partition_key
    with app_db.transaction() as session:
        account = accounts.by_name(session, name)
    if account is None or account.status == accounts.PENDING:
        raise dg.Failure(
            description=f"account {name!r} is gone or still pending (credentials never validated); nothing read",
            allow_retries=False,
        )
    now = utcnow()
    try:
        aws = vault.session_for(account)
        regions = account.regions or resolve_regions(vault.client(aws, "ec2"), None)[0]
        fetched = fetch_commitments(
            lambda service, region: vault.client(aws, service, region), regions, account_id=account.id, now=now
        )
    except (SpotPipelinesError, ClientError, BotoCoreError) as exc:
        raise aws_failure(f"reading the commitments of account {name!r} failed", exc) from None
    with app_db.transaction() as session:
        refresh_id = commitment_rows.write_refresh(session, account.id, fetched, fetched_at=now)
    for gap in fetched.gaps:
        context.log.warning(f"account {name!r}: {gap}")
    return dg.MaterializeResult(metadata=_metadata(fetched, refresh_id))


def _metadata(fetched, refresh_id: int) -> dict:
    return {
        "dagster/row_count": len(fetched.reserved) + len(fetched.savings_plans),
        "refresh_id": dg.MetadataValue.text(str(refresh_id)),  # an id: text, not a Plots series
        "reserved_instances": len(fetched.reserved),
        "savings_plans": len(fetched.savings_plans),
        "savings_plan_rates": len(fetched.rates),
        "savings_plan_commitment_usd_per_hour": round(
            sum(p["commitment_usd_per_hour"] for p in fetched.savings_plans), 4
        ),
        "utilization_pct": dg.MetadataValue.json(fetched.utilization),
        "gaps": dg.MetadataValue.json(fetched.gaps),
        "skipped": dg.MetadataValue.json(fetched.skipped),
        "api_calls": fetched.api_calls,
        "reserved_instances_preview": preview_table(fetched.reserved, RI_PREVIEW),
        "savings_plans_preview": preview_table(fetched.savings_plans, SP_PREVIEW),
    }


commitments_job = dg.define_asset_job(
    "refresh_commitments",
    selection=[aws_commitments],
    partitions_def=aws_accounts_partitions,
    description="Read one account's Reserved Instances and Savings Plans (one partition per account).",
)
