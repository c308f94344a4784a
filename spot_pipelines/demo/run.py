"""`spot-pipelines demo`: the whole platform on this machine, on embedded defaults.

Starts the local AWS emulator with a seeded two-account fleet, onboards both accounts through
the CLI, lets the onboarding sensor fire, materializes everything through Dagster down to
recommendations, prints a savings summary, then serves the UI with the daemon running.
Safe to re-run: ids are deterministic and every write is an upsert or a slice replacement.
The terminal gets one line per stage and the summary; Dagster's and moto's output goes to
`$DAGSTER_HOME/demo.log`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TextIO

import click
import dagster as dg

from spot_pipelines.core.clock import utc_today
from spot_pipelines.core.keyring import generate_key
from spot_pipelines.demo import workbench
from spot_pipelines.demo.emulator import EMULATOR_PORT, SEED, local_aws
from spot_pipelines.demo.fleet import (
    DEMO_ACCOUNTS,
    DEMO_SECRET_ACCESS_KEY,
    demo_instance_types,
    demo_regions,
    seed_fleet,
)
from spot_pipelines.demo.interruptions import create_queue, send_past_warnings
from spot_pipelines.demo.ports import free_port
from spot_pipelines.settings import PROJECT_ROOT, dagster_home, database_url

HISTORY_DAYS = 21  # the model needs its 14-day feature window plus a horizon and a holdout
QUICK_HISTORY_DAYS = 17  # `--quick`: the model's minimum (14-day window + 1-day horizon + 2 days)


_terminal: TextIO | None = None  # while output_to_log is active: the terminal, else stdout


def say(message: str) -> None:
    click.secho(f"==> {message}", fg="cyan", file=_terminal)


@contextlib.contextmanager
def output_to_log(log: Path) -> Iterator[None]:
    """Send everything written to fds 1 and 2 (Dagster's console logs, the system log, warnings,
    child processes) to `log`; `say` and the summary keep writing to the terminal."""
    global _terminal
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    _terminal = os.fdopen(os.dup(1), "w", buffering=1)
    with log.open("w") as handle:
        os.dup2(handle.fileno(), 1)
        os.dup2(handle.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, original in zip((1, 2), saved):
            os.dup2(original, fd)
            os.close(original)
        _terminal.close()
        _terminal = None


def load_env_file(path: Path) -> Path | None:
    """KEY=VALUE lines into the environment (the environment wins); creates the key if absent.
    Returns the file when ENCRYPTION_KEY comes from it, None when from the environment."""
    from_environment = bool(os.environ.get("ENCRYPTION_KEY"))
    if not path.exists() or "ENCRYPTION_KEY=" not in path.read_text():
        if not from_environment:
            with path.open("a") as handle:
                handle.write(f"ENCRYPTION_KEY={generate_key()}\n")
            path.chmod(0o600)
            say(f"generated an encryption key into {path} (keep it: it decrypts stored secrets)")
    if path.exists():
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.strip().startswith("#"):
                os.environ.setdefault(key.strip(), value.strip())
    return None if from_environment else path


def prepare_instance() -> Path:
    home = dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


def cli(*args: str, secret: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spot_pipelines.cli", *args], input=secret, text=True, capture_output=True
    )


def onboard() -> None:
    existing = cli("accounts", "list", "--json")
    known = {a["name"]: a["status"] for a in __import__("json").loads(existing.stdout or "[]")}
    for account in DEMO_ACCOUNTS:
        if known.get(account.name) in ("connected", "active"):
            say(f"account {account.name} already onboarded ({known[account.name]})")
            continue
        args = [
            "accounts",
            "add",
            account.name,
            "--aws-account-id",
            account.aws_account_id,
            "--regions",
            ",".join(account.regions),
        ]
        if account.auth_method == "role":
            args += ["--role-arn", account.role_arn, "--external-id", account.external_id]
            result = cli(*args)
        else:
            args += ["--access-key-id", "AKIAIOSFODNN7EXAMPLE"]
            result = cli(*args, secret=DEMO_SECRET_ACCESS_KEY + "\n")
        if result.returncode != 0:
            raise click.ClickException(f"onboarding {account.name} failed: {result.stderr.strip()}")
        say(result.stdout.strip())


def _execute(defs: dg.Definitions, instance: dg.DagsterInstance, keys: list[dg.AssetKey], **kwargs) -> None:
    job = defs.resolve_implicit_job_def_def_for_assets(keys)
    result = job.execute_in_process(instance=instance, asset_selection=keys, raise_on_error=False, **kwargs)
    names = ", ".join(k.to_user_string() for k in keys)
    if not result.success:
        failed = [e.step_key for e in result.all_events if e.is_step_failure]
        raise click.ClickException(
            f"materializing {names} failed in {failed}; see {dagster_home() / workbench.LOG_FILE} or the run in the UI"
        )
    say(f"materialized {names}")


def materialize_everything(instance: dg.DagsterInstance, history_days: int = HISTORY_DAYS) -> None:
    from spot_pipelines.definitions import defs
    from spot_pipelines.sensors.discovery import account_onboarding_sensor

    # The onboarding sensor's real tick: partitions for new accounts, one discovery run each.
    tick = account_onboarding_sensor(dg.build_sensor_context(instance=instance, resources=defs.resources))
    for request in tick.dynamic_partitions_requests:
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    partitions = [r.partition_key for r in tick.run_requests] or [a.name for a in DEMO_ACCOUNTS]
    for key in partitions:
        _execute(
            defs,
            instance,
            [dg.AssetKey("discovered_instances"), dg.AssetKey("aws_commitments")],
            partition_key=key,
            tags={"spot_pipelines/trigger": "demo"},
        )
    # The interruption sensor's real tick drains the queue into spot_interruption_events.
    from spot_pipelines.sensors.interruptions import spot_interruption_sensor

    drained = spot_interruption_sensor(dg.build_sensor_context(instance=instance, resources=defs.resources))
    say(f"spot_interruption_sensor drained the queue ({len(drained.run_requests)} follow-up run request(s))")

    graph = defs.resolve_asset_graph()
    daily, unpartitioned = [], []
    for key in graph.materializable_asset_keys:
        partitions_def = graph.get(key).partitions_def
        if partitions_def is None:
            unpartitioned.append(key)
        elif isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
            daily.append(key)
    end = (utc_today() - timedelta(days=1)).isoformat()
    for key in sorted(daily, key=lambda k: k.to_user_string()):
        start = (utc_today() - timedelta(days=history_days)).isoformat()
        if key == dg.AssetKey("spot_advisor"):
            start = end  # the feed is one trailing-month snapshot: one day is enough for a demo
        run_config = None
        if key == dg.AssetKey("spot_price_history"):
            # The fleet's regions only: the demo stays quick (production scrapes every enabled region).
            run_config = {"ops": {"spot_price_history": {"config": {"regions": demo_regions()}}}}
        _execute(
            defs,
            instance,
            [key],
            run_config=run_config,
            tags={"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end},
        )
    # What hourly_spot_price_schedule runs every hour: today's prices in force, merged into today's
    # partition, so the recommendations (and component_health's price_data) see prices minutes old.
    latest = {"regions": demo_regions(), "latest_only": True}
    _execute(
        defs,
        instance,
        [dg.AssetKey("spot_price_history")],
        partition_key=utc_today().isoformat(),
        run_config={"ops": {"spot_price_history": {"config": latest}}},
        tags={"spot_pipelines/trigger": "demo"},
    )
    # component_health reports on the others (optimizer, risk scores, model): it runs once they
    # exist, else a fresh demo's first round says they were never materialized.
    health = dg.AssetKey("component_health")
    # moto has no GetSpotPlacementScores: the demo recommends without placement scores.
    unpartitioned = [k for k in unpartitioned if k != dg.AssetKey("spot_placement_scores")]
    # The backtest replays the last week on the week before it: the demo's history is short.
    backtest = {"recommendation_backtest": {"config": {"window_days": 7, "lookback_days": 7}}}
    _execute(
        defs,
        instance,
        sorted((k for k in unpartitioned if k != health), key=lambda k: k.to_user_string()),
        run_config={"ops": backtest},
    )
    _execute(defs, instance, [health])


def print_summary() -> None:
    from spot_pipelines.demo.summary import savings_summary

    click.echo(savings_summary(database_url()), file=_terminal)


def serve_ui(port: int) -> None:
    chosen = free_port(port)
    if chosen != port:
        say(f"port {port} is taken; using {chosen}")
    say(
        f"Dagster UI on http://127.0.0.1:{chosen}  (asset graph: Assets → View lineage; runs: Runs). Ctrl-C stops everything."
    )
    say(
        "the README's commands work against this demo from another shell after: "
        'eval "$(.venv/bin/spot-pipelines demo env)"'
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dagster",
            "dev",
            "-h",
            "127.0.0.1",
            "-p",
            str(chosen),
            # The workspace file names the code location `spot_pipelines` (`-m` would name it after the module).
            "-w",
            str(PROJECT_ROOT / "workspace.yaml"),
        ],
        start_new_session=True,
    )

    def stop(_signum, _frame):
        raise KeyboardInterrupt  # SIGTERM (a supervisor, `timeout`) stops everything, as Ctrl-C does

    signal.signal(signal.SIGTERM, stop)
    try:
        proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def run_demo(ui: bool = True, port: int = 3000, quick: bool = False) -> None:
    """quick: a test-sized flow (the fleet's own instance types only, 17 days of history)."""
    started = time.monotonic()
    history_days = QUICK_HISTORY_DAYS if quick else HISTORY_DAYS
    instance_types = (
        sorted({g.instance_type for a in DEMO_ACCOUNTS for g in a.groups}) if quick else demo_instance_types()
    )
    home = prepare_instance()
    log = home / workbench.LOG_FILE
    with output_to_log(log):
        say(f"Dagster's and the emulator's output: {log}")
        key_file = load_env_file(PROJECT_ROOT / ".env")
        storage = (
            "Postgres (DAGSTER_PG_*)"
            if os.environ.get("DAGSTER_PG_URL") or os.environ.get("DAGSTER_PG_HOST")
            else f"embedded SQLite in {home}"
        )
        say(f"Dagster storage: {storage}; app database: {database_url().split('@')[-1]}")
        with local_aws(instance_types) as endpoint:
            taken = "" if endpoint.endswith(f":{EMULATOR_PORT}") else f"; port {EMULATOR_PORT} is taken"
            say(f"local AWS emulator on {endpoint} (region {', '.join(demo_regions())}, several AZs{taken})")
            for account in DEMO_ACCOUNTS:
                say(f"seeded {seed_fleet(account)} instances for {account.name}")
            warnings = send_past_warnings(create_queue(), days=history_days, seed=SEED)
            say(f"queued {warnings} past spot interruption warnings on SQS (EventBridge format)")
            with workbench.recording(home, key_file):
                onboard()
                with dg.DagsterInstance.get() as instance:
                    materialize_everything(instance, history_days)
                say(f"end-to-end flow done in {time.monotonic() - started:.0f}s")
                print_summary()
                if ui:
                    serve_ui(port)
