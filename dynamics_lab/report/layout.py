"""Where reports go: each sweep's report in results/EXPERIMENT/<sweep_id>/, never overwritten by
another sweep's, and results/EXPERIMENT/ itself holding a copy of the newest sweep's report
(newest by sweep id, which starts with its creation time) with LATEST naming that sweep.

Why a copy rather than a `latest` symlink: links in the README, the claims table and older
checkouts read results/EXPERIMENT/<file> directly, and a copy reads the same on every file
system and in every git client. LATEST lists the files it copied, so the next copy removes
exactly those (a figure the new report no longer draws does not linger)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

LATEST = "LATEST"  # in results/EXPERIMENT/: {"sweep_id": ..., "files": [...]}


def sweep_report_dir(results: Path, sweep_id: str) -> Path:
    return Path(results) / sweep_id


def latest(results: Path) -> dict | None:
    """What results/EXPERIMENT/ mirrors (None before the first per-sweep report)."""
    try:
        data = json.loads((Path(results) / LATEST).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "sweep_id" in data else None


def mirror_latest(results: Path, sweep_id: str, files: list[Path]) -> list[Path]:
    """Copy a sweep's report files into `results` when the sweep is the newest reported there
    (re-reporting an older sweep leaves the copy alone); the copied paths, [] when left alone."""
    results = Path(results)
    current = latest(results)
    if current is not None and current["sweep_id"] > sweep_id:
        return []
    for name in (current or {}).get("files", []):
        if "/" not in name and name != LATEST:
            (results / name).unlink(missing_ok=True)
    copied = []
    for path in files:
        if Path(path).is_file() and Path(path).parent == results / sweep_id:
            copied.append(Path(shutil.copy2(path, results / Path(path).name)))
    tmp = results / f".{LATEST}.tmp"
    tmp.write_text(json.dumps({"sweep_id": sweep_id, "files": [p.name for p in copied]},
                              indent=1) + "\n")
    tmp.replace(results / LATEST)
    return copied
