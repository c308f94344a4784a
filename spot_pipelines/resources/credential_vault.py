"""CredentialVault: encrypted account secrets at rest, and boto3 sessions per account.

Nothing is decrypted, assumed or connected at import or definition-load time.
"""

import threading
from typing import Protocol

import boto3
import botocore.loaders
import botocore.session
import dagster as dg
from botocore.config import Config
from botocore.credentials import (
    AssumeRoleCredentialFetcher,
    CredentialProvider,
    CredentialResolver,
    DeferredRefreshableCredentials,
)
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import PrivateAttr

from spot_pipelines.core.aws_errors import describe
from spot_pipelines.core.discovery import fast_timestamp
from spot_pipelines.core.errors import ConfigError, CredentialError
from spot_pipelines.core.keyring import ENV_VAR, Keyring
from spot_pipelines.settings import aws_retry_delay_seconds

HOME_REGION = "us-east-1"
SESSION_NAME = "spot-pipelines"


def aws_config(max_attempts: int = 10, pool: int = 32) -> Config:
    """botocore's adaptive retry mode: client-side rate limiting plus retries on throttling."""
    return Config(
        retries={"mode": "adaptive", "max_attempts": max_attempts},
        max_pool_connections=pool,
        connect_timeout=10,
        read_timeout=60,
    )


_loader_lock = threading.Lock()
_loader: botocore.loaders.Loader | None = None


def _botocore_session() -> botocore.session.Session:
    """A fresh botocore session (its own credentials, config and events) on the process's shared data loader.

    A fresh session otherwise re-reads and re-decodes botocore's JSON (the EC2 model alone, ~0.1 s
    of CPU) into its own cache: once per account. The loader only reads botocore's bundled,
    read-only model files; nothing of an account's goes through it. Each Dagster run is its own
    process and pays the first load once; later sessions of the process (a role account's
    source and target sessions, sensors validating many accounts) reuse it.
    """
    global _loader
    session = botocore.session.get_session()
    with _loader_lock:
        if _loader is None:
            _loader = session.get_component("data_loader")
    session.register_component("data_loader", _loader)
    session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=fast_timestamp)
    return session


# Dagster's step retries on AWS-calling assets, above botocore's per-call retries.
AWS_RETRY_POLICY = dg.RetryPolicy(
    max_retries=3, delay=aws_retry_delay_seconds(), backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


class AccountCredentials(Protocol):
    id: int
    name: str
    aws_account_id: str
    auth_method: str
    role_arn: str | None
    external_id: str | None
    access_key_id: str | None
    encrypted_secret: str | None


class _Provider(CredentialProvider):
    METHOD = "spot-pipelines-vault"

    def __init__(self, credentials):
        super().__init__()
        self._credentials = credentials

    def load(self):
        return self._credentials


class CredentialVault(dg.ConfigurableResource):
    """Encrypts secrets with ENCRYPTION_KEY (MultiFernet) and hands out cached boto3 sessions."""

    encryption_key: str | None = None
    max_attempts: int = 10

    _keyring: Keyring | None = PrivateAttr(default=None)
    _sessions: dict = PrivateAttr(default_factory=dict)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def keyring(self) -> Keyring:
        if self._keyring is None:
            if not (self.encryption_key or "").strip():
                # Secrets may already be stored under a key: advising a new one would orphan them.
                raise ConfigError(
                    f"{ENV_VAR} is not set for this process: set it to the key the stored "
                    "secrets were encrypted with (from a .env: `set -a; . ./.env; set +a`); a new "
                    "key cannot read them"
                )
            self._keyring = Keyring(self.encryption_key)
        return self._keyring

    def encrypt(self, plaintext: str) -> str:
        return self.keyring.encrypt(plaintext)

    def session_for(self, account: AccountCredentials) -> boto3.Session:
        """A session for the account, cached; assumed-role credentials refresh before expiry."""
        cache_key = (account.id, account.auth_method, account.role_arn, account.access_key_id, account.encrypted_secret)
        with self._lock:
            session = self._sessions.get(cache_key)
            if session is None:
                session = self._build_session(account)
                self._sessions[cache_key] = session
            return session

    def client(self, session: boto3.Session, service: str, region: str | None = None):
        # boto3 sessions are not thread-safe for client creation; clients themselves are.
        with self._lock:
            return session.client(service, region_name=region or HOME_REGION, config=aws_config(self.max_attempts))

    def validate(self, account: AccountCredentials) -> str:
        """Call sts:GetCallerIdentity; return the caller ARN or raise CredentialError."""
        session = self.session_for(account)
        try:
            identity = self.client(session, "sts").get_caller_identity()
        except (ClientError, BotoCoreError) as exc:
            self.forget(account)
            raise CredentialError(f"account {account.name!r}: AWS rejected the credentials ({describe(exc)})") from None
        if identity["Account"] != account.aws_account_id:
            self.forget(account)
            raise CredentialError(
                f"account {account.name!r}: the credentials belong to AWS account {identity['Account']}, "
                f"not {account.aws_account_id}"
            )
        return identity["Arn"]

    def forget(self, account: AccountCredentials) -> None:
        with self._lock:
            for key in [k for k in self._sessions if k[0] == account.id]:
                del self._sessions[key]

    def _build_session(self, account: AccountCredentials) -> boto3.Session:
        if account.auth_method == "keys":
            if not (account.access_key_id and account.encrypted_secret):
                raise CredentialError(f"account {account.name!r}: no access key stored")
            secret = self.keyring.decrypt(account.encrypted_secret, owner=f"account {account.name!r}")
            return boto3.Session(
                aws_access_key_id=account.access_key_id,
                aws_secret_access_key=secret,
                region_name=HOME_REGION,
                botocore_session=_botocore_session(),
            )
        if account.auth_method == "role":
            return self._assume_role_session(account)
        raise CredentialError(f"account {account.name!r}: unknown auth method {account.auth_method!r}")

    def _assume_role_session(self, account: AccountCredentials) -> boto3.Session:
        # The platform's own identity (instance profile, env, IRSA) assumes the account's role.
        source = _botocore_session()
        source_credentials = source.get_credentials()
        if source_credentials is None:
            raise CredentialError(
                f"account {account.name!r}: cannot assume {account.role_arn}: the platform itself has no AWS "
                "credentials to call sts:AssumeRole (give it an instance profile or IRSA role, AWS_PROFILE, "
                "or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
            )
        extra_args = {"RoleSessionName": SESSION_NAME}
        if account.external_id:
            extra_args["ExternalId"] = account.external_id
        fetcher = AssumeRoleCredentialFetcher(
            client_creator=source.create_client,
            source_credentials=source_credentials,
            role_arn=account.role_arn,
            extra_args=extra_args,
        )
        # botocore refreshes these before they expire (advisory/mandatory refresh windows).
        credentials = DeferredRefreshableCredentials(refresh_using=fetcher.fetch_credentials, method="assume-role")
        target = _botocore_session()
        target.register_component("credential_provider", CredentialResolver([_Provider(credentials)]))
        return boto3.Session(botocore_session=target, region_name=HOME_REGION)
