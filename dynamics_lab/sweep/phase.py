"""`dynlab phase`: a phase diagram that finds its own boundaries, round by round.

A search samples one or two config keys on a lattice (phenomena/phase_lattice.py, its
quadtree phenomena/phase_tree.py): a coarse
grid first, then, round by round, the split points of every cell whose boundary labels differ
(a quadtree along the boundary; bisection in 1-D), until the finest lattice (`--resolution`) or
the run budget is reached. Each point runs `--seeds` seeds; its label is their majority phase
(phenomena/phase_map.py). Every round is an ordinary launch of ordinary run directories in one
sweep dir, through the local or Slurm launcher, so `load_sweep` and `dynlab report` read it like
any sweep; `sweep.json` lists the runs as they are added and holds the search's lattice under
`phase`. The quadtree is derived from the points on disk, so `--resume-sweep` reruns what did not
finish and goes on from there.

Why not python-adaptive (1.5): its Learner2D was tried with a loss that scores label
disagreement (labels one-hot; a triangle's loss is its size when its vertices' labels differ,
nearly zero otherwise), started from the same 4x4 grid and fed round by round with
`ask(8)`/`tell`. On a test map with two boundaries (a disc and a line), at the 72 points the
quadtree needed, it agreed with the 13x13 fine grid on 94% of its points, the quadtree on all
of them. It samples triangle centroids and interval midpoints anywhere in the box: the points
are arbitrary floats, so run ids, a resumed search and a full grid cannot name the same
points; its Delaunay triangles cut a square along one diagonal, so a boundary along the other
is seen late; its resolution is a minimum triangle area, not a grid a user can compare with;
its interpolation and value scaling assume a continuous function, not labels; and it brings
loky, sortedcollections and versioningit along. The lattice quadtree is one small module.

The W&B launcher is refused: a W&B sweep fixes its points when it is created, while a phase
search picks each round's points from the last round's labels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from dynamics_lab.config import ExperimentConfig, apply_overrides, build_config, load_experiment
from dynamics_lab.phenomena.phase_lattice import Lattice, Point, parse_axis
from dynamics_lab.phenomena.phase_tree import leaves, next_points, unresolved
from dynamics_lab.schema import ConfigError
from dynamics_lab.sweep.grid import RunSpec, run_id_for
from dynamics_lab.sweep.launch import Plan, RunRequest, check_device, launch
from dynamics_lab.sweep.manifest import prepare_sweep, reopen_sweep
from dynamics_lab.sweep.phase_keys import checked_axis
from dynamics_lab.tracking.rundir import (
    MANIFEST,
    RunDir,
    RunDirError,
    default_runs_root,
    new_sweep_id,
    now,
    read_manifest,
    safe_component,
    write_json,
)

PHASE = "phase"  # the manifest's section for the search


@dataclass
class PhaseRequest:
    """What `dynlab phase` was asked: the axes and search limits beside `run`'s own request."""

    run: RunRequest
    axes: list[str]  # "KEY=LO:HI[:log]", one or two
    budget: int | None = None  # runs in all, seeds included
    resolution: int = 13  # points per axis of the finest lattice
    seeds: int = 1
    coarse: int = 4


@dataclass
class Search:
    """A request resolved: the base config, the lattice and where the runs go; nothing written."""

    request: PhaseRequest
    config: ExperimentConfig
    overrides: list[str]
    lattice: Lattice
    seeds: list[int]
    sweep_dir: Path
    detector: object = field(repr=False, default=None)
    rounds: int = 0  # launched by this process

    @property
    def params(self) -> dict:
        """What a resumed search must match, as the manifest records it."""
        return {"lattice": self.lattice.to_dict(), "seeds": self.seeds}

    def spec(self, point: Point, seed: int) -> RunSpec:
        values = dict(zip((a.key for a in self.lattice.axes), self.lattice.value(point)))
        overrides = {**values, "seed": seed}
        config = build_config(apply_overrides(self.config.to_dict(), list(overrides.items())))
        return RunSpec(run_id_for(overrides), overrides, config)


