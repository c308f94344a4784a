"""Runs this interpreter SPOT_PIPELINES_CLOCK_SHIFT_DAYS days in the future (unset: does nothing).

time-machine moves the process's own wall clock (datetime.now, time.time, ...) with time still ticking, so
Dagster's partition sets and schedules, moto, botocore and spot_pipelines.core.clock all agree on "now".
tests/conftest.py imports this file and puts its folder on PYTHONPATH, so every Python subprocess a test
starts (CLI, demo, `dagster dev` and the processes it spawns) runs this as its sitecustomize and travels too.
Each process shifts its own real clock, so a child never adds the shift twice. Monotonic timers stay real.
"""

from __future__ import annotations

import os
import time
import types
from datetime import datetime, timedelta, timezone

VARIABLE = "SPOT_PIPELINES_CLOCK_SHIFT_DAYS"


def shift_days() -> float:
    raw = os.environ.get(VARIABLE, "").strip()
    if not raw:
        return 0.0
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{VARIABLE}={raw!r} is not a number of days") from None


def _grpc_keeps_the_real_clock(real_time) -> None:
    """gRPC turns timeouts into absolute deadlines with time.time() and hands them to its C core, which
    reads the real clock: a shifted deadline never expires (the dagster CLI would wait for its code
    server forever). Its Python layer gets a `time` module whose time() is the real one."""
    import grpc._channel
    import grpc._common
    import grpc._cython.cygrpc
    import grpc._utilities

    real = types.SimpleNamespace(**{name: getattr(time, name) for name in dir(time) if not name.startswith("__")})
    real.time = real_time
    for module in (grpc._channel, grpc._common, grpc._utilities, grpc._cython.cygrpc):
        module.time = real


def travel() -> object | None:
    days = shift_days()
    if not days:
        return None
    import time_machine  # dev extra; needed only when the clock is shifted

    traveller = time_machine.travel(datetime.now(timezone.utc) + timedelta(days=days), tick=True)
    traveller.start()
    _grpc_keeps_the_real_clock(time_machine.escape_hatch.time.time)
    return traveller


TRAVELLER = travel()
