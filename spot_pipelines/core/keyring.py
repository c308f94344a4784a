"""Fernet encryption at rest with MultiFernet rotation.

ENCRYPTION_KEY holds one or more comma-separated Fernet keys: the first encrypts, all decrypt.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from spot_pipelines.core.errors import ConfigError, CredentialError

ENV_VAR = "ENCRYPTION_KEY"


def generate_key() -> str:
    return Fernet.generate_key().decode()


def parse_keys(raw: str | None) -> list[Fernet]:
    if raw is None or not raw.strip():
        raise ConfigError(
            f"{ENV_VAR} is not set: generate one with `spot-pipelines keys generate` "
            "and export it (a key is never generated for you, or old secrets would be unreadable)"
        )
    parts = [part.strip() for part in raw.split(",")]
    keys = []
    for position, part in enumerate(parts, start=1):
        try:
            keys.append(Fernet(part.encode()))
        except (ValueError, TypeError):
            # Never echo the value: it is (or is meant to be) a secret.
            raise ConfigError(
                f"{ENV_VAR}: key #{position} of {len(parts)} is not a valid Fernet key "
                "(32 url-safe base64-encoded bytes, as `spot-pipelines keys generate` prints)"
            ) from None
    return keys


class Keyring:
    def __init__(self, raw_keys: str | None):
        self._keys = parse_keys(raw_keys)
        self._fernet = MultiFernet(self._keys)

    @property
    def key_count(self) -> int:
        return len(self._keys)

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str, *, owner: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise CredentialError(
                f"the stored secret of {owner} cannot be decrypted with any key in {ENV_VAR}: "
                "it was encrypted under a key that is no longer configured (restore the old key "
                "after the new one, run `spot-pipelines keys rotate`, then drop it)"
            ) from None

    def rotate(self, token: str, *, owner: str) -> str:
        """Re-encrypt under the primary key; raises if the token is unreadable."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken:
            raise CredentialError(
                f"the stored secret of {owner} cannot be decrypted with any key in {ENV_VAR}"
            ) from None

    def readable_by_primary(self, token: str) -> bool:
        try:
            self._keys[0].decrypt(token.encode())
            return True
        except InvalidToken:
            return False
