import json

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet
from moto.core.authorization import enable_iam_authentication
from sqlalchemy import select

from spot_pipelines.cli import main
from spot_pipelines.cli.recommendations import recommendations
from spot_pipelines.core.clock import utcnow
from spot_pipelines.core.keyring import Keyring
from spot_pipelines.db.accounts import Account
from spot_pipelines.db.discovery import Instance
from spot_pipelines.db.engine import session_factory
from tests.support.aws_fakes import KEYS_ACCOUNT_ID, ROLE_ACCOUNT_ID

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"
OTHER_AWS_ID = "210987654321"


@pytest.fixture
def cli(db_url, monkeypatch, encryption_key):
    monkeypatch.setenv("DATABASE_URL", db_url)
    runner = CliRunner()

    def run(*args, input=None):
        return runner.invoke(main, list(args), input=input, catch_exceptions=False)

    return run


def accounts(url):
    with session_factory(url)() as session:
        return {a.name: a for a in session.scalars(select(Account))}


def add_keys(cli, name="dev", secret=SECRET):
    return cli(
        "accounts",
        "add",
        name,
        "--aws-account-id",
        KEYS_ACCOUNT_ID,
        "--access-key-id",
        "AKIAIOSFODNN7EXAMPLE",
        "--regions",
        "eu-west-1",
        input=secret + "\n",
    )


def test_keys_generate_prints_a_fernet_key(cli):
    key = cli("keys", "generate").output.strip()
    Fernet(key.encode())


def test_add_role_account_validates_and_connects(aws, cli, db_url):
    out = cli(
        "accounts",
        "add",
        "prod",
        "--aws-account-id",
        ROLE_ACCOUNT_ID,
        "--role-arn",
        f"arn:aws:iam::{ROLE_ACCOUNT_ID}:role/SpotPipelines",
        "--external-id",
        "ext-42",
    )
    assert out.exit_code == 0, out.output
    account = accounts(db_url)["prod"]
    assert account.status == "connected" and account.auth_method == "role" and account.encrypted_secret is None


def test_add_key_account_reads_secret_from_stdin_and_stores_it_encrypted(aws, cli, db_url, encryption_key):
    out = add_keys(cli)
    assert out.exit_code == 0, out.output
    account = accounts(db_url)["dev"]
    assert account.status == "connected" and SECRET not in account.encrypted_secret
    assert Keyring(encryption_key).decrypt(account.encrypted_secret, owner="dev") == SECRET
    listed = cli("accounts", "list", "--json").output
    assert json.loads(listed)[0]["status"] == "connected"
    assert SECRET not in listed and account.encrypted_secret not in listed


def test_rejected_credentials_leave_the_account_pending_with_the_cause(aws, cli, db_url):
    with enable_iam_authentication():  # moto now checks keys against its IAM: ours is unknown
        out = add_keys(cli)
    assert out.exit_code == 1
    assert "'dev'" in out.output and "InvalidClientTokenId" in out.output and SECRET not in out.output
    account = accounts(db_url)["dev"]
    assert account.status == "pending" and "InvalidClientTokenId" in account.last_error
    # Retrying once the credentials are fixed connects the same row.
    assert add_keys(cli).exit_code == 0
    assert accounts(db_url)["dev"].status == "connected"


def test_bad_input_is_one_clear_line_naming_the_field(aws, cli, db_url):
    out = cli("accounts", "add", "prod", "--aws-account-id", ROLE_ACCOUNT_ID, "--role-arn", "arn:aws:iam::role/oops")
    assert out.exit_code == 1 and out.output.startswith("error: role_arn:")
    assert "Traceback" not in out.output and accounts(db_url) == {}


def snapshot(url):
    """Every stored column of every account row, to prove a refused command changed nothing."""
    return {name: {c.name: getattr(a, c.name) for c in Account.__table__.columns} for name, a in accounts(url).items()}


def one_error_line(out) -> str:
    assert out.exit_code == 1, out.output
    assert out.output.startswith("error: ") and out.output.count("\n") == 1 and "Traceback" not in out.output
    return out.output


