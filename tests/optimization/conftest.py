"""Optimization tests share two CPU cores with other suites: keep numeric libraries single-threaded."""

import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True, scope="session")
def single_threaded_numerics():
    with threadpool_limits(limits=1):
        yield
