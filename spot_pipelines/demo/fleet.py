"""The demo fleet: two accounts (one role-based, one key-based) across several regions, a mix of
on-demand and spot instances whose types all appear in the bundled on-demand price table and
Spot Advisor feed."""

from __future__ import annotations

from dataclasses import dataclass

import boto3

# AWS's own documentation example credentials: the emulator accepts any.
DEMO_ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
DEMO_SECRET_ACCESS_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@dataclass(frozen=True)
class Group:
    region: str
    instance_type: str
    count: int
    spot: bool
    service: str


@dataclass(frozen=True)
class DemoAccount:
    name: str
    aws_account_id: str
    auth_method: str
    regions: tuple[str, ...]
    groups: tuple[Group, ...]
    role_arn: str | None = None
    external_id: str | None = None


DEMO_ACCOUNTS = (
    DemoAccount(
        name="payments-prod", aws_account_id="111122223333", auth_method="role",
        role_arn="arn:aws:iam::111122223333:role/SpotPipelinesReadOnly", external_id="spot-pipelines-demo",
        regions=("us-east-1", "us-west-2", "eu-west-1"),
        groups=(
            Group("us-east-1", "m5.xlarge", 6, False, "checkout-api"),
            Group("us-east-1", "c5.2xlarge", 4, False, "fraud-scoring"),
            Group("us-east-1", "m5.2xlarge", 3, True, "batch-settlement"),
            Group("us-west-2", "r5.large", 2, False, "ledger-cache"),
            Group("us-west-2", "m6g.large", 4, True, "web-frontend"),
            Group("eu-west-1", "c6g.xlarge", 3, False, "eu-gateway"),
            Group("eu-west-1", "m5.large", 4, False, "eu-workers"),
        ),
    ),
    DemoAccount(
        name="analytics-dev", aws_account_id="123456789012", auth_method="keys",
        regions=("us-east-1", "eu-central-1"),
        groups=(
            Group("us-east-1", "t3.large", 4, False, "notebooks"),
            Group("us-east-1", "r5.xlarge", 2, False, "warehouse-etl"),
            Group("us-east-1", "c6i.xlarge", 3, True, "spark-executors"),
            Group("eu-central-1", "m6i.large", 3, False, "dashboards"),
            Group("eu-central-1", "m5.xlarge", 2, False, "airflow-workers"),
        ),
    ),
)


def session_in(account: DemoAccount, region: str) -> boto3.Session:
    """A session inside the emulated account (the emulator keys its backends by account)."""
    if account.auth_method == "keys":
        return boto3.Session(aws_access_key_id=DEMO_ACCESS_KEY_ID, aws_secret_access_key=DEMO_SECRET_ACCESS_KEY,
                             region_name=region)
    creds = boto3.client("sts", region_name=region).assume_role(
        RoleArn=account.role_arn, RoleSessionName="demo-seed", ExternalId=account.external_id)["Credentials"]
    return boto3.Session(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                         aws_session_token=creds["SessionToken"], region_name=region)


def seed_fleet(account: DemoAccount) -> int:
    """Launch the account's instances in the emulator; returns how many."""
    launched = 0
    for group in account.groups:
        ec2 = session_in(account, group.region).client("ec2", region_name=group.region)
        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        market = {"InstanceMarketOptions": {"MarketType": "spot"}} if group.spot else {}
        tags = [{"Key": "Name", "Value": group.service}, {"Key": "service", "Value": group.service},
                {"Key": "env", "Value": account.name.split("-")[-1]}]
        ec2.run_instances(ImageId=image, MinCount=group.count, MaxCount=group.count,
                          InstanceType=group.instance_type,
                          TagSpecifications=[{"ResourceType": "instance", "Tags": tags}], **market)
        launched += group.count
    return launched


def demo_instance_types() -> list[str]:
    return sorted({g.instance_type for a in DEMO_ACCOUNTS for g in a.groups})


def demo_regions() -> list[str]:
    return sorted({r for a in DEMO_ACCOUNTS for r in a.regions})
