"""The demo fleet: two accounts (one role-based, one key-based) across several regions, a mix of
on-demand and spot instances whose types all appear in the bundled on-demand price table and
Spot Advisor feed."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import boto3

from spot_pipelines.core.market_data import architecture_of

DATA_DIR = Path(__file__).resolve().parent.parent / "data"

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


# Most of the fleet runs in us-east-1, the region the bundled on-demand price table covers; the
# groups elsewhere show how a market without an on-demand price is skipped (never priced at zero).
DEMO_ACCOUNTS = (
    DemoAccount(
        name="payments-prod", aws_account_id="111122223333", auth_method="role",
        role_arn="arn:aws:iam::111122223333:role/SpotPipelinesReadOnly", external_id="spot-pipelines-demo",
        regions=("us-east-1", "us-west-2", "eu-west-1"),
        groups=(
            Group("us-east-1", "m5.xlarge", 6, False, "checkout-api"),
            Group("us-east-1", "c5.2xlarge", 4, False, "fraud-scoring"),
            Group("us-east-1", "m5.2xlarge", 3, True, "batch-settlement"),
            Group("us-east-1", "r5.large", 2, False, "ledger-cache"),
            Group("us-east-1", "m6g.large", 4, True, "web-frontend"),
            Group("us-east-1", "c6g.xlarge", 3, False, "api-gateway"),
            Group("us-west-2", "m5.large", 2, False, "dr-standby"),
            Group("eu-west-1", "m5.large", 2, False, "eu-gateway"),
        ),
    ),
    DemoAccount(
        name="analytics-dev", aws_account_id="123456789012", auth_method="keys",
        regions=("us-east-1", "eu-central-1"),
        groups=(
            Group("us-east-1", "t3.large", 4, False, "notebooks"),
            Group("us-east-1", "r5.xlarge", 2, False, "warehouse-etl"),
            Group("us-east-1", "c6i.xlarge", 3, True, "spark-executors"),
            Group("us-east-1", "m6i.large", 3, False, "dashboards"),
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


# region -> architecture -> a Linux image id. moto's public images are fixed per region, and
# listing its ~1,300 of them takes seconds: once per region is enough.
_LINUX_IMAGES: dict[str, dict[str, str]] = {}


def linux_image(ec2, architecture: str) -> str:
    """A Linux AMI of the architecture (the emulator's first image is Windows)."""
    region = ec2.meta.region_name
    if region not in _LINUX_IMAGES:
        images: dict[str, str] = {}
        for image in ec2.describe_images(Owners=["amazon"])["Images"]:
            if image.get("Platform") != "windows":
                images.setdefault(image.get("Architecture"), image["ImageId"])
        _LINUX_IMAGES[region] = images
    return _LINUX_IMAGES[region][architecture]


def seed_fleet(account: DemoAccount) -> int:
    """Launch the account's instances in the emulator; returns how many."""
    launched = 0
    for group in account.groups:
        ec2 = session_in(account, group.region).client("ec2", region_name=group.region)
        image = linux_image(ec2, architecture_of(group.instance_type))
        market = {"InstanceMarketOptions": {"MarketType": "spot"}} if group.spot else {}
        tags = [{"Key": "Name", "Value": group.service}, {"Key": "service", "Value": group.service},
                {"Key": "env", "Value": account.name.split("-")[-1]}]
        ec2.run_instances(ImageId=image, MinCount=group.count, MaxCount=group.count,
                          InstanceType=group.instance_type,
                          TagSpecifications=[{"ResourceType": "instance", "Tags": tags}], **market)
        launched += group.count
    return launched


# Alternatives a recommendation can move to: neighbouring families and sizes, Intel, AMD and Graviton.
CANDIDATE_FAMILIES = ("m5", "m5a", "m6i", "m6a", "m7i", "m6g", "m7g", "c5", "c5a", "c6i", "c6a", "c7i", "c6g",
                      "c7g", "r5", "r5a", "r6i", "r6a", "r6g", "r7g", "t3", "t3a", "t4g")
CANDIDATE_SIZES = ("medium", "large", "xlarge", "2xlarge", "4xlarge")


def demo_instance_types() -> list[str]:
    """The fleet's types plus the candidate pool, where the bundled data prices them in every demo region."""
    advisor = json.loads((DATA_DIR / "spot-advisor-data.json").read_text())["spot_advisor"]
    with (DATA_DIR / "on-demand-prices-us-east-1.csv").open() as handle:
        on_demand = {row["instance_type"] for row in csv.DictReader(handle)}
    pool = {f"{family}.{size}" for family in CANDIDATE_FAMILIES for size in CANDIDATE_SIZES}
    priced = {t for t in pool if t in on_demand and all(t in advisor[r]["Linux"] for r in demo_regions())}
    return sorted(priced | {g.instance_type for a in DEMO_ACCOUNTS for g in a.groups})


def demo_regions() -> list[str]:
    return sorted({r for a in DEMO_ACCOUNTS for r in a.regions})
