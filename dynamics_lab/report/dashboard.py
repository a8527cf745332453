"""`dynlab dashboard`: a sweep's phenomenon panels as a saved W&B workspace (wandb-workspaces).

The panels come from the phenomenon (`Detector.panels`, plain data), so a new phenomenon brings
its own. The spec is resolved against the sweep (its grid keys, the metric keys its runs logged)
and always written to SWEEP_DIR/dashboard.json (plain data, what `describe` prints) and
SWEEP_DIR/workspace.json: the wandb-workspaces view document itself, the one W&B stores for a
saved workspace; `load_workspace` turns it back into a `Workspace` to edit or `.save()`. Line
panels plot against the training step and group runs by every swept key (the runs table's
grouping, mean with a standard-error band over seeds). With a W&B login the workspace is also
published, filtered to the sweep's W&B group (the sweep id).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from dynamics_lab.phenomena import build
from dynamics_lab.phenomena.dashboard import STEP_METRIC, SWEPT, VERDICT_PREFIX
from dynamics_lab.report.tables import latest_sweep
from dynamics_lab.tracking.rundir import MANIFEST, RunDir, RunDirError, read_json, write_json

SPEC_FILE = "dashboard.json"
WORKSPACE_FILE = "workspace.json"
_SWEPT_INDEX = re.compile(re.escape(SWEPT) + r"\[(\d+)\]")


class DashboardError(ValueError):
    """A sweep without a phenomenon, or one whose runs cannot be read."""


def _first_run(sweep_dir: Path, manifest: dict) -> RunDir:
    for entry in manifest.get("runs", []):
        try:
            return RunDir.open(sweep_dir / entry["run_id"])
        except RunDirError:
            continue
    raise DashboardError(f"no readable run in '{sweep_dir}'")


def _logged_keys(sweep_dir: Path, manifest: dict) -> list[str]:
    """Metric names any run of the sweep logged (the CSV headers; cheap, no rows read)."""
    keys: list[str] = []
    for entry in manifest.get("runs", []):
        path = sweep_dir / entry["run_id"] / "metrics.csv"
        if path.is_file():
            with path.open() as f:
                header = f.readline().strip()
            keys += [k for k in header.split(",") if k and k != "step" and k not in keys]
    return keys


def _resolve_key(key: str, grid: list[str]) -> str | None:
    """`$swept[i]` -> the i-th grid key (None when the grid is smaller); other keys unchanged."""
    match = _SWEPT_INDEX.fullmatch(key)
    if match is None:
        return key
    index = int(match.group(1))
    return grid[index] if index < len(grid) else None


def _resolve_panel(panel: dict, grid: list[str], logged: list[str]) -> dict | None:
    """A panel with swept keys and `prefix*` patterns replaced by real keys, and line panels
    without the curves no run logged; None if it has none left (a phase diagram on a one-key
    grid, a panel of curves nobody logged)."""
    ys: list[str] = []
    for y in panel["y"]:
        if y.endswith("*"):
            ys += [k for k in logged if k.startswith(y[:-1])]
        else:
            resolved = _resolve_key(y, grid)
            if resolved is not None:
                ys.append(resolved)
    x = _resolve_key(panel["x"], grid)
    color = _resolve_key(panel["color"], grid) if panel.get("color") else None
    group_by: list[str] = []
    for key in panel.get("group_by", []):
        group_by += grid if key == SWEPT else [k for k in [_resolve_key(key, grid)] if k]
    if not ys or x is None:
        return None
    if panel["kind"] == "line" and logged:  # curves nobody logged (an Adam-only one) go
        ys = [y for y in ys if y in logged]
        if not ys:
            return None
    return {**panel, "x": x, "y": ys, "color": color, "group_by": group_by}


def dashboard_spec(sweep_dir: Path | str) -> dict:
    """The dashboard of one sweep as plain data: where it lives in W&B, and its panels."""
    sweep_dir = Path(sweep_dir)
    manifest_path = sweep_dir / MANIFEST
    if not manifest_path.is_file():
        raise DashboardError(f"'{sweep_dir}' is not a sweep directory (no sweep.json)")
    manifest = read_json(manifest_path)
    config = _first_run(sweep_dir, manifest).config()
    name = (config.get("phenomenon") or {}).get("name")
    if not name:
        raise DashboardError(f"the runs of '{sweep_dir}' name no phenomenon")
    detector = build(name, config)
    grid = list(manifest.get("grid", {}))
    logged = _logged_keys(sweep_dir, manifest)
    panels = [p for p in (_resolve_panel(panel.to_dict(), grid, logged)
                          for panel in detector.panels) if p is not None]
    logging = config.get("logging") or {}
    return {
        "experiment": manifest.get("experiment") or config.get("name"),
        "sweep_id": sweep_dir.name, "group": sweep_dir.name, "phenomenon": name,
        "project": logging.get("project", "dynamics_lab"), "entity": logging.get("entity"),
        "key_metric": {"name": detector.key_metric.name, "goal": detector.key_metric.goal},
        "grid": grid, "panels": panels,
    }


def _metric(key: str) -> Any:
    """A scatter axis as wandb-workspaces expects it: verdict fields live in the run summary,
    dotted config keys in the config, everything else is a logged metric."""
    import wandb_workspaces.reports.v2 as wr

    if key.startswith(VERDICT_PREFIX):
        return wr.SummaryMetric(key)
    if "/" not in key and "." in key:
        return wr.Config(key)
    return wr.SummaryMetric(key)


def build_workspace(spec: dict):
    """The spec as a wandb-workspaces Workspace (built offline; `.save()` publishes it)."""
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws
    from wandb_workspaces import expr

    panels = []
    for p in spec["panels"]:
        if p["kind"] == "scatter":
            panels.append(wr.ScatterPlot(title=p["title"], x=_metric(p["x"]),
                                         y=_metric(p["y"][0]),
                                         z=_metric(p["color"]) if p["color"] else None,
                                         log_x=p["log_x"], log_y=p["log_y"]))
        else:
            # A panel grouped by one key of a bigger grid names it; grouped by the whole grid
            # (the usual case) it follows the runs table's grouping, which holds every key.
            one = p["group_by"][0] if len(p["group_by"]) == 1 < len(spec["grid"]) else None
            panels.append(wr.LinePlot(title=p["title"], x=p["x"], y=list(p["y"]),
                                      log_x=p["log_x"], log_y=p["log_y"],
                                      groupby=wr.Config(one) if one else None,
                                      groupby_aggfunc="mean", groupby_rangefunc="stderr",
                                      title_x=_words(p["x"])))
    runset = ws.RunsetSettings(filters=[expr.Metric("Group") == spec["group"]],
                               groupby=[expr.Config(k) for k in spec["grid"]])
    return ws.Workspace(
        name=f"{spec['experiment']} {spec['sweep_id']}", entity=spec["entity"] or "",
        project=spec["project"], runset_settings=runset,
        settings=ws.WorkspaceSettings(x_axis=STEP_METRIC),
        sections=[ws.Section(name=f"{spec['phenomenon']}: {spec['sweep_id']}", panels=panels,
                             is_open=True)])


def _words(key: str) -> str:
    return "training step" if key == STEP_METRIC else key


def save_workspace(workspace, path: Path) -> Path:
    """The workspace's view document (what W&B stores for a saved workspace) as JSON."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(workspace._to_model().model_dump_json(by_alias=True, indent=1))
    tmp.replace(path)
    return path


