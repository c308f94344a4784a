"""AWS faults under a real discovery: throttling and 5xx bursts injected at the HTTP layer (a
botocore `before-send` hook, so botocore's adaptive retry mode handles them), absorbed up to the
attempt limit and failing clearly beyond it; assumed-role credentials expiring mid-run."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timedelta, timezone

import boto3
import botocore.credentials
import botocore.retries.standard
import pytest

from spot_pipelines.db.accounts import Account
from spot_pipelines.db.engine import session_factory
from spot_pipelines.resources.credential_vault import CredentialVault
from tests.faults.helpers import account_state, add_keys_account, discover, duplicates, failure_text, stored_instances
from tests.support.aws_fakes import ROLE_ACCOUNT_ID, ec2_error_response, role_session, seed_instances

# (code, HTTP status) of the injected errors: EC2's throttle and the 5xx family botocore retries.
BURST = [("RequestLimitExceeded", 503), ("InternalError", 500), ("Unavailable", 503), ("RequestLimitExceeded", 503)]


DILATION = 100.0


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    """botocore's backoff sleeps up to 20 s per attempt, and the adaptive mode's token bucket falls
    to 0.5 requests/s after a throttle. The retry decisions and the rate limiter's arithmetic stay
    botocore's own; only time runs faster: the bucket's clock runs 100x, its waits are 100x shorter.
    Returns the bucket-seconds the adaptive limiter made callers wait (proof it engaged)."""
    import time

    from botocore.retries import bucket

    monkeypatch.setattr(botocore.retries.standard.ExponentialBackoff, "delay_amount", lambda self, ctx: 0.001)
    start = time.time()
    monkeypatch.setattr(bucket.Clock, "current_time", lambda self: start + (time.time() - start) * DILATION)
    waited = [0.0]
    real_sleep_amount = bucket.TokenBucket._sleep_amount

    def sleep_amount(self, amount):
        seconds = real_sleep_amount(self, amount)
        if seconds > 0:
            waited[0] += seconds
        return seconds / DILATION

    monkeypatch.setattr(bucket.TokenBucket, "_sleep_amount", sleep_amount)
    return waited


class Injector:
    """Answers DescribeInstances of `region` with errors: `burst` errors per call sequence, or always."""

    def __init__(self, region: str, burst: int | None):
        self.region, self.burst = region, burst
        self.sent: Counter = Counter()  # (region, outcome) -> requests
        self._lock = threading.Lock()

    def hook(self, request, event_name: str = "", **_):
        if not event_name.endswith(".DescribeInstances"):
            return None
        region = next((r for r in ("eu-west-1", "us-east-1") if r in request.url), "?")
        with self._lock:
            if region != self.region:
                self.sent[(region, "ok")] += 1
                return None
            n = self.sent[(region, "error")]
            if self.burst is not None and n >= self.burst:
                self.sent[(region, "ok")] += 1
                return None
            self.sent[(region, "error")] += 1
        code, status = BURST[n % len(BURST)]
        return ec2_error_response(code, status)


def _inject(monkeypatch, injector: Injector):
    original = CredentialVault.client

    def client(self, session, service, region=None):
        c = original(self, session, service, region)
        c.meta.events.register("before-send.ec2", injector.hook)
        return c

    monkeypatch.setattr(CredentialVault, "client", client)


def test_throttling_and_5xx_bursts_are_absorbed_by_adaptive_retries(
    aws, sqlite_url, encryption_key, monkeypatch, report, fast_backoff
):
    ids = seed_instances(boto3.Session(region_name="eu-west-1"), "eu-west-1", 3) + seed_instances(
        boto3.Session(region_name="us-east-1"), "us-east-1", 2
    )
    add_keys_account(sqlite_url, encryption_key)
    # 7 errors in a row (throttles and 5xx) on eu-west-1: within max_attempts=10 (10 retries).
    injector = Injector("eu-west-1", burst=7)
    _inject(monkeypatch, injector)
    result = discover(sqlite_url, encryption_key, max_attempts=10)
    assert result.success, failure_text(result)
    assert injector.sent[("eu-west-1", "error")] == 7 and injector.sent[("eu-west-1", "ok")] == 1
    assert fast_backoff[0] > 0  # the adaptive mode's client-side rate limiter slowed the throttled client
    # Every failed attempt was retried by botocore inside one step attempt (no Dagster retry).
    assert not [e for e in result.all_events if e.event_type_value == "STEP_RESTARTED"]
    rows = stored_instances(sqlite_url)
    assert rows == sorted((i, "running") for i in ids) and account_state(sqlite_url) == ("active", None)
    report.runs, report.rows_checked = 1, len(rows)
    report.lost, report.duplicated = len(set(ids) - {r[0] for r in rows}), duplicates(r[0] for r in rows)


def test_throttling_beyond_the_retry_limit_fails_the_region_clearly(
    aws, sqlite_url, encryption_key, monkeypatch, report
):
    eu = seed_instances(boto3.Session(region_name="eu-west-1"), "eu-west-1", 3)
    us = seed_instances(boto3.Session(region_name="us-east-1"), "us-east-1", 2)
    add_keys_account(sqlite_url, encryption_key)
    assert discover(sqlite_url, encryption_key).success
    before = stored_instances(sqlite_url)
    boto3.client("ec2", region_name="us-east-1").terminate_instances(InstanceIds=us[:1])

    injector = Injector("eu-west-1", burst=None)  # eu-west-1 never answers
    _inject(monkeypatch, injector)
    failed = discover(sqlite_url, encryption_key, max_attempts=4)
    assert not failed.success
    # botocore's `max_attempts` counts retries: 1 + 4 requests per step attempt, and 1 + 3 step
    # attempts (the RetryPolicy): the limit is exact, not open-ended.
    assert injector.sent[("eu-west-1", "error")] == (1 + 4) * (1 + 3)
    cause = failure_text(failed)
    assert "eu-west-1" in cause and "RequestLimitExceeded" in cause and "1 region(s)" in cause, cause
    status, error = account_state(sqlite_url)
    assert status == "failed" and "eu-west-1" in error and "RequestLimitExceeded" in error
    # The healthy region is stored; the failed region's rows are kept, not marked terminated.
    rows = dict(stored_instances(sqlite_url))
    assert {i: rows[i] for i in eu} == {i: "running" for i in eu}
    assert rows[us[0]] == "terminated" and rows[us[1]] == "running"
    assert len(rows) == len(before)
    report.runs, report.rows_checked = 2, len(before) + len(rows)
    report.lost = len({i for i, _ in before} - set(rows))


def test_assumed_role_credentials_expiring_mid_run_are_refreshed(aws, sqlite_url, encryption_key, monkeypatch, report):
    ids = seed_instances(role_session(region="eu-west-1"), "eu-west-1", 3) + seed_instances(
        role_session(region="us-east-1"), "us-east-1", 2
    )
    with session_factory(sqlite_url)() as session, session.begin():
        session.add(
            Account(
                name="dev",
                aws_account_id=ROLE_ACCOUNT_ID,
                auth_method="role",
                role_arn=f"arn:aws:iam::{ROLE_ACCOUNT_ID}:role/SpotPipelines",
                external_id="ext-1",
                regions=["eu-west-1", "us-east-1"],
                status="connected",
            )
        )

    clock = {"now": datetime.now(timezone.utc)}
    monkeypatch.setattr(botocore.credentials, "_local_now", lambda: clock["now"])  # bound by each credentials object
    fetched: list[str] = []
    original_fetch = botocore.credentials.AssumeRoleCredentialFetcher.fetch_credentials

    def counting_fetch(self):
        creds = original_fetch(self)
        fetched.append(creds["access_key"])
        return creds

    monkeypatch.setattr(botocore.credentials.AssumeRoleCredentialFetcher, "fetch_credentials", counting_fetch)
    signed_with: list[str] = []

    def expire_after_region_listing(request, event_name: str = "", **_):
        # Runs while signing each request: once the regions are listed, 55 minutes pass (the
        # one-hour credentials are inside botocore's mandatory refresh window).
        if event_name.endswith(".DescribeInstances"):
            signed_with.append(
                request.headers.get("Authorization", b"").decode()
                if isinstance(request.headers.get("Authorization"), bytes)
                else str(request.headers.get("Authorization"))
            )

    def advance(parsed=None, model=None, **_):
        if model is not None and model.name == "DescribeRegions":
            clock["now"] = clock["now"] + timedelta(minutes=55)

    original = CredentialVault.client

    def client(self, session, service, region=None):
        # DeferredRefreshableCredentials bind their clock at construction (a default argument).
        session.get_credentials()._time_fetcher = lambda: clock["now"]
        c = original(self, session, service, region)
        c.meta.events.register("after-call.ec2.DescribeRegions", advance)
        c.meta.events.register("before-send.ec2", expire_after_region_listing)
        return c

    monkeypatch.setattr(CredentialVault, "client", client)
    result = discover(sqlite_url, encryption_key)
    assert result.success, failure_text(result)
    assert len(fetched) >= 2 and fetched[0] != fetched[-1]  # refreshed mid-run, not re-used expired
    assert signed_with and all(fetched[0] not in s for s in signed_with)  # no scan signed with the old key
    rows = stored_instances(sqlite_url)
    assert rows == sorted((i, "running") for i in ids)

    # A refresh that AWS refuses (the role's trust was revoked) fails the run with its cause.
    from botocore.exceptions import ClientError

    def denied(self):
        raise ClientError(
            {"Error": {"Code": "AccessDenied", "Message": "not authorized to perform sts:AssumeRole"}}, "AssumeRole"
        )

    monkeypatch.setattr(botocore.credentials.AssumeRoleCredentialFetcher, "fetch_credentials", denied)
    clock["now"] = clock["now"] + timedelta(hours=3)
    failed = discover(sqlite_url, encryption_key)
    assert not failed.success and "AccessDenied" in failure_text(failed)
    assert stored_instances(sqlite_url) == rows  # nothing lost on the failed run
    report.runs, report.rows_checked = 2, 2 * len(rows)
    report.duplicated = duplicates(r[0] for r in rows)
