"""KubernetesResource: cluster access for the node/pod watcher (kubeconfig or in-cluster).

`KUBECONFIG` (or `kubeconfig`) selects a kubeconfig file; otherwise, inside a pod
(`KUBERNETES_SERVICE_HOST` set), the in-cluster service account; otherwise the resource is
"not configured" and callers report that instead of failing. Nothing connects at load time.
"""

import dagster as dg

from spot_pipelines.settings import settings


class KubernetesResource(dg.ConfigurableResource):
    kubeconfig: str | None = None  # path(s), `:`-separated like KUBECONFIG
    context: str | None = None
    in_cluster: bool | None = None  # None: detect from KUBERNETES_SERVICE_HOST
    cluster_name: str | None = None  # the name rows are stored under; default: kube context / "in-cluster"
    request_timeout_s: float = 10.0
    retries: int = 1  # urllib3 retries per request (connection errors, read timeouts)
    page_size: int = 500

    def resolved_kubeconfig(self) -> str | None:
        return self.kubeconfig or settings().kubeconfig

    def mode(self) -> str | None:
        """`kubeconfig`, `in-cluster`, or None when no cluster is configured."""
        if self.resolved_kubeconfig():
            return "kubeconfig"
        in_cluster = self.in_cluster if self.in_cluster is not None else settings().in_cluster
        return "in-cluster" if in_cluster else None

    def is_configured(self) -> bool:
        return self.mode() is not None

    def not_configured_reason(self) -> str:
        return "no Kubernetes cluster configured: KUBECONFIG is unset and this is not running inside a cluster"

    def resolved_cluster_name(self) -> str:
        if self.cluster_name:
            return self.cluster_name
        if self.mode() == "kubeconfig":
            from kubernetes.config import kube_config

            try:
                _, active = kube_config.list_kube_config_contexts(config_file=self.resolved_kubeconfig())
                if self.context:
                    return self.context
                return active.get("name") or "default"
            except Exception:
                return self.context or "default"
        return "in-cluster"

    def api_client(self):
        """A fresh `kubernetes.client.ApiClient` for the configured cluster."""
        from kubernetes import client, config

        mode = self.mode()
        configuration = client.Configuration()
        if mode == "kubeconfig":
            config.load_kube_config(
                config_file=self.resolved_kubeconfig(),
                context=self.context,
                client_configuration=configuration,
                persist_config=False,
            )
        elif mode == "in-cluster":
            config.load_incluster_config(client_configuration=configuration)
        else:
            raise RuntimeError(self.not_configured_reason())
        # urllib3 would otherwise retry a timed-out GET 3 times: one poll could take 4× the timeout.
        configuration.retries = self.retries
        return client.ApiClient(configuration)

    def core_v1(self):
        from kubernetes import client

        return client.CoreV1Api(self.api_client())
