"""Fixtures of the fault-injection suite: a private Postgres cluster the tests may restart, and the
reliability report (every fault test records what it checked; `pytest_terminal_summary` prints it).

Every test under tests/faults/ is marked `faults` (run them alone with `pytest -m faults`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from spot_pipelines.demo.ports import free_port
from tests.conftest import _admin

FAULTS_DIR = Path(__file__).resolve().parent
_REPORT: list[dict] = []


def pytest_collection_modifyitems(config, items):
    for item in items:
        if Path(str(item.fspath)).resolve().parent == FAULTS_DIR:
            item.add_marker(pytest.mark.faults)


@dataclass
class FaultRecord:
    fault: str
    runs: int = 0
    rows_checked: int = 0
    lost: int = 0
    duplicated: int = 0
    leaks: int = 0


@pytest.fixture
def report(request) -> Iterator[FaultRecord]:
    """A row of the reliability matrix; kept only when the test passed its assertions."""
    record = FaultRecord(fault=request.node.name)
    yield record
    rep = getattr(request.node, "_call_report", None)
    if rep is not None and rep.passed:
        _REPORT.append(record.__dict__.copy())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item._call_report = rep


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _REPORT:
        return
    tr = terminalreporter
    tr.section("reliability matrix (tests/faults)")
    cols = ["fault", "runs", "rows checked", "lost", "duplicated", "leaks"]
    width = max(len(cols[0]), *(len(r["fault"]) for r in _REPORT))
    tr.write_line(f"{cols[0]:<{width}}  " + "  ".join(f"{c:>12}" for c in cols[1:]))
    totals = [0, 0, 0, 0, 0]
    for r in sorted(_REPORT, key=lambda r: r["fault"]):
        values = [r["runs"], r["rows_checked"], r["lost"], r["duplicated"], r["leaks"]]
        totals = [t + v for t, v in zip(totals, values)]
        tr.write_line(f"{r['fault']:<{width}}  " + "  ".join(f"{v:>12}" for v in values))
    tr.write_line(f"{'TOTAL (' + str(len(_REPORT)) + ' faults)':<{width}}  " + "  ".join(f"{v:>12}" for v in totals))


# --- moto as a server: child processes reach it through AWS_ENDPOINT_URL


@pytest.fixture
def moto_server(monkeypatch):
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    import requests

    requests.post(f"http://127.0.0.1:{port}/moto-api/reset", timeout=30).raise_for_status()  # moto's state is global
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    yield f"http://127.0.0.1:{port}"
    server.stop()


# --- a private Postgres cluster ---------------------------------------------------------------

PG_BIN = Path(os.environ.get("PG_BIN", "")) if os.environ.get("PG_BIN") else None


def _pg_tool(name: str) -> str:
    if PG_BIN:
        return str(PG_BIN / name)
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not candidates:
        pytest.skip(f"{name} not found")
    return str(candidates[-1])


class PrivatePostgres:
    """A throwaway cluster in a temp dir on a free port; only these tests connect to it."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="sp_faults_pg_"))
        self.data = self.dir / "data"
        self.port = free_port()
        self._as_user: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root: run the cluster as the postgres user
            shutil.chown(self.dir, "postgres")
            self._as_user = ["runuser", "-u", "postgres", "--"]
        self.restarts = 0

    def _run(self, *args: str) -> None:
        # The postmaster inherits no pipe of ours (its output goes to the log), or `run` would wait on it.
        subprocess.run(
            [*self._as_user, *args],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
        )

    def start(self) -> None:
        self._run(_pg_tool("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self._run(
            _pg_tool("pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.dir / "log"),
            "-w",
            "-o",
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60",
            "start",
        )

    def restart(self) -> None:
        """`pg_ctl restart -m fast`: every session is terminated, open transactions roll back."""
        self._run(_pg_tool("pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"), "-m", "fast", "-w", "restart")
        self.restarts += 1

    def stop(self) -> None:
        try:
            self._run(_pg_tool("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def admin(self, sql: str) -> None:
        _admin(sql, f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres")

    def new_database(self) -> str:
        name = f"faults_{uuid.uuid4().hex[:10]}"
        self.admin(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{name}"


@pytest.fixture(scope="session")
def private_pg() -> Iterator[PrivatePostgres]:
    cluster = PrivatePostgres()
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def private_pg_url(private_pg) -> str:
    """A fresh, migrated app database on the private cluster."""
    from spot_pipelines.db.engine import ensure_schema

    url = private_pg.new_database()
    ensure_schema(url)
    return url
