"""A tiny Kubernetes API server (http.server in a thread) answering /api/v1/nodes and /api/v1/pods
with realistic JSON, plus failure modes: 401, 403, 500 and a hang (timeout)."""

import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from spot_pipelines.core.clock import utcnow


def node(name, *, instance_id, zone="us-east-1a", itype="m5.large", labels=None, ready=True):
    return {
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "uid": f"uid-{name}",
            "resourceVersion": "1234",
            "creationTimestamp": (utcnow() - timedelta(days=12)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "labels": {
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "node.kubernetes.io/instance-type": itype,
                "topology.kubernetes.io/region": zone[:-1],
                "topology.kubernetes.io/zone": zone,
                **(labels or {}),
            },
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {"providerID": f"aws:///{zone}/{instance_id}", "podCIDR": "10.0.1.0/24"},
        "status": {
            "capacity": {"cpu": "2", "memory": "7934940Ki", "pods": "29"},
            "allocatable": {"cpu": "1930m", "memory": "7244764Ki", "pods": "29"},
            "conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": "True" if ready else "False", "reason": "KubeletReady"},
            ],
            "addresses": [{"type": "InternalIP", "address": "10.0.1.17"}],
            "nodeInfo": {
                "kubeletVersion": "v1.31.2-eks-7f9249a",
                "osImage": "Amazon Linux 2023",
                "containerRuntimeVersion": "containerd://1.7.22",
                "architecture": "amd64",
            },
        },
    }


def pod(name, namespace, node_name, owner=None, template_hash=None, phase="Running"):
    meta = {"name": name, "namespace": namespace, "uid": f"uid-{name}", "labels": {"app": name.split("-")[0]}}
    if template_hash:
        meta["labels"]["pod-template-hash"] = template_hash
    if owner:
        kind, owner_name = owner
        meta["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": kind,
                "name": owner_name,
                "uid": "u",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": meta,
        "spec": {"nodeName": node_name, "containers": [{"name": "main", "image": "nginx:1.27"}]},
        "status": {"phase": phase, "podIP": "10.0.1.40"},
    }


NODES = [
    node(
        "ip-10-0-1-17.ec2.internal",
        instance_id="i-0aaa000000000001a",
        labels={"karpenter.sh/capacity-type": "spot", "karpenter.sh/nodepool": "default"},
    ),
    node(
        "ip-10-0-2-33.ec2.internal",
        instance_id="i-0bbb000000000002b",
        zone="us-east-1b",
        itype="c6i.xlarge",
        labels={"eks.amazonaws.com/capacityType": "ON_DEMAND", "eks.amazonaws.com/nodegroup": "system"},
    ),
    node(
        "ip-10-0-3-50.ec2.internal",
        instance_id="i-0ccc000000000003c",
        zone="us-east-1c",
        labels={"node.kubernetes.io/lifecycle": "spot"},
    ),
    node("ip-10-0-4-71.ec2.internal", instance_id="i-0ddd000000000004d", labels={}, ready=False),
]
PODS = [
    pod("web-7d9f8b6c5d-x2x9q", "shop", "ip-10-0-1-17.ec2.internal", ("ReplicaSet", "web-7d9f8b6c5d"), "7d9f8b6c5d"),
    pod("web-7d9f8b6c5d-k8p2m", "shop", "ip-10-0-3-50.ec2.internal", ("ReplicaSet", "web-7d9f8b6c5d"), "7d9f8b6c5d"),
    pod("db-0", "shop", "ip-10-0-2-33.ec2.internal", ("StatefulSet", "db")),
    pod("fluent-bit-abcde", "logging", "ip-10-0-1-17.ec2.internal", ("DaemonSet", "fluent-bit")),
    pod("report-28934-xyz", "batch", "ip-10-0-3-50.ec2.internal", ("Job", "report-28934"), phase="Succeeded"),
    pod("debug", "default", "ip-10-0-1-17.ec2.internal"),
    pod("pending-1", "default", None, phase="Pending"),
]


class FakeKubeApi:
    def __init__(self, nodes=None, pods=None):
        self.nodes = list(NODES if nodes is None else nodes)
        self.pods = list(PODS if pods is None else pods)
        self.mode = "ok"  # ok | 401 | 403 | 500 | hang
        self.requests: list[str] = []
        self.authorization: list[str | None] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

            def do_GET(self):
                url = urlparse(self.path)
                api.requests.append(self.path)
                api.authorization.append(self.headers.get("Authorization"))
                if api.mode == "hang":
                    time.sleep(2)
                    return self._send(200, {})
                if api.mode in ("401", "403", "500"):
                    code = int(api.mode)
                    reason = {401: "Unauthorized", 403: "Forbidden", 500: "InternalError"}[code]
                    message = {
                        401: "Unauthorized",
                        403: 'nodes is forbidden: User "system:serviceaccount:dagster:spot" cannot list '
                        'resource "nodes" in API group "" at the cluster scope',
                        500: "etcdserver: request timed out",
                    }[code]
                    return self._send(
                        code,
                        {
                            "kind": "Status",
                            "apiVersion": "v1",
                            "metadata": {},
                            "status": "Failure",
                            "message": message,
                            "reason": reason,
                            "code": code,
                        },
                    )
                items = {"/api/v1/nodes": (api.nodes, "NodeList"), "/api/v1/pods": (api.pods, "PodList")}.get(url.path)
                if items is None:
                    return self._send(404, {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404})
                query = parse_qs(url.query)
                limit = int(query.get("limit", ["500"])[0])
                start = int(query.get("continue", ["0"])[0])
                page = items[0][start : start + limit]
                more = start + limit < len(items[0])
                self._send(
                    200,
                    {
                        "kind": items[1],
                        "apiVersion": "v1",
                        "metadata": {"resourceVersion": "99", **({"continue": str(start + limit)} if more else {})},
                        "items": page,
                    },
                )

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def kubeconfig(self, path, token="test-token-abc") -> str:
        path.write_text(f"""apiVersion: v1
kind: Config
clusters:
- name: test-cluster
  cluster:
    server: {self.url}
contexts:
- name: prod-eks
  context:
    cluster: test-cluster
    user: tester
current-context: prod-eks
users:
- name: tester
  user:
    token: {token}
""")
        return str(path)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
