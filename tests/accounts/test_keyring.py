import pytest
from cryptography.fernet import Fernet

from spot_pipelines.core.errors import ConfigError, CredentialError
from spot_pipelines.core.keyring import Keyring


def test_missing_key_is_a_clear_error_not_a_generated_key():
    for raw in (None, "", "   "):
        with pytest.raises(ConfigError, match="ENCRYPTION_KEY is not set"):
            Keyring(raw)


def test_malformed_key_names_its_position_and_never_echoes_it():
    good = Fernet.generate_key().decode()
    bad = "not-a-fernet-key-but-a-secret-value"
    with pytest.raises(ConfigError) as err:
        Keyring(f"{good},{bad}")
    assert "key #2 of 2" in str(err.value)
    assert bad not in str(err.value) and good not in str(err.value)


def test_first_key_encrypts_and_every_key_decrypts():
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    token_under_old = Keyring(old).encrypt("s3cret")
    both = Keyring(f"{new},{old}")
    assert both.decrypt(token_under_old, owner="x") == "s3cret"
    assert not both.readable_by_primary(token_under_old)
    rotated = both.rotate(token_under_old, owner="x")
    assert both.readable_by_primary(rotated)
    assert Keyring(new).decrypt(rotated, owner="x") == "s3cret"


def test_ciphertext_under_an_unknown_key_names_the_owner():
    token = Keyring(Fernet.generate_key().decode()).encrypt("s3cret")
    with pytest.raises(CredentialError, match="account 'prod'.*no longer configured"):
        Keyring(Fernet.generate_key().decode()).decrypt(token, owner="account 'prod'")
