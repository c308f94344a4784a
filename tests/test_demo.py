"""`spot-pipelines demo` given bad conditions (the UI port taken, no Postgres configured,
interrupted mid-way then run again), what it shows (a short terminal view, every action, every
instance priced) and `demo env`, which points another shell at the running demo.

The demo-process tests share one module-scoped pair of real demo processes (the test-sized
`--quick` flow): the first is interrupted with SIGINT (a user's Ctrl-C) once it has onboarded and
discovered both accounts; the second, over the same DAGSTER_HOME, runs to completion, re-discovering
both, and serves the UI. While it serves, the README's workbench commands run as typed from another
shell (after its `eval "$(… demo env)"` line); then it gets Ctrl-C too.
"""

from __future__ import annotations

import json
import re
import shlex
import socket
import sqlite3
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner

from spot_pipelines.cli import main as cli_main
from spot_pipelines.demo import run as demo_run
from spot_pipelines.demo import workbench
from spot_pipelines.demo.emulator import local_aws
from spot_pipelines.demo.fleet import DEMO_ACCOUNTS
from spot_pipelines.demo.interruptions import create_queue
from spot_pipelines.demo.ports import free_port
from spot_pipelines.settings import PROJECT_ROOT
from tests.browser.processes import BIN, REPO, demo_env, run_demo_until
from tests.test_readme_commands import FENCE, readme_commands

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
    out = capsys.readouterr().out
    assert chosen != port
    assert f"port {port} is taken; using {chosen}" in out
    assert f"Dagster UI on http://127.0.0.1:{chosen} " in out
    assert _FakeDagsterDev.launched[-1][-4:] == ["-p", str(chosen), "-w", str(PROJECT_ROOT / "workspace.yaml")]


