import boto3
import dagster as dg
import pytest
from moto import mock_aws
from sqlalchemy import func, select

from spot_pipelines.assets.discovery import discovered_instances
from spot_pipelines.db.accounts import Account
from spot_pipelines.db.discovery import Instance
from spot_pipelines.db.engine import session_factory
from spot_pipelines.partitions import AWS_ACCOUNTS_PARTITION
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.resources.credential_vault import AWS_RETRY_POLICY, CredentialVault
from spot_pipelines.resources.kubernetes import KubernetesResource
from spot_pipelines.resources.redis import RedisResource
from tests.support.aws_fakes import (
    KEYS_ACCOUNT_ID,
    ROLE_ACCOUNT_ID,
    fail_region,
    role_session,
    seed_instances,
    vault_clients_with,
)


def add_account(url, vault, name, *, status="connected", role=True, regions=None):
    with session_factory(url)() as session, session.begin():
        account = Account(name=name, status=status, regions=regions)
        if role:
            account.aws_account_id, account.auth_method = ROLE_ACCOUNT_ID, "role"
            account.role_arn, account.external_id = f"arn:aws:iam::{ROLE_ACCOUNT_ID}:role/SpotPipelines", "ext"
        else:
            account.aws_account_id, account.auth_method = KEYS_ACCOUNT_ID, "keys"
            account.access_key_id = "AKIAIOSFODNN7EXAMPLE"
            account.encrypted_secret = vault.encrypt("wJalrXUtnFEMI/K7MDENGbPxRfiCYEXAMPLEKEY")
        session.add(account)


def discover(url, vault, name, instance=None):
    instance = instance or dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(AWS_ACCOUNTS_PARTITION, [name])
    return dg.materialize(
        [discovered_instances],
        partition_key=name,
        instance=instance,
        raise_on_error=False,
        resources={
            "app_db": AppDatabase(url=url),
            "vault": vault,
            "redis": RedisResource(),
            "kubernetes": KubernetesResource(),
        },
    )


def account_row(url, name):
    with session_factory(url)() as session:
        return session.scalars(select(Account).where(Account.name == name)).one_or_none()


def instances(url):
    with session_factory(url)() as session:
        return {i.instance_id: i for i in session.scalars(select(Instance))}


def step_events(result, event_type: dg.DagsterEventType) -> list:
    return [e for e in result.all_events if e.event_type == event_type and e.step_key == "discovered_instances"]


def stored(url) -> dict:
    """Every stored instance column, to compare before and after a failed run."""
    return {
        i: (r.region, r.availability_zone_id, r.state, r.last_seen_at, r.terminated_at)
        for i, r in instances(url).items()
    }


@pytest.fixture
def vault(encryption_key):
    return CredentialVault(encryption_key=encryption_key, max_attempts=2)


def test_first_discovery_stores_the_fleet_and_activates(aws, db_url, vault):
    seeded = seed_instances(role_session(region="eu-west-1"), "eu-west-1", 3, "m5.large")
    seeded += seed_instances(role_session(region="us-west-2"), "us-west-2", 2, "c6g.large", spot=True)
    add_account(db_url, vault, "prod", regions=["eu-west-1", "us-west-2", "ap-east-1"])

    result = discover(db_url, vault, "prod")

    assert result.success
    meta = result.asset_materializations_for_node("discovered_instances")[0].metadata
    assert meta["dagster/row_count"].value == 5
    assert meta["instances_by_lifecycle"].value == {"on-demand": 3, "spot": 2}
    assert "ap-east-1" in meta["skipped_regions"].value
    rows = instances(db_url)
    assert set(rows) == set(seeded)
    assert all(r.availability_zone_id and r.first_seen_at == r.last_seen_at for r in rows.values())
    account = account_row(db_url, "prod")
    assert account.status == "active" and account.last_error is None and account.last_discovered_at


def test_rediscovery_is_idempotent_keeps_active_and_marks_vanished_terminated(aws, db_url, vault):
    session = role_session(region="eu-west-1")
    keep = seed_instances(session, "eu-west-1", 2)
    gone = seed_instances(session, "eu-west-1", 1)
    add_account(db_url, vault, "prod", regions=["eu-west-1"])
    assert discover(db_url, vault, "prod").success
    first_seen = instances(db_url)[keep[0]].first_seen_at

    session.client("ec2", region_name="eu-west-1").terminate_instances(InstanceIds=gone)
    # moto keeps terminated instances listed, as EC2 does for about an hour.
    assert discover(db_url, vault, "prod").success
    rows = instances(db_url)
    assert len(rows) == 3  # nothing duplicated
    assert rows[gone[0]].state == "terminated" and rows[gone[0]].terminated_at is not None
    assert rows[keep[0]].first_seen_at == first_seen and rows[keep[0]].last_seen_at > first_seen
    assert account_row(db_url, "prod").status == "active"


