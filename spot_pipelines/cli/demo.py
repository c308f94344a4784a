"""`spot-pipelines demo` and `demo env`: the whole platform locally."""

from __future__ import annotations

import click

from spot_pipelines.cli import Group


@click.group("demo", cls=Group, invoke_without_command=True)
@click.option("--no-ui", is_flag=True, help="Run the end-to-end flow and exit instead of serving the UI.")
@click.option("--port", default=3000, show_default=True, help="UI port (another free one is used if taken).")
@click.option(
    "--quick",
    is_flag=True,
    envvar="SPOT_PIPELINES_DEMO_QUICK",
    help="Test-sized flow: price only the fleet's own instance types, 17 days of history.",
)
@click.pass_context
def demo(ctx: click.Context, no_ui: bool, port: int, quick: bool) -> None:
    """Run the whole platform locally: emulator, two accounts, every asset, then the UI."""
    if ctx.invoked_subcommand is not None:
        return
    try:
        import moto.server  # noqa: F401  (the local AWS emulator ships in the [demo] extra)
    except ImportError:
        raise click.ClickException("the demo needs moto: pip install -e '.[demo]' (or run `make demo`)") from None
    from spot_pipelines.demo.run import run_demo

    run_demo(ui=not no_ui, port=port, quick=quick)


@demo.command("env")
def demo_env() -> None:
    """Export lines pointing a shell at the running demo (eval them).

    eval "$(.venv/bin/spot-pipelines demo env)" in another shell while `make demo` serves the UI.
    """
    from spot_pipelines.demo.workbench import export_lines
    from spot_pipelines.settings import dagster_home

    click.echo(export_lines(dagster_home().resolve()), nl=False)
