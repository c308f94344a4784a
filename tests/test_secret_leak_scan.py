"""A secret planted in an account never reaches the Dagster storage, the app database's
plaintext, or the logs (issue 7 widens this to every surface)."""

import logging
import shutil
from pathlib import Path

import dagster as dg
from click.testing import CliRunner
from sqlalchemy import inspect, text

from spot_pipelines.assets.discovery import discovered_instances
from spot_pipelines.cli import main
from spot_pipelines.db.engine import get_engine
from spot_pipelines.partitions import AWS_ACCOUNTS_PARTITION
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.resources.credential_vault import CredentialVault
from spot_pipelines.settings import PROJECT_ROOT
from tests.aws_fakes import KEYS_ACCOUNT_ID, fail_region, seed_instances

PLANTED = "PLANTEDsecretKEY0123456789abcdefghijKLMN"


def scan_files(root: Path, needles: list[str]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path}: {n[:6]}…" for n in needles if n.encode() in data]
    return hits


def scan_tables(url: str, needles: list[str]) -> list[str]:
    engine = get_engine(url)
    hits = []
    with engine.connect() as conn:
        for table in inspect(engine).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                flat = " ".join(str(v) for v in row)
                hits += [f"{table}: {n[:6]}…" for n in needles if n in flat]
    return hits


def test_planted_secret_never_leaks(aws, db_url, encryption_key, monkeypatch, tmp_path, capfd, caplog):
    caplog.set_level(logging.DEBUG)
    home = tmp_path / "dagster_home"
    shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DATABASE_URL", db_url)
    import boto3
    seed_instances(boto3.Session(region_name="eu-west-1"), "eu-west-1", 2)

    out = CliRunner().invoke(main, ["accounts", "add", "dev", "--aws-account-id", KEYS_ACCOUNT_ID,
                                    "--access-key-id", "AKIAIOSFODNN7EXAMPLE", "--regions", "eu-west-1"],
                             input=PLANTED + "\n")
    assert out.exit_code == 0, out.output
    vault = CredentialVault(encryption_key=encryption_key, max_attempts=1)
    resources = {"app_db": AppDatabase(), "vault": vault}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions(AWS_ACCOUNTS_PARTITION, ["dev"])
        assert dg.materialize([discovered_instances], partition_key="dev", instance=instance,
                              resources=resources).success
        # A failing run too: error paths are where secrets usually slip out.
        original = CredentialVault.client

        def denied(self, session, service, region=None):
            client = original(self, session, service, region)
            client.meta.events.register("before-send.ec2", fail_region("AuthFailure", "us-east-1", "DescribeRegions"))
            return client
        monkeypatch.setattr(CredentialVault, "client", denied)
        failed = dg.materialize([discovered_instances], partition_key="dev", instance=instance,
                                resources={"app_db": AppDatabase(), "vault": CredentialVault(
                                    encryption_key=encryption_key, max_attempts=1)}, raise_on_error=False)
        assert not failed.success
        events = [str(e) for run in instance.get_runs() for e in instance.all_logs(run.run_id)]

    needles = [PLANTED, encryption_key]
    # The scanners do see the stored runs and rows: a canary they must find.
    assert scan_files(home, ["discovered_instances"]) and scan_tables(db_url, ["AKIAIOSFODNN7EXAMPLE"])
    assert events and not [n for n in needles for e in events if n in e]
    assert scan_files(home, needles) == []  # Dagster's SQLite storage, compute logs, the app DB file
    assert scan_tables(db_url, needles) == []  # the ciphertext column holds a token, not the secret
    captured = capfd.readouterr()
    assert not [n for n in needles if n in captured.out + captured.err + out.output + caplog.text]