def test_instances_that_disappear_from_the_api_are_marked_terminated_not_deleted(aws, db_url, vault):
    session = role_session(region="eu-west-1")
    ids = seed_instances(session, "eu-west-1", 2)
    add_account(db_url, vault, "prod", regions=["eu-west-1", "us-west-2"])
    assert discover(db_url, vault, "prod").success
    # EC2 stops listing an instance about an hour after it terminated: drop it from the emulator.
    from moto.ec2.models import ec2_backends

    for reservation in ec2_backends[ROLE_ACCOUNT_ID]["eu-west-1"].reservations.values():
        reservation.instances = [i for i in reservation.instances if i.id != ids[0]]
    assert discover(db_url, vault, "prod").success
    rows = instances(db_url)
    assert rows[ids[0]].state == "terminated" and rows[ids[1]].state == "running"


def test_failed_region_keeps_its_stored_rows_and_fails_the_account(aws, db_url, vault, monkeypatch):
    session = role_session(region="eu-west-1")
    eu = seed_instances(session, "eu-west-1", 2)
    us = seed_instances(role_session(region="us-west-2"), "us-west-2", 2)
    add_account(db_url, vault, "prod", regions=["eu-west-1", "us-west-2"])
    assert discover(db_url, vault, "prod").success

    vault_clients_with(monkeypatch, fail_region("RequestLimitExceeded", "us-west-2", status=503))
    result = discover(db_url, vault, "prod")

    assert not result.success
    failure = result.failure_data_for_node("discovered_instances")
    # Throttling can pass: retried by the RetryPolicy, then failed; the failure carries which region and why.
    assert len(step_events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY)) == AWS_RETRY_POLICY.max_retries
    assert len(step_events(result, dg.DagsterEventType.STEP_RESTARTED)) == AWS_RETRY_POLICY.max_retries
    assert "RequestLimitExceeded" in failure.user_failure_data.metadata["failed_regions"].value["us-west-2"]
    rows = instances(db_url)
    assert set(eu + us) <= set(rows) and all(rows[i].state == "running" for i in us)  # nothing lost
    account = account_row(db_url, "prod")
    assert account.status == "failed" and "prod" in account.last_error and "RequestLimitExceeded" in account.last_error


def test_rejected_credentials_fail_with_the_cause_and_lose_nothing(aws, db_url, vault, monkeypatch):
    seed_instances(role_session(region="eu-west-1"), "eu-west-1", 2)
    add_account(db_url, vault, "prod", regions=["eu-west-1"])
    assert discover(db_url, vault, "prod").success
    before = set(instances(db_url))

    vault_clients_with(monkeypatch, fail_region("AuthFailure", "us-east-1", "DescribeRegions", 401))
    result = discover(db_url, vault, "prod")

    assert not result.success
    assert "AuthFailure" in result.failure_data_for_node("discovered_instances").error.message
    assert set(instances(db_url)) == before
    account = account_row(db_url, "prod")
    assert account.status == "failed" and "AuthFailure" in account.last_error


def test_assume_role_denied_names_the_account(aws, db_url, vault, monkeypatch):
    add_account(db_url, vault, "prod", regions=["eu-west-1"])

    def deny(request, event_name="", **_):
        from tests.support.aws_fakes import ec2_error_response

        if event_name.endswith("AssumeRole"):
            return ec2_error_response("AccessDenied", 403, "not authorized to perform sts:AssumeRole")

    import botocore.session

    original = botocore.session.Session.create_client

    def create_client(self, service_name, *args, **kwargs):
        client = original(self, service_name, *args, **kwargs)
        if service_name == "sts":
            client.meta.events.register("before-send.sts", deny)
        return client

    monkeypatch.setattr(botocore.session.Session, "create_client", create_client)
    result = discover(db_url, vault, "prod")
    assert not result.success
    message = result.failure_data_for_node("discovered_instances").error.message
    assert "'prod'" in message and "AccessDenied" in message
    assert account_row(db_url, "prod").status == "failed"


def test_account_removed_while_its_run_was_queued(aws, db_url, vault):
    result = discover(db_url, vault, "ghost")
    assert not result.success
    assert "account 'ghost' no longer exists" in result.failure_data_for_node("discovered_instances").error.message


