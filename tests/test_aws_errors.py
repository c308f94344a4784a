"""Retry only what can succeed on retry: the shared classifier, and AWS-calling assets failing
at once on permanent errors while throttling keeps the RetryPolicy."""

from datetime import timedelta

import boto3
import dagster as dg
import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from spot_pipelines.assets import aws_failure
from spot_pipelines.assets.market_data import MarketDataAPIs, spot_price_history
from spot_pipelines.core.aws_errors import describe, is_permanent
from spot_pipelines.core.clock import utcnow
from spot_pipelines.core.errors import ConfigError, CredentialError, ValidationError
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.resources.credential_vault import AWS_RETRY_POLICY, aws_config
from tests.support.aws_fakes import fail_region
from tests.support.market_data import stubbed_apis

URL = "https://ec2.eu-west-1.amazonaws.com/"


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "injected"}}, "DescribeInstances")


@pytest.mark.parametrize(
    "exc",
    [
        NoCredentialsError(),
        PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY"),
        ParamValidationError(report="Invalid type for parameter MaxResults"),
        *(
            client_error(code)
            for code in (
                "AuthFailure",
                "AccessDenied",
                "UnauthorizedOperation",
                "InvalidClientTokenId",
                "ExpiredToken",
                "ValidationError",
                "InvalidParameterValue",
            )
        ),
        CredentialError("account 'prod': no access key stored"),
        ConfigError("ENCRYPTION_KEY is not set"),
        ValidationError("DescribeAvailabilityZones.AvailabilityZones[].ZoneId", "no AZ ID for eu-west-1a"),
    ],
    ids=type,
)
def test_what_a_retry_cannot_fix_is_permanent(exc):
    assert is_permanent(exc)
    assert not aws_failure("listing regions", exc).allow_retries


@pytest.mark.parametrize(
    "exc",
    [
        *(
            client_error(code)
            for code in (
                "RequestLimitExceeded",
                "Throttling",
                "ThrottlingException",
                "InternalError",
                "ServiceUnavailable",
                "Unavailable",
            )
        ),
        EndpointConnectionError(endpoint_url=URL),
        ConnectTimeoutError(endpoint_url=URL),
        ReadTimeoutError(endpoint_url=URL),
        OSError("connection reset"),
    ],
    ids=type,
)
def test_throttling_5xx_and_network_errors_keep_the_retry_policy(exc):
    assert not is_permanent(exc)
    assert aws_failure("listing regions", exc).allow_retries


def test_causes_are_one_line_and_name_the_problem():
    assert describe(NoCredentialsError()).startswith("no AWS credentials found (platform identity")
    assert describe(client_error("AuthFailure")) == "AuthFailure on DescribeInstances: injected"
    assert "\n" not in describe(ParamValidationError(report="Invalid type for parameter MaxResults,\nvalue: x"))
    failure = aws_failure("listing regions", ValidationError("Regions[].RegionName", "missing"))
    assert failure.description == "listing regions: Regions[].RegionName: missing"


def _steps(result, event_type: dg.DagsterEventType) -> list:
    return [e for e in result.all_events if e.event_type == event_type and e.step_key == "spot_price_history"]


def _attempts(result) -> int:
    """Step attempts: the first starts, every retry restarts."""
    return len(_steps(result, dg.DagsterEventType.STEP_START)) + len(_steps(result, dg.DagsterEventType.STEP_RESTARTED))


def _yesterday() -> str:
    return (utcnow() - timedelta(days=1)).date().isoformat()


def test_spot_price_history_without_platform_credentials_fails_in_one_attempt(sqlite_url, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")

    result = dg.materialize(
        [spot_price_history],
        partition_key=_yesterday(),
        raise_on_error=False,
        resources={"app_db": AppDatabase(url=sqlite_url), "market_apis": MarketDataAPIs()},
    )

    assert not result.success
    assert _attempts(result) == 1
    assert not _steps(result, dg.DagsterEventType.STEP_UP_FOR_RETRY)
    [failure] = _steps(result, dg.DagsterEventType.STEP_FAILURE)
    assert failure.step_failure_data.user_failure_data.description == (
        "could not list the platform's enabled regions: " + describe(NoCredentialsError())
    )


def test_throttled_region_listing_is_retried_by_the_policy(aws, sqlite_url):
    throttle = fail_region("RequestLimitExceeded", "us-east-1", "DescribeRegions", status=503)

    def ec2_for(region):
        client = boto3.client("ec2", region_name=region, config=aws_config(max_attempts=1))
        client.meta.events.register("before-send.ec2", throttle)
        return client

    result = dg.materialize(
        [spot_price_history],
        partition_key=_yesterday(),
        raise_on_error=False,
        resources={"app_db": AppDatabase(url=sqlite_url), "market_apis": stubbed_apis(ec2_for=ec2_for)},
    )

    assert not result.success
    assert len(_steps(result, dg.DagsterEventType.STEP_UP_FOR_RETRY)) == AWS_RETRY_POLICY.max_retries
    assert _attempts(result) == AWS_RETRY_POLICY.max_retries + 1
    failure = result.failure_data_for_node("spot_price_history")
    assert failure.user_failure_data.description == (
        "could not list the platform's enabled regions: RequestLimitExceeded on DescribeRegions: injected"
    )