def load_workspace(path: Path | str):
    """A `wandb_workspaces.workspaces.Workspace` from a saved view document, built as
    `Workspace.from_url` builds one from W&B's copy; `.save()` publishes it."""
    import wandb_workspaces.workspaces as ws
    from wandb_workspaces.workspaces import internal

    view = internal.View.model_validate_json(Path(path).read_text())
    return ws.Workspace._from_model(view)


def write_dashboard(runs: Path | str, publish: bool) -> tuple[Path, str | None]:
    """Write SWEEP_DIR/dashboard.json for the sweep dir `runs` (or the newest sweep of two runs
    or more under it); publish it to W&B when asked. Returns (path, url)."""
    sweep_dir = latest_sweep(Path(runs), min_runs=2)
    if sweep_dir is None:
        raise DashboardError(f"'{runs}' is not a sweep directory and holds none (no sweep.json)")
    spec = dashboard_spec(sweep_dir)
    path = sweep_dir / SPEC_FILE
    write_json(path, spec)
    save_workspace(build_workspace(spec), sweep_dir / WORKSPACE_FILE)
    if not publish:
        return path, None
    try:
        if not spec["entity"]:
            import wandb

            spec["entity"] = wandb.Api().default_entity
        workspace = build_workspace(spec)
        workspace.save()
    except Exception as exc:  # W&B refused it (no network, no access, an API change)
        message = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise DashboardError(f"could not publish to W&B: {message} (the spec is in {path})"
                             ) from None
    return path, workspace.url


def describe(spec_path: Path) -> list[str]:
    """The dashboard in a few lines: where it lives, then one line per panel."""
    spec = read_json(spec_path)
    lines = [f"{spec['phenomenon']} dashboard of {spec['experiment']} {spec['sweep_id']} "
             f"(W&B group {spec['group']}, ranked by {spec['key_metric']['name']}): "
             f"{len(spec['panels'])} panel(s)"]
    for panel in spec["panels"]:
        how = (f"x={panel['x']}, color={panel['color']}" if panel["kind"] == "scatter"
               else f"grouped by {', '.join(panel['group_by']) or 'run'}")
        lines.append(f"  {panel['kind']:7} {panel['title']}: {', '.join(panel['y'])} ({how})")
    return lines
