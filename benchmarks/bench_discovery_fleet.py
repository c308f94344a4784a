"""A simulated fleet of 1,000 accounts (issue 16, item 2): is discovery's cost linear in accounts,
its AWS concurrency bounded, its memory flat?

Set-up: as `bench_discovery`'s scaling part, at fleet size. moto's server seeds one template
account with ~200 instances in 4 regions; 1,000 role-based accounts are stored, each assuming its
own role (sts:AssumeRole into a distinct moto account id) and answered its Describe* calls from the
replay front, which recorded the template's answers. Every call to the front (STS included) waits
`LATENCY_S` on the front's side, so the front counts how many calls were in flight at once.

Discovery runs in as many worker processes as the `aws_api` pool has slots (dagster.yaml's
`concurrency.pools.default_limit`): that pool is what bounds concurrent AWS-calling steps in
Dagster. Each account is handled as one Dagster run handles its partition (`discover_ours`: fresh
vault, assume role, scan its 4 regions concurrently, bulk write). For N = 100 and 1,000 accounts,
each in a fresh pool of workers (so each N has its own memory high-water mark and its first-call
costs, such as loading botocore's service models, are paid in both):

- linear: wall(1,000) against 10 x wall(100) (ratio 1 = linear; > 1 = better than linear);
- concurrency: the most calls in flight at the front against the bound (slots x regions per account);
- memory: the largest worker peak RSS at 1,000 accounts against at 100 (ratio ~1 = flat);
- throughput: accounts per hour per core, CPU seconds per account (workers' own process time).

What a Dagster run adds per account (a process or pod start, imports, run bookkeeping) is not in
these figures; `discovery.fleet_run_process_start` measures the imports a run process pays first.

Run alone: `python -m benchmarks.bench_discovery_fleet [--quick]`.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from benchmarks.bench_discovery import (
    _assumed_credentials,
    _env,
    _role_arn,
    _seed,
    _truncate,
    _worker_ready,
    discover_ours,
)
from benchmarks.common import fresh_postgres_db, moto_server, replay_control, replay_proxy, result_row

LATENCY_S = 0.100
TEMPLATE_ACCOUNT = "200000000001"
# ~200 instances in the 4 regions a typical account uses.
FLEET_200 = {"us-east-1": 100, "us-west-2": 50, "eu-west-1": 30, "ap-southeast-1": 20}
DAGSTER_YAML = Path(__file__).resolve().parent.parent / "dagster.yaml"


def aws_api_slots() -> int:
    """The pool limit every `pool="aws_api"` asset shares (dagster.yaml)."""
    import yaml

    return int(yaml.safe_load(DAGSTER_YAML.read_text())["concurrency"]["pools"]["default_limit"])


def _add_accounts(db_url: str, n: int) -> list[int]:
    """n connected role-based accounts using FLEET_200's regions, each with its own AWS account id."""
    from spot_pipelines.db.accounts import Account
    from spot_pipelines.db.engine import session_factory

    with session_factory(db_url)() as session, session.begin():
        accounts = [
            Account(
                name=f"fleet-{i:04d}",
                aws_account_id=aws_id,
                regions=sorted(FLEET_200),
                status="connected",
                auth_method="role",
                role_arn=_role_arn(aws_id),
                external_id=f"ext-{aws_id}",
            )
            for i, aws_id in enumerate(f"{int(TEMPLATE_ACCOUNT) + i:012d}" for i in range(n))
        ]
        session.add_all(accounts)
        session.flush()
        return [a.id for a in accounts]


# Worker side (module level, so that spawn can pickle it).


