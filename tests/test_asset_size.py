"""Every asset, multi-asset, asset check and op body fits on a screen (issue 11): the logic lives in named steps."""

import ast
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1] / "spot_pipelines" / "assets"
DECORATORS = {"asset", "multi_asset", "asset_check", "op"}
MAX_LINES = 40


def decorator_name(node: ast.expr) -> str | None:
    """`dg.asset`, `asset`, `dg.asset(...)` and `asset(...)` all name `asset`."""
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else None


def oversized(source: str) -> dict[str, int]:
    """Decorated function name -> lines from `def` to the end of its body, for those over MAX_LINES."""
    return {
        node.name: node.end_lineno - node.lineno + 1
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and any(decorator_name(d) in DECORATORS for d in node.decorator_list)
        and node.end_lineno - node.lineno + 1 > MAX_LINES
    }


def test_every_decorated_body_fits_on_a_screen():
    offenders = {
        f"{path.name}::{name}": size
        for path in sorted(ASSETS.glob("*.py"))
        for name, size in oversized(path.read_text()).items()
    }
    assert not offenders, f"over {MAX_LINES} lines from def to end of body: {offenders}"


def test_the_measure_catches_a_long_body_and_spares_undecorated_helpers():
    long_body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))  # def line + 40 = 41 lines
    source = (
        f"import dagster as dg\n\n@dg.asset(group_name='g')\ndef big():\n{long_body}\n\n"
        f"@dg.op\ndef fits():\n    pass\n\ndef helper():\n{long_body}\n"
    )
    assert oversized(source) == {"big": MAX_LINES + 1}