def plan_search(request: PhaseRequest) -> Search:
    """Validate everything and resolve the search; bad input is a one-line ConfigError (or
    RunDirError for a bad --resume-sweep) before anything is written."""
    from dynamics_lab.phenomena import build

    run = request.run
    if run.launcher == "wandb":
        raise ConfigError("dynlab phase runs its rounds with --launcher local or slurm: a W&B "
                          "sweep fixes its points when it is made, a phase search picks each "
                          "round's points from the last round's labels")
    if not 1 <= len(request.axes) <= 2:
        raise ConfigError("give one axis (--x) or two (--x and --y)")
    axes = [parse_axis(text, flag) for text, flag in zip(request.axes, ("--x", "--y"))]
    if request.seeds < 1:
        raise ConfigError(f"--seeds {request.seeds}: need at least 1")
    overrides = [*run.overrides, *run.flag_overrides(), "sweep.grid={}"]
    config = load_experiment(run.experiment, run.profile, overrides, run.plugins)
    seeds = list(range(config.seed, config.seed + request.seeds))
    config = build_config(apply_overrides(config.to_dict(), [("sweep.seeds", seeds)]))
    overrides.append(f"sweep.seeds={seeds}")  # what the runs' config.yaml records
    if run.launcher == "local":
        check_device(config.trainer.device)
    if run.launcher == "slurm":
        from dynamics_lab.sweep.slurm import cluster_of

        cluster_of(config.sweep.slurm)  # no Slurm here: say so before writing anything
    if config.phenomenon is None:
        raise ConfigError(f"{config.name} names no phenomenon: a phase map needs its verdicts")
    axes = [checked_axis(config, axis, [a.key for a in axes]) for axis in axes]
    lattice = Lattice.for_resolution(tuple(axes), request.coarse, request.resolution)
    first = len(lattice.coarse_points()) * len(seeds)
    if request.budget is not None and request.budget < first:
        raise ConfigError(f"--budget {request.budget} is below the coarse grid's {first} runs "
                          f"({request.coarse}^{lattice.dim} points x {len(seeds)} seed(s))")
    if run.resume_sweep is not None:
        sweep_dir = Path(run.resume_sweep)
    else:
        sweep_dir = ((run.out or default_runs_root()) / safe_component(config.name,
                                                                       "experiment name")
                     / new_sweep_id())
    search = Search(request, config, overrides, lattice, seeds, sweep_dir,
                    build(config.phenomenon.name, config))
    if run.resume_sweep is not None:
        _check_resumable(search)
    return search


def _check_resumable(search: Search) -> None:
    manifest = read_manifest(search.sweep_dir)
    recorded = manifest.get(PHASE)
    if manifest.get("experiment") != search.config.name or not recorded:
        raise RunDirError(f"'{search.sweep_dir}' is not a phase search of "
                          f"'{search.config.name}'")
    for key, value in search.params.items():
        if recorded.get(key) != value:
            raise RunDirError(f"'{search.sweep_dir}' was searched with {key}={recorded.get(key)}"
                              f", this command asks {value}; rerun with the original flags")


def _record(sweep_dir: Path, search: Search, specs: list[RunSpec], points: list[Point]) -> None:
    """Add a round's runs to the manifest: its runs list, the grid of values sampled so far,
    the search's parameters and the round."""
    manifest = read_manifest(sweep_dir)
    listed = {r["run_id"] for r in manifest.get("runs", [])}
    manifest["runs"] = [*manifest.get("runs", []),
                        *({"run_id": s.run_id, "overrides": s.overrides} for s in specs
                          if s.run_id not in listed)]
    grid = {a.key: set() for a in search.lattice.axes}
    for entry in manifest["runs"]:
        for key in grid:
            grid[key].add(entry["overrides"][key])
    manifest["grid"] = {k: sorted(v) for k, v in grid.items()}
    manifest["seeds"] = search.seeds
    phase = manifest.setdefault(PHASE, search.params)
    phase["budget"] = search.request.budget  # a resumed search may spend more
    phase.setdefault("rounds", []).append({"at": now(), "points": len(points),
                                           "runs": [s.run_id for s in specs]})
    write_json(Path(sweep_dir) / MANIFEST, manifest)


def add_round(search: Search, points: list[Point]) -> list[Path]:
    """Prepare the run dirs of a round's points (the sweep dir with the first); their paths."""
    specs = [search.spec(p, s) for p in points for s in search.seeds]
    sweep_dir = search.sweep_dir
    if not (sweep_dir / MANIFEST).exists():
        dirs = prepare_sweep(search.config, specs, sweep_dir)
    else:
        dirs = []
        for spec in specs:
            RunDir.create(sweep_dir / safe_component(spec.run_id, "run id"),
                          spec.config.to_dict(), spec.config.seed)
            dirs.append(sweep_dir / spec.run_id)
    _record(sweep_dir, search, specs, points)
    return dirs


