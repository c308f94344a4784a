"""k8s_node_inventory with the real kubernetes client against a local fake API server."""

import dagster as dg
import pytest
from sqlalchemy import select

from spot_pipelines.assets import refresh_component_health
from spot_pipelines.assets.kubernetes import k8s_node_inventory
from spot_pipelines.core.kubernetes import build_inventory, capacity_type, parse_provider_id
from spot_pipelines.db.engine import session_factory
from spot_pipelines.db.kubernetes import K8sNode, K8sPod, K8sWatcherHeartbeat
from spot_pipelines.db.system_log import SystemLog
from spot_pipelines.resources.app_database import AppDatabase
from spot_pipelines.resources.kubernetes import KubernetesResource
from spot_pipelines.resources.redis import RedisResource
from tests.support.accounts import add_account, add_instance
from tests.support.k8s_fake import NODES, PODS, FakeKubeApi


def test_capacity_type_labels_and_provider_ids():
    assert capacity_type({"karpenter.sh/capacity-type": "spot"}) == ("spot", "karpenter.sh/capacity-type")
    assert capacity_type({"eks.amazonaws.com/capacityType": "ON_DEMAND"})[0] == "on-demand"
    assert capacity_type({"eks.amazonaws.com/capacityType": "SPOT"})[0] == "spot"
    assert capacity_type({"node.kubernetes.io/lifecycle": "normal"})[0] == "on-demand"
    assert capacity_type({"node.kubernetes.io/lifecycle": "weird"}) == ("unknown", None)
    assert parse_provider_id("aws:///us-east-1a/i-0abc123") == ("us-east-1a", "i-0abc123")
    assert parse_provider_id("gce://project/zone/vm") == (None, None)
    assert parse_provider_id(None) == (None, None)


def test_inventory_owners_and_spot_pods():
    inventory = build_inventory(NODES, PODS)
    by_name = {n["name"]: n for n in inventory.nodes}
    assert by_name["ip-10-0-1-17.ec2.internal"]["capacity_type"] == "spot"
    assert by_name["ip-10-0-2-33.ec2.internal"]["instance_type"] == "c6i.xlarge"
    assert by_name["ip-10-0-4-71.ec2.internal"]["ready"] is False
    assert by_name["ip-10-0-4-71.ec2.internal"]["capacity_type"] == "unknown"
    workloads = {(w["owner_kind"], w["owner_name"]): w["spot_pods"] for w in inventory.workloads_on_spot()}
    assert workloads == {
        ("Deployment", "web"): 2,
        ("DaemonSet", "fluent-bit"): 1,
        ("Job", "report-28934"): 1,
        ("Pod", "debug"): 1,
    }


def resources(url, kubeconfig=None, **kw):
    return {"app_db": AppDatabase(url=url), "kubernetes": KubernetesResource(kubeconfig=kubeconfig, **kw)}


def test_inventory_asset_against_the_fake_api(db_url, tmp_path):
    account_id = add_account(db_url, "prod", "111122223333")
    add_instance(db_url, account_id, "i-0aaa000000000001a")
    with FakeKubeApi() as api:
        kubeconfig = api.kubeconfig(tmp_path / "kubeconfig")
        result = dg.materialize([k8s_node_inventory], resources=resources(db_url, kubeconfig, page_size=2))
        assert result.success
        assert any("limit=2" in r and "continue=2" in r for r in api.requests)  # paged
        assert set(api.authorization) == {"Bearer test-token-abc"}
        meta = result.asset_materializations_for_node("k8s_node_inventory")[0].metadata
        assert meta["dagster/row_count"].value == 4 and meta["pods_on_spot"].value == 5
        assert meta["cluster"].value == "prod-eks"
        assert meta["nodes_matched_to_discovered_instances"].value == 1
        workloads = {
            (r.data["owner_kind"], r.data["owner_name"]): r.data["spot_pods"] for r in meta["workloads_on_spot"].records
        }
        assert workloads[("Deployment", "web")] == 2

        # Second poll after a node and its pods went away: the snapshot is replaced.
        api.nodes, api.pods = (
            api.nodes[1:],
            [p for p in api.pods if p["spec"]["nodeName"] != NODES[0]["metadata"]["name"]],
        )
        assert dg.materialize([k8s_node_inventory], resources=resources(db_url, kubeconfig)).success
    with session_factory(db_url)() as session:
        nodes = {n.name: n for n in session.scalars(select(K8sNode))}
        pods = session.scalars(select(K8sPod)).all()
        heartbeat = session.get(K8sWatcherHeartbeat, "prod-eks")
    assert len(nodes) == 3 and len(pods) == 4
    assert heartbeat.status == "ok" and heartbeat.node_count == 3 and heartbeat.last_success_at is not None
    health = refresh_component_health(
        AppDatabase(url=db_url), None, redis=RedisResource(), kubernetes=KubernetesResource(kubeconfig=kubeconfig)
    )
    watcher = next(r for r in health.results if r.component == "kubernetes_watcher")
    assert watcher.status == "healthy"


def test_asset_maps_nodes_to_discovered_accounts(sqlite_url, tmp_path):
    account_id = add_account(sqlite_url, "prod", "111122223333")
    add_instance(sqlite_url, account_id, "i-0ccc000000000003c")
    with FakeKubeApi() as api:
        assert dg.materialize(
            [k8s_node_inventory], resources=resources(sqlite_url, api.kubeconfig(tmp_path / "kc"))
        ).success
    with session_factory(sqlite_url)() as session:
        node = session.scalars(select(K8sNode).where(K8sNode.instance_id == "i-0ccc000000000003c")).one()
    assert node.account_id == account_id and node.capacity_type_source == "node.kubernetes.io/lifecycle"


def test_not_configured_reports_and_succeeds(sqlite_url):
    result = dg.materialize([k8s_node_inventory], resources=resources(sqlite_url))
    assert result.success
    meta = result.asset_materializations_for_node("k8s_node_inventory")[0].metadata
    assert meta["status"].value == "not configured"


@pytest.mark.parametrize(
    "mode,expected",
    [
        ("401", "401 Unauthorized"),
        ("403", 'cannot list resource "nodes"'),
        ("500", "500 Internal Server Error: etcdserver: request timed out"),
        ("hang", "timed out"),
    ],
)
def test_api_errors_are_visible_failures(sqlite_url, tmp_path, mode, expected):
    with FakeKubeApi() as api:
        api.mode = mode
        kubeconfig = api.kubeconfig(tmp_path / "kc", token="sekret-bearer-token-value-1234567890")
        result = dg.materialize(
            [k8s_node_inventory],
            raise_on_error=False,
            resources=resources(sqlite_url, kubeconfig, request_timeout_s=0.5),
        )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert expected in failure.event_specific_data.error.message
    with session_factory(sqlite_url)() as session:
        heartbeat = session.get(K8sWatcherHeartbeat, "prod-eks")
        log = session.scalars(select(SystemLog).where(SystemLog.component == "k8s_node_inventory")).one()
    assert heartbeat.status == "error" and expected in heartbeat.error
    assert log.level == "ERROR" and expected in log.message
    assert "sekret-bearer-token" not in log.message + str(log.details) + heartbeat.error
    health = refresh_component_health(
        AppDatabase(url=sqlite_url), None, redis=RedisResource(), kubernetes=KubernetesResource(kubeconfig=kubeconfig)
    )
    watcher = next(r for r in health.results if r.component == "kubernetes_watcher")
    # Failing and never succeeded: critical (an error after a recent success is only degraded).
    assert watcher.status == "critical" and expected in watcher.details["error"]
