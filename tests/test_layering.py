"""The grid of domains x layers holds (ARCHITECTURE.md "Layout"), read from the source files' ASTs.

core/ is pure (no database, no Dagster); an asset module never imports another asset module (the package itself,
assets/__init__.py, is their shared wiring and defines no asset); sensors/ holds sensors and schedules only; every
ConfigurableResource lives in resources/; every module is named after a domain or a declared shared module.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "spot_pipelines"
LAYERS = ("assets", "sensors", "resources", "core", "db", "cli")
DOMAINS = {
    "accounts",
    "commitments",
    "discovery",
    "market_data",
    "risk",
    "ml",
    "optimization",
    "execution",
    "health",
    "interruptions",
    "kubernetes",
    "system_log",
    "notifications",
    "backtest",
    "placement",
    "markets",
}
# Modules a layer shares between its domains (or, for resources/ and cli/, named after what they wrap).
SHARED = {
    "core": {"clock", "errors", "aws_errors", "keyring", "validation", "reporting", "redaction", "bundled_data"},
    "db": {"base", "engine", "upsert", "frames"},
    "resources": {"app_database", "credential_vault", "model_store", "redis"},
    "sensors": {"automation"},
    "cli": {"keys", "db", "recommendations", "demo", "__main__"},
    "assets": set(),
}
CORE_FORBIDDEN = ("spot_pipelines.db", "spot_pipelines.system_log", "dagster", "sqlalchemy")


def modules(layer: str) -> list[Path]:
    return sorted(p for p in (PACKAGE / layer).rglob("*.py") if "migrations" not in p.parts)


def imported(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports count too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def violates(names: set[str], prefix: str) -> list[str]:
    return sorted(n for n in names if n == prefix or n.startswith(prefix + "."))


@pytest.mark.parametrize("path", modules("core"), ids=lambda p: p.stem)
def test_core_imports_neither_the_database_nor_dagster(path):
    names = imported(path)
    assert not [v for prefix in CORE_FORBIDDEN for v in violates(names, prefix)], path.name


ASSET_MODULES = {p.stem for p in modules("assets")} - {"__init__"}


def asset_modules_imported(names: set[str]) -> list[str]:
    """The asset submodules (assets/<name>.py) among the imported names; the package itself, with its shared
    wiring (`from spot_pipelines.assets import aws_failure`), is not one."""
    parts = [n.split(".") for n in names if n.startswith("spot_pipelines.assets.")]
    return sorted({".".join(p[:3]) for p in parts if p[2] in ASSET_MODULES})


@pytest.mark.parametrize("path", modules("assets"), ids=lambda p: p.stem)
def test_no_asset_module_imports_another(path):
    assert not asset_modules_imported(imported(path)), path.name


def test_the_asset_import_check_refuses_a_submodule_and_spares_the_shared_wiring(tmp_path):
    shared = tmp_path / "shared.py"
    shared.write_text("from spot_pipelines.assets import AFTER_NEW_DATA, aws_failure\nimport spot_pipelines.assets\n")
    assert asset_modules_imported(imported(shared)) == []
    for source in (
        "from spot_pipelines.assets import discovery\n",
        "from spot_pipelines.assets.discovery import discovered_instances\n",
        "def f():\n    import spot_pipelines.assets.discovery\n",
    ):
        other = tmp_path / "other.py"
        other.write_text(source)
        assert asset_modules_imported(imported(other)) == ["spot_pipelines.assets.discovery"], source


def _calls_or_decorators(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            func = node.func
            found.add(func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", ""))
        elif isinstance(node, ast.FunctionDef):
            for dec in node.decorator_list:
                target = dec.func if isinstance(dec, ast.Call) else dec
                found.add(target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", ""))
    return found


@pytest.mark.parametrize("path", modules("sensors"), ids=lambda p: p.stem)
def test_sensors_define_no_job(path):
    assert not _calls_or_decorators(path) & {"define_asset_job", "job", "op", "graph"}, path.name


def test_every_configurable_resource_lives_in_resources():
    outside = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                (b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", "")) == "ConfigurableResource"
                for b in node.bases
            ):
                if path.parent.name != "resources":
                    outside.append(f"{path.relative_to(PACKAGE)}:{node.name}")
    assert outside == []


def test_the_checks_see_what_they_check():
    """The AST checks above would pass on an empty tree: they read the modules that are there."""
    assert {p.stem for p in modules("assets")} >= {"discovery", "market_data", "execution"}
    assert any(violates(imported(PACKAGE / "db" / "health.py"), "sqlalchemy"))
    assert "define_asset_job" in _calls_or_decorators(PACKAGE / "assets" / "discovery.py")


@pytest.mark.parametrize("layer", LAYERS)
def test_every_module_is_named_after_a_domain_or_a_shared_module(layer):
    allowed = DOMAINS | SHARED[layer] | {"__init__"}
    assert [p.name for p in modules(layer) if p.stem not in allowed] == []


def test_importing_core_risk_loads_no_sqlalchemy():
    """What core/ imports at run time, not only what its own files name: no module on the way pulls it in."""
    code = "import spot_pipelines.core.risk, sys; assert 'sqlalchemy' not in sys.modules, 'sqlalchemy loaded'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent)
    assert done.returncode == 0, done.stderr
