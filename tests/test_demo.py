"""`spot-pipelines demo` given bad conditions: the UI port taken, no Postgres configured, and
interrupted mid-way then run again.

The last two share one module-scoped pair of real demo processes (the test-sized `--quick`
flow): the first is interrupted with SIGINT (a user's Ctrl-C) once it has onboarded and discovered
both accounts; the second, over the same DAGSTER_HOME, runs to completion, re-discovering both.
"""

from __future__ import annotations

import socket
import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from spot_pipelines.demo import run as demo_run
from spot_pipelines.demo.fleet import DEMO_ACCOUNTS
from tests.browser.processes import demo_env, run_demo, run_demo_until

SEEDED_INSTANCES = sum(g.count for a in DEMO_ACCOUNTS for g in a.groups)


class _FakeDagsterDev:
    """Stands in for the `dagster dev` process: records its argv and exits at once."""

    launched: list[list[str]] = []

    def __init__(self, args, **kwargs):
        self.launched.append(list(args))
        self.pid = -1

    def wait(self, timeout=None):
        return 0

    def poll(self):
        return 0


def _served_port(args: list[str]) -> int:
    return int(args[args.index("-p") + 1])


def test_ui_port_taken_picks_another_and_says_which(monkeypatch, capsys):
    monkeypatch.setattr(demo_run.subprocess, "Popen", _FakeDagsterDev)
    _FakeDagsterDev.launched = []
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        demo_run.serve_ui(port)
    chosen = _served_port(_FakeDagsterDev.launched[-1])
    err = capsys.readouterr().err
    assert chosen != port
    assert f"port {port} is taken; using {chosen}" in err
    assert f"Dagster UI on http://127.0.0.1:{chosen} " in err
    assert _FakeDagsterDev.launched[-1][-4:] == ["-p", str(chosen), "-m", "spot_pipelines.definitions"]


def test_ui_port_free_is_used_as_asked(monkeypatch, capsys):
    monkeypatch.setattr(demo_run.subprocess, "Popen", _FakeDagsterDev)
    _FakeDagsterDev.launched = []
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    demo_run.serve_ui(port)
    err = capsys.readouterr().err
    assert _served_port(_FakeDagsterDev.launched[-1]) == port
    assert "is taken" not in err
    assert f"Dagster UI on http://127.0.0.1:{port} " in err


@dataclass(frozen=True)
class TwoRuns:
    home: Path
    interrupted_code: int
    interrupted_output: str
    output: str


@pytest.fixture(scope="module")
def interrupted_then_rerun(tmp_path_factory) -> TwoRuns:
    root = tmp_path_factory.mktemp("demo")
    home = root / "dagster_home"
    env = demo_env(home)  # no DATABASE_URL, no DAGSTER_PG_*: a newcomer's machine
    # Ctrl-C after onboarding and discovery, while market data is loading: rows exist to be duplicated.
    code, first = run_demo_until(env, root / "interrupted.log", marker="==> spot_interruption_sensor drained")
    output = run_demo(env, root / "rerun.log")
    return TwoRuns(home=home, interrupted_code=code, interrupted_output=first, output=output)


@pytest.mark.timeout(900)
def test_no_postgres_uses_sqlite_and_says_so(interrupted_then_rerun):
    runs = interrupted_then_rerun
    for output in (runs.interrupted_output, runs.output):
        assert f"Dagster storage: embedded SQLite in {runs.home}; " in output
        assert f"app database: sqlite:///{runs.home / 'spot_pipelines.db'}" in output
    assert (runs.home / "storage" / "history" / "runs.db").is_file()  # Dagster's runs, in SQLite
    assert (runs.home / "spot_pipelines.db").is_file()


@pytest.mark.timeout(900)
def test_interrupted_and_run_again_leaves_no_duplicates(interrupted_then_rerun):
    runs = interrupted_then_rerun
    # The first run really was cut off mid-way, after onboarding both accounts.
    assert runs.interrupted_code != 0
    assert "account 'payments-prod' connected" in runs.interrupted_output
    assert "account 'analytics-dev' connected" in runs.interrupted_output
    assert "end-to-end flow done" not in runs.interrupted_output
    # The second one finished, and re-used the accounts instead of adding them again.
    assert "end-to-end flow done" in runs.output
    assert "Savings summary" in runs.output
    assert runs.output.count("already onboarded (active)") == len(DEMO_ACCOUNTS)
    # ... and discovered every account again: each stored instance was written twice.
    assert runs.output.count("==> materialized discovered_instances") == len(DEMO_ACCOUNTS)

    with sqlite3.connect(runs.home / "spot_pipelines.db") as db:
        accounts = db.execute("SELECT name, aws_account_id, status FROM accounts ORDER BY name").fetchall()
        instance_ids = [r[0] for r in db.execute("SELECT instance_id FROM instances")]
    assert accounts == sorted((a.name, a.aws_account_id, "active") for a in DEMO_ACCOUNTS)
    duplicates = {i: n for i, n in Counter(instance_ids).items() if n > 1}
    assert not duplicates, f"instances stored more than once: {duplicates}"
    assert len(instance_ids) == SEEDED_INSTANCES  # 40: exactly the seeded fleet
