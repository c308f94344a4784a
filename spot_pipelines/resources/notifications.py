"""Notifier: Slack (through dagster-slack) and a generic JSON webhook, configured by env, off by default.

A notification never fails what sent it: each channel is retried with bounded exponential backoff (urllib3's
Retry for the webhook, slack_sdk's retry handlers for Slack), then logged by error type only; a webhook URL
or token (both secrets) never reaches a log line or a payload.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import dagster as dg
import urllib3
from dagster_slack import SlackResource
from slack_sdk.http_retry import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler
from slack_sdk.http_retry.builtin_handlers import ServerErrorRetryHandler
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator

from spot_pipelines.settings import notification_setting

_RETRY_STATUSES = (429, 500, 502, 503, 504)
_log = logging.getLogger(__name__)


class Notifier(dg.ConfigurableResource):
    """Where notifications go; every field unset falls back to its env variable (settings.NOTIFICATION_ENV), and with neither a Slack
    token and channel nor a webhook URL, nothing is sent."""

    slack_token: str | None = None
    slack_channel: str | None = None
    slack_base_url: str | None = None  # Slack's API root; a stand-in in tests
    webhook_url: str | None = None
    min_monthly_savings_usd: float | None = None  # digest threshold, net USD/month per recommendation
    retries: int = 3
    backoff_s: float = 0.5
    timeout_s: float = 5.0

    def _get(self, field: str):
        value = getattr(self, field)
        return value if value not in (None, "") else notification_setting(field)

    def enabled(self) -> bool:
        return bool((self._get("slack_token") and self._get("slack_channel")) or self._get("webhook_url"))

    def threshold(self) -> float:
        return float(self._get("min_monthly_savings_usd") or 100.0)

    # ------------------------------------------------------------------ the events

    def recommendations_digest(self, recs: Iterable[Mapping[str, Any]], log=None) -> dict[str, bool]:
        """New recommendations worth at least the threshold (net USD/month each), biggest first; nothing if none."""
        worth = sorted(
            (r for r in recs if (r.get("net_monthly_savings_usd") or 0) >= self.threshold()),
            key=lambda r: -r["net_monthly_savings_usd"],
        )
        if not worth:
            return {}
        total = sum(r["net_monthly_savings_usd"] for r in worth)
        lines = [
            f"{r.get('account') or r['account_id']} {r['instance_id']}: {r['action']} → "
            f"{r.get('target_instance_type') or '-'}, net ${r['net_monthly_savings_usd']:,.2f}/month"
            for r in worth[:10]
        ]
        return self.send(
            "recommendations",
            f"{len(worth)} new spot recommendation(s) worth ≥ ${self.threshold():,.0f}/month each, "
            f"net ${total:,.2f}/month in all",
            lines,
            log,
        )

    def approval(self, ids: list[int], by: str, log=None) -> dict[str, bool]:
        return self.send("approval", f"{by} approved recommendation(s) {', '.join(map(str, ids))}", [], log)

    def execution(self, outcomes: Iterable[Mapping[str, Any]], dry_run: bool, log=None) -> dict[str, bool]:
        """One message per execution run: each recommendation's status (executed, failed, rolled back)."""
        rows = list(outcomes)
        if not rows:
            return {}
        lines = [
            f"#{r['id']} {r['instance_id']}: {r['status']}{' — ' + r['error'] if r.get('error') else ''}" for r in rows
        ]
        failed = sum(r["status"] != "executed" for r in rows)
        mode = "dry-run" if dry_run else "live"
        return self.send(
            "execution", f"execution ({mode}): {len(rows) - failed} succeeded, {failed} failed", lines, log
        )

    def components_critical(self, components: Iterable[Mapping[str, Any]], log=None) -> dict[str, bool]:
        """Components that turned critical: which, since when, and why."""
        rows = list(components)
        if not rows:
            return {}
        lines = [f"{c['component']}: critical since {c['since']:%Y-%m-%d %H:%M} UTC — {c['summary']}" for c in rows]
        names = ", ".join(c["component"] for c in rows)
        return self.send("component_critical", f"{len(rows)} component(s) turned critical: {names}", lines, log)

    def interruption_bursts(self, pools: Iterable[Mapping[str, Any]], log=None) -> dict[str, bool]:
        """Pools that turned hot (a burst of interruption warnings): no longer a spot target until quiet."""
        rows = list(pools)
        if not rows:
            return {}
        lines = [
            f"{p['instance_type']} in {p['availability_zone_id']} ({p['region']}): {p['warnings']} warnings, "
            f"in a burst from {p['burst_at']:%Y-%m-%d %H:%M} UTC, not a spot target until {p['hot_until']:%Y-%m-%d %H:%M} UTC"
            for p in rows
        ]
        return self.send("interruption_burst", f"interruption burst in {len(rows)} spot pool(s)", lines, log)

    # ------------------------------------------------------------------ delivery

    def send(self, event: str, title: str, lines: list[str], log=None) -> dict[str, bool]:
        """Post to every configured channel; per channel whether it was delivered. Never raises."""
        log = log or _log
        payload = {"event": event, "title": title, "lines": lines}
        sent: dict[str, bool] = {}
        if self._get("webhook_url"):
            sent["webhook"] = self._deliver("webhook", self._post_webhook, payload, log)
        if self._get("slack_token") and self._get("slack_channel"):
            sent["slack"] = self._deliver("slack", self._post_slack, payload, log)
        return sent

    def _deliver(self, channel: str, post, payload: dict, log) -> bool:
        try:
            post(payload)
            return True
        except Exception as exc:  # a notification never fails the run; the message could carry the URL
            log.warning(f"{payload['event']} notification via {channel} failed after retries: {type(exc).__name__}")
            return False

    def _post_webhook(self, payload: dict) -> None:
        retry = urllib3.Retry(
            total=self.retries,
            backoff_factor=self.backoff_s,
            status_forcelist=_RETRY_STATUSES,
            allowed_methods=None,  # POST too: a duplicate notification beats a lost one
            raise_on_status=True,
        )
        http = urllib3.PoolManager(retries=retry, timeout=self.timeout_s)
        response = http.request(
            "POST", self._get("webhook_url"), body=json.dumps(payload), headers={"Content-Type": "application/json"}
        )
        if response.status >= 400:
            raise RuntimeError(f"webhook answered HTTP {response.status}")

    def _post_slack(self, payload: dict) -> None:
        client = SlackResource(token=self._get("slack_token")).get_client()
        if self._get("slack_base_url"):
            client.base_url = self._get("slack_base_url")
        client.timeout = int(self.timeout_s)
        backoff = BackoffRetryIntervalCalculator(backoff_factor=self.backoff_s)
        client.retry_handlers = [
            handler(max_retry_count=self.retries, interval_calculator=backoff)
            for handler in (ConnectionErrorRetryHandler, RateLimitErrorRetryHandler, ServerErrorRetryHandler)
        ]
        text = "\n".join([f"*{payload['title']}*", *(f"• {line}" for line in payload["lines"])])
        client.chat_postMessage(channel=self._get("slack_channel"), text=text)
