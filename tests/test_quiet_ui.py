"""The instance the demo and a team get from dagster.yaml is quiet: no new-user pop-ups, no telemetry; the code
location is `spot_pipelines` wherever it is named."""

import shutil
from pathlib import Path

import dagster as dg
import tomllib
import yaml

REPO = Path(__file__).resolve().parents[1]


def test_the_instance_shows_no_onboarding_and_sends_no_telemetry(tmp_path, monkeypatch):
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with dg.DagsterInstance.get() as instance:
        assert not instance.nux_enabled and not instance.telemetry_enabled


def test_the_code_location_is_named_spot_pipelines_everywhere():
    [entry] = yaml.safe_load((REPO / "workspace.yaml").read_text())["load_from"]
    assert entry["python_module"]["location_name"] == "spot_pipelines"
    assert (
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["dagster"]["code_location_name"]
        == "spot_pipelines"
    )
