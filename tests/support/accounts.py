"""Accounts and instances seeded straight into the app database (interruptions, kubernetes, health, faults)."""

from spot_pipelines.core.clock import utcnow
from spot_pipelines.db.accounts import Account
from spot_pipelines.db.discovery import Instance
from spot_pipelines.db.engine import session_factory

# The current hour, whole: event times survive EventBridge's whole-second "time" field.
NOW = utcnow().replace(minute=0, second=0, microsecond=0)


def add_account(url: str, name: str = "prod", aws_account_id: str = "111122223333", status: str = "active") -> int:
    with session_factory(url)() as session, session.begin():
        account = Account(
            name=name,
            aws_account_id=aws_account_id,
            auth_method="role",
            role_arn=f"arn:aws:iam::{aws_account_id}:role/spot",
            status=status,
        )
        session.add(account)
        session.flush()
        return account.id


def add_instance(
    url: str,
    account_id: int,
    instance_id: str,
    *,
    region="us-east-1",
    az="us-east-1a",
    az_id="use1-az4",
    instance_type="m5.large",
    lifecycle="spot",
) -> None:
    with session_factory(url)() as session, session.begin():
        session.add(
            Instance(
                account_id=account_id,
                instance_id=instance_id,
                region=region,
                availability_zone=az,
                availability_zone_id=az_id,
                instance_type=instance_type,
                lifecycle=lifecycle,
                state="running",
                platform="Linux/UNIX",
                tags={},
                first_seen_at=NOW,
                last_seen_at=NOW,
            )
        )
