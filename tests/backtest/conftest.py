"""Backtest tests refit the model walk-forward on two CPU cores shared with other suites: keep numeric libraries
single-threaded (OpenMP threads contending on a loaded runner made one fit ten times slower)."""

import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True, scope="session")
def single_threaded_numerics():
    with threadpool_limits(limits=1):
        yield
