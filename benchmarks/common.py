"""Helpers shared by the benchmark modules: result rows, timing, peak RSS, throwaway Postgres
databases, free ports and a local AWS emulator (moto server) with injected API latency.

Nothing here imports the project at module load, so `benchmarks.run` starts fast.
"""

from __future__ import annotations

import contextlib
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from spot_pipelines.demo.ports import free_port

PG_ADMIN_DSN = os.environ.get("BENCH_PG_ADMIN_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")
PG_URL_TEMPLATE = os.environ.get("BENCH_PG_URL_TEMPLATE", "postgresql+psycopg2://postgres@127.0.0.1:5432/{db}")
ROW_KEYS = ("name", "ours", "baseline", "ratio", "unit", "target", "notes")


# ---------------------------------------------------------------- result rows


def result_row(
    name: str,
    ours: float | None,
    baseline: float | None,
    unit: str,
    notes: str = "",
    *,
    higher_is_better: bool = False,
    target: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One row of bench-results.json.

    `ratio` is always "how many times better ours is than the baseline": baseline/ours for
    times (lower is better), ours/baseline for throughputs (`higher_is_better=True`).
    It is None when either side is missing. `target` is the goal the figure is held to, in words
    (None: a context figure). Extra keys are kept.
    """
    ratio = None
    if ours is not None and baseline is not None:
        num, den = (ours, baseline) if higher_is_better else (baseline, ours)
        ratio = round(num / den, 2) if den else None
    row = {
        "name": name,
        "ours": _round(ours),
        "baseline": _round(baseline),
        "ratio": ratio,
        "unit": unit,
        "target": target,
        "notes": notes,
    }
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


def median_time(
    fn: Callable[[], Any], repeat: int, setup: Callable[[], Any] | None = None
) -> tuple[float, list[float]]:
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
    parts = {"host": url.host, "port": url.port, "user": url.username, "password": url.password, "dbname": url.database}
    return " ".join(f"{k}={v}" for k, v in parts.items() if v is not None)


# ---------------------------------------------------------------- network and AWS emulator


@contextlib.contextmanager
def local_server(
    argv: list[str], probe_path: str, *, name: str, timeout_s: float = 60, cwd: str | None = None
) -> Iterator[str]:
    """Run `argv` (a server taking a port as `{port}`) on 127.0.0.1:<free port>; yield its URL once
    `probe_path` answers, and stop it on exit."""
    port = free_port()
    proc = subprocess.Popen(
        [a.format(port=port) for a in argv], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                urllib.request.urlopen(f"{url}{probe_path}", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start on {url}") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """moto's server in its own process on 127.0.0.1:<free port>; yields the endpoint URL.

    A separate process keeps the emulator's CPU work out of the measured process's GIL, as a
    real API would be. Its state lives until the context exits.
    """
    with local_server(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "{port}"],
        "/moto-api/data.json",
        name="moto server",
    ) as url:
        yield url


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


# ---------------------------------------------------------------- replaying front for the emulator


def replay_proxy_main(port: int, upstream: str) -> None:
    """Serve 127.0.0.1:<port>: forward to `upstream` (moto), remembering Describe* responses.

    A repeated Describe* request (same region, service, path and body — the signature and the
    caller's account are ignored) is answered from memory. moto renders ~2 ms of Python per
    instance per DescribeInstances, serialised by its GIL; replaying its recorded answers leaves
    only what a client pays against a fast API: the injected latency, HTTP, parsing.
    Control: POST /__replay/clear forgets everything; POST /__replay/reset zeroes the counters
    and keeps the recorded answers; POST /__replay/delay with a body of seconds makes every API
    answer wait that long (latency on the server's side, so that `max_in_flight` counts calls
    waiting on it); GET /__replay/stats returns hit counts and `max_in_flight`, the most requests
    the front was serving at once (how many API calls were concurrent).
    """
    import http.client
    import json
    import re
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import urlsplit

    target = urlsplit(upstream)
    cache: dict[tuple, tuple[int, list[tuple[str, str]], bytes]] = {}
    stats = {"hits": 0, "forwarded": 0, "in_flight": 0, "max_in_flight": 0, "delay_s": 0.0}
    lock = threading.Lock()
    scope_re = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/")
    hop_by_hop = {"connection", "keep-alive", "transfer-encoding", "content-length", "server", "date"}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args):  # quiet
            pass

        def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path.startswith("/__replay/"):
                with lock:
                    if self.path == "/__replay/clear":
                        cache.clear()
                    if self.path == "/__replay/delay":
                        stats["delay_s"] = float(body or 0)
                    if self.path in ("/__replay/clear", "/__replay/reset"):
                        stats.update(hits=0, forwarded=0, max_in_flight=stats["in_flight"])
                    payload = json.dumps({**stats, "entries": len(cache)}).encode()
                return self._reply(200, [("Content-Type", "application/json")], payload)
            with lock:
                stats["in_flight"] += 1
                stats["max_in_flight"] = max(stats["max_in_flight"], stats["in_flight"])
            try:
                time.sleep(stats["delay_s"])
                self._answer(body)
            finally:
                with lock:
                    stats["in_flight"] -= 1

        def _answer(self, body: bytes) -> None:
            match = scope_re.search(self.headers.get("Authorization", ""))
            region, service = match.groups() if match else ("", "")
            cacheable = b"Action=Describe" in body
            key = (region, service, self.command, self.path, body)
            if cacheable:
                with lock:
                    hit = cache.get(key)
                    if hit:
                        stats["hits"] += 1
                if hit:
                    return self._reply(*hit)
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                answer = (
                    resp.status,
                    [(k, v) for k, v in resp.getheaders() if k.lower() not in hop_by_hop],
                    resp.read(),
                )
            finally:
                conn.close()
            with lock:
                stats["forwarded"] += 1
                if cacheable and answer[0] == 200:
                    cache[key] = answer
            self._reply(*answer)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


@contextlib.contextmanager
def replay_proxy(upstream: str) -> Iterator[str]:
    """`replay_proxy_main` in its own process; yields its URL (use it as AWS_ENDPOINT_URL)."""
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with local_server(
        [sys.executable, "-m", "benchmarks.common", "replay-proxy", "{port}", upstream],
        "/__replay/stats",
        name="replay proxy",
        timeout_s=30,
        cwd=repo_root,
    ) as url:
        yield url


def replay_control(url: str, action: str = "stats", body: bytes = b"") -> dict[str, Any]:
    """`stats`, `reset` (counters only), `clear` (counters and recorded answers) or `delay`
    (body: seconds every answer waits) on a replay proxy."""
    import json

    request = urllib.request.Request(
        f"{url}/__replay/{action}",
        method="GET" if action == "stats" else "POST",
        data=None if action == "stats" else body,
    )
    return json.loads(urllib.request.urlopen(request, timeout=10).read())


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "replay-proxy":
    replay_proxy_main(int(sys.argv[2]), sys.argv[3])
