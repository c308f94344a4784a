from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import botocore.credentials
import pytest

from spot_pipelines.core.errors import ConfigError, CredentialError
from spot_pipelines.resources.credential_vault import CredentialVault
from tests.support.aws_fakes import KEYS_ACCOUNT_ID, ROLE_ACCOUNT_ID


def account(**fields):
    base = dict(
        id=1,
        name="prod",
        aws_account_id=ROLE_ACCOUNT_ID,
        auth_method="role",
        role_arn=f"arn:aws:iam::{ROLE_ACCOUNT_ID}:role/SpotPipelines",
        external_id="ext-1",
        access_key_id=None,
        encrypted_secret=None,
    )
    return SimpleNamespace(**{**base, **fields})


def test_nothing_is_decrypted_or_connected_at_construction():
    # No ENCRYPTION_KEY, no AWS: building the resource must not fail.
    vault = CredentialVault(encryption_key=None)
    with pytest.raises(Exception, match="ENCRYPTION_KEY is not set"):
        vault.encrypt("x")


def test_key_account_session_uses_the_decrypted_secret(aws, encryption_key):
    vault = CredentialVault(encryption_key=encryption_key)
    acct = account(
        auth_method="keys",
        aws_account_id=KEYS_ACCOUNT_ID,
        role_arn=None,
        access_key_id="AKIAIOSFODNN7EXAMPLE",
        encrypted_secret=vault.encrypt("wJalrXUtnFEMI/K7MDENG"),
    )
    session = vault.session_for(acct)
    assert session.get_credentials().secret_key == "wJalrXUtnFEMI/K7MDENG"
    assert vault.session_for(acct) is session  # cached
    assert vault.validate(acct).startswith("arn:aws:")


def test_role_account_assumes_the_role_with_external_id(aws, encryption_key):
    vault = CredentialVault(encryption_key=encryption_key)
    acct = account()
    arn = vault.validate(acct)
    assert ROLE_ACCOUNT_ID in arn and "assumed-role/SpotPipelines/spot-pipelines" in arn
    client = vault.client(vault.session_for(acct), "ec2", "eu-west-1")
    assert client.meta.config.retries["mode"] == "adaptive"


def test_assumed_role_credentials_refresh_before_expiry(aws, encryption_key, monkeypatch):
    vault = CredentialVault(encryption_key=encryption_key)
    credentials = vault.session_for(account()).get_credentials()
    first = credentials.get_frozen_credentials().access_key
    assert not credentials.refresh_needed()
    # 55 minutes later the one-hour credentials are inside botocore's refresh window.
    later = datetime.now(timezone.utc) + timedelta(minutes=55)
    monkeypatch.setattr(botocore.credentials, "_local_now", lambda: later)  # the fetcher's cache clock
    monkeypatch.setattr(credentials, "_time_fetcher", lambda: later)  # bound at construction
    assert credentials.refresh_needed()
    assert credentials.get_frozen_credentials().access_key != first


def test_credentials_of_another_account_are_rejected(aws, encryption_key):
    vault = CredentialVault(encryption_key=encryption_key)
    acct = account(
        auth_method="keys",
        aws_account_id="210987654321",
        role_arn=None,
        access_key_id="AKIAIOSFODNN7EXAMPLE",
        encrypted_secret=vault.encrypt("wJalrXUtnFEMI/K7MDENG"),
    )
    with pytest.raises(CredentialError, match=f"belong to AWS account {KEYS_ACCOUNT_ID}, not 210987654321"):
        vault.validate(acct)


def test_without_platform_credentials_the_assume_role_error_reads_whole(monkeypatch, tmp_path):
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(CredentialError) as err:
        CredentialVault(encryption_key=None).session_for(account())
    message = str(err.value)
    assert message.startswith(
        f"account 'prod': cannot assume arn:aws:iam::{ROLE_ACCOUNT_ID}:role/SpotPipelines: "
        "the platform itself has no AWS credentials to call sts:AssumeRole"
    )
    assert message.endswith("AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)") and "\n" not in message


def test_a_missing_key_never_advises_a_new_one_when_secrets_are_stored(encryption_key):
    token = CredentialVault(encryption_key=encryption_key).encrypt("wJalrXUtnFEMI/K7MDENG")
    acct = account(auth_method="keys", role_arn=None, access_key_id="AKIAIOSFODNN7EXAMPLE", encrypted_secret=token)
    for missing in (None, "", "  "):
        with pytest.raises(ConfigError) as err:
            CredentialVault(encryption_key=missing).session_for(acct)
        assert "ENCRYPTION_KEY is not set" in str(err.value) and "set -a; . ./.env; set +a" in str(err.value)
        assert "generate" not in str(err.value)


def test_sessions_of_different_accounts_share_botocores_data_loader_but_never_credentials(aws, encryption_key):
    # Two vaults, as two runs in one process would have; a key account and a role account.
    first, second = CredentialVault(encryption_key=encryption_key), CredentialVault(encryption_key=encryption_key)
    keys = account(
        id=2,
        auth_method="keys",
        aws_account_id=KEYS_ACCOUNT_ID,
        role_arn=None,
        access_key_id="AKIAIOSFODNN7EXAMPLE",
        encrypted_secret=first.encrypt("wJalrXUtnFEMI/K7MDENG"),
    )
    role = account()
    keys_session, role_session = first.session_for(keys), second.session_for(role)

    loaders = {id(s._session.get_component("data_loader")) for s in (keys_session, role_session)}
    assert len(loaders) == 1  # the EC2 model is read once per process
    assert keys_session.get_credentials().secret_key == "wJalrXUtnFEMI/K7MDENG"
    assert role_session.get_credentials().access_key != "AKIAIOSFODNN7EXAMPLE"
    # Each account's clients act as that account (moto answers per account).
    assert first.client(keys_session, "sts").get_caller_identity()["Account"] == KEYS_ACCOUNT_ID
    assert second.client(role_session, "sts").get_caller_identity()["Account"] == ROLE_ACCOUNT_ID
    assert KEYS_ACCOUNT_ID in first.validate(keys)
    assert ROLE_ACCOUNT_ID in second.validate(role)
