"""Notifier against a real local HTTP receiver: the webhook and Slack's own WebClient (base_url pointed at it)
deliver; a failing receiver is retried a bounded number of times, logged without the secret, and never raises."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from spot_pipelines.resources.notifications import Notifier

TOKEN = "xoxb-test-secret-token"
HOOK_SECRET = "T000/B000/hook-secret"


class Receiver(ThreadingHTTPServer):
    def __init__(self, status: int):
        self.status, self.requests = status, []
        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        self.server.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        answer = json.dumps({"ok": self.server.status == 200}).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture(params=[200, 503], ids=["ok", "failing"])
def receiver(request):
    server = Receiver(request.param)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def notifier(url: str) -> Notifier:
    return Notifier(
        webhook_url=f"{url}/hooks/{HOOK_SECRET}",
        slack_token=TOKEN,
        slack_channel="#spot",
        slack_base_url=f"{url}/slack/",
        min_monthly_savings_usd=50.0,
        retries=2,
        backoff_s=0.01,
    )


RECS = [
    {
        "account": "prod",
        "account_id": 1,
        "instance_id": "i-a",
        "action": "move_to_spot",
        "target_instance_type": "m6i.large",
        "net_monthly_savings_usd": 80.0,
    },
    {
        "account": "prod",
        "account_id": 1,
        "instance_id": "i-b",
        "action": "move_to_spot",
        "target_instance_type": "m6i.large",
        "net_monthly_savings_usd": 10.0,
    },
]


def test_digest_reaches_webhook_and_slack_or_is_retried_and_logged(receiver, caplog):
    with caplog.at_level(logging.WARNING):
        sent = notifier(receiver.url).recommendations_digest(RECS)
    ok = receiver.status == 200
    assert sent == {"webhook": ok, "slack": ok}
    hooks = [r for r in receiver.requests if r["path"].startswith("/hooks/")]
    slack = [r for r in receiver.requests if r["path"] == "/slack/chat.postMessage"]
    # One delivery each when the receiver answers; 1 + retries attempts each when it keeps failing.
    assert (len(hooks), len(slack)) == ((1, 1) if ok else (3, 3))
    payload = json.loads(hooks[0]["body"])
    assert payload["event"] == "recommendations" and payload["lines"] == [
        "prod i-a: move_to_spot → m6i.large, net $80.00/month"
    ]  # i-b is below the threshold
    assert "i-a" in slack[0]["body"] and slack[0]["auth"] == f"Bearer {TOKEN}"
    for r in receiver.requests:  # the token travels only in the Authorization header
        assert TOKEN not in r["body"] and HOOK_SECRET not in r["body"]
    assert TOKEN not in caplog.text and HOOK_SECRET not in caplog.text
    if not ok:
        assert "recommendations notification via webhook failed after retries" in caplog.text
        assert "via slack failed after retries" in caplog.text


def test_off_by_default_and_nothing_below_the_threshold(monkeypatch):
    for name in ("SLACK_BOT_TOKEN", "SLACK_CHANNEL", "NOTIFICATIONS_WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)
    assert not Notifier().enabled() and Notifier().approval([1], by="alice") == {}
    monkeypatch.setenv("NOTIFICATIONS_WEBHOOK_URL", "http://127.0.0.1:9/never")
    assert Notifier().enabled()
    assert Notifier(min_monthly_savings_usd=1000.0).recommendations_digest(RECS) == {}


def test_execution_and_approval_messages(receiver):
    n = notifier(receiver.url)
    n.approval([7, 8], by="alice")
    n.execution(
        [
            {"id": 7, "instance_id": "i-a", "status": "executed"},
            {"id": 8, "instance_id": "i-b", "status": "failed", "error": "rolled back: capacity"},
        ],
        dry_run=False,
    )
    bodies = [json.loads(r["body"]) for r in receiver.requests if r["path"].startswith("/hooks/")]
    titles = list(dict.fromkeys(b["title"] for b in bodies))
    assert titles == ["alice approved recommendation(s) 7, 8", "execution (live): 1 succeeded, 1 failed"]
    assert bodies[-1]["lines"][1] == "#8 i-b: failed — rolled back: capacity"


def test_a_run_notifies_its_new_recommendations_and_its_executions(sqlite_url, receiver):
    from datetime import timedelta
    from types import SimpleNamespace

    from spot_pipelines.core.clock import utcnow
    from spot_pipelines.db import execution as execution_rows
    from spot_pipelines.db import optimization as opt
    from spot_pipelines.db.engine import transaction
    from spot_pipelines.resources.app_database import AppDatabase
    from spot_pipelines.sensors.notifications import notify_for_run
    from tests.commitments.test_cli_net import rec
    from tests.support.accounts import add_account

    account = add_account(sqlite_url, "prod")
    rows = [
        rec(account, "i-a", list_usd=90.0, net_usd=80.0, covered=0.0, monthly=80.0),
        rec(account, "i-b", list_usd=9.0, net_usd=9.0, covered=0.0, monthly=9.0),
    ]
    with transaction(sqlite_url) as session:
        opt.write_recommendations(session, rows, generated_at=utcnow())  # generation "g1"
        [first, _] = opt.list_recommendations(session)
        first.status, first.error = opt.FAILED, "rolled back: InsufficientInstanceCapacity"
        now = utcnow()
        call = SimpleNamespace(
            step=1,
            operation="RunInstances",
            params={},
            before_state=None,
            after_state=None,
            outcome="failed",
            error="capacity",
            started_at=now,
            finished_at=now + timedelta(seconds=1),
        )
        execution_rows.record_call(session, first.id, "exec-run", False, call)
    db, n = AppDatabase(url=sqlite_url), notifier(receiver.url)
    ok = receiver.status == 200
    assert notify_for_run(db, n, "g1") == {"recommendations": {"webhook": ok, "slack": ok}}
    assert notify_for_run(db, n, "exec-run") == {"execution": {"webhook": ok, "slack": ok}}
    assert notify_for_run(db, n, "unrelated-run") == {}
    bodies = [json.loads(r["body"]) for r in receiver.requests if r["path"].startswith("/hooks/")]
    titles = list(dict.fromkeys(b["title"] for b in bodies))
    assert titles[0].startswith("1 new spot recommendation(s) worth ≥ $50/month each, net $80.00/month")
    assert titles[1] == "execution (live): 0 succeeded, 1 failed"
    assert "rolled back: InsufficientInstanceCapacity" in bodies[-1]["lines"][0]


def test_alerts_once_when_a_component_turns_critical_and_a_pool_turns_hot(sqlite_url, receiver):
    """Each turn alerts once: the same state on the next tick is quiet; a component that recovers and turns
    critical again alerts again. The burst line's times are the stored warnings' own."""
    from datetime import timedelta

    from spot_pipelines.core.clock import utcnow
    from spot_pipelines.core.health import CRITICAL, HEALTHY, PRICE_DATA, CheckResult
    from spot_pipelines.db.engine import transaction
    from spot_pipelines.db.health import write_health_round
    from spot_pipelines.db.interruptions import SpotInterruptionEvent
    from spot_pipelines.resources.app_database import AppDatabase
    from spot_pipelines.sensors.notifications import notify_new_alerts

    now = utcnow().replace(second=0, microsecond=0)

    def health_round(status: str, minutes_ago: int) -> None:
        result = CheckResult(PRICE_DATA, status, 1.0, {"reason": "no spot prices yet"})
        with transaction(sqlite_url) as session:
            write_health_round(
                session, [result], round_id=f"r{minutes_ago}", checked_at=now - timedelta(minutes=minutes_ago)
            )

    warned = [now - timedelta(hours=h) for h in (3, 2, 1)]  # three warnings within the default 6 h window
    with transaction(sqlite_url) as session:
        session.add_all(
            SpotInterruptionEvent(
                event_id=f"e{i}",
                event_type="spot_interruption_warning",
                event_time=t,
                aws_account_id="123456789012",
                region="us-east-1",
                availability_zone_id="use1-az1",
                instance_id=f"i-{i}",
                instance_type="m5.large",
            )
            for i, t in enumerate(warned)
        )
    health_round(CRITICAL, 30)
    db, n = AppDatabase(url=sqlite_url), notifier(receiver.url)
    ok = receiver.status == 200
    sent, cursor = notify_new_alerts(db, n, None)
    assert sent == {
        "component_critical": {"webhook": ok, "slack": ok},
        "interruption_burst": {"webhook": ok, "slack": ok},
    }
    assert notify_new_alerts(db, n, cursor) == ({}, cursor)  # nothing new: quiet
    health_round(HEALTHY, 20)
    sent, cursor = notify_new_alerts(db, n, cursor)
    assert sent == {}
    health_round(CRITICAL, 10)
    sent, cursor = notify_new_alerts(db, n, cursor)
    assert list(sent) == ["component_critical"]

    bodies = [json.loads(r["body"]) for r in receiver.requests if r["path"].startswith("/hooks/")]
    by_event = {}
    for b in bodies:
        by_event.setdefault(b["event"], []).append(b)
    critical_titles = list(dict.fromkeys(b["title"] for b in by_event["component_critical"]))
    assert critical_titles == [f"1 component(s) turned critical: {PRICE_DATA}"]
    since = [b["lines"][0] for b in by_event["component_critical"]]
    assert f"critical since {now - timedelta(minutes=30):%Y-%m-%d %H:%M} UTC — no spot prices yet" in since[0]
    assert f"critical since {now - timedelta(minutes=10):%Y-%m-%d %H:%M} UTC" in since[-1]
    [burst_line] = {b["lines"][0] for b in by_event["interruption_burst"]}
    hot_until = warned[-1] + timedelta(hours=24)  # the default quiet period after the last warning
    assert burst_line == (
        f"m5.large in use1-az1 (us-east-1): 3 warnings, in a burst from {warned[-1]:%Y-%m-%d %H:%M} UTC, "
        f"not a spot target until {hot_until:%Y-%m-%d %H:%M} UTC"
    )
