"""The demo fleet: two accounts (one role-based, one key-based) in us-east-1's AZs, a mix of
on-demand and spot instances whose types all appear in the bundled on-demand price table and
Spot Advisor feed."""

from __future__ import annotations

from dataclasses import dataclass

import boto3

from spot_pipelines.core.bundled_data import bundled_advisor, bundled_on_demand_rows
from spot_pipelines.core.market_data import architecture_of

# AWS's own documentation example credentials: the emulator accepts any.
DEMO_ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
DEMO_SECRET_ACCESS_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@dataclass(frozen=True)
class Group:
    instance_type: str
    count: int
    spot: bool
    service: str
    zones: tuple[str, ...] = ("a",)  # us-east-1 zone letters, one instance per zone in turn
    node_group: str | None = None  # an EKS node group: its instances are advised as one group


@dataclass(frozen=True)
class DemoAccount:
    name: str
    aws_account_id: str
    auth_method: str
    regions: tuple[str, ...]
    groups: tuple[Group, ...]
    role_arn: str | None = None
    external_id: str | None = None


# The fleet runs in us-east-1 only, over several AZs: the bundled on-demand table is us-east-1's
# (no real on-demand prices for other regions are bundled), and every instance must be priced.
# It is laid out so the recommendations show every action, never piling identical instances
# into one spot pool:
# - node groups with three qualifying pools in their AZ (m5/m5a/m6i.xlarge) → `diversify`, one
#   instance per pool;
# - single on-demand instances, one per type and AZ → `move_to_spot`;
# - a1 (first-generation Graviton): the advisor lists no spot discount for it in us-east-1, so the
#   on-demand one → `stay_on_demand` and the spot one → `return_to_on_demand`;
# - spot instances in pools that still qualify are left alone;
# - payments-prod holds a regional RI for its c5.2xlarge (→ `stay_on_demand`: moving it would leave the RI
#   idle) and a small Compute Savings Plan whose freed commitment makes net savings differ from list
#   (demo/commitments.py answers the APIs).
DEMO_REGION = "us-east-1"
DEMO_ACCOUNTS = (
    DemoAccount(
        name="payments-prod",
        aws_account_id="111122223333",
        auth_method="role",
        role_arn="arn:aws:iam::111122223333:role/SpotPipelinesReadOnly",
        external_id="spot-pipelines-demo",
        regions=(DEMO_REGION,),
        groups=(
            Group("m5.xlarge", 3, False, "checkout-api", node_group="checkout-api"),
            Group("c5.2xlarge", 1, False, "fraud-scoring", zones=("b",)),
            Group("m5a.xlarge", 1, False, "search-indexer", zones=("c",)),
            Group("m5.2xlarge", 3, True, "batch-settlement", zones=("a", "b", "c")),
            Group("r5.large", 1, False, "ledger-cache", zones=("c",)),
            Group("m6g.large", 2, True, "web-frontend", zones=("a", "b")),
            Group("c6g.xlarge", 2, False, "api-gateway", zones=("a", "b")),
            Group("a1.xlarge", 1, False, "legacy-arm-build", zones=("c",)),
            Group("a1.large", 1, True, "arm-test-runner", zones=("b",)),
        ),
    ),
    DemoAccount(
        name="analytics-dev",
        aws_account_id="123456789012",
        auth_method="keys",
        regions=(DEMO_REGION,),
        groups=(
            Group("t3.large", 2, False, "notebooks", zones=("a", "c")),
            Group("r5.xlarge", 1, False, "warehouse-etl", zones=("b",)),
            Group("c6i.xlarge", 3, True, "spark-executors", zones=("a", "b", "c")),
            Group("m6i.large", 1, False, "dashboards", zones=("c",)),
            Group("m6i.xlarge", 3, False, "airflow-workers", zones=("b",), node_group="airflow-workers"),
        ),
    ),
)


def session_in(account: DemoAccount, region: str) -> boto3.Session:
    """A session inside the emulated account (the emulator keys its backends by account)."""
    if account.auth_method == "keys":
        return boto3.Session(
            aws_access_key_id=DEMO_ACCESS_KEY_ID, aws_secret_access_key=DEMO_SECRET_ACCESS_KEY, region_name=region
        )
    creds = boto3.client("sts", region_name=region).assume_role(
        RoleArn=account.role_arn, RoleSessionName="demo-seed", ExternalId=account.external_id
    )["Credentials"]
    return boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name=region,
    )


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
    ec2 = session_in(account, DEMO_REGION).client("ec2", region_name=DEMO_REGION)
    launched = 0
    for group in account.groups:
        image = linux_image(ec2, architecture_of(group.instance_type))
        market = {"InstanceMarketOptions": {"MarketType": "spot"}} if group.spot else {}
        tags = [
            {"Key": "Name", "Value": group.service},
            {"Key": "service", "Value": group.service},
            {"Key": "env", "Value": account.name.split("-")[-1]},
        ]
        if group.node_group:
            tags.append({"Key": "eks:nodegroup-name", "Value": group.node_group})
        for i in range(group.count):
            zone = DEMO_REGION + group.zones[i % len(group.zones)]
            ec2.run_instances(
                ImageId=image,
                MinCount=1,
                MaxCount=1,
                InstanceType=group.instance_type,
                Placement={"AvailabilityZone": zone},
                TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
                **market,
            )
        launched += group.count
    return launched


# Alternatives a recommendation can move to: neighbouring families and sizes, Intel, AMD and Graviton.
CANDIDATE_FAMILIES = (
    "m5",
    "m5a",
    "m6i",
    "m6a",
    "m7i",
    "m6g",
    "m7g",
    "c5",
    "c5a",
    "c6i",
    "c6a",
    "c7i",
    "c6g",
    "c7g",
    "r5",
    "r5a",
    "r6i",
    "r6a",
    "r6g",
    "r7g",
    "t3",
    "t3a",
    "t4g",
)
CANDIDATE_SIZES = ("medium", "large", "xlarge", "2xlarge", "4xlarge")


def demo_instance_types() -> list[str]:
    """The fleet's types plus the candidate pool, where the bundled data prices them in every demo region."""
    advisor = bundled_advisor()["spot_advisor"]
    on_demand = {row["instance_type"] for row in bundled_on_demand_rows()}
    pool = {f"{family}.{size}" for family in CANDIDATE_FAMILIES for size in CANDIDATE_SIZES}
    priced = {t for t in pool if t in on_demand and all(t in advisor[r]["Linux"] for r in demo_regions())}
    return sorted(priced | {g.instance_type for a in DEMO_ACCOUNTS for g in a.groups})


def demo_regions() -> list[str]:
    return sorted({r for a in DEMO_ACCOUNTS for r in a.regions})
