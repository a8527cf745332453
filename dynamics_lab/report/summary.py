"""What a sweep prints at its end: a compact table (swept keys, seed, status, outcome and the
phenomenon's key number, one run per line) and a line per run that did not finish."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dynamics_lab.phenomena.columns import VERDICT_PREFIX, verdict_key
from dynamics_lab.report.tables import sweep_table
from dynamics_lab.schema import ConfigError
from dynamics_lab.tracking.rundir import FINISHED, RunDir, RunDirError, read_manifest


def key_field(sweep_dir: Path, manifest: dict) -> str | None:
    """The verdict field the sweep's phenomenon is ranked by (None without one)."""
    from dynamics_lab.phenomena import build

    for entry in manifest.get("runs", []):
        try:
            config = RunDir.open(Path(sweep_dir) / entry["run_id"]).config()
        except RunDirError:
            continue
        name = (config.get("phenomenon") or {}).get("name")
        try:
            return build(name, config).key_metric.field if name else None
        except ConfigError:
            return None
    return None


def end_table(table: pd.DataFrame, axes: list[str], key: str | None) -> str:
    """One line per run: swept keys (last name segment), seed, status, outcome, key number (the
    verdict fields headed by their own names)."""
    verdict = [verdict_key(f) for f in ("outcome", key) if f]
    columns = [c for c in [*axes, "seed", "status", *verdict] if c in table]
    shown = table[columns].copy()
    shown.columns = [c.removeprefix(VERDICT_PREFIX).rsplit(".", 1)[-1] for c in columns]
    for column in shown.columns[len(axes):]:  # a key number with missing values: NaN, not None
        numbers = pd.to_numeric(shown[column], errors="coerce")
        if numbers.notna().sum() == shown[column].notna().sum() and shown[column].dtype == object:
            shown[column] = numbers
    if "outcome" in shown:
        shown["outcome"] = shown["outcome"].fillna("-").str.replace("_", " ")
    with pd.option_context("display.float_format", "{:.4g}".format,
                           "display.max_columns", None, "display.width", None):
        return shown.to_string(index=False, na_rep="-")


def summarize_sweep(sweep_dir: Path, unrecoverable: dict[Path, str], launched: set[Path]
                    ) -> tuple[str, list[str]]:
    """What a sweep prints at its end: its compact table, then one line per launched run that
    did not finish (with its reason) and per unrecoverable run; and those lines."""
    table = sweep_table(sweep_dir)
    try:
        manifest = read_manifest(sweep_dir)
    except RunDirError:
        manifest = {}
    axes = [a for a in manifest.get("grid", {}) if a != "seed"]
    lines = ["", end_table(table, axes, key_field(sweep_dir, manifest))]
    launched_ids = {Path(p).name for p in launched}
    lost = {Path(p).name: why for p, why in unrecoverable.items()}
    failures = []
    for row in table.to_dict("records"):
        if row["run_id"] in lost:
            failures.append(f"{row['run_id']}: unrecoverable: {lost[row['run_id']]}")
        elif row["run_id"] in launched_ids and row["status"] not in FINISHED:
            failures.append(f"{row['run_id']}: {row['status']}: {row.get('error') or ''}")
    lines.append(f"\nsummary of {len(table)} run(s) in {sweep_dir}")
    if failures:
        lines.append(f"{len(failures)} run(s) did not finish:\n  " + "\n  ".join(failures))
    return "\n".join(lines), failures
