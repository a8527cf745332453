"""The `dynlab` command line: the app and its commands, which train (`training.py`: run, phase,
resume, agent-run) or read what runs left (`reading.py`: list, show, report, dashboard). Heavy
imports (torch, lightning, pandas) happen inside commands."""

from __future__ import annotations

import typer

from dynamics_lab.cli import reading, training

app = typer.Typer(no_args_is_help=True)  # with --install-completion / --show-completion


def print_version(value: bool) -> None:
    if value:
        from dynamics_lab import __version__

        typer.echo(f"dynlab {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=print_version, is_eager=True,
                                      help="print the version and exit")) -> None:
    """Reproduce training-dynamics phenomena: run, measure, judge, report."""


# The commands, in the order --help and shell completion list them.
app.command("list")(reading.list_)
app.command()(training.run)
app.command()(training.phase)
app.command("agent-run", hidden=True)(training.agent_run)
app.command()(reading.report)
app.command()(reading.dashboard)
app.command()(reading.show)
app.command()(training.resume)
