"""`make bench`: run every benchmarks/bench_*.py module, print a table, write bench-results.json.

    python -m benchmarks.run [--quick] [--only NAME ...] [--output PATH] [--module-timeout S] [--budget S]

Each module runs in its own subprocess (`python -m benchmarks.run --child MODULE`), so one
module's memory and peak RSS never affect another's, and a module that crashes or runs over
its time is reported as failed while the others still run. A module exposes
`run(quick: bool = False) -> list[dict]` returning rows with keys
name, ours, baseline, ratio, unit, notes and target (see `benchmarks.common.result_row`); a row
without a target is a context figure and is recorded with `NO_TARGET` beside it.

Exit status: 0 when every selected module succeeded, 1 otherwise (the results file is written
either way).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from spot_pipelines.core.clock import utcnow

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
DEFAULT_OUTPUT = REPO_ROOT / "bench-results.json"
# The whole `make bench`: the six modules took 943 s on 2 cores shared with three other sessions'
# test runs (discovery 290 s, operations 272 s, market data 197 s, optimization 108 s, commitments
# 58 s, onboarding 10 s); the 1,000-account fleet adds ~300-600 s. A module gets at most 420 s
# (discovery needs ~300 s under that load), the fleet at most 900 s.
DEFAULT_BUDGET_S = 2100.0
DEFAULT_MODULE_TIMEOUT_S = 420.0
MODULE_TIMEOUTS_S = {"bench_discovery_fleet": 900.0}
# Seconds of the budget held back for each module still to run.
RESERVE_PER_MODULE_S = 60.0
ROW_KEYS = ("name", "ours", "baseline", "ratio", "unit", "target", "notes")
NO_TARGET = "none (context figure)"


def discover(only: list[str] | None = None) -> list[str]:
    """Module names (`bench_discovery`, …) in file-name order, filtered by --only.

    `--only discovery`, `--only bench_discovery` and `--only bench_discovery.py` all select
    benchmarks/bench_discovery.py.
    """
    names = sorted(p.stem for p in BENCH_DIR.glob("bench_*.py"))
    if not only:
        return names
    wanted = {w.removesuffix(".py").removeprefix("benchmarks.") for w in only}
    wanted |= {f"bench_{w}" for w in wanted if not w.startswith("bench_")}
    return [n for n in names if n in wanted]


# ---------------------------------------------------------------- child side


def _child(module: str, quick: bool, out_path: str) -> int:
    """Import one benchmark module, run it, write its rows (and peak RSS) as JSON to out_path."""
    from benchmarks.common import peak_rss_mb

    started = time.perf_counter()
    payload: dict[str, Any] = {"module": module}
    try:
        mod = importlib.import_module(f"benchmarks.{module}")
        rows = mod.run(quick=quick)
        payload.update(status="ok", rows=[_normalise(r) for r in rows])
    except BaseException as exc:  # noqa: BLE001 - report anything, including SystemExit
        payload.update(
            status="failed", rows=[], error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(limit=20)
        )
    payload["seconds"] = round(time.perf_counter() - started, 2)
    payload["peak_rss_mb"] = peak_rss_mb()
    Path(out_path).write_text(json.dumps(payload, default=str))
    return 0 if payload["status"] == "ok" else 1


def _normalise(row: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(row, dict) or "name" not in row:
        raise TypeError(f"a benchmark row must be a dict with at least a name, got {row!r}")
    out = {key: row.get(key) for key in ROW_KEYS}
    out["notes"] = out["notes"] or ""
    out["target"] = out["target"] or NO_TARGET
    if (
        out["ratio"] is None
        and isinstance(out["ours"], (int, float))
        and isinstance(out["baseline"], (int, float))
        and out["ours"]
    ):
        out["ratio"] = round(out["baseline"] / out["ours"], 2)
    out.update({k: v for k, v in row.items() if k not in ROW_KEYS})
    return out


# ---------------------------------------------------------------- parent side


def run_module(module: str, quick: bool, timeout: float) -> dict[str, Any]:
    """Run one module in a fresh interpreter (own process group); never raises."""
    with tempfile.TemporaryDirectory(prefix=f"{module}-") as tmp:
        out_path = os.path.join(tmp, "result.json")
        log_path = os.path.join(tmp, "output.log")
        cmd = [sys.executable, "-m", "benchmarks.run", "--child", module, "--child-output", out_path]
        if quick:
            cmd.append("--quick")
        started = time.perf_counter()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                proc.wait(timeout=timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc)
        elapsed = round(time.perf_counter() - started, 2)
        output_tail = _tail(log_path)
        if not timed_out and os.path.exists(out_path):
            result = json.loads(Path(out_path).read_text())
            if result["status"] != "ok":
                result["output_tail"] = output_tail
            result["wall_seconds"] = elapsed
            return result
        error = (
            f"timed out after {timeout:.0f} s"
            if timed_out
            else f"exited with status {proc.returncode} without writing results"
        )
        return {
            "module": module,
            "status": "failed",
            "rows": [],
            "error": error,
            "seconds": elapsed,
            "wall_seconds": elapsed,
            "peak_rss_mb": None,
            "output_tail": output_tail,
        }


def _kill_group(proc: subprocess.Popen) -> None:
    """Stop the module's whole process group (it may have started servers of its own)."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(path: str, lines: int = 25) -> str:
    try:
        with open(path, "rb") as handle:
            return b"\n".join(handle.read().splitlines()[-lines:]).decode("utf-8", "replace")
    except OSError:
        return ""


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def format_table(modules: list[dict[str, Any]]) -> str:
    header = ("benchmark", "ours", "baseline", "ratio", "unit", "target", "notes")
    lines: list[tuple[str, ...]] = []
    for mod in modules:
        for row in mod["rows"]:
            ratio = row.get("ratio")
            lines.append(
                (
                    row["name"],
                    _fmt(row.get("ours")),
                    _fmt(row.get("baseline")),
                    f"{ratio:.2f}x" if isinstance(ratio, (int, float)) else "-",
                    row.get("unit") or "",
                    row.get("target") or "",
                    row.get("notes") or "",
                )
            )
        if mod["status"] != "ok":
            lines.append((f"{mod['module']} FAILED", "-", "-", "-", "", "", mod.get("error", "")))
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(header)]
    widths[-1] = len(header[-1])  # notes: no padding, let it run
    fmt = "  ".join(f"{{:<{w}}}" if i in (0, 4, 5, 6) else f"{{:>{w}}}" for i, w in enumerate(widths))
    out = [fmt.format(*header), "  ".join("-" * w for w in widths)]
    out += [fmt.format(*line) for line in lines]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats (smoke run)")
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only this module (e.g. discovery or bench_discovery); repeatable, comma-separated",
    )
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="results file (default: bench-results.json)")
    parser.add_argument(
        "--module-timeout",
        type=float,
        default=None,
        help=f"seconds one module may run before it is stopped and reported failed (default {DEFAULT_MODULE_TIMEOUT_S:.0f}, "
        "or the module's own limit in MODULE_TIMEOUTS_S)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=DEFAULT_BUDGET_S,
        help="seconds for the whole run; modules not started within it are reported skipped",
    )
    parser.add_argument("--list", action="store_true", help="list the benchmark modules and exit")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-output", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        return _child(args.child, args.quick, args.child_output)

    only = [part for item in (args.only or []) for part in item.split(",") if part]
    modules = discover(only)
    if args.list:
        print("\n".join(modules))
        return 0
    if not modules:
        print(f"no benchmark modules match {only!r} in {BENCH_DIR}", file=sys.stderr)
        return 2

    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    for module in modules:
        remaining = args.budget - (time.perf_counter() - started)
        if remaining < 15:
            results.append(
                {
                    "module": module,
                    "status": "skipped",
                    "rows": [],
                    "seconds": 0,
                    "peak_rss_mb": None,
                    "error": f"not started: the {args.budget:.0f} s budget was used up",
                }
            )
            print(f"[bench] {module}: skipped (budget used up)", file=sys.stderr, flush=True)
            continue
        # Keep a share of the budget for the modules after this one, so one slow module
        # cannot starve the rest.
        left_after = len(modules) - len(results) - 1
        limit = args.module_timeout or MODULE_TIMEOUTS_S.get(module, DEFAULT_MODULE_TIMEOUT_S)
        timeout = min(limit, max(remaining - RESERVE_PER_MODULE_S * left_after, remaining / (left_after + 1)))
        print(f"[bench] {module} (time limit {timeout:.0f} s) ...", file=sys.stderr, flush=True)
        result = run_module(module, args.quick, timeout)
        results.append(result)
        status = result["status"] if result["status"] == "ok" else f"{result['status']}: {result.get('error')}"
        print(
            f"[bench] {module}: {status} in {result.get('wall_seconds', result['seconds'])} s, "
            f"peak RSS {result.get('peak_rss_mb')} MiB",
            file=sys.stderr,
            flush=True,
        )
        if result["status"] != "ok" and result.get("output_tail"):
            print(result["output_tail"], file=sys.stderr, flush=True)

    total = round(time.perf_counter() - started, 2)
    document = {
        "generated_at": utcnow().isoformat(timespec="seconds"),
        "quick": args.quick,
        "total_seconds": total,
        "host": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
        # The flat list of rows: name, ours, baseline, ratio, unit, target, notes (+ module).
        "results": [{**row, "module": r["module"]} for r in results for row in r["rows"]],
        "modules": [{k: r.get(k) for k in ("module", "status", "seconds", "peak_rss_mb", "error")} for r in results],
    }
    Path(args.output).write_text(json.dumps(document, indent=2, default=str) + "\n")
    print(format_table(results))
    print("\nmodule                    status    seconds  peak RSS (MiB)")
    for r in results:
        print(f"{r['module']:<25} {r['status']:<8} {_fmt(r.get('seconds')):>8}  {_fmt(r.get('peak_rss_mb')):>14}")
    failed = [r["module"] for r in results if r["status"] != "ok"]
    print(
        f"\n{len(results) - len(failed)}/{len(results)} modules ok in {total} s; results in {args.output}"
        + (f"; not ok: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
