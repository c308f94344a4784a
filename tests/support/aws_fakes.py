"""Helpers for tests against moto: seeding fleets and injecting AWS faults at the HTTP layer,
so botocore's real retry and error handling runs on them."""

from __future__ import annotations

from collections.abc import Callable

import boto3
from botocore.awsrequest import AWSResponse

from spot_pipelines.core.market_data import architecture_of
from spot_pipelines.demo.fleet import linux_image

ROLE_ACCOUNT_ID = "111122223333"
KEYS_ACCOUNT_ID = "123456789012"  # moto's default account for plain access keys


class _Raw:
    def __init__(self, body: bytes):
        self._body = body

    def stream(self, **_):
        yield self._body


def ec2_error_response(code: str, status: int = 503, message: str = "injected") -> AWSResponse:
    body = (
        f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors>"
        f"<RequestID>test</RequestID></Response>"
    ).encode()
    return AWSResponse("https://ec2.amazonaws.com/", status, {}, _Raw(body))


def fail_region(
    code: str, region: str, operation: str = "DescribeInstances", status: int = 403, times: int | None = None
) -> Callable:
    """A `before-send` hook answering `operation` in `region` with an error (`times` times, or always)."""
    state = {"left": times}

    def hook(request, event_name: str = "", **_):
        if region not in request.url or not event_name.endswith(f".{operation}"):
            return None
        if state["left"] is not None:
            if state["left"] <= 0:
                return None
            state["left"] -= 1
        return ec2_error_response(code, status)

    return hook


def role_session(account_id: str = ROLE_ACCOUNT_ID, region: str = "us-east-1") -> boto3.Session:
    """A session inside another moto account (moto keys backends by the assumed role's account)."""
    creds = boto3.client("sts", region_name=region).assume_role(
        RoleArn=f"arn:aws:iam::{account_id}:role/seed", RoleSessionName="seed"
    )["Credentials"]
    return boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name=region,
    )


def seed_instances(
    session: boto3.Session,
    region: str,
    count: int,
    instance_type: str = "m5.large",
    *,
    spot: bool = False,
    tags: dict[str, str] | None = None,
) -> list[str]:
    ec2 = session.client("ec2", region_name=region)
    image = linux_image(ec2, architecture_of(instance_type))
    kwargs = {"InstanceMarketOptions": {"MarketType": "spot"}} if spot else {}
    if tags:
        kwargs["TagSpecifications"] = [
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ]
    out = ec2.run_instances(ImageId=image, MinCount=count, MaxCount=count, InstanceType=instance_type, **kwargs)
    return [i["InstanceId"] for i in out["Instances"]]


def vault_clients_with(monkeypatch, hook: Callable, service: str = "ec2") -> None:
    """Every client the CredentialVault hands out answers through `hook` (a before-send fault)."""
    from spot_pipelines.resources.credential_vault import CredentialVault

    original = CredentialVault.client

    def client(self, session, service_name, region=None):
        made = original(self, session, service_name, region)
        made.meta.events.register(f"before-send.{service}", hook)
        return made

    monkeypatch.setattr(CredentialVault, "client", client)
