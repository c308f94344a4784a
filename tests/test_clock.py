"""The one clock: nothing in the package reads the wall clock outside core/clock.py, and the
SPOT_PIPELINES_CLOCK_SHIFT_DAYS switch moves our clock, Dagster's and subprocesses' together."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from tests.clock_shift import sitecustomize as clock_shift

PACKAGE = Path(__file__).resolve().parents[1] / "spot_pipelines"
CLOCK = PACKAGE / "core" / "clock.py"

READ_ATTRS = {"now", "utcnow", "today"}  # datetime.now, date.today, pd.Timestamp.utcnow, func.now (the DB's clock)
TIME_READS = {"time", "time_ns", "gmtime", "localtime", "ctime"}  # time.time() and friends; monotonic is fine
CLOCK_NAMES = {"utcnow", "utc_now", "now", "utc_today", "today"}
DB_CLOCKS = ("CURRENT_TIMESTAMP", "CURRENT_DATE", "NOW()")


def wall_clock_reads(source: str) -> list[str]:
    """Each `line: what` in the source that reads the wall clock or defines a clock of its own."""
    found = []
    for node in ast.walk(ast.parse(source)):
        what = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if node.func.attr in READ_ATTRS:
                what = f".{node.func.attr}()"
            elif node.func.attr in TIME_READS and isinstance(owner, ast.Name) and owner.id == "time" and not node.args:
                what = f"time.{node.func.attr}()"
        if isinstance(node, ast.Call) and any(
            isinstance(a, ast.Constant) and a.value in ("now", "today") for a in node.args
        ):
            what = "a 'now'/'today' literal (pd.Timestamp, np.datetime64)"
        if isinstance(node, ast.ImportFrom) and node.module == "time" and any(a.name in TIME_READS for a in node.names):
            what = "from time import a wall-clock function"
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in CLOCK_NAMES:
            what = f"a second clock: def {node.name}"
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and any(c in node.value.upper() for c in DB_CLOCKS)
        ):
            what = "the database's clock in SQL"
        if what:
            found.append(f"{node.lineno}: {what}")
    return found


def test_the_detector_finds_every_kind_of_clock_read():
    sample = """
import time
from time import time as wall
from datetime import date, datetime, timezone
import pandas as pd
from sqlalchemy import func, text

def utcnow():
    return datetime.now(timezone.utc)
a = date.today()
b = time.time()
c = pd.Timestamp("now")
d = pd.Timestamp.utcnow()
e = func.now()
f = text("SELECT CURRENT_TIMESTAMP")
"""
    assert len(wall_clock_reads(sample)) == 9
    durations = "import time\nstarted = time.monotonic()\nelapsed = time.perf_counter() - started\nt = time.time"
    assert wall_clock_reads(durations) == []


def test_only_core_clock_reads_the_wall_clock():
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{hit}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != CLOCK
        for hit in wall_clock_reads(path.read_text())
    ]
    assert offenders == [], (
        "read the time through spot_pipelines.core.clock (utcnow, utc_today, unix_now): " + "; ".join(offenders)
    )


CHILD = """
import json, time
import dagster as dg
from spot_pipelines.core.clock import unix_now, utc_today, utcnow
days = dg.DailyPartitionsDefinition(start_date="2020-01-01", timezone="UTC")
print(json.dumps({"utcnow": utcnow().isoformat(), "today": utc_today().isoformat(), "unix": unix_now(),
                  "time": time.time(), "last_partition": days.get_last_partition_key()}))
"""


def _child(days: float) -> dict:
    env = {k: v for k, v in os.environ.items() if k != clock_shift.VARIABLE}  # not this session's own shift
    env["PYTHONPATH"] = os.path.dirname(clock_shift.__file__)  # as tests/conftest.py sets it when shifted
    if days:
        env[clock_shift.VARIABLE] = str(days)
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_shift_moves_our_clock_dagster_and_time_together_in_a_subprocess():
    real, shifted = _child(0), _child(3)
    moved = datetime.fromisoformat(shifted["utcnow"]) - datetime.fromisoformat(real["utcnow"])
    assert timedelta(days=3) <= moved < timedelta(days=3, minutes=2)
    for world in (real, shifted):
        now = datetime.fromisoformat(world["utcnow"])
        assert now.utcoffset() == timedelta(0) and world["today"] == now.date().isoformat()
        assert abs(world["unix"] - now.timestamp()) < 5 and abs(world["time"] - now.timestamp()) < 5
        # Dagster's partition set ends yesterday in the same world (minutes around midnight aside).
        assert date.fromisoformat(world["last_partition"]) in (
            now.date() - timedelta(days=1),
            now.date() - timedelta(days=2),
        )


def test_this_process_and_dagster_agree_on_today():
    import dagster as dg

    from spot_pipelines.core.clock import utc_today, utcnow

    last = dg.DailyPartitionsDefinition(start_date="2020-01-01", timezone="UTC").get_last_partition_key()
    assert utcnow().utcoffset() == timedelta(0)
    assert date.fromisoformat(last) in (utc_today() - timedelta(days=1), utc_today() - timedelta(days=2))


def test_a_shift_that_is_not_a_number_names_the_variable(monkeypatch):
    monkeypatch.setenv(clock_shift.VARIABLE, "soon")
    with pytest.raises(ValueError, match=r"^SPOT_PIPELINES_CLOCK_SHIFT_DAYS='soon' is not a number of days$"):
        clock_shift.shift_days()
