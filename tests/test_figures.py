"""Paper-ready report figures: PNG and PDF at a settable size, axis labels in words, seed bands
(mean and 95% interval), the verdict's key steps marked, step 0 drawn at 0, and phase diagrams
that tell "never", "ran out of steps" and "failed" apart with a colour bar in the value's units."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import LogNorm
from PIL import Image
from scipy import stats

from dynamics_lab.phenomena import plotting


@pytest.fixture
def captured(monkeypatch):
    """The figure a helper would save, kept open for inspection."""
    figures = []
    monkeypatch.setattr(plotting, "save", lambda fig, path: figures.append(fig) or path)
    return figures


@pytest.fixture(autouse=True)
def default_settings(monkeypatch):
    for name in ("DYNLAB_FIG_FORMATS", "DYNLAB_FIG_DPI", "DYNLAB_FIG_SCALE", "DYNLAB_FIG_STYLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(plotting, "_settings", [])


def test_figures_are_saved_as_png_and_pdf_at_the_set_size_and_dpi(tmp_path, monkeypatch):
    plt = plotting.pyplot()
    fig, _ = plt.subplots(figsize=(4, 2))
    assert plotting.save(fig, tmp_path / "a.png") == tmp_path / "a.png"
    assert (tmp_path / "a.pdf").read_bytes().startswith(b"%PDF")
    assert Image.open(tmp_path / "a.png").size == (800, 400)  # 200 dpi by default
    monkeypatch.setenv("DYNLAB_FIG_SCALE", "0.5")
    monkeypatch.setenv("DYNLAB_FIG_DPI", "100")
    monkeypatch.setenv("DYNLAB_FIG_FORMATS", "png")
    fig, _ = plt.subplots(figsize=(4, 2))
    plotting.save(fig, tmp_path / "b.png")
    assert Image.open(tmp_path / "b.png").size == (200, 100)
    assert not (tmp_path / "b.pdf").exists()
    plotting.configure(style="ggplot")
    assert plotting.pyplot().rcParams["axes.facecolor"] == "#E5E5E5"
    plotting.configure(style=None)
    assert plotting.pyplot().rcParams["axes.facecolor"] == "white"


def test_axis_labels_are_words():
    assert plotting.words("optim.weight_decay") == "weight decay"
    assert plotting.words("optim.lr") == "learning rate"
    assert plotting.words("step") == "training step"
    assert plotting.words("model.some_new_key") == "some new key"


def run(values, steps=(0, 10, 20, 40), **verdict):
    frame = pd.DataFrame({"step": steps, "val/acc": values})
    frame.attrs["verdict"] = verdict
    return frame


def test_seed_band_is_the_mean_and_a_95_percent_t_interval():
    frames = [run([0.0, 0.2, 0.5, 1.0]), run([0.0, 0.4, 0.7, 1.0]), run([0.0, 0.3, 0.9, 1.0])]
    steps, mean, low, high, n = plotting.seed_band(frames, "val/acc")
    assert n == 3 and list(steps) == [0, 10, 20, 40]
    half = stats.t.ppf(0.975, 2) * np.std([0.5, 0.7, 0.9], ddof=1) / np.sqrt(3)
    assert mean[2] == pytest.approx(0.7) and high[2] - mean[2] == pytest.approx(half)
    assert low[0] == high[0] == 0.0


def test_curves_show_every_seed_as_a_band_and_mark_the_verdicts_steps(captured, tmp_path):
    seeds = [run([0.0, 0.2, 0.5, 1.0], fit_step=np.int64(10), generalization_step=40.0,
                 delay_ratio=4.0),
             run([0.0, 0.4, 0.7, 1.0])]
    first = seeds[0]
    first.attrs.update(seed_runs=lambda: seeds, grid_points=3)
    plotting.curves({"wd=1": first}, [("val/acc", "val")], tmp_path / "c.png", title="grokking")
    (fig,) = captured
    ax = fig.axes[0]
    assert ax.get_xlim()[0] == 0 and ax.get_xlabel() == "training step"
    assert len(ax.collections) == 1  # the band over the two seeds
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() >= 0.0 and band.max() <= 1.0  # within the values the seeds took
    marks = {line.get_label(): line.get_xdata()[0] for line in ax.lines[1:]}
    assert marks == {"fit step 10": 10, "generalization step 40": 40}
    title = fig._suptitle.get_text()
    assert "1 of 3 grid points" in title and "95% band over 2 seed(s)" in title
    first.attrs.update(grid_points=1)  # every grid point shown: the title says so too
    plotting.curves({"wd=1": first}, [("val/acc", "val")], tmp_path / "c.png", title="grokking")
    assert "all 1 grid point;" in captured[-1]._suptitle.get_text()


def grid_table():
    """A 2 x 2 grid of weight decay x train fraction; one cell per state."""
    rows = [("a", 0.0, 0.3, "not_detected", np.nan, "completed"),
            ("b", 0.0, 0.5, "undetermined", np.nan, "completed"),
            ("c", 1.0, 0.3, "detected", 4.0, "completed"),
            ("d", 1.0, 0.5, None, np.nan, "failed")]
    every = pd.DataFrame(rows, columns=["run_id", "optim.weight_decay", "task.train_fraction",
                                        "verdict/outcome", "delay", "status"])
    finished = every[every["status"] == "completed"].reset_index(drop=True)
    finished.attrs["runs"] = every
    return finished


def test_phase_diagram_tells_never_ran_out_and_failed_apart(captured, tmp_path):
    plotting.phase_diagram(grid_table(), "optim.weight_decay", "task.train_fraction", "delay",
                           tmp_path / "p.png", annotate="{:.1f}x")
    (fig,) = captured
    ax = fig.axes[0]
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == ["4.0x", "failed", "never", "ran out\nof steps"]
    assert len(fig.axes) == 1  # one coloured cell: no colour bar to misread
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("weight decay", "training fraction of all pairs")


def test_phase_diagram_colour_bar_is_in_the_values_own_units(captured, tmp_path):
    table = grid_table()
    table.loc[table["run_id"] == "a", ["verdict/outcome", "delay"]] = ["detected", 20.0]
    plotting.phase_diagram(table, "optim.weight_decay", "task.train_fraction", "delay",
                           tmp_path / "p.png")
    (fig,) = captured
    image = fig.axes[0].images[0]
    assert isinstance(image.norm, LogNorm) and (image.norm.vmin, image.norm.vmax) == (4.0, 20.0)
    assert fig.axes[1].get_ylabel() == plotting.words("delay")
