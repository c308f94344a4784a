"""Leak scan: the full flow (onboarding through the CLI, discovery of a key-based and a role-based
account, successful and failing runs, key rotation) with unique planted secrets — a secret access
key, the assumed role's session tokens, ENCRYPTION_KEY — then every surface a person or attacker can
read is scanned: Dagster's run and event storage (SQLite and Postgres), compute logs, the app
database's text/JSON columns, stdout/stderr and logging, exception messages, and the GraphQL answers
the UI gets for runs and assets. Each scanner first proves it sees data (a canary it must find)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path

import boto3
import botocore.credentials
import dagster as dg
import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet
from sqlalchemy import inspect, text

import spot_pipelines.assets.discovery as discovery_asset
from spot_pipelines.cli import main
from spot_pipelines.core.errors import SpotPipelinesError
from spot_pipelines.db.engine import get_engine
from spot_pipelines.partitions import AWS_ACCOUNTS_PARTITION
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.resources.credential_vault import CredentialVault
from spot_pipelines.resources.kubernetes import KubernetesResource
from spot_pipelines.resources.redis import RedisResource
from spot_pipelines.settings import PROJECT_ROOT
from tests.support.aws_fakes import (
    KEYS_ACCOUNT_ID,
    ROLE_ACCOUNT_ID,
    fail_region,
    role_session,
    seed_instances,
    vault_clients_with,
)

CANARY = f"CANARY{uuid.uuid4().hex[:12]}"


def discovery_resources(vault: CredentialVault) -> dict:
    """What discovered_instances needs, from the environment (app DB, Redis, Kubernetes), with this vault."""
    return {"app_db": AppDatabase(), "vault": vault, "redis": RedisResource(), "kubernetes": KubernetesResource()}


def scan_files(root: Path, needles: list[str]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path}: {n[:6]}…" for n in needles if n.encode() in data]
    return hits


def scan_tables(url: str, needles: list[str]) -> tuple[list[str], int]:
    """Every column of every table (text, JSON, ciphertext), as text. Returns (hits, cells read)."""
    engine = get_engine(url)
    hits, cells = [], 0
    with engine.connect() as conn:
        for table in inspect(engine).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                cells += len(row)
                flat = " ".join(str(v) for v in row)
                hits += [f"{table}: {n[:6]}…" for n in needles if n in flat]
    return hits, cells


def scan_dagster_pg(url: str, needles: list[str]) -> tuple[list[str], int]:
    return scan_tables(url.replace("postgresql+psycopg2://", "postgresql://"), needles)


GRAPHQL_RUNS = """
{ runsOrError { ... on Runs { results { runId status runConfigYaml tags { key value }
    eventConnection { events { __typename
      ... on MessageEvent { message }
      ... on ExecutionStepFailureEvent { error { message stack cause { message stack } } }
      ... on RunFailureEvent { error { message } }
      ... on MaterializationEvent { metadataEntries { label description
          ... on TextMetadataEntry { text } ... on MarkdownMetadataEntry { mdStr }
          ... on JsonMetadataEntry { jsonString } ... on TableMetadataEntry { table { records } } } } } } } } } }
"""
GRAPHQL_ASSETS = """
{ assetsOrError { ... on AssetConnection { nodes { key { path }
    assetMaterializations(limit: 20) { runId partition metadataEntries { label
        ... on TextMetadataEntry { text } ... on MarkdownMetadataEntry { mdStr }
        ... on JsonMetadataEntry { jsonString } ... on TableMetadataEntry { table { records } } } } } } } }
