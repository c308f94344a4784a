"""The one wall clock of the package: every "now" and "today" reads it, so a test can move all of them at once.

Durations and timeouts use `time.monotonic`/`perf_counter` directly: they are not wall-clock reads.
Tests shift the world with SPOT_PIPELINES_CLOCK_SHIFT_DAYS (tests/clock_shift/): that moves the process clock
itself, so Dagster, moto and this module agree, and nothing here needs to know about it.
"""

from __future__ import annotations

from datetime import date, datetime, timezone


def utcnow() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def utc_today() -> date:
    """Today's UTC date (not the host's local date, which `date.today()` would give)."""
    return utcnow().date()


def unix_now() -> float:
    """Now as Unix seconds, for APIs and cursors that count in epoch seconds."""
    return utcnow().timestamp()