def _worker_discover(db_url: str, account_id: int) -> dict[str, float]:
    cpu = time.process_time()
    result = discover_ours(db_url, account_id)
    cpu_s = time.process_time() - cpu
    # A Dagster run's process ends after its account and frees everything; a reused worker instead
    # keeps the run's cyclic garbage (the classes of its discarded botocore clients) until a rare
    # full collection, which made the peak grow with the number of accounts a worker had handled
    # (457 -> 564 MiB for 25 -> 250 accounts). Collected here, untimed, like the run's exit.
    gc.collect()
    return {
        "rows": result["rows"],
        "seconds": result["seconds"],
        "api_calls": result["api_calls"],
        "cpu_s": cpu_s,
        "pid": os.getpid(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _discover_n(db_url: str, account_ids: list[int], workers: int) -> dict[str, Any]:
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        for f in [pool.submit(_worker_ready) for _ in range(workers * 2)]:
            f.result()
        started = time.perf_counter()
        results = list(pool.map(_worker_discover, [db_url] * len(account_ids), account_ids, chunksize=1))
        wall = time.perf_counter() - started
    peaks: dict[int, float] = {}
    for r in results:
        peaks[r["pid"]] = max(peaks.get(r["pid"], 0.0), r["peak_rss_mb"])
    return {
        "wall_s": wall,
        "rows": sum(r["rows"] for r in results),
        "cpu_s": sum(r["cpu_s"] for r in results),
        "calls": results[0]["api_calls"],
        "per_account_s": sum(r["seconds"] for r in results) / len(results),
        "peak_rss_mb": max(peaks.values()),
    }


def run_process_start() -> tuple[float, float]:
    """Wall and CPU seconds a fresh Python process takes to import the code location (what every
    run process or pod pays before its first AWS call), median of 3."""
    code = (
        "import time, resource; t = time.perf_counter(); import spot_pipelines.definitions; "
        "u = resource.getrusage(resource.RUSAGE_SELF); "
        "print(time.perf_counter() - t, u.ru_utime + u.ru_stime)"
    )
    samples = []
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        samples.append(tuple(float(x) for x in out.split()))
    samples.sort()
    return samples[1]


def run(quick: bool = False, log=print) -> list[dict[str, Any]]:
    from cryptography.fernet import Fernet

    from spot_pipelines.db.engine import ensure_schema

    counts = [20, 100] if quick else [100, 1000]
    workers = aws_api_slots()
    cores = os.cpu_count() or 1
    per_account = sum(FLEET_200.values())
    bound = workers * len(FLEET_200)

    with moto_server() as moto, replay_proxy(moto) as endpoint, fresh_postgres_db("bench_fleet") as db_url:
        _env(endpoint, Fernet.generate_key().decode())
        ensure_schema(db_url)
        started = time.perf_counter()
        _seed(FLEET_200, _assumed_credentials(TEMPLATE_ACCOUNT))
        account_ids = _add_accounts(db_url, max(counts))
        warm = discover_ours(db_url, account_ids[0])  # records the template's answers at the front
        if warm["rows"] != per_account:
            raise RuntimeError(f"warm-up wrote {warm['rows']} rows, expected {per_account}")
        log(f"fleet set-up: {max(counts)} accounts of {per_account} instances in {time.perf_counter() - started:.1f} s")

        replay_control(endpoint, "delay", str(LATENCY_S).encode())
        steps: dict[int, dict[str, Any]] = {}
        for n in counts:
            _truncate(db_url)
            replay_control(endpoint, "reset")
            step = _discover_n(db_url, account_ids[:n], workers)
            step["max_in_flight"] = replay_control(endpoint)["max_in_flight"]
            if step["rows"] != n * per_account:
                raise RuntimeError(f"N={n}: wrote {step['rows']} rows, expected {n * per_account}")
            steps[n] = step
            log(
                f"fleet: {n} accounts in {step['wall_s']:.1f} s, {step['cpu_s'] / n:.3f} CPU s/account, "
                f"{step['max_in_flight']} calls in flight at most, worker peak RSS {step['peak_rss_mb']:.0f} MiB"
            )
    start_wall, start_cpu = run_process_start()

    small, big = counts
    last = steps[big]
    per_core_hour = big / last["wall_s"] * 3600 / cores
    fleet = (
        f"{per_account} instances in {len(FLEET_200)} regions per account, {LATENCY_S * 1000:.0f} ms per call "
        f"(AssumeRole live, Describe* replayed), {workers} worker processes (aws_api slots) on {cores} cores"
    )
    return [
        result_row(
            f"discovery.fleet_{big}_accounts_linear",
            last["wall_s"],
            big / small * steps[small]["wall_s"],
            "s",
            f"{fleet}; baseline column = {big // small} x the {small}-account wall time "
            f"({steps[small]['wall_s']:.1f} s): ratio 1 = cost linear in accounts; "
            f"mean {last['per_account_s']:.2f} s per account, {last['calls']} calls each",
            target="ratio >= 0.9 (linear)",
            accounts_per_hour_per_core=round(per_core_hour, 1),
        ),
        result_row(
            f"discovery.fleet_{big}_accounts_cpu_per_account",
            last["cpu_s"] / big,
            steps[small]["cpu_s"] / small,
            "s",
            f"workers' CPU seconds per account at {big} accounts; baseline column = at {small} accounts",
            target="ratio >= 0.9 (no growth with accounts)",
        ),
        result_row(
            f"discovery.fleet_{big}_accounts_max_calls_in_flight",
            last["max_in_flight"],
            bound,
            "calls",
            f"most API calls the front answered at once over the {big} accounts; baseline column = the bound, "
            f"{workers} aws_api slots x {len(FLEET_200)} regions scanned concurrently per account",
            target="<= the bound (ratio >= 1)",
        ),
        result_row(
            f"discovery.fleet_{big}_accounts_worker_peak_rss",
            last["peak_rss_mb"],
            steps[small]["peak_rss_mb"],
            "MiB",
            f"largest worker peak RSS over {big} accounts; baseline column = over {small} accounts (fresh workers each)",
            target="ratio >= 0.9 (flat)",
        ),
        result_row(
            "discovery.fleet_accounts_per_hour_per_core",
            per_core_hour,
            None,
            "accounts/h/core",
            f"{big} accounts in {last['wall_s']:.1f} s on {cores} cores ({fleet}); per-run start-up not included",
        ),
        result_row(
            "discovery.fleet_run_process_start",
            start_wall,
            None,
            "s",
            f"a fresh interpreter importing spot_pipelines.definitions (median of 3; {start_cpu:.2f} CPU s): what a "
            "run process pays before its first call, on top of Dagster's own run start and any pod scheduling",
            cpu_s=round(start_cpu, 3),
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(json.dumps(run(quick=args.quick), indent=2))


if __name__ == "__main__":
    main()