@pytest.fixture
def no_env_files(monkeypatch, tmp_path):
    """Neither the current directory nor the project root holds a .env (the repo's own is ignored)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("spot_pipelines.cli.keys.PROJECT_ROOT", tmp_path / "project")
    monkeypatch.delenv("ENCRYPTION_KEY")
    return tmp_path


def test_missing_encryption_key_with_no_secrets_stored_suggests_generating_one(aws, cli, db_url, no_env_files):
    line = one_error_line(add_keys(cli))
    assert "ENCRYPTION_KEY is not set and no secrets are stored yet" in line and "keys generate" in line
    assert accounts(db_url) == {}


def test_missing_encryption_key_with_secrets_stored_never_suggests_a_new_key(
    aws, cli, db_url, monkeypatch, no_env_files, encryption_key
):
    monkeypatch.setenv("ENCRYPTION_KEY", encryption_key)
    assert add_keys(cli).exit_code == 0
    before = snapshot(db_url)
    monkeypatch.delenv("ENCRYPTION_KEY")
    for out in (cli("keys", "rotate"), add_keys(cli, "qa")):
        line = one_error_line(out)
        assert "1 stored secret(s) were encrypted under it" in line and "generate" not in line
    assert snapshot(db_url) == before


@pytest.mark.parametrize("where", ["cwd", "project root"])
def test_missing_encryption_key_while_a_dotenv_holds_one_says_to_load_it(
    aws, cli, db_url, monkeypatch, no_env_files, where
):
    folder = no_env_files if where == "cwd" else no_env_files / "project"
    folder.mkdir(exist_ok=True)
    (folder / ".env").write_text(f"# demo\nexport ENCRYPTION_KEY={Fernet.generate_key().decode()}\n")
    line = one_error_line(add_keys(cli))
    shown = "./.env" if where == "cwd" else str(folder / ".env")
    assert f"`set -a; . {shown}; set +a`" in line and "do not generate a new key" in line
    assert "keys generate" not in line and (folder / ".env").read_text() not in line
    assert accounts(db_url) == {}


def test_same_aws_account_under_a_second_name_is_refused_naming_the_existing_one(aws, cli, db_url):
    assert add_keys(cli, "dev").exit_code == 0
    before = snapshot(db_url)
    line = one_error_line(add_keys(cli, "qa"))
    assert line.startswith(
        f"error: AWS account {KEYS_ACCOUNT_ID} is already onboarded as 'dev' (id {before['dev']['id']})"
    )
    assert snapshot(db_url) == before


def test_a_pending_account_cannot_be_re_pointed_at_another_accounts_aws_id(aws, cli, db_url):
    assert add_keys(cli, "dev").exit_code == 0
    assert (
        cli(
            "accounts",
            "add",
            "prod",
            "--aws-account-id",
            ROLE_ACCOUNT_ID,
            "--role-arn",
            f"arn:aws:iam::{ROLE_ACCOUNT_ID}:role/SpotPipelines",
        ).exit_code
        == 0
    )
    with session_factory(db_url)() as session, session.begin():  # left pending by a failed validation
        session.scalars(select(Account).where(Account.name == "prod")).one().status = "pending"
    before = snapshot(db_url)
    out = cli(
        "accounts",
        "add",
        "prod",
        "--aws-account-id",
        KEYS_ACCOUNT_ID,
        "--access-key-id",
        "AKIAIOSFODNN7EXAMPLE",
        input=SECRET + "\n",
    )
    assert "is already onboarded as 'dev'" in one_error_line(out)
    assert snapshot(db_url) == before


def test_the_database_holds_one_row_per_aws_account(db_url):
    from sqlalchemy.exc import IntegrityError

    with session_factory(db_url)() as session, session.begin():
        session.add(Account(name="a", aws_account_id=KEYS_ACCOUNT_ID, auth_method="role", status="pending"))
    with pytest.raises(IntegrityError), session_factory(db_url)() as session, session.begin():
        session.add(Account(name="b", aws_account_id=KEYS_ACCOUNT_ID, auth_method="role", status="pending"))
    assert set(accounts(db_url)) == {"a"}


@pytest.mark.parametrize("region", ["us-east-9", "xx-fake-9"])
def test_a_region_botocore_does_not_know_is_refused(aws, cli, db_url, region):
    assert add_keys(cli, "dev").exit_code == 0
    before = snapshot(db_url)
    out = cli(
        "accounts",
        "add",
        "prod",
        "--aws-account-id",
        ROLE_ACCOUNT_ID,
        "--role-arn",
        f"arn:aws:iam::{ROLE_ACCOUNT_ID}:role/SpotPipelines",
        "--regions",
        f"eu-west-1,{region}",
    )
    assert one_error_line(out).startswith(f"error: regions: '{region}' is not an AWS region")
    assert snapshot(db_url) == before


def test_a_10000_character_name_is_echoed_short(aws, cli, db_url):
    assert add_keys(cli, "dev").exit_code == 0
    before = snapshot(db_url)
    added = one_error_line(
        cli(
            "accounts",
            "add",
            "a" * 10_000,
            "--aws-account-id",
            ROLE_ACCOUNT_ID,
            "--role-arn",
            f"arn:aws:iam::{ROLE_ACCOUNT_ID}:role/SpotPipelines",
        )
    )
    removed = one_error_line(cli("accounts", "remove", "a" * 10_000, "--yes"))
    assert added.startswith(f"error: name: '{'a' * 40}…' (10000 characters) must be 1-63")
    assert removed.startswith(f"error: no account named '{'a' * 40}…' (10000 characters)")
    assert len(added) < 200 and len(removed) < 200
    assert snapshot(db_url) == before


def test_duplicate_account_is_refused_without_touching_it(aws, cli, db_url):
    assert add_keys(cli).exit_code == 0
    before = snapshot(db_url)
    out = add_keys(cli, secret="another-secret-that-is-long")
    assert out.exit_code == 1 and "already exists" in out.output
    assert snapshot(db_url) == before  # every column: the secret, status, timestamps, regions


def test_remove_deletes_the_account_and_its_instances(aws, cli, db_url):
    assert add_keys(cli).exit_code == 0
    now = utcnow()
    with session_factory(db_url)() as session, session.begin():
        session.add(
            Instance(
                account_id=accounts(db_url)["dev"].id,
                instance_id="i-1",
                region="eu-west-1",
                instance_type="m5.large",
                lifecycle="on-demand",
                state="running",
                platform="Linux/UNIX",
                tags={},
                first_seen_at=now,
                last_seen_at=now,
            )
        )
    assert cli("accounts", "remove", "dev", "--yes").exit_code == 0
    with session_factory(db_url)() as session:
        assert session.scalars(select(Instance)).all() == []
    assert cli("accounts", "remove", "dev", "--yes").exit_code == 1


def test_keys_rotate_re_encrypts_everything_under_the_new_key(aws, cli, db_url, monkeypatch, encryption_key):
    assert add_keys(cli, "dev").exit_code == 0
    with session_factory(db_url)() as session, session.begin():
        session.add(
            Account(
                name="qa",
                aws_account_id=OTHER_AWS_ID,
                auth_method="keys",
                status="connected",
                access_key_id="AKIAIOSFODNN7EXAMPLE",
                encrypted_secret=Keyring(encryption_key).encrypt(SECRET),
            )
        )
    new = Fernet.generate_key().decode()
    monkeypatch.setenv("ENCRYPTION_KEY", f"{new},{encryption_key}")
    out = cli("keys", "rotate")
    assert out.exit_code == 0 and "re-encrypted" in out.output
    for account in accounts(db_url).values():
        assert Keyring(new).decrypt(account.encrypted_secret, owner=account.name) == SECRET


def test_keys_rotate_with_an_unknown_ciphertext_changes_nothing(aws, cli, db_url, monkeypatch, encryption_key):
    assert add_keys(cli, "dev").exit_code == 0
    stranger = Keyring(Fernet.generate_key().decode()).encrypt(SECRET)
    with session_factory(db_url)() as session, session.begin():
        session.add(
            Account(
                name="orphan",
                aws_account_id=OTHER_AWS_ID,
                auth_method="keys",
                status="active",
                access_key_id="AKIAIOSFODNN7EXAMPLE",
                encrypted_secret=stranger,
            )
        )
    before = {name: a.encrypted_secret for name, a in accounts(db_url).items()}
    monkeypatch.setenv("ENCRYPTION_KEY", f"{Fernet.generate_key().decode()},{encryption_key}")
    out = cli("keys", "rotate")
    assert out.exit_code == 1 and "'orphan'" in out.output
    assert {name: a.encrypted_secret for name, a in accounts(db_url).items()} == before


def test_unreachable_database_is_one_clear_line_without_the_password(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://spot:hunter2secret@127.0.0.1:9/spot")
    out = CliRunner().invoke(main, ["accounts", "list"])
    assert out.exit_code == 1
    assert out.output.startswith("error: the app database postgresql://spot:***@127.0.0.1:9/spot failed: connection")
    assert "Traceback" not in out.output and "hunter2secret" not in out.output


@pytest.mark.parametrize("group, args", [(main, ["recommendations", "list"]), (recommendations, ["approve", "1"])])
def test_unreachable_database_is_one_clear_line_for_recommendations_too(monkeypatch, group, args):
    monkeypatch.setenv("DATABASE_URL", "postgresql://spot:hunter2secret@127.0.0.1:9/spot")
    out = CliRunner().invoke(group, args)
    assert out.exit_code == 1
    assert out.output.startswith("error: the app database postgresql://spot:***@127.0.0.1:9/spot failed: connection")
    assert "Traceback" not in out.output and "hunter2secret" not in out.output


def test_cli_exposes_the_recommendations_group():
    out = CliRunner().invoke(main, ["recommendations", "--help"])
    assert out.exit_code == 0 and "approve" in out.output and "list" in out.output