"""


def graphql_answers(instance: dg.DagsterInstance) -> str:
    from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

    with define_out_of_process_context(str(PROJECT_ROOT / "workspace.yaml"), None, instance) as context:
        answers = [execute_dagster_graphql(context, query) for query in (GRAPHQL_RUNS, GRAPHQL_ASSETS)]
    for answer in answers:
        assert not answer.errors, answer.errors
    return json.dumps([a.data for a in answers])


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage(request, monkeypatch):
    """(Dagster storage kind, app database URL, Dagster Postgres URL or None)."""
    if request.param == "sqlite":
        return "sqlite", request.getfixturevalue("sqlite_url"), None
    pg = request.getfixturevalue("dagster_pg_url")
    with get_engine(pg.replace("postgresql+psycopg2://", "postgresql://")).begin() as conn:  # a clean event log
        tables = [
            r[0]
            for r in conn.execute(
                text(
                    "SELECT tablename FROM pg_tables WHERE schemaname='public' "
                    "AND tablename NOT IN ('alembic_version', 'secondary_indexes')"
                )
            )
        ]
        if tables:
            conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE"))
    monkeypatch.setenv("DAGSTER_PG_URL", pg)
    return "postgres", request.getfixturevalue("pg_url"), pg


def test_planted_secrets_never_leak(aws, storage, monkeypatch, tmp_path, capfd, caplog, report):
    kind, app_url, dagster_pg = storage
    # Everything at DEBUG, botocore's wire logging included (redacted by spot_pipelines.system_log).
    caplog.set_level(logging.DEBUG)
    secret = f"PLANTED{uuid.uuid4().hex}SECRET"
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    home = Path(os.environ["DAGSTER_HOME"])
    shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DATABASE_URL", app_url)
    monkeypatch.setenv("ENCRYPTION_KEY", old_key)
    seeded = seed_instances(boto3.Session(region_name="eu-west-1"), "eu-west-1", 2, tags={"Name": CANARY})
    seeded += seed_instances(role_session(region="eu-west-1"), "eu-west-1", 2, tags={"Name": CANARY})

    # Every session token the assumed role hands out is a planted secret too.
    tokens: list[str] = []
    original_fetch = botocore.credentials.AssumeRoleCredentialFetcher.fetch_credentials

    def recording_fetch(self):
        creds = original_fetch(self)
        tokens.append(creds["token"])
        tokens.append(creds["secret_key"])
        return creds

    monkeypatch.setattr(botocore.credentials.AssumeRoleCredentialFetcher, "fetch_credentials", recording_fetch)
    # A canary written from inside the step, where compute logs would capture it.
    real_write = discovery_asset.write_scan

    def write_with_canary(*args, **kwargs):
        print(f"compute canary {CANARY}", flush=True)
        return real_write(*args, **kwargs)

    monkeypatch.setattr(discovery_asset, "write_scan", write_with_canary)

    runner = CliRunner()
    outputs = []
    out = runner.invoke(
        main,
        [
            "accounts",
            "add",
            "dev",
            "--aws-account-id",
            KEYS_ACCOUNT_ID,
            "--access-key-id",
            "AKIAIOSFODNN7EXAMPLE",
            "--regions",
            "eu-west-1",
        ],
        input=secret + "\n",
    )
    outputs.append(out.output)
    assert out.exit_code == 0, out.output
    out = runner.invoke(
        main,
        [
            "accounts",
            "add",
            "prodrole",
            "--aws-account-id",
            ROLE_ACCOUNT_ID,
            "--role-arn",
            f"arn:aws:iam::{ROLE_ACCOUNT_ID}:role/SpotPipelines",
            "--external-id",
            "ext-123",
            "--regions",
            "eu-west-1",
        ],
    )
    outputs.append(out.output)
    assert out.exit_code == 0, out.output
    # A secret too short to accept: rejected without echoing it.
    out = runner.invoke(
        main,
        ["accounts", "add", "bad", "--aws-account-id", KEYS_ACCOUNT_ID, "--access-key-id", "AKIAIOSFODNN7EXAMPLE"],
        input=secret[:10] + "\n",
    )
    outputs.append(out.output + str(out.exception or ""))
    assert out.exit_code != 0

    exceptions: list[str] = []
    with dg.DagsterInstance.get() as instance:
        assert (kind == "postgres") == ("Postgres" in type(instance.run_storage).__name__), instance.run_storage
        instance.add_dynamic_partitions(AWS_ACCOUNTS_PARTITION, ["dev", "prodrole"])
        for name in ("dev", "prodrole"):
            result = dg.materialize(
                [discovery_asset.discovered_instances],
                partition_key=name,
                instance=instance,
                resources=discovery_resources(CredentialVault(encryption_key=old_key, max_attempts=1)),
            )
            assert result.success
        # Failing runs: AWS refusing the credentials, and a vault without the right key.
        original_client = CredentialVault.client
        vault_clients_with(monkeypatch, fail_region("AuthFailure", "us-east-1", "DescribeRegions"))
        for name in ("dev", "prodrole"):
            failed = dg.materialize(
                [discovery_asset.discovered_instances],
                partition_key=name,
                instance=instance,
                raise_on_error=False,
                resources=discovery_resources(CredentialVault(encryption_key=old_key, max_attempts=1)),
            )
            assert not failed.success
        monkeypatch.setattr(CredentialVault, "client", original_client)
        wrong_key = dg.materialize(
            [discovery_asset.discovered_instances],
            partition_key="dev",
            instance=instance,
            raise_on_error=False,
            resources=discovery_resources(CredentialVault(encryption_key=new_key, max_attempts=1)),
        )
        assert not wrong_key.success
        try:
            with dg.build_resources({"vault": CredentialVault(encryption_key=new_key)}) as res:
                from spot_pipelines.db import accounts as account_rows
                from spot_pipelines.db.engine import session_factory

                with session_factory(app_url)() as session:
                    res.vault.session_for(account_rows.by_name(session, "dev"))
        except SpotPipelinesError as exc:
            exceptions.append(f"{exc!r} {exc}")
        # Key rotation: old,new → new first.
        monkeypatch.setenv("ENCRYPTION_KEY", f"{new_key},{old_key}")
        out = runner.invoke(main, ["keys", "rotate"])
        outputs.append(out.output)
        assert out.exit_code == 0, out.output
        out = runner.invoke(main, ["accounts", "list", "--json"])
        outputs.append(out.output)
        assert out.exit_code == 0, out.output

        runs = instance.get_runs()
        events = "\n".join(str(e) for run in runs for e in instance.all_logs(run.run_id))
        failures = [
            e
            for run in runs
            for e in instance.all_logs(run.run_id)
            if e.dagster_event is not None and e.dagster_event.event_type_value == "STEP_FAILURE"
        ]
        exceptions += [str(e.dagster_event.event_specific_data.error.to_string()) for e in failures]
        graphql = graphql_answers(instance)

    needles = [secret, old_key, new_key, *dict.fromkeys(tokens)]
    assert len(tokens) >= 2, "the role account never assumed its role"
    captured = capfd.readouterr()
    stdio = captured.out + captured.err + "\n".join(outputs) + caplog.text

    surfaces: dict[str, tuple[bool, list[str]]] = {}  # surface -> (canary seen, hits)
    surfaces["event log (API)"] = (
        CANARY in events or "discovered_instances" in events,
        [n[:6] for n in needles if n in events],
    )
    surfaces["DAGSTER_HOME files (SQLite storage, compute logs)"] = (
        bool(scan_files(home, ["discovered_instances"])),
        scan_files(home, needles),
    )
    compute_logs = [p for p in home.rglob("*") if p.is_file() and p.suffix in (".out", ".err", ".complete")]
    if compute_logs:
        surfaces["compute logs"] = (bool(scan_files(home, [CANARY])), scan_files(home, needles))
    app_hits, app_cells = scan_tables(app_url, needles)
    surfaces["app database"] = (bool(scan_tables(app_url, ["AKIAIOSFODNN7EXAMPLE", CANARY])[0]), app_hits)
    if dagster_pg:
        pg_hits, _ = scan_dagster_pg(dagster_pg, needles)
        surfaces["Dagster Postgres storage"] = (bool(scan_dagster_pg(dagster_pg, ["discovered_instances"])[0]), pg_hits)
    surfaces["stdout/stderr/logging/CLI output"] = (CANARY in stdio, [n[:6] for n in needles if n in stdio])
    joined = "\n".join(exceptions)
    surfaces["exception messages"] = (
        "cannot be decrypted" in joined and "AuthFailure" in joined,
        [n[:6] for n in needles if n in joined],
    )
    surfaces["GraphQL runs + assets"] = (
        all(i in graphql for i in seeded) and "AuthFailure" in graphql,
        [n[:6] for n in needles if n in graphql],
    )

    blind = [name for name, (seen, _) in surfaces.items() if not seen]
    leaks = {name: hits for name, (_, hits) in surfaces.items() if hits}
    report.fault = f"leak scan [{kind}]: {len(surfaces)} surfaces, {len(needles)} secrets" + (
        ", compute logs present" if compute_logs else ", no compute log files (in-process runs)"
    )
    report.runs = len(runs)
    report.rows_checked = app_cells
    report.leaks = sum(len(h) for h in leaks.values())
    assert blind == [] and leaks == {}, (f"scanners that saw no data: {blind}", leaks)


def test_botocore_debug_logging_never_shows_assumed_role_credentials(aws, encryption_key, caplog):
    """botocore at DEBUG writes AssumeRole's response body and the X-Amz-Security-Token header;
    the redaction filter on its wire loggers removes both (spot_pipelines.system_log)."""
    from types import SimpleNamespace

    caplog.set_level(logging.DEBUG)
    account = SimpleNamespace(
        id=1,
        name="prod",
        aws_account_id=ROLE_ACCOUNT_ID,
        auth_method="role",
        role_arn=f"arn:aws:iam::{ROLE_ACCOUNT_ID}:role/SpotPipelines",
        external_id="ext-1",
        access_key_id=None,
        encrypted_secret=None,
    )
    vault = CredentialVault(encryption_key=encryption_key)
    vault.validate(account)
    creds = vault.session_for(account).get_credentials().get_frozen_credentials()
    # botocore did log the AssumeRole response body: the redaction, not silence, keeps it clean.
    assert any(r.name == "botocore.parsers" and "AssumeRoleResponse" in r.getMessage() for r in caplog.records)
    assert creds.token not in caplog.text and creds.secret_key not in caplog.text
