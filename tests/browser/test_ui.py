"""The Dagster UI over a demo instance, in a real browser and through its GraphQL API.

A test-sized demo (`spot-pipelines demo --no-ui --quick`) materializes everything into a fresh
DAGSTER_HOME; `dagster dev` (webserver + daemon) then serves it on a free 127.0.0.1 port, and
Debian's Chromium, headless and driven by Playwright, opens the asset graph and the latest run.
Screenshots go to artifacts/browser/ (git-ignored); the asset graph also to docs/asset-graph.png
(the README's picture) when that file is missing or SPOT_PIPELINES_UPDATE_DOCS_SCREENSHOT=1.

Chromium comes from Debian (scripts/ensure-browser.sh installs it when missing): Playwright is
given its path and never downloads a browser.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.browser.processes import REPO, dagster_dev, demo_env, graphql, run_demo

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

PUBLIC_ASSETS = {
    "discovered_instances",
    "spot_price_history",
    "on_demand_prices",
    "spot_advisor",
    "interruption_risk_scores",
    "interruption_model",
    "interruption_predictions",
    "spot_recommendations",
    "component_health",
    "spot_interruption_events",
    "k8s_node_inventory",
}
CHROMIUM = Path(os.environ.get("SPOT_PIPELINES_CHROMIUM", "/usr/bin/chromium"))
# What works on a machine with no network but loopback: no background connections, no GPU, a fresh
# profile (Playwright passes its own new --user-data-dir to every launch).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "artifacts" / "browser"
DOCS_SCREENSHOT = REPO / "docs" / "asset-graph.png"
UI_TIMEOUT_MS = 90_000  # first loads on a busy 2-core machine are slow

RUNS = """{ runsOrError(limit: 200) { __typename ... on Runs { results {
  runId status creationTime assetSelection { path } tags { key value } } } } }"""
ASSETS = "{ assetNodes { assetKey { path } assetMaterializations(limit: 1) { runId } } }"


@dataclass(frozen=True)
class DemoUI:
    url: str
    served_at: float  # epoch seconds: runs created before this are the demo's own
    demo_seconds: float


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        subprocess.run(["bash", str(REPO / "scripts" / "ensure-browser.sh")], check=False)
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing and scripts/ensure-browser.sh could not install it "
            "(needs root and Debian's package repositories)"
        )
    return CHROMIUM


@pytest.fixture(scope="module")
def demo_ui(tmp_path_factory) -> Iterator[DemoUI]:
    root = tmp_path_factory.mktemp("browser_demo")
    env = demo_env(root / "dagster_home")
    started = time.monotonic()
    run_demo(env, root / "demo.log")
    demo_seconds = time.monotonic() - started
    # No .nux/nux.yaml is written here: the demo's dagster.yaml (nux disabled) must keep pop-ups away by itself.
    served_at = time.time()
    with dagster_dev(env, root / "dagster-dev.log") as url:
        yield DemoUI(url=url, served_at=served_at, demo_seconds=demo_seconds)


@pytest.fixture(scope="module")
def browser(chromium):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the browser tests need Playwright for Python: pip install -e '.[dev]'")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_FLAGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def demo_runs(demo_ui: DemoUI) -> list[dict]:
    runs = graphql(demo_ui.url, RUNS)["runsOrError"]["results"]
    # Anything newer was launched by the daemon (e.g. component_health_schedule every 5 minutes).
    return [r for r in runs if r["creationTime"] < demo_ui.served_at]


def latest_recommendations_run(demo_ui: DemoUI) -> dict:
    runs = [r for r in demo_runs(demo_ui) if ["spot_recommendations"] in [a["path"] for a in r["assetSelection"] or []]]
    assert runs, "the demo left no run that materialized spot_recommendations"
    return max(runs, key=lambda r: r["creationTime"])


def test_graphql_every_public_asset_is_materialized_and_the_demo_runs_succeeded(demo_ui):
    nodes = {"/".join(n["assetKey"]["path"]): n for n in graphql(demo_ui.url, ASSETS)["assetNodes"]}
    assert PUBLIC_ASSETS <= nodes.keys(), f"missing from the API: {sorted(PUBLIC_ASSETS - nodes.keys())}"
    unmaterialized = sorted(k for k in PUBLIC_ASSETS if not nodes[k]["assetMaterializations"])
    assert not unmaterialized, f"never materialized: {unmaterialized}"

    runs = demo_runs(demo_ui)
    # Per account discovery, spot_advisor, the spot_price_history range, everything unpartitioned.
    assert len(runs) >= 5, runs
    assert {r["status"] for r in runs} == {"SUCCESS"}, [(r["runId"], r["status"]) for r in runs]
    assert latest_recommendations_run(demo_ui)["status"] == "SUCCESS"


GROUPS = "{ assetNodes { assetKey { path } groupName } }"
GRAPH_VIEWPORT = {"width": 1600, "height": 1000}  # the laptop screen the graph must be readable on


def shown_as(name: str, labels: list[str]) -> bool:
    """The node shows the name whole, or middle-truncated as the UI does for long names at a small zoom."""
    for label in labels:
        head, sep, tail = label.partition("…")
        if label == name or (
            sep and len(head) >= 4 and len(tail) >= 4 and name.startswith(head) and name.endswith(tail)
        ):
            return True
    return False


def no_dialog_covers(page) -> None:
    dialogs = [d for d in page.locator("[role=dialog]").all() if d.is_visible()]
    assert not dialogs, f"a dialog covers the page: {[d.inner_text()[:200] for d in dialogs]}"


def test_asset_graph_is_readable_at_1600_by_1000(demo_ui, browser):
    """Every group on the global lineage, and every asset on its group's graph, at 1600×1000: no asset
    missing, none shown only as a dot, no pop-up over it."""
    groups: dict[str, set[str]] = {}
    for node in graphql(demo_ui.url, GROUPS)["assetNodes"]:
        groups.setdefault(node["groupName"], set()).add("/".join(node["assetKey"]["path"]))
    assert PUBLIC_ASSETS <= set().union(*groups.values())
    page = browser.new_page(viewport=GRAPH_VIEWPORT)
    try:
        page.set_default_timeout(UI_TIMEOUT_MS)
        page.goto(f"{demo_ui.url}/asset-groups")
        page.locator("foreignObject.group").first.wait_for()
        for group in groups:
            page.get_by_text(group, exact=True).first.wait_for(state="visible")
        no_dialog_covers(page)
        page.wait_for_timeout(1500)  # let the live-data badges settle for the picture
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "asset-graph.png"))
        unreadable = {}
        for group, assets in sorted(groups.items()):
            page.goto(f"{demo_ui.url}/locations/__repository__@spot_pipelines/asset-groups/{group}/lineage")
            page.locator("foreignObject").first.wait_for()
            page.wait_for_timeout(1000)  # the graph zooms to fit once laid out
            # A node's label is HTML inside the SVG foreignObject (which has no innerText of its own).
            texts = page.locator("foreignObject > *").all_inner_texts()
            labels = [line.strip() for text in texts for line in text.splitlines()]
            page.screenshot(path=str(ARTIFACTS / f"asset-group-{group}.png"))
            missing = sorted(a for a in assets if not shown_as(a, labels))
            if missing:
                unreadable[group] = missing
        assert not unreadable, f"not readable on their group's graph at 1600×1000: {unreadable}"
    finally:
        page.close()
    if not DOCS_SCREENSHOT.exists() or os.environ.get("SPOT_PIPELINES_UPDATE_DOCS_SCREENSHOT") == "1":
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copy(ARTIFACTS / "asset-graph.png", DOCS_SCREENSHOT)


def test_the_recommendations_page_shows_its_table_columns_plots_and_checks(demo_ui, browser):
    """What a cost engineer opens first: the top recommendations inline (no click) with account names,
    the column descriptions, the savings series on the Plots tab, the asset checks, and no pop-up."""
    top = graphql(
        demo_ui.url,
        """{ assetNodes(assetKeys: [{path: ["spot_recommendations"]}]) { assetMaterializations(limit: 1) {
        metadataEntries { label ... on TableMetadataEntry { table { records } } } } } }""",
    )["assetNodes"][0]["assetMaterializations"][0]["metadataEntries"]
    [records] = [e["table"]["records"] for e in top if e["label"] == "top_recommendations"]
    first = json.loads(records[0])
    page = browser.new_page(viewport=GRAPH_VIEWPORT)
    try:
        page.set_default_timeout(UI_TIMEOUT_MS)
        page.goto(f"{demo_ui.url}/assets/spot_recommendations")
        # The biggest recommendation's row, by its account's name and instance id, without a click.
        row = page.locator("tr", has_text=first["instance_id"]).first
        row.wait_for(state="visible")
        assert first["account"] in row.inner_text() and not first["account"].isdigit(), first
        no_dialog_covers(page)
        # Column descriptions with units, from the definition's column schema.
        page.get_by_text("USD/month (730 h): against the list on-demand price", exact=False).first.wait_for(
            state="visible"
        )
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "recommendations.png"), full_page=True)
        page.get_by_text("Plots", exact=True).first.click()
        for series in ("net_monthly_savings_usd", "list_monthly_savings_usd", "running_instances"):
            page.get_by_text(series, exact=True).first.wait_for(state="visible")
        page.screenshot(path=str(ARTIFACTS / "recommendations-plots.png"), full_page=True)
        page.goto(f"{demo_ui.url}/assets/spot_recommendations?view=checks")
        checks = ("every_running_instance_accounted", "moves_save_money", "no_zero_prices")
        for check in checks:  # the list middle-truncates long names; its hidden measuring copy holds them whole
            page.get_by_text(check, exact=True).first.wait_for(state="attached")
        page.wait_for_timeout(500)
        shown = [line.strip() for line in page.locator("body").inner_text().splitlines()]
        assert all(shown_as(c, shown) for c in checks), [line for line in shown if "…" in line or "_" in line]
        page.screenshot(path=str(ARTIFACTS / "recommendations-checks.png"))
    finally:
        page.close()


def test_latest_run_succeeded_in_the_ui(demo_ui, browser):
    run = latest_recommendations_run(demo_ui)
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    try:
        page.set_default_timeout(UI_TIMEOUT_MS)
        page.goto(f"{demo_ui.url}/runs")
        link = page.locator(f'a[href$="/runs/{run["runId"]}"]').first  # its row's short id
        link.wait_for()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "runs.png"))
        link.click()
        page.wait_for_url(f"**/runs/{run['runId']}**")
        page.get_by_text("Success", exact=True).first.wait_for(state="visible")
        page.get_by_text("RUN_SUCCESS", exact=True).first.wait_for(state="visible")  # the event log says so too
        page.screenshot(path=str(ARTIFACTS / "latest-run.png"))
        body = page.inner_text("body")
        assert "Errored (0)" in body, "the run page lists errored steps"
        assert "spot_recommendations" in body
    finally:
        page.close()