def launch_runs(search: Search, run_dirs: list[Path], echo: Callable[[str], None]) -> dict:
    """One round through `run`'s own launcher (a Slurm array is waited for)."""
    run = replace(search.request.run, sweep=True, wait=True)
    search.rounds += 1
    return launch(Plan(run, search.config, search.overrides, search.sweep_dir, run_dirs),
                  echo) or {}


def reopen(search: Search) -> tuple[list[Path], dict[Path, str]]:
    """A resumed search's runs, checked against this command's configs (manifest.reopen_sweep)."""
    manifest = read_manifest(search.sweep_dir)
    specs = []
    for entry in manifest.get("runs", []):
        overrides = entry["overrides"]
        values = tuple(overrides.get(a.key) for a in search.lattice.axes)
        point = search.lattice.index(values)
        if point is None or overrides.get("seed") not in search.seeds:
            raise RunDirError(f"run {entry['run_id']} is not on this search's lattice; rerun "
                              "with the original flags")
        specs.append(search.spec(point, overrides["seed"]))
    return reopen_sweep(search.config, specs, search.sweep_dir)


def current_points(search: Search):
    """The points table of what is on disk (phenomena/phase_map.py)."""
    import pandas as pd

    from dynamics_lab.phenomena.phase_map import phase_points
    from dynamics_lab.report.tables import sweep_table

    if not (search.sweep_dir / MANIFEST).exists():
        return phase_points(pd.DataFrame(), search.lattice, search.detector)
    return phase_points(sweep_table(search.sweep_dir), search.lattice, search.detector)


def run_search(search: Search, echo: Callable[[str], None] = print) -> str:
    """Rounds until the finest lattice or the budget is reached; why it stopped."""
    from dynamics_lab.phenomena.phase_map import labels_of

    if search.request.run.resume_sweep is not None:
        from dynamics_lab.sweep.manifest import unfinished

        run_dirs, _ = reopen(search)
        if unfinished(run_dirs):  # what did not finish: killed, failed, pending
            launch_runs(search, run_dirs, echo)
    phases = frozenset(search.detector.phases)
    budget = search.request.budget
    while True:
        labels = labels_of(current_points(search), search.lattice)
        if not labels:
            points = search.lattice.coarse_points()
        else:
            used = len(read_manifest(search.sweep_dir).get("runs", []))
            room = None if budget is None else (budget - used) // len(search.seeds)
            points = next_points(search.lattice, labels, phases, room)
            if not points:
                left = next_points(search.lattice, labels, phases)
                if left:
                    return (f"budget reached: {used} of {budget} runs used; "
                            f"{len(left)} more points would refine the boundary")
                if any(unresolved(c, labels, phases)
                       for c in leaves(search.lattice, set(labels))):
                    return (f"resolution reached: every cell the boundary crosses is "
                            f"{search.lattice.resolution} points per axis fine")
                return "no boundary left to refine: every cell's points share one phase"
        dirs = add_round(search, points)
        echo(f"round {len(read_manifest(search.sweep_dir)[PHASE]['rounds'])}: {len(points)} "
             f"point(s) x {len(search.seeds)} seed(s) = {len(dirs)} run(s)")
        launch_runs(search, dirs, echo)


def not_finished(search: Search) -> list[str]:
    """`run_id: status (error)` of each run that did not finish; its point is labelled so."""
    from dynamics_lab.report.tables import sweep_table

    table = sweep_table(search.sweep_dir)
    bad = table[~table["status"].isin(["completed", "diverged"])]
    return [f"{r['run_id']}: {r['status']}"
            + (f" ({r['error']})" if isinstance(r.get("error"), str) else "")
            for r in bad.to_dict("records")]


def write_outputs(search: Search, echo: Callable[[str], None] = print) -> list[Path]:
    """The map, the points table and the panel spec into the sweep dir; the map and table to
    W&B too when the runs logged there."""
    from dynamics_lab.phenomena.phase_map import summary_lines, write_map
    from dynamics_lab.report.tables import sweep_table

    table = sweep_table(search.sweep_dir)
    written = write_map(table, search.lattice, search.detector, search.sweep_dir,
                        f"{search.config.name}: phase map")
    for line in summary_lines(current_points(search), search.lattice):
        echo(line)
    if search.config.logging.wandb:
        from dynamics_lab.tracking.wandb import log_report, wandb_enabled

        if wandb_enabled(True):
            import pandas as pd

            points = pd.read_csv(written[0])
            echo(log_report(search.sweep_dir, search.config.to_dict(), points,
                            [p for p in written if p.suffix == ".png"]))
    return written
