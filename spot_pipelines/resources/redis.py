"""RedisResource: the optional Redis (REDIS_URL); unset means "not configured", not an error."""

import time
from collections.abc import Callable, Sequence
from urllib.parse import urlparse

import dagster as dg

from spot_pipelines.core.health import (
    CRITICAL,
    NOT_CONFIGURED,
    CheckOutcome,
    HealthThresholds,
    error_details,
    redis_outcome,
)
from spot_pipelines.settings import settings

DEFAULT_QUEUE_KEYS = ("spot_pipelines:queue",)


class RedisResource(dg.ConfigurableResource):
    """`url` (else `REDIS_URL`) and the keys whose length is the queue depth (else `REDIS_QUEUE_KEYS`,
    comma-separated). Nothing connects at definition-load time."""

    url: str | None = None
    queue_keys: list[str] | None = None

    def resolved_url(self) -> str | None:
        return self.url or settings().redis_url

    def resolved_queue_keys(self) -> list[str]:
        if self.queue_keys is not None:
            return list(self.queue_keys)
        return list(settings().redis_queue_keys or DEFAULT_QUEUE_KEYS)

    def check(self, t: HealthThresholds, timeout_s: float = 1.0) -> CheckOutcome:
        """The component health probe: ping latency and queue depth."""
        return check_redis(self.resolved_url(), self.resolved_queue_keys(), t, timeout_s=timeout_s)


def check_redis(
    url: str | None,
    queue_keys: Sequence[str],
    t: HealthThresholds,
    timeout_s: float = 1.0,
    clock: Callable[[], float] = time.perf_counter,
) -> CheckOutcome:
    if not url:
        return CheckOutcome(NOT_CONFIGURED, {"reason": "REDIS_URL is not set"})
    import redis

    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    target = urlparse(url)
    where = f"{target.hostname}:{target.port or 6379}"
    try:
        started = clock()
        client.ping()
        latency = (clock() - started) * 1000
        depths: dict[str, int] = {}
        for key in queue_keys:
            kind = client.type(key)
            kind = kind.decode() if isinstance(kind, bytes) else kind
            depths[key] = {"list": client.llen, "zset": client.zcard, "stream": client.xlen, "set": client.scard}.get(
                kind, lambda _k: 0
            )(key)
    except redis.RedisError as exc:
        return CheckOutcome(CRITICAL, {"server": where, **error_details(exc)})
    finally:
        client.close()
    return redis_outcome(where, latency, depths, t)
