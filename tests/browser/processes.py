"""Running the demo and `dagster dev` as real processes, for the browser and demo tests.

Each process gets its own session (process group) and default signal handling, so a test can
interrupt it like a user's Ctrl-C, and always stops every process it started: SIGTERM to the
group, then SIGKILL when it has not exited in time.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from cryptography.fernet import Fernet

from spot_pipelines.demo.ports import free_port

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# Test-sized demo: the fleet's own instance types and 17 days of history (`demo --quick`).
DEMO_CMD = [str(BIN / "spot-pipelines"), "demo", "--no-ui", "--quick"]
DEMO_TIMEOUT_S = 420  # ~80 s on an idle 2-core machine; generous for a loaded one


def demo_env(home: Path, key: str | None = None) -> dict[str, str]:
    """The environment of a newcomer with no configuration: no Postgres, no AWS endpoint, a fresh
    DAGSTER_HOME, and ENCRYPTION_KEY given (so the repo's own .env is neither read for it nor written)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DAGSTER_PG_", "AWS_ENDPOINT_URL", "SPOT_INTERRUPTION_QUEUE"))
        and k not in ("DATABASE_URL", "AWS_PROFILE", "KUBECONFIG", "REDIS_URL", "PYTEST_CURRENT_TEST")
    }
    home.mkdir(parents=True, exist_ok=True)
    env.update(
        DAGSTER_HOME=str(home),
        ENCRYPTION_KEY=key or Fernet.generate_key().decode(),
        PYTHONUNBUFFERED="1",
        SPOT_PIPELINES_AWS_RETRY_DELAY="0.01",
    )
    return env


def stop_group(proc: subprocess.Popen, grace_s: float = 30) -> None:
    """SIGTERM to the process group, then SIGKILL to it if the leader has not exited in time."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    # The group may outlive its leader (webserver, daemon, code server): kill what is left.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def run_demo(env: dict[str, str], log: Path, timeout_s: float = DEMO_TIMEOUT_S) -> str:
    """`spot-pipelines demo --no-ui --quick` to completion; returns its output (stdout + stderr)."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            DEMO_CMD, env=env, cwd=env["DAGSTER_HOME"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            proc.wait(timeout=timeout_s)
        finally:
            stop_group(proc)
    output = log.read_text()
    if proc.returncode != 0:
        raise AssertionError(f"demo exited with {proc.returncode}; its output:\n{output[-4000:]}")
    return output


def run_demo_until(
    env: dict[str, str],
    log: Path,
    marker: str,
    timeout_s: float = DEMO_TIMEOUT_S,
    *,
    cmd: list[str] = DEMO_CMD,
    at_marker: Callable[[], None] = lambda: None,
) -> tuple[int, str]:
    """Start the demo (`cmd`), call `at_marker` as soon as `marker` is printed (the demo still
    running: e.g. use it from another shell), then send SIGINT (a user's Ctrl-C); returns
    (exit code, output)."""
    proc = subprocess.Popen(
        cmd,
        env=env,
        cwd=env["DAGSTER_HOME"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    try:
        for line in proc.stdout:
            lines.append(line)
            if marker in line:
                at_marker()
                os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"{marker!r} not printed within {timeout_s}s:\n{''.join(lines)[-4000:]}")
        else:
            raise AssertionError(f"demo ended before printing {marker!r}:\n{''.join(lines)[-4000:]}")
        rest, _ = proc.communicate(timeout=120)
        lines.append(rest)
    finally:
        stop_group(proc)
    log.write_text("".join(lines))
    return proc.returncode, "".join(lines)


def graphql(base_url: str, query: str, variables: dict | None = None, timeout_s: float = 30) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(f"{base_url}/graphql", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        payload = json.load(response)
    if payload.get("errors"):
        raise AssertionError(f"GraphQL errors: {payload['errors']}")
    return payload["data"]


LOCATIONS = "{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus } } } }"


@contextlib.contextmanager
def dagster_dev(env: dict[str, str], log: Path, timeout_s: float = 180) -> Iterator[str]:
    """`dagster dev` (webserver + daemon) on a free 127.0.0.1 port over env's DAGSTER_HOME; yields
    its URL once the code location is loaded, and stops the whole process group afterwards."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(BIN / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(port), "-w", str(REPO / "workspace.yaml")],
            env=env,
            cwd=env["DAGSTER_HOME"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if proc.poll() is not None:
                    raise AssertionError(f"dagster dev exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
                try:
                    entries = graphql(base_url, LOCATIONS, timeout_s=5)["workspaceOrError"]["locationEntries"]
                    if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                        break
                except (urllib.error.URLError, ConnectionError, TimeoutError, KeyError, ValueError):  # not up yet
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"dagster dev did not answer on {base_url} within {timeout_s}s:\n{log.read_text()[-4000:]}"
                    )
                time.sleep(1)
            yield base_url
        finally:
            stop_group(proc)
