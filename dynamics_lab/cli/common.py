"""What the `dynlab` commands share: exit statuses, choice enums, one-line errors, completion."""

from __future__ import annotations

from enum import Enum

import typer

from dynamics_lab.choices import DEVICES, LAUNCHERS

INTERRUPTED = 130  # exit status after Ctrl-C, as shells report SIGINT

Launcher = Enum("Launcher", {name: name for name in LAUNCHERS}, type=str)
Device = Enum("Device", {name: name for name in DEVICES}, type=str)


def fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(code)


def echo(message: str) -> None:
    typer.echo(message)


def complete_experiment(incomplete: str) -> list[str]:
    """Shell completion of EXPERIMENT: the names in experiments/."""
    from dynamics_lab.config import list_experiments

    return [name for name in list_experiments() if name.startswith(incomplete)]


def ensemble_size(value: str) -> int | str:
    """`--ensemble`: a positive count or auto (a usage error, exit 2, otherwise)."""
    from dynamics_lab.sweep.jobs import parse_size

    try:
        return parse_size(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