def test_secret_key_never_reaches_the_event_log(aws, db_url, vault):
    seed_instances(boto3.Session(region_name="eu-west-1"), "eu-west-1", 1)
    add_account(db_url, vault, "dev", role=False, regions=["eu-west-1"])
    instance = dg.DagsterInstance.ephemeral()
    assert discover(db_url, vault, "dev", instance).success
    records = instance.get_event_records(dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_MATERIALIZATION))
    assert records
    for record in instance.all_logs(records[0].event_log_entry.run_id):
        text = str(record)
        assert "wJalrXUtnFEMI" not in text and vault.encryption_key not in text
    with session_factory(db_url)() as session:
        assert session.scalar(select(func.count()).select_from(Instance)) == 1


def test_no_platform_credentials_fails_in_one_attempt_and_loses_nothing(db_url, vault, encryption_key, monkeypatch):
    with mock_aws():
        seed_instances(role_session(region="eu-west-1"), "eu-west-1", 2)
        add_account(db_url, vault, "prod", regions=["eu-west-1"])
        assert discover(db_url, vault, "prod").success
    before = stored(db_url)
    # The platform identity is gone: no env keys, no config files, no instance metadata.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")

    result = discover(db_url, CredentialVault(encryption_key=encryption_key), "prod")

    assert not result.success
    assert len(step_events(result, dg.DagsterEventType.STEP_START)) == 1
    assert not step_events(result, dg.DagsterEventType.STEP_RESTARTED)  # a retry restarts the step
    assert not step_events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY)
    [failure] = step_events(result, dg.DagsterEventType.STEP_FAILURE)
    message = failure.step_failure_data.user_failure_data.description
    assert message.startswith("discovery of account 'prod' failed") and "no AWS credentials" in message
    assert stored(db_url) == before
    account = account_row(db_url, "prod")
    assert account.status == "failed" and account.last_error == message


def _answers_without(monkeypatch, region: str, strip) -> None:
    """Every EC2 client the vault hands out for `region` passes its parsed answers through `strip`."""
    original = CredentialVault.client

    def client(self, session, service_name, region_name=None):
        made = original(self, session, service_name, region_name)
        if region_name == region:
            made.meta.events.register("after-call.ec2", strip)
        return made

    monkeypatch.setattr(CredentialVault, "client", client)


def test_zone_listing_without_ids_fails_its_region_once_and_keeps_its_rows(aws, db_url, vault, monkeypatch):
    eu = seed_instances(role_session(region="eu-west-1"), "eu-west-1", 2)
    us = seed_instances(role_session(region="us-west-2"), "us-west-2", 1)
    add_account(db_url, vault, "prod", regions=["eu-west-1", "us-west-2"])
    assert discover(db_url, vault, "prod").success
    before = stored(db_url)

    def strip(parsed, event_name="", **_):  # an answer shaped like an older API: no AZ IDs anywhere
        for reservation in parsed.get("Reservations", []):
            for raw in reservation["Instances"]:
                raw["Placement"].pop("AvailabilityZoneId", None)
        for zone in parsed.get("AvailabilityZones", []):
            zone.pop("ZoneId", None)

    _answers_without(monkeypatch, "eu-west-1", strip)
    result = discover(db_url, vault, "prod")

    assert not result.success
    assert not step_events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY)  # malformed data: no retry
    cause = result.failure_data_for_node("discovered_instances").user_failure_data.metadata["failed_regions"].value
    assert set(cause) == {"eu-west-1"}
    assert cause["eu-west-1"].startswith("DescribeAvailabilityZones.AvailabilityZones[].ZoneId: no AZ ID for eu-west-1")
    after = stored(db_url)
    assert {i: after[i] for i in eu} == {i: before[i] for i in eu}  # the failed region is untouched
    assert after[us[0]][3] > before[us[0]][3]  # the healthy region was stored
    assert account_row(db_url, "prod").status == "failed"


def test_all_regions_reports_the_opt_in_regions_it_skipped(aws, db_url, vault):
    seed_instances(role_session(region="eu-west-1"), "eu-west-1", 1)
    add_account(db_url, vault, "prod", regions=None)
    result = discover(db_url, vault, "prod")
    assert result.success
    meta = result.asset_materializations_for_node("discovered_instances")[0].metadata
    skipped = meta["skipped_regions"].value
    assert skipped["ap-east-1"] == "region not enabled (opt-in required)" and "me-south-1" in skipped
    assert "eu-west-1" not in skipped and meta["dagster/row_count"].value == 1
    listed = boto3.client("ec2", region_name="us-east-1").describe_regions(AllRegions=True)["Regions"]
    same_partition = {r["RegionName"] for r in listed if not r["RegionName"].startswith(("cn-", "us-gov-"))}
    assert meta["regions_scanned"].value + len(skipped) == len(same_partition)
