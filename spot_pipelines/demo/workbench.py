"""The running demo as a workbench: what another shell needs to point the README's commands at it.

While it serves the UI, the demo records its emulator's endpoints (and the other variables its own
processes got) in `$DAGSTER_HOME/demo-env.json`; `spot-pipelines demo env` turns that file into
`export` lines for `eval "$(.venv/bin/spot-pipelines demo env)"`. The file holds no secret: the
emulator's credentials are fakes it accepts, and ENCRYPTION_KEY is referenced by where it lives.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from spot_pipelines import settings
from spot_pipelines.core.errors import SpotPipelinesError

STATE_FILE = "demo-env.json"
LOG_FILE = "demo.log"
# What the demo's local_aws sets for its own processes (and `demo env` for another shell). This
# module imports no moto or boto3: `demo env` must work whatever AWS_PROFILE the shell has.
EMULATOR_VARIABLES = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_PRICING",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
)


@contextlib.contextmanager
def recording(home: Path, encryption_key_file: Path | None) -> Iterator[Path]:
    """Record the running emulator (from this process's environment, once local_aws and the queue
    are set up) for `demo env`, and forget it when the demo stops.

    encryption_key_file: the .env holding the key, None when it came from the environment."""
    # Only the SQLite default is recorded: a DATABASE_URL of the user's own may hold a password.
    database_url = None if os.environ.get("DATABASE_URL") else settings.database_url()
    path = home / STATE_FILE
    path.write_text(
        json.dumps(
            {
                "variables": {k: os.environ[k] for k in (*EMULATOR_VARIABLES, "SPOT_INTERRUPTION_QUEUE_URL")},
                "database_url": database_url,
                "encryption_key_file": str(encryption_key_file) if encryption_key_file else None,
            },
            indent=2,
        )
    )
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def _answers(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=2):
            return True
    except OSError:
        return False


def export_lines(home: Path) -> str:
    """Shell lines that point a shell at the running demo; a clear error when it is not running."""
    path = home / STATE_FILE
    if not path.exists():
        raise SpotPipelinesError(
            f"no running demo recorded in {path}: start `make demo` (the emulator lives "
            "while it serves the UI) and run this in another shell"
        )
    state = json.loads(path.read_text())
    endpoint = state["variables"]["AWS_ENDPOINT_URL"]
    if not _answers(endpoint):
        raise SpotPipelinesError(
            f"the demo's AWS emulator at {endpoint} does not answer (the demo has stopped): start `make demo` again"
        )
    q = shlex.quote
    lines = [
        f"# the demo's workbench, recorded in {path}",
        "unset AWS_PROFILE AWS_SESSION_TOKEN  # the emulator's credentials below, not a profile's",
        f"export DAGSTER_HOME={q(str(home))}",
    ]
    if state["database_url"]:
        lines.append(f"export DATABASE_URL={q(state['database_url'])}")
    else:
        lines.append("# DATABASE_URL: the demo used the one in its environment; keep it exported here too")
    key_file = state["encryption_key_file"]
    if key_file:
        lines.append(
            f"export ENCRYPTION_KEY=\"$(sed -n 's/^ENCRYPTION_KEY=//p' {q(key_file)} | tail -n 1)\""
            "  # read from the file, never printed"
        )
    else:
        lines.append("# ENCRYPTION_KEY: the demo used the one in its environment; keep it exported here too")
    lines += [f"export {name}={q(value)}" for name, value in sorted(state["variables"].items())]
    return "\n".join(lines) + "\n"