def test_demo_without_moto_says_how_to_install_it(monkeypatch):
    """moto is the [demo] extra: without it the command says, in one line, how to install it."""
    monkeypatch.setitem(sys.modules, "moto", None)  # `import moto.server` now raises ImportError
    monkeypatch.setitem(sys.modules, "moto.server", None)
    monkeypatch.setattr(demo_run, "run_demo", lambda **_: pytest.fail("the demo ran without moto"))
    result = CliRunner().invoke(cli_main, ["demo", "--no-ui"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: the demo needs moto: pip install -e '.[demo]' (or run `make demo`)"
    ]


def test_ui_port_free_is_used_as_asked(monkeypatch, capsys):
    monkeypatch.setattr(demo_run.subprocess, "Popen", _FakeDagsterDev)
    _FakeDagsterDev.launched = []
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    demo_run.serve_ui(port)
    out = capsys.readouterr().out
    assert _served_port(_FakeDagsterDev.launched[-1]) == port
    assert "is taken" not in out
    assert f"Dagster UI on http://127.0.0.1:{port} " in out
    assert 'eval "$(.venv/bin/spot-pipelines demo env)"' in out


@dataclass(frozen=True)
class TwoRuns:
    home: Path
    interrupted_code: int
    interrupted_output: str
    code: int
    output: str
    ui_port: int
    workbench_runs: dict[str, subprocess.CompletedProcess]  # "tool sub sub" of a README command -> its run


README = (REPO / "README.md").read_text()
# The README's line that points another shell at the running demo (the command parser skips `eval`).
EVAL_DEMO_ENV = next(
    line for block in FENCE.findall(README) for line in block.splitlines() if line.startswith('eval "$(')
)
SERVING = "==> the README's commands work against this demo"


def workbench_commands() -> list[list[str]]:
    """The README's accounts and recommendations listings, its approve command and its dry-run
    execute job (the one without a `-c` file)."""
    commands = readme_commands(README)
    wanted = (
        ["spot-pipelines", "accounts", "list"],
        ["spot-pipelines", "recommendations", "list"],
        ["spot-pipelines", "recommendations", "approve"],
        ["dagster", "job", "execute"],
    )
    return [next(c for c in commands if c[:3] == w and "-c" not in c) for w in wanted]


def use_workbench(env: dict[str, str]) -> dict[str, subprocess.CompletedProcess]:
    """Each workbench command in a fresh shell (no AWS variables, a profile that would break boto3)
    that first runs the README's eval line, from the repository as the README types it."""
    shell_env = {k: v for k, v in env.items() if not k.startswith("AWS_")} | {"AWS_PROFILE": "not-a-profile"}
    done: dict[str, subprocess.CompletedProcess] = {}
    for command in workbench_commands():
        if command[2] == "approve":  # the README's ids are examples: approve the listed move_to_spot
            # columns: id status account region instance action
            listed = done["spot-pipelines recommendations list"].stdout
            found = re.search(r"^(\d+)\s+proposed\s+\S+\s+\S+\s+\S+\s+move_to_spot\s", listed, re.M)
            assert found, f"no proposed move_to_spot listed:\n{listed}"
            rec_id = found[1]
            command = [*command[:3], rec_id, *(w for w in command[3:] if not w.isdigit())]
        script = f"{EVAL_DEMO_ENV}\n.venv/bin/{shlex.join(command)}"
        done[" ".join(command[:3])] = subprocess.run(
            ["bash", "-c", script], env=shell_env, cwd=REPO, capture_output=True, text=True, timeout=300
        )
    return done


@pytest.fixture(scope="module")
def interrupted_then_rerun(tmp_path_factory) -> TwoRuns:
    root = tmp_path_factory.mktemp("demo")
    home = root / "dagster_home"
    env = demo_env(home)  # no DATABASE_URL, no DAGSTER_PG_*: a newcomer's machine
    # Ctrl-C after onboarding and discovery, while market data is loading: rows exist to be duplicated.
    code, first = run_demo_until(env, root / "interrupted.log", marker="==> spot_interruption_sensor drained")
    # The second run serves the UI (as `make demo PORT=…` does); Ctrl-C once the workbench was used.
    ui_port, used = free_port(), {}
    rerun_code, output = run_demo_until(
        env,
        root / "rerun.log",
        marker=SERVING,
        cmd=[str(BIN / "spot-pipelines"), "demo", "--quick", "--port", str(ui_port)],
        at_marker=lambda: used.update(use_workbench(env)),
    )
    return TwoRuns(
        home=home,
        interrupted_code=code,
        interrupted_output=first,
        code=rerun_code,
        output=output,
        ui_port=ui_port,
        workbench_runs=used,
    )


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


@pytest.mark.timeout(900)
def test_terminal_shows_a_line_per_stage_names_the_log_and_ends_with_the_summary(interrupted_then_rerun):
    runs = interrupted_then_rerun
    lines = runs.output.rstrip().splitlines()  # stdout and stderr together: all the terminal shows
    log = runs.home / "demo.log"
    assert len(lines) <= 60, runs.output
    assert lines[0] == f"==> Dagster's and the emulator's output: {log}"
    # Dagster's run chatter went to the log, not the terminal.
    assert "RUN_SUCCESS" in log.read_text()
    assert "RUN_SUCCESS" not in runs.output and "DEBUG" not in runs.output
    summary = next(i for i, line in enumerate(lines) if line.startswith("Savings summary"))
    assert lines[summary - 2].startswith("==> end-to-end flow done in ")
    # After the summary, only where the UI is and how to use the demo from another shell.
    assert [line for line in lines[summary:] if line.startswith("==>")] == [
        f"==> Dagster UI on http://127.0.0.1:{runs.ui_port}  (asset graph: Assets → View lineage; runs: Runs)."
        " Ctrl-C stops everything.",
        f"{SERVING} from another shell after: {EVAL_DEMO_ENV.split('#')[0].rstrip()}",
    ]
    assert "Top recommendations:" in lines[summary:]
    # Ctrl-C stopped it cleanly, and `demo env` no longer points at the stopped emulator.
    assert runs.code == 0, runs.output[-2000:]
    assert not (runs.home / workbench.STATE_FILE).exists()


@pytest.mark.timeout(900)
def test_demo_recommends_every_action_and_prices_every_instance(interrupted_then_rerun, monkeypatch):
    home = interrupted_then_rerun.home
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with sqlite3.connect(home / "spot_pipelines.db") as db:
        recs = db.execute(
            "SELECT action, current_instance_type, availability_zone_id, target_instance_type,"
            " target_availability_zone_id FROM spot_recommendations"
            " WHERE generated_at = (SELECT max(generated_at) FROM spot_recommendations)"
        ).fetchall()
    assert {r[0] for r in recs} == {"move_to_spot", "diversify", "stay_on_demand", "return_to_on_demand"}
    # Identical instances (same type and AZ) moving to spot never pile into one pool.
    moves = Counter(r[1:] for r in recs if r[0] in ("move_to_spot", "diversify"))
    assert max(moves.values()) == 1, moves

    with dg.DagsterInstance.get() as instance:

        def metadata(asset: str) -> dict:
            event = instance.get_latest_materialization_event(dg.AssetKey(asset))
            return {k: v.value for k, v in event.asset_materialization.metadata.items()}

        recommended, scored = metadata("spot_recommendations"), metadata("interruption_risk_scores")
        backtest = metadata("recommendation_backtest")
    assert recommended["skipped_instances"] == 0, recommended["skipped"]
    # The backtest replayed the demo's last week: the policy and every baseline, priced from the stored history.
    policies = {r.data["policy"]: r.data for r in backtest["policies"].records}
    assert set(policies) >= {"recommend", "on_demand", "cheapest_spot", "hindsight_best"}
    assert backtest["instance_hours"] == 24 * 7 * backtest["instances"] > 0
    assert policies["on_demand"]["savings_vs_on_demand_usd_per_instance_month"] == 0
    assert scored["skipped_markets"] == 0, scored["skipped_reasons"]
    # Every seeded instance has a recommendation or sits in a spot pool that still qualifies.
    assert len(recs) + recommended["unchanged_spot_instances"] == SEEDED_INSTANCES
    # The demo's RI keeps its c5.2xlarge on-demand, and the Savings Plan makes net differ from list somewhere.
    with sqlite3.connect(home / "spot_pipelines.db") as db:
        latest = " WHERE generated_at = (SELECT max(generated_at) FROM spot_recommendations)"
        kept = db.execute(
            "SELECT current_instance_type, commitment_covered_fraction, reason FROM spot_recommendations"
            + latest
            + " AND action = 'stay_on_demand' AND commitment_covered_fraction > 0"
        ).fetchall()
        differ = db.execute(
            "SELECT count(*) FROM spot_recommendations" + latest + " AND action <> 'stay_on_demand'"
            " AND abs(net_monthly_savings_usd - list_monthly_savings_usd) >= 1"
        ).fetchone()[0]
    assert [k[:2] for k in kept] == [("c5.2xlarge", 1.0)], kept
    assert kept[0][2].startswith("stays on-demand: 100% covered by RI ri-0demo0c52xlarge01")
    assert differ >= 1
    assert recommended["reserved_instances"] == 1 and recommended["savings_plans"] == 1
    # Commitment pools read by account name, not by the internal account id.
    pools = {r.data["pool"] for r in recommended["commitments_used_unused"].records}
    names = {f"account {a.name}" for a in DEMO_ACCOUNTS}
    assert pools and pools <= names, pools


@pytest.mark.timeout(900)
def test_demo_warns_why_prices_are_old_and_shows_no_red_of_its_own(interrupted_then_rerun, monkeypatch):
    """Item 13: the bundled on-demand snapshot's age is a WARN that says how old and why; nothing
    the demo did is critical in component_health or a failed check of error severity."""
    from spot_pipelines.definitions import defs

    home = interrupted_then_rerun.home
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    check_keys = list(defs.resolve_asset_graph().asset_check_keys)
    evaluations = {}
    with dg.DagsterInstance.get() as instance:
        # Each check's newest evaluation: a run the daemon's schedule planned as Ctrl-C came is only planned.
        for key in check_keys:
            for record in instance.event_log_storage.get_asset_check_execution_history(key, limit=5):
                data = record.event.dagster_event.event_specific_data if record.event else None
                if isinstance(data, dg.AssetCheckEvaluation):
                    evaluations[key.name] = data
                    break
    prices = evaluations["prices_recent"]
    age = prices.metadata["oldest_age_days"].value
    assert not prices.passed and prices.severity == dg.AssetCheckSeverity.WARN
    assert prices.description.startswith(f"the oldest stored on-demand price is {age:g} days old (limit 7); ")
    assert "the bundled snapshot was used because Price List API unusable: " in prices.description
    red = {
        n: e.description for n, e in evaluations.items() if not e.passed and e.severity != dg.AssetCheckSeverity.WARN
    }
    assert not red, red
    assert evaluations["no_critical_components"].passed

    with sqlite3.connect(home / "spot_pipelines.db") as db:
        health = db.execute(
            "SELECT component, status, details FROM component_health"
            " WHERE round_id = (SELECT round_id FROM component_health ORDER BY checked_at DESC LIMIT 1)"
        ).fetchall()
    statuses = {component: status for component, status, _ in health}
    assert len(statuses) == 7 and "critical" not in statuses.values(), health
    # What the demo itself just materialized is healthy (component_health runs after it).
    assert [statuses[c] for c in ("optimizer", "risk_scores")] == ["healthy"] * 2, health
    # The demo's model only ties the advisor-band prior (too few observed warnings): refused, the prior serves.
    details = {component: d for component, _, d in health}
    assert statuses["ml_model"] == "degraded" and "only ties it" in details["ml_model"], health


@pytest.mark.timeout(900)
def test_readme_workbench_commands_work_as_typed_against_the_serving_demo(interrupted_then_rerun):
    """Item 3 of issue 10: list accounts and recommendations, approve one, dry-run the execute job,
    from a shell that only ran the README's eval line; the dry run asks the demo's emulator."""
    runs = interrupted_then_rerun
    assert list(runs.workbench_runs) == [" ".join(c[:3]) for c in workbench_commands()]
    for done in runs.workbench_runs.values():
        assert done.returncode == 0, f"{done.args[-1]}\n{done.stdout[-2000:]}{done.stderr[-4000:]}"
    listed = runs.workbench_runs["spot-pipelines accounts list"].stdout
    for account in DEMO_ACCOUNTS:
        assert re.search(rf"^{account.name}\s.*\bactive\b", listed, re.M), listed
    approved = runs.workbench_runs["spot-pipelines recommendations approve"].stdout
    rec_id = int(re.match(r"approved 1 recommendation\(s\): (\d+)\.", approved)[1])

    with sqlite3.connect(runs.home / "spot_pipelines.db") as db:
        status, approved_by = db.execute(
            "SELECT status, approved_by FROM spot_recommendations WHERE id = ?", (rec_id,)
        ).fetchone()
        actions = db.execute(
            "SELECT operation, outcome, dry_run FROM recommendation_actions WHERE recommendation_id = ? ORDER BY step",
            (rec_id,),
        ).fetchall()
    # The dry run described the real instance in the emulator, only planned the replacement, and otherwise
    # made reads and EC2 DryRun permission probes of the calls it plans.
    assert actions[0] == ("DescribeInstances", "succeeded", 1) and {a[2] for a in actions} == {1}
    planned = [op for op, outcome, _ in actions if outcome == "planned"]
    assert planned == ["RunInstances", "TerminateInstances"]
    others = {op for op, outcome, _ in actions if outcome != "planned"}
    assert all(op.startswith("Describe") or op in planned for op in others), actions
    assert {outcome for _, outcome, _ in actions} == {"succeeded", "planned"}, actions
    assert (status, approved_by) == ("approved", "alice")


def test_demo_env_points_a_shell_at_the_running_emulator(tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    env = demo_env(home)  # a fresh shell: no AWS endpoint, no DATABASE_URL ...
    key = env.pop("ENCRYPTION_KEY")  # ... and no ENCRYPTION_KEY: it comes from the demo's .env
    env["AWS_PROFILE"] = "not-a-profile"  # would break boto3 if demo env kept it
    env_file = tmp_path / ".env"
    env_file.write_text(f"ENCRYPTION_KEY={key}\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.delenv("SPOT_INTERRUPTION_QUEUE_URL", raising=False)  # create_queue sets it
    demo_env_cmd = [str(BIN / "spot-pipelines"), "demo", "env"]
    probe = """import boto3, json, os
queue = os.environ["SPOT_INTERRUPTION_QUEUE_URL"]
print(json.dumps({"caller": boto3.client("sts").get_caller_identity()["Arn"],
                  "queue": boto3.client("sqs").get_queue_attributes(
                      QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"],
                  "key": os.environ["ENCRYPTION_KEY"], "home": os.environ["DAGSTER_HOME"],
                  "database": os.environ["DATABASE_URL"]}))"""
    with local_aws(["m5.large"], port=free_port()) as endpoint:
        create_queue()
        with workbench.recording(home, env_file):
            printed = subprocess.run(demo_env_cmd, env=env, capture_output=True, text=True)
            assert printed.returncode == 0, printed.stderr
            printed = printed.stdout
            shell = subprocess.run(
                ["bash", "-c", f'eval "$({demo_env_cmd[0]} demo env)" && "$0" -c "$1"', str(BIN / "python"), probe],
                env=env,
                capture_output=True,
                text=True,
            )
    assert shell.returncode == 0, shell.stderr
    seen = json.loads(shell.stdout)
    assert f"export AWS_ENDPOINT_URL={endpoint}" in printed
    assert key not in printed  # the key is read from .env by the shell, never printed
    assert seen["key"] == key
    assert seen["caller"].startswith("arn:aws:sts::") and seen["queue"].endswith(":spot-pipelines-ec2-events")
    assert seen["home"] == str(home)
    assert seen["database"] == f"sqlite:///{home / 'spot_pipelines.db'}"

    # Once the demo has stopped, demo env says so instead of pointing at nothing.
    stopped = subprocess.run(demo_env_cmd, env=env, capture_output=True, text=True)
    assert stopped.returncode == 1 and stopped.stdout == ""
    assert stopped.stderr.startswith(f"error: no running demo recorded in {home / workbench.STATE_FILE}")


# What the Plots tab must draw for the demo (issue 15 item 2), per asset.
SERIES = {
    "spot_recommendations": {
        "running_instances",
        "on_demand_share",
        "list_monthly_savings_usd",
        "net_monthly_savings_usd",
    },
    "interruption_model": {"brier", "baseline_brier", "roc_auc", "log_loss"},
    "interruption_risk_scores": {"very_low_risk_markets", "high_risk_markets", "very_high_risk_markets"},
    "spot_interruption_events": {"events_24h", "interruption_warnings_24h"},
    "component_health": {"price_data_age_s", "risk_scores_age_s"},
}


def config_fields() -> set[str]:
    """Every run-config field an asset module declares: echoing one as numeric metadata plots a constant."""
    import importlib
    import pkgutil

    import spot_pipelines.assets as assets

    names = set()
    for module in pkgutil.iter_modules(assets.__path__):
        for value in vars(importlib.import_module(f"{assets.__name__}.{module.name}")).values():
            if isinstance(value, type) and issubclass(value, dg.Config) and value is not dg.Config:
                names |= set(value.model_fields)
    return names


@pytest.mark.timeout(900)
def test_numeric_metadata_is_only_what_is_worth_a_time_series(interrupted_then_rerun, monkeypatch):
    """The Plots tab draws every numeric entry: the fleet, savings, risk mix, model quality and freshness are
    there; no id and no setting (a constant line) is."""
    monkeypatch.setenv("DAGSTER_HOME", str(interrupted_then_rerun.home))
    numeric: dict[str, set[str]] = {}
    with dg.DagsterInstance.get() as instance:
        for key in instance.get_asset_keys():
            event = instance.get_latest_materialization_event(key)
            if event is not None:
                numeric[key.to_user_string()] = {
                    label
                    for label, value in event.asset_materialization.metadata.items()
                    if isinstance(value, (dg.IntMetadataValue, dg.FloatMetadataValue))
                }
    missing = {asset: sorted(want - numeric.get(asset, set())) for asset, want in SERIES.items()}
    assert not any(missing.values()), missing
    settings = config_fields()
    echoed = {a: sorted(labels & settings) for a, labels in numeric.items() if labels & settings}
    assert not echoed, f"run-config settings as numeric metadata: {echoed}"
    # An id names one thing (model_version, run_id); a count of things lacking one is a series.
    ids = {a: sorted(x for x in labels if re.fullmatch(r"([a-z]+_)?(id|version)", x)) for a, labels in numeric.items()}
    assert not any(ids.values()), ids
