"""RedisResource: the optional Redis (REDIS_URL); unset means "not configured", not an error."""

import os

import dagster as dg

DEFAULT_QUEUE_KEYS = ("spot_pipelines:queue",)


class RedisResource(dg.ConfigurableResource):
    """`url` (else `REDIS_URL`) and the keys whose length is the queue depth (else `REDIS_QUEUE_KEYS`,
    comma-separated). Nothing connects at definition-load time."""

    url: str | None = None
    queue_keys: list[str] | None = None

    def resolved_url(self) -> str | None:
        return self.url or os.environ.get("REDIS_URL") or None

    def resolved_queue_keys(self) -> list[str]:
        if self.queue_keys is not None:
            return list(self.queue_keys)
        env = os.environ.get("REDIS_QUEUE_KEYS")
        return [k.strip() for k in env.split(",") if k.strip()] if env else list(DEFAULT_QUEUE_KEYS)
