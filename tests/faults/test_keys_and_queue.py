"""`keys rotate` while runs read credentials, and the SQS queue redelivering messages / a message
deleted only after it is stored."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import boto3
import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet
from sqlalchemy import func, select

from spot_pipelines.cli import main
from spot_pipelines.core import interruptions as core
from spot_pipelines.core.clock import utcnow
from spot_pipelines.core.errors import CredentialError
from spot_pipelines.core.interruptions import drain_queue, eventbridge_event
from spot_pipelines.core.keyring import Keyring
from spot_pipelines.db.accounts import Account
from spot_pipelines.db.engine import session_factory
from spot_pipelines.db.interruptions import DeadLetter, SpotInterruptionEvent, store_interruption_messages
from spot_pipelines.resources.credential_vault import CredentialVault
from tests.faults.helpers import add_keys_account, duplicates

SECRETS = {f"acct-{i}": f"SECRETkey{i:02d}xxxxxxxxxxxxxxxxxxxxxxxxxxxxx" for i in range(8)}


@pytest.fixture(params=["sqlite", "postgres"])
def app_url(request):
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "private_pg_url")


def _accounts(url: str) -> list[Account]:
    with session_factory(url)() as session:
        return list(session.scalars(select(Account).order_by(Account.name)))


def test_keys_rotate_while_runs_read_credentials(app_url, monkeypatch, report):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    for i, (name, secret) in enumerate(SECRETS.items()):  # one row per AWS account
        add_keys_account(app_url, old, name=name, secret=secret, aws_account_id=f"{100000000000 + i}")
    # Step 1 of the procedure: every process runs with "new,old" before the rotation starts.
    both = f"{new},{old}"
    monkeypatch.setenv("DATABASE_URL", app_url)
    monkeypatch.setenv("ENCRYPTION_KEY", both)

    reads, failures = [0], []
    rotated, reading = threading.Event(), threading.Barrier(4 + 1, timeout=60)

    def reader():
        reading.wait()
        passes_after = 0
        while passes_after < 2:  # keep reading until two full passes after the rotation committed
            done = rotated.is_set()
            vault = CredentialVault(encryption_key=both)  # a fresh run: nothing cached
            for account in _accounts(app_url):
                try:
                    secret = vault.session_for(account).get_credentials().secret_key
                except CredentialError as exc:
                    failures.append(str(exc))
                    continue
                if secret != SECRETS[account.name]:
                    failures.append(f"{account.name}: wrong secret")
                reads[0] += 1
            passes_after += done

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    reading.wait()  # every reader is running
    result = CliRunner().invoke(main, ["keys", "rotate"])
    rotated.set()
    for t in threads:
        t.join(timeout=120)
    assert result.exit_code == 0, result.output
    assert "re-encrypted 8 secret(s)" in result.output and "can be removed" in result.output
    assert failures == [] and reads[0] >= 8 * 4 * 2

    # Step 3: the old key removed only now: every secret reads with the new key alone, unchanged.
    alone = Keyring(new)
    stored = _accounts(app_url)
    assert {a.name: alone.decrypt(a.encrypted_secret, owner=a.name) for a in stored} == SECRETS
    assert not any(s in (a.encrypted_secret or "") for a in stored for s in SECRETS.values())

    # Removing the old key before rotating is refused clearly (and never echoes a secret).
    again = Fernet.generate_key().decode()
    with pytest.raises(CredentialError, match="cannot be decrypted with any key") as info:
        CredentialVault(encryption_key=again).session_for(stored[0])
    assert not any(s in str(info.value) for s in SECRETS.values()) and again not in str(info.value)
    report.runs, report.rows_checked = 1 + reads[0] // 8, reads[0] + len(stored)
    report.lost = len(set(SECRETS) - {a.name for a in stored})


# --- SQS --------------------------------------------------------------------------------------

ACCOUNT = "111122223333"
T = utcnow().replace(microsecond=0) - timedelta(hours=1)


def _event(i: int) -> str:
    return json.dumps(
        eventbridge_event(
            "spot_interruption_warning",
            event_id=f"evt-{i:04d}",
            account=ACCOUNT,
            region="us-east-1",
            instance_id=f"i-0abc{i:013x}",
            time_=T,
            zone="us-east-1a",
        )
    )


def _depth(sqs, url) -> int:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def _reappear(sqs, url, handles: list[str]) -> None:
    """The visibility timeout ran out: SQS makes the received, undeleted messages visible again."""
    for handle in handles:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=0)


def _stored(url: str) -> list[str]:
    with session_factory(url)() as session:
        return list(session.scalars(select(SpotInterruptionEvent.event_id)))


def test_sqs_redelivery_and_delete_only_after_store(aws, app_url, monkeypatch, report):
    from tests.support.accounts import add_account

    add_account(app_url, "prod", ACCOUNT)
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="spot-interruptions")["QueueUrl"]
    n = 60
    bodies = [_event(i) for i in range(n)] + [_event(i) for i in range(0, n, 4)]  # 15 duplicate deliveries
    for start in range(0, len(bodies), 10):
        sqs.send_message_batch(
            QueueUrl=url, Entries=[{"Id": str(j), "MessageBody": b} for j, b in enumerate(bodies[start : start + 10])]
        )
    handles: list[str] = []

    def store(messages, fail_before_commit=False):
        handles.extend(m.receipt_handle for m in messages)
        with session_factory(app_url)() as session, session.begin():
            result = store_interruption_messages(session, messages, received_at=utcnow())
            if fail_before_commit:
                raise RuntimeError("app database went away before the commit")
        return result

    # 1. The store fails: nothing is deleted, nothing stored.
    with pytest.raises(RuntimeError, match="went away"):
        drain_queue(sqs, url, lambda m: store(m, fail_before_commit=True), visibility_timeout=300, workers=2)
    assert _stored(app_url) == [] and _depth(sqs, url) == len(bodies)
    _reappear(sqs, url, handles)
    handles.clear()

    # 2. Stored, then SQS fails every delete (the process might as well have died here): the
    #    messages stay queued and the failure is reported.
    def no_delete(sqs_client, queue_url, messages):
        raise RuntimeError("SQS DeleteMessageBatch unavailable")

    real_delete = core._delete
    monkeypatch.setattr(core, "_delete", no_delete)
    second = drain_queue(sqs, url, store, visibility_timeout=300, workers=2)
    assert second.error and "DeleteMessageBatch" in second.error and second.stopped_by == "error"
    assert second.recorded == n and second.deleted == 0
    assert sorted(_stored(app_url)) == [f"evt-{i:04d}" for i in range(n)]
    assert _depth(sqs, url) == len(bodies)
    monkeypatch.setattr(core, "_delete", real_delete)
    _reappear(sqs, url, handles)

    # 3. Everything redelivered: recognised as duplicates, stored once, deleted, the queue empty.
    #    SQS delivers at least once: with two receivers a message may arrive twice in one drain,
    #    so every delivery (not every body) is a recognised duplicate, and each one is deleted.
    third = drain_queue(sqs, url, store, visibility_timeout=300, workers=2)
    assert third.error is None and third.recorded == 0 and third.received >= len(bodies)
    assert third.duplicates == third.received == third.deleted and _depth(sqs, url) == 0
    stored = _stored(app_url)
    assert sorted(stored) == [f"evt-{i:04d}" for i in range(n)] and duplicates(stored) == 0
    with session_factory(app_url)() as session:
        assert session.scalar(select(func.count()).select_from(DeadLetter)) == 0
    report.runs, report.rows_checked = 3, len(stored) * 2 + len(bodies)
    report.lost = n - len(set(stored))
    report.duplicated = duplicates(stored)
