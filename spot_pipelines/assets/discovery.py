"""discovered_instances: every onboarded account's EC2 fleet, one partition per account."""

import dagster as dg
from botocore.exceptions import BotoCoreError, ClientError

from spot_pipelines.assets import aws_failure, preview_table, problems_check, refresh_component_health, table_metadata
from spot_pipelines.core.clock import utcnow
from spot_pipelines.core.discovery import duplicate_instance_ids, missing_az_ids, scan_account
from spot_pipelines.core.errors import SpotPipelinesError
from spot_pipelines.core.reporting import counts_by
from spot_pipelines.db import accounts
from spot_pipelines.db.discovery import Instance, write_scan
from spot_pipelines.partitions import aws_accounts_partitions
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.resources.credential_vault import AWS_RETRY_POLICY, CredentialVault
from spot_pipelines.resources.kubernetes import KubernetesResource
from spot_pipelines.resources.redis import RedisResource

INSTANCE_COLUMNS = {
    "platform": "platform details, e.g. Linux/UNIX or Windows",
    "architecture": "CPU architecture (x86_64, arm64)",
    "launch_time": "UTC launch time",
    "tags": "the instance's tags (key: value)",
    "first_seen_at": "UTC time of the first scan that saw it",
    "last_seen_at": "UTC time of the latest scan that saw it",
    "terminated_at": "UTC time a scan first missed it (marked terminated, never deleted)",
}
PREVIEW_COLUMNS = ["instance_id", "region", "availability_zone_id", "instance_type", "lifecycle", "state"]


def _fail(app_db: AppDatabase, name: str, exc: BaseException) -> dg.Failure:
    """Store the failure on the account (status `failed`) and build the run's Failure."""
    failure = aws_failure(f"discovery of account {name!r} failed", exc)
    with app_db.transaction() as session:
        account = accounts.by_name(session, name)
        if account is not None:
            accounts.record_discovery(session, account, succeeded=False, error=failure.description)
    return failure


@dg.asset(
    partitions_def=aws_accounts_partitions,
    group_name="discovery",
    metadata=table_metadata(Instance.__table__, INSTANCE_COLUMNS),
    kinds={"aws", "ec2"},
    owners=["team:platform"],
    pool="aws_api",
    retry_policy=AWS_RETRY_POLICY,
    check_specs=[
        dg.AssetCheckSpec(
            "no_duplicate_instance_ids",
            asset="discovered_instances",
            description="The account's scan returned each instance ID once.",
        ),
        dg.AssetCheckSpec(
            "az_id_present",
            asset="discovered_instances",
            description="Every instance has an AZ ID (the join key to spot markets).",
        ),
    ],
    description=(
        "EC2 instances of one onboarded AWS account across its enabled regions, keyed by "
        "(account, instance id), with AZ IDs. Vanished instances are marked terminated, never deleted."
    ),
)
def discovered_instances(
    context: dg.AssetExecutionContext,
    app_db: AppDatabase,
    vault: CredentialVault,
    redis: RedisResource,
    kubernetes: KubernetesResource,
) -> dg.MaterializeResult:
    name = context.partition_key
    account = _discoverable_account(app_db, name)
    seen_at = utcnow()
    try:
        aws = vault.session_for(account)
        scan = scan_account(lambda region: vault.client(aws, "ec2", region), account.regions)
    except (SpotPipelinesError, ClientError, BotoCoreError) as exc:
        raise _fail(app_db, name, exc) from None

    summary = _store_scan(app_db, name, scan, seen_at)
    if scan.failed_regions:
        # What the healthy regions returned is stored; the failed regions' rows are untouched.
        # Retried only when some region failed on something a retry can fix (throttling, 5xx).
        raise dg.Failure(
            description=_regions_failed(name, scan),
            metadata={"failed_regions": scan.failed_regions, "stored_instances": summary.upserted},
            allow_retries=bool(scan.retryable_regions),
        )

    context.log.info(
        f"account {name!r}: {summary.upserted} instances in {len(scan.scanned_regions)} regions, "
        f"{summary.newly_terminated} newly terminated, {len(scan.skipped_regions)} regions skipped"
    )
    try:  # operators see fresh health data now, not at the next schedule tick
        refresh_component_health(
            app_db, context.instance, redis=redis, kubernetes=kubernetes, trigger="discovery", run_id=context.run_id
        )
    except Exception as exc:  # a failing health round never fails discovery
        context.log.warning(f"component health refresh after discovery failed: {type(exc).__name__}")
    return dg.MaterializeResult(metadata=_discovery_metadata(scan, summary), check_results=_checks(scan))


def _checks(scan) -> list[dg.AssetCheckResult]:
    return [
        problems_check("no_duplicate_instance_ids", duplicate_instance_ids(scan.instances), "no duplicates"),
        problems_check("az_id_present", missing_az_ids(scan.instances), "every instance has an AZ ID"),
    ]


def _regions_failed(name: str, scan) -> str:
    failed = "; ".join(f"{region}: {cause}" for region, cause in sorted(scan.failed_regions.items()))
    return f"discovery of account {name!r} failed in {len(scan.failed_regions)} region(s): {failed}"


def _store_scan(app_db: AppDatabase, name: str, scan, seen_at):
    """Store the scan and the account's discovery outcome in one transaction; refused when the account was
    removed meanwhile."""
    with app_db.transaction() as session:
        account = accounts.by_name(session, name)
        if account is None:
            raise dg.Failure(
                description=f"account {name!r} was removed during its discovery; nothing written", allow_retries=False
            )
        summary = write_scan(session, account.id, scan.instances, scanned_regions=scan.scanned_regions, seen_at=seen_at)
        accounts.record_discovery(
            session, account, succeeded=not scan.failed_regions, error=_regions_failed(name, scan)
        )
    return summary


def _discoverable_account(app_db: AppDatabase, name: str):
    """The partition's account, refused (no retry) when it is gone or its credentials were never validated."""
    with app_db.transaction() as session:
        account = accounts.by_name(session, name)
    if account is None:
        raise dg.Failure(
            description=f"account {name!r} no longer exists (removed after this run was queued); nothing changed",
            allow_retries=False,
        )
    if account.status == accounts.PENDING:
        raise dg.Failure(
            description=f"account {name!r} is still pending: its credentials were never validated "
            "(re-run `spot-pipelines accounts add`)",
            allow_retries=False,
        )
    return account


def _discovery_metadata(scan, summary) -> dict:
    return {
        "dagster/row_count": summary.upserted,
        "newly_terminated": summary.newly_terminated,
        "regions_scanned": len(scan.scanned_regions),
        "instances_by_region": dg.MetadataValue.json(counts_by(scan.instances, "region")),
        "instances_by_lifecycle": dg.MetadataValue.json(counts_by(scan.instances, "lifecycle")),
        "skipped_regions": dg.MetadataValue.json(scan.skipped_regions),
        "api_calls": scan.api_calls,
        "preview": preview_table(scan.instances, PREVIEW_COLUMNS),
    }


discovery_job = dg.define_asset_job(
    "discover_accounts",
    selection=[discovered_instances],
    partitions_def=aws_accounts_partitions,
    description="Discover the EC2 fleet of one account (one partition per account).",
)
