"""Shared helpers of the fault suite: an onboarded key-based account, discovery runs, stored rows."""

from __future__ import annotations

from collections import Counter

import dagster as dg
from sqlalchemy import select

from spot_pipelines.assets.discovery import discovered_instances
from spot_pipelines.db.accounts import Account
from spot_pipelines.db.discovery import Instance
from spot_pipelines.db.engine import session_factory
from spot_pipelines.partitions import AWS_ACCOUNTS_PARTITION
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.resources.credential_vault import CredentialVault
from spot_pipelines.resources.kubernetes import KubernetesResource
from spot_pipelines.resources.redis import RedisResource
from tests.support.aws_fakes import KEYS_ACCOUNT_ID

ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
REGIONS = ["eu-west-1", "us-east-1"]


def add_keys_account(
    url: str,
    encryption_key: str,
    *,
    name: str = "dev",
    secret: str = "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY",
    regions: list[str] | None = None,
    status: str = "connected",
    aws_account_id: str = KEYS_ACCOUNT_ID,
) -> int:
    vault = CredentialVault(encryption_key=encryption_key)
    with session_factory(url)() as session, session.begin():
        account = Account(
            name=name,
            aws_account_id=aws_account_id,
            auth_method="keys",
            access_key_id=ACCESS_KEY_ID,
            encrypted_secret=vault.encrypt(secret),
            regions=regions or REGIONS,
            status=status,
        )
        session.add(account)
        session.flush()
        return account.id


def discover(
    url: str,
    encryption_key: str,
    *,
    name: str = "dev",
    instance: dg.DagsterInstance | None = None,
    max_attempts: int = 3,
):
    instance = instance or dg.DagsterInstance.ephemeral()
    if name not in instance.get_dynamic_partitions(AWS_ACCOUNTS_PARTITION):
        instance.add_dynamic_partitions(AWS_ACCOUNTS_PARTITION, [name])
    return dg.materialize(
        [discovered_instances],
        partition_key=name,
        instance=instance,
        raise_on_error=False,
        resources={
            "app_db": AppDatabase(url=url),
            "vault": CredentialVault(encryption_key=encryption_key, max_attempts=max_attempts),
            "redis": RedisResource(),
            "kubernetes": KubernetesResource(),
        },
    )


def stored_instances(url: str) -> list[tuple[str, str]]:
    """(instance id, state) of every stored instance row, sorted."""
    with session_factory(url)() as session:
        return sorted(session.execute(select(Instance.instance_id, Instance.state)).all())


def account_state(url: str, name: str = "dev") -> tuple[str, str | None]:
    with session_factory(url)() as session:
        row = session.scalars(select(Account).where(Account.name == name)).one()
        return row.status, row.last_error


def duplicates(keys) -> int:
    return sum(n - 1 for n in Counter(keys).values() if n > 1)


def failure_text(result) -> str:
    """Every failure/retry message of a run's event log, with the error chain."""
    out = []
    for event in result.all_events:
        if event.event_type_value in ("STEP_FAILURE", "STEP_RESTARTED", "STEP_UP_FOR_RETRY", "RUN_FAILURE"):
            data = event.event_specific_data
            error = getattr(data, "error", None)
            while error is not None:
                out.append(f"{error.cls_name}: {error.message}")
                error = error.cause
            out.append(event.message or "")
    return "\n".join(out)
