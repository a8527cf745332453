"""README's "Writing your own" runs as written: its plugin file, its phenomenon folder (whose
cases the shared battery finds through the registry and passes), experiment and commands."""

import re
import shlex
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from dynamics_lab.cli import app
from dynamics_lab.phenomena.battery import all_cases, outcome

README = Path(__file__).resolve().parents[1] / "README.md"


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block."""
    return re.findall(r"```(\w*)\n(.*?)```", text, flags=re.S)


def test_writing_your_own_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DYNLAB_RUNS", raising=False)
    commands = []
    for language, body in blocks(section("Writing your own")):
        first = body.splitlines()[0]
        if language in ("python", "yaml") and first.startswith("# "):
            path = tmp_path / first[2:].strip()  # "# my_lab.py" names the file
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body)
        elif language == "":
            commands += [line.split() for line in body.splitlines() if line.startswith("dynlab ")]
    written = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()}
    assert written == {"my_lab.py", "fits/__init__.py", "fits/cases.py", "my_experiment.yaml"}
    assert [c[1] for c in commands] == ["run", "report"]
    for command in commands:
        result = CliRunner().invoke(app, command[1:])
        assert result.exit_code == 0, f"{shlex.join(command)}:\n{result.output}"
    metrics = sorted((tmp_path / "runs" / "my_experiment").rglob("metrics.csv"))
    assert len(metrics) == 2
    for path in metrics:
        table = pd.read_csv(path)
        assert table["params/norm"].notna().sum() >= 6  # every 50 steps and the last
        verdict = (path.parent / "verdict.json").read_text()
        assert '"phenomenon": "fits"' in verdict and '"outcome": "detected"' in verdict
    summary = pd.read_csv(tmp_path / "results" / "my_experiment" / "summary.csv")
    assert sorted(summary["model.width"]) == [16, 64] and summary["detected"].all()
    # The phenomenon folder's cases reach the shared battery through the registry, and pass.
    cases = all_cases(["fits"])
    assert {c.expected for c in cases} == {"detected", "not_detected", "undetermined"}
    assert [c.id for c in cases if outcome(c) != c.expected] == []
