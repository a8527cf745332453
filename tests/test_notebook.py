"""examples/analysis.ipynb runs top to bottom in a Jupyter kernel on the sweeps it ships, and
its tables say what the sweeps hold."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def outputs(cell) -> str:
    return "\n".join(o.get("text", "") or o.get("data", {}).get("text/plain", "")
                     for o in cell.get("outputs", []))


@pytest.fixture(scope="module")
def executed():
    notebook = nbformat.read(EXAMPLES / "analysis.ipynb", as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(EXAMPLES)}}).execute()
    return [c for c in notebook.cells if c.cell_type == "code"]


def test_the_notebook_executes_and_draws_its_figure(executed):
    assert all(o.get("output_type") != "error" for c in executed for o in c.get("outputs", []))
    assert any("image/png" in o.get("data", {}) for c in executed for o in c.get("outputs", []))


def test_the_notebook_shows_typed_verdicts_and_compares_the_two_sweeps(executed):
    dtypes = outputs(executed[1])
    assert "verdict/delay_ratio" in dtypes and "float64" in dtypes and "bool" in dtypes
    compared = outputs(executed[-1])
    assert "train 0.6" in compared and "train 0.5" in compared and "seeds" in compared
    counts = outputs(executed[-2])
    assert counts.count("4") >= 2  # four runs in each sweep
