"""Helpers shared by the benchmark modules: result rows, timing, peak RSS, throwaway Postgres
databases, free ports and a local AWS emulator (moto server) with injected API latency.

Nothing here imports the project at module load, so `benchmarks.run` starts fast.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

PG_ADMIN_DSN = os.environ.get("BENCH_PG_ADMIN_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")
PG_URL_TEMPLATE = os.environ.get("BENCH_PG_URL_TEMPLATE", "postgresql+psycopg2://postgres@127.0.0.1:5432/{db}")
ROW_KEYS = ("name", "ours", "baseline", "ratio", "unit", "notes")


# ---------------------------------------------------------------- result rows

def result_row(name: str, ours: float | None, baseline: float | None, unit: str, notes: str = "",
               *, higher_is_better: bool = False, **extra: Any) -> dict[str, Any]:
    """One row of bench-results.json.

    `ratio` is always "how many times better ours is than the baseline": baseline/ours for
    times (lower is better), ours/baseline for throughputs (`higher_is_better=True`).
    It is None when either side is missing. Extra keys (e.g. `target`) are kept.
    """
    ratio = None
    if ours is not None and baseline is not None:
        num, den = (ours, baseline) if higher_is_better else (baseline, ours)
        ratio = round(num / den, 2) if den else None
    row = {"name": name, "ours": _round(ours), "baseline": _round(baseline), "ratio": ratio,
           "unit": unit, "notes": notes}
    row.update(extra)
    return row


def _round(value: float | None) -> float | None:
    if value is None:
        return None
    return round(value, 4) if abs(value) < 10 else round(value, 2)


# ---------------------------------------------------------------- timing and memory

@contextlib.contextmanager
def timer() -> Iterator[dict[str, float]]:
    """`with timer() as t: ...` then `t["seconds"]` (wall clock, perf_counter)."""
    box: dict[str, float] = {}
    start = time.perf_counter()
    try:
        yield box
    finally:
        box["seconds"] = time.perf_counter() - start


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def median_time(fn: Callable[[], Any], repeat: int, setup: Callable[[], Any] | None = None) -> tuple[float, list[float]]:
    """Median wall time of `repeat` calls of fn (setup runs untimed before each call)."""
    samples = []
    for _ in range(max(1, repeat)):
        if setup is not None:
            setup()
        samples.append(timed(fn)[0])
    return statistics.median(samples), samples


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kib / 1024 if sys.platform != "darwin" else kib / 1024 / 1024, 1)


# ---------------------------------------------------------------- Postgres

def _admin(sql: str) -> None:
    import psycopg2

    conn = psycopg2.connect(PG_ADMIN_DSN)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


@contextlib.contextmanager
def fresh_postgres_db(prefix: str = "bench") -> Iterator[str]:
    """A new, empty Postgres database (`<prefix>_<random>`); yields its SQLAlchemy URL and
    drops it afterwards (disposing the project's pooled engine for it first)."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    _admin(f'CREATE DATABASE "{name}"')
    url = PG_URL_TEMPLATE.format(db=name)
    try:
        yield url
    finally:
        with contextlib.suppress(Exception):
            from spot_pipelines.db.engine import _engines, normalise_url

            engine = _engines.pop(normalise_url(url), None)
            if engine is not None:
                engine.dispose()
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def psycopg2_dsn(sqlalchemy_url: str) -> str:
    """The libpq DSN of a `postgresql+psycopg2://` URL (for plain-driver baselines)."""
    from sqlalchemy.engine import make_url

    url = make_url(sqlalchemy_url)
    parts = {"host": url.host, "port": url.port, "user": url.username, "password": url.password,
             "dbname": url.database}
    return " ".join(f"{k}={v}" for k, v in parts.items() if v is not None)


# ---------------------------------------------------------------- network and AWS emulator

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """moto's server in its own process on 127.0.0.1:<free port>; yields the endpoint URL.

    A separate process keeps the emulator's CPU work out of the measured process's GIL, as a
    real API would be. Its state lives until the context exits.
    """
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not start on {url}") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


class InjectedLatency:
    """A botocore `before-send` hook that sleeps `seconds` before every HTTP request.

    `install()` adds it to botocore's built-in handlers, so every botocore session created
    afterwards (boto3 sessions, the CredentialVault's assume-role sessions, a plain baseline
    script's clients) pays the same latency per API call. Counting is thread-safe.
    """

    def __init__(self, seconds: float = 0.1):
        self.seconds = seconds
        self.enabled = False
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, request=None, **_kwargs):
        if self.enabled:
            with self._lock:
                self.calls += 1
            time.sleep(self.seconds)
        return None  # let botocore send the request

    def install(self) -> InjectedLatency:
        import botocore.handlers

        if not any(handler is self for _, handler, *_rest in botocore.handlers.BUILTIN_HANDLERS):
            botocore.handlers.BUILTIN_HANDLERS.append(("before-send", self))
        return self

    @contextlib.contextmanager
    def active(self) -> Iterator[InjectedLatency]:
        self.enabled, self.calls = True, 0
        try:
            yield self
        finally:
            self.enabled = False
