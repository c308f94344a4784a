"""Benchmarks: `make bench` (python -m benchmarks.run) runs every `bench_*.py` module.

Each module exposes `run(quick: bool = False) -> list[dict]`; rows carry
name, ours, baseline, ratio, unit, notes (build them with `benchmarks.common.result_row`).
"""
