"""RedisResource: the optional Redis (REDIS_URL); unset means "not configured", not an error."""

import dagster as dg

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
