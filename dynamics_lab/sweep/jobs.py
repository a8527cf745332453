"""A sweep's runs grouped into jobs: what one worker process trains (one run, or an ensemble).

Runs share an ensemble when their configs differ only in values that keep tensor shapes
(`train/ensemble.py` VARYING: seed, weight decay, init scale, an SGD step size); any other
difference (width, depth, p, n, the optimizer) splits them. `size` caps an ensemble; "auto"
packs each group into as few processes as memory allows: half the machine's memory (RAM, or the
GPU's) over what one member adds (`footprint.member_bytes`), at most AUTO_MAX. Members of a
killed ensemble that come back together form their old ensemble again, so it resumes from its
checkpoint; a run with its own checkpoint goes alone.

With several workers, "auto" also balances: one process per group would leave workers idle
(three groups on two workers run as two rounds), and on a CPU a vmapped member costs about
what a single run costs per core (`benchmarks/ensemble.py bare`). So the groups are cut into
chunks that let the workers finish together: the chunk size with the least work on the busiest
worker (in members, greedy longest first), and of those the fewest processes. One worker (or
Slurm, which schedules its array itself) keeps one process per group.
"""

from __future__ import annotations

from pathlib import Path

from dynamics_lab.tracking.rundir import RunDir
from dynamics_lab.train.ensemble import group_key

AUTO = "auto"
AUTO_MAX = 1024  # members per process at most, whatever the memory


def parse_size(value: str | int) -> int | str:
    """`--ensemble` as given: a positive count, or "auto"; a ValueError (one line) otherwise."""
    if str(value).strip().lower() == AUTO:
        return AUTO
    try:
        size = int(value)
    except ValueError:
        size = 0
    if size < 1:
        raise ValueError(f"--ensemble takes a number of runs per process (>= 1) or 'auto', "
                         f"not {value!r}")
    return size


def auto_size(config: dict) -> int:
    """Members that fit in one process for runs like `config` (see the module docstring)."""
    from dynamics_lab.config import build_config
    from dynamics_lab.footprint import machine_memory, member_bytes

    built = build_config(config)
    per_member = max(member_bytes(built), 1.0)
    return max(1, min(AUTO_MAX, int(machine_memory(built.trainer.device) / 2 // per_member)))


def group_jobs(run_dirs: list[Path], size: int | str, workers: int = 1) -> list[list[Path]]:
    """Jobs of up to `size` compatible runs ("auto": as many as fit, balanced over `workers`),
    in sweep order, except balanced jobs, which come longest first (the order workers take)."""
    if size == 1:
        return [[d] for d in run_dirs]
    runs = {path: RunDir(path) for path in run_dirs}
    jobs: list[list[Path]] = []
    grouped: set[Path] = set()
    for path, run in runs.items():  # killed ensembles whose members are all back
        if path in grouped or not (run.has_checkpoint() and run.status.resumable):
            continue
        members = [path.parent / name for name in run.meta.get("ensemble", {}).get("members", [])]
        job = members if len(members) > 1 and all(m in runs for m in members) else [path]
        jobs.append(job)
        grouped.update(job)
    groups: dict[str, list[Path]] = {}
    caps: dict[str, int] = {}
    for path, run in runs.items():
        if path in grouped:
            continue
        config = run.config()
        key = group_key(config)
        if key not in caps:
            caps[key] = auto_size(config) if size == AUTO else int(size)
        group = groups.setdefault(key, [])
        group.append(path)
        if len(group) == caps[key]:
            jobs.append(list(group))
            group.clear()
    rest = [g for g in groups.values() if g]
    if size == AUTO and workers > 1 and rest:
        rest = balance(rest, [caps[k] for k, g in groups.items() if g], workers)
    return jobs + rest


def balance(groups: list[list[Path]], caps: list[int], workers: int) -> list[list[Path]]:
    """`groups` cut into chunks (each within its group's cap, sizes within one of each other)
    so that `workers` finish together (module docstring): the smallest busiest-worker load in
    members, then the fewest chunks."""
    def cut(limit: int) -> list[list[Path]]:
        chunks = []
        for group, cap in zip(groups, caps):
            n = -(-len(group) // min(limit, cap))
            bounds = [len(group) * i // n for i in range(n + 1)]
            chunks += [group[a:b] for a, b in zip(bounds, bounds[1:])]
        return chunks

    def busiest(chunks: list[list[Path]]) -> int:
        loads = [0] * workers
        for chunk in sorted(chunks, key=len, reverse=True):  # greedy, longest first (LPT)
            loads[loads.index(min(loads))] += len(chunk)
        return max(loads)

    largest = max(map(len, groups))
    options = [cut(limit) for limit in range(1, largest + 1)]
    best = min(options, key=lambda chunks: (busiest(chunks), len(chunks)))
    return sorted(best, key=len, reverse=True)  # workers take jobs in order: longest first
