"""Every phenomenon's report figures, drawn from synthetic sweeps (no training): axes labelled in
words (no config key or metric name shows raw), the verdict's key steps marked on curves over
steps, seed bands where a grid point has several seeds, and a title that names which runs it
shows (a selection of grid points, or every run)."""

import importlib
import re

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection

from dynamics_lab.phenomena.sweep_view import SweepView

STEPS = np.arange(0, 410, 10)
SELECTION = re.compile(r"grid points?|every run")


def sigmoid(at: float, width: float = 20.0) -> np.ndarray:
    return 1 / (1 + np.exp(-(STEPS - at) / width))


def view_of(tmp_path, table: pd.DataFrame, axes: list[str], metrics, configs=None) -> SweepView:
    """A SweepView over `table`, each run's metrics from `metrics(row)` (with seed noise)."""
    table = table.reset_index(drop=True)
    table["run_id"] = [f"run{i}" for i in range(len(table))]
    rows = {r["run_id"]: r for _, r in table.iterrows()}

    def load(run_id):
        row = rows[run_id]
        frame = pd.DataFrame({"step": STEPS, **metrics(row)})
        noise = np.random.default_rng(int(row.get("seed", 0))).normal(0, 0.01, len(STEPS))
        for column in frame.columns[1:]:
            frame[column] = frame[column] * (1 + noise)
        return frame

    return SweepView(table, axes, tmp_path, load, lambda run_id: (configs or {}))


def verdict(**fields) -> dict:
    """Verdict fields as a run table's columns (`verdict/<field>`)."""
    return {f"verdict/{name}": value for name, value in fields.items()}


def grid(axes: dict, seeds=(0, 1, 2), **fields) -> pd.DataFrame:
    points = pd.MultiIndex.from_product([*axes.values(), seeds], names=[*axes, "seed"])
    return pd.DataFrame(index=points).reset_index().assign(
        **verdict(outcome="detected", **fields))


@pytest.fixture
def drawn(monkeypatch):
    """name -> the figures a phenomenon's write_figures drew, kept open."""
    def draw(name: str, view: SweepView) -> list:
        module = importlib.import_module(f"dynamics_lab.phenomena.{name}.figures")
        figures = []
        for mod in {module, *(importlib.import_module(m) for m in (
                "dynamics_lab.phenomena.edge_of_stability.figures",
                "dynamics_lab.phenomena.stepwise.figures",
                "dynamics_lab.phenomena.hidden_progress.scaling"))}:
            monkeypatch.setattr(mod, "save", lambda fig, path: figures.append(fig) or path,
                                raising=False)
        module.write_figures(view)
        assert figures, f"{name} drew no figure"
        return figures
    return draw


def raw_keys(view: SweepView) -> set[str]:
    frame = view.metrics(view.table["run_id"].iloc[0])
    return {*view.axes, *(c for c in frame.columns if c != "step")}


def labels_are_words(fig, raw: set[str]) -> None:
    for ax in fig.axes:
        for text in (ax.get_xlabel(), ax.get_ylabel()):
            assert not any(key in text for key in raw), f"raw key in label {text!r}"


def title_names_selection(fig) -> None:
    title = fig._suptitle.get_text() if fig._suptitle else ""
    assert SELECTION.search(title), f"title names no selection: {title!r}"


def has_band(fig) -> bool:
    return any(isinstance(c, PolyCollection) for ax in fig.axes for c in ax.collections)


def marked_steps(fig) -> set[float]:
    """x of every vertical line drawn across an axis (axvline)."""
    found = set()
    for ax in fig.axes:
        for line in ax.get_lines():
            x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
            if len(x) == 2 and x[0] == x[1] and list(y) == [0, 1]:
                found.add(float(x[0]))
    return found


def check(figures, view, step: float | None = None, band: bool = True) -> None:
    raw = raw_keys(view)
    for fig in figures:
        labels_are_words(fig, raw)
        title_names_selection(fig)
    curves = figures[0]
    if band:
        assert has_band(curves), "no seed band"
    if step is not None:
        assert step in marked_steps(curves), f"step {step} not marked"


def test_edge_of_stability(tmp_path, drawn):
    table = grid({"optim.lr": [0.01, 0.02], "optim.weight_decay": [0.0, 0.1]}, crossing_step=150)
    view = view_of(tmp_path, table, ["optim.lr", "optim.weight_decay"], lambda r: {
        "hessian/lambda_max": 2 / r["optim.lr"] * sigmoid(150),
        "train/loss": 1 - 0.5 * sigmoid(200)})
    figures = drawn("edge_of_stability", view)
    check(figures, view, step=150)
    assert "2 of 4 grid points (weight decay = 0.1)" in figures[0]._suptitle.get_text()


def test_hidden_progress(tmp_path, drawn):
    table = grid({"optim.lr": [0.05, 0.1, 0.2]}, drop_step=200)
    view = view_of(tmp_path, table, ["optim.lr"], lambda r: {
        "val/loss": 1 - 0.9 * sigmoid(200), "features/relevant_mass": 0.2 + 0.7 * sigmoid(120),
        "features/relevant_mass_top10": 0.3 + 0.6 * sigmoid(100)})
    check(drawn("hidden_progress", view), view, step=200)


def test_large_step_sgd(tmp_path, drawn):
    from dynamics_lab.phenomena.large_step_sgd.detector import ACTIVE, DEAD, TRAIN, VAL

    table = grid({"optim.lr": [0.05, 0.3]}, decay_step=280, active_before_decay=0.2,
                 dead_before_decay=0.1, final_val_loss=0.05, stabilized=True)
    view = view_of(tmp_path, table, ["optim.lr"], lambda r: {
        TRAIN: 1 - 0.9 * sigmoid(300), VAL: 1.1 - 0.9 * sigmoid(300),
        ACTIVE: 0.5 - 0.3 * sigmoid(100), DEAD: 0.1 * sigmoid(100)})
    check(drawn("large_step_sgd", view), view, step=280)


def test_xor(tmp_path, drawn):
    samples = {8: 400, 16: 900, 32: 2000}
    table = grid({"task.n": [8, 16, 32], "optim.lr": [0.5, 1.0]}, search_end=100, tune_end=250,
                 search_length=100, tuning_length=150)
    table["verdict/samples_to_target"] = [samples[n] * (1 + 0.3 * (lr == 1.0)) * (1 + 0.05 * s)
                                  for n, lr, s in table[["task.n", "optim.lr", "seed"]].values]
    view = view_of(tmp_path, table, ["task.n", "optim.lr"], lambda r: {
        "val/loss": 0.7 - 0.6 * sigmoid(250), "signal/alignment": 0.2 + 0.7 * sigmoid(150),
        "signal/random_level": 0.2 + 0 * STEPS})
    figures = drawn("xor", view)
    check(figures, view)
    assert "3 of 6 grid points" in figures[0]._suptitle.get_text()


def test_stepwise(tmp_path, drawn):
    table = grid({"model.init_scale": [0.01, 0.001], "optim.lr": [0.1]})
    for column, value in (("theory_times", [100.0, 220.0]), ("step_times", [110.0, 230.0]),
                          ("rise_ends", [150.0, 260.0]), ("plateaus", [[0, 80], [160, 200]]),
                          ("loss_step_times", [110.0, 230.0])):
        table[f"verdict/{column}"] = [value] * len(table)
    table = table.assign(**verdict(loss_metric="train/loss", agree=True, loss_steps=2,
                                   spectral_steps=2))
    view = view_of(tmp_path, table, ["model.init_scale", "optim.lr"], lambda r: {
        "modes/strength_0": 3 * sigmoid(110), "modes/strength_1": 2 * sigmoid(230),
        "train/loss": 13 - 9 * sigmoid(110) - 4 * sigmoid(230) + 0.01},
        configs={"task": {"singular_values": [3.0, 2.0]}})
    figures = drawn("stepwise", view)
    check(figures, view, step=100.0)
    assert "all 2 grid points" in figures[0]._suptitle.get_text()


def test_lazy_rich_and_hessian_rank_summaries_name_every_run(tmp_path, drawn):
    table = grid({"model.alpha": [0.1, 1.0, 4.0]}, final_val_loss=0.2, lazy_test_loss=0.3,
                 kernel_distance=0.5, alignment_max=0.6, delay_ratio=1.1)
    view = view_of(tmp_path, table, ["model.alpha"], lambda r: {
        "train/loss": 1 - 0.9 * sigmoid(100), "val/loss": 1 - 0.7 * sigmoid(200),
        "ntk/alignment": 0.2 + 0.5 * sigmoid(150)})
    figures = drawn("lazy_rich", view)
    check(figures, view, band=False)
    assert any("every run: 9 (3 grid points x 3 seeds)" in f._suptitle.get_text()
               for f in figures)
    table = grid({"model.width": [4, 8, 16], "model.depth": [2]}, measured_rank=10,
                 predicted_rank=10, n_params=100)
    view = view_of(tmp_path, table, ["model.width", "model.depth"], lambda r: {"train/loss": 1})
    check(drawn("hessian_rank", view), view, band=False)


def every_figure(figures, step: float | None = None) -> None:
    """Every figure (not only the first) has a seed band, and `step` marked when given."""
    for fig in figures:
        assert has_band(fig), f"no seed band in {fig._suptitle.get_text()!r}"
        if step is not None:
            assert step in marked_steps(fig), f"step {step} not marked"


def test_lazy_rich_curves_are_seed_bands_with_the_key_steps(tmp_path, drawn):
    table = grid({"model.alpha": [0.1, 1.0, 4.0]}, final_val_loss=0.2, fit_step=100,
                 test_drop_step=220)
    view = view_of(tmp_path, table, ["model.alpha"], lambda r: {
        "train/loss": 1 - 0.9 * sigmoid(100), "val/loss": 1 - 0.7 * sigmoid(200),
        "ntk/alignment": 0.2 + 0.5 * sigmoid(150), "ntk/distance_init": 0.3 * sigmoid(150)})
    curves = drawn("lazy_rich", view)[0]
    check([curves], view, step=220)
    assert "all 3 grid points, mean and 95% band over 3 seeds" in curves._suptitle.get_text()


def test_eos_quadratic(tmp_path, drawn):
    from dynamics_lab.metric_names import SecondOrder

    table = grid({"optim.lr": [2.0, 3.0], "model.curvature": [0.0, 0.35]}, crossing_step=150,
                 edge_crossing_step=160)
    view = view_of(tmp_path, table, ["optim.lr", "model.curvature"], lambda r: {
        "hessian/lambda_max": 2 / r["optim.lr"] * sigmoid(150),
        "train/loss": 1 - 0.5 * sigmoid(200),
        SecondOrder.NTK_LAMBDA: 2 / r["optim.lr"] * sigmoid(150),
        SecondOrder.NTK_LAMBDA_PREV_MODE: 2 / r["optim.lr"] * sigmoid(150),
        SecondOrder.ZETA: 0.1 + 0 * STEPS, SecondOrder.A: 0.2 + 0 * STEPS,
        SecondOrder.B: 1.0 + 0 * STEPS, SecondOrder.LOSS: 1 - 0.5 * sigmoid(200)})
    figures = drawn("eos_quadratic", view)
    assert len(figures) == 3  # the edge-of-stability figure, normalized, two-variable
    check(figures, view, step=150)
    every_figure(figures, step=160)
    normalized, reduced = (f._suptitle.get_text() for f in figures[1:])
    assert "all 4 grid points, mean and 95% band over 3 seeds" in normalized
    assert "2 of 4 grid points (second-order curvature Q = 0.35)" in reduced


def test_scaling_law(tmp_path, drawn):
    table = grid({"model.dim": [32, 64, 128], "task.n_samples": [256, 1024, 4096]}, alpha=1.5)
    table = table.assign(**verdict(d=table["model.dim"], T=table["task.n_samples"]))
    for name, scale in (("trained", 1.0), ("top_k", 0.8), ("seen", 0.9), ("frequency", 1.1)):
        table[f"verdict/error_{name}"] = (scale * (table["model.dim"] ** -0.5
                                                   + table["task.n_samples"] ** -0.3)
                                          * (1 + 0.05 * table["seed"]))
    view = view_of(tmp_path, table, ["model.dim", "task.n_samples"], lambda r: {
        "memory/recall_1-10": 0.9 * sigmoid(100), "memory/recall_11-100": 0.5 * sigmoid(200)},
        configs={"phenomenon": {"name": "scaling_law"}})
    figures = drawn("scaling_law", view)
    assert len(figures) == 3  # the laws, the whole grid, recall by rank
    check(figures, view)
    every_figure(figures)
    laws, grid_, recall = (f._suptitle.get_text() for f in figures)
    assert "5 of 9 grid points (the largest T and the largest d)" in laws
    assert "all 9 grid points, mean and 95% band over 3 seeds" in grid_
    assert "3 of 9 grid points (training tokens T = 4096)" in recall
    assert {ax.get_xlabel() for ax in figures[0].axes} == {"memory dimension d",
                                                           "training tokens T"}


def test_grokking_progress_measures(tmp_path, drawn):
    from dynamics_lab.metric_names import Fourier

    table = grid({"optim.weight_decay": [0.5, 1.0]}, fit_step=100, generalization_step=300,
                 delay_ratio=3.0)
    view = view_of(tmp_path, table, ["optim.weight_decay"], lambda r: {
        "train/acc": sigmoid(60, 5), "val/acc": sigmoid(300, 10),
        "train/loss": 4.6 * (1 - sigmoid(60, 5)) + 0.01, "val/loss": 4.6 - 4.5 * sigmoid(300),
        Fourier.RESTRICTED_LOSS: 4.6 - 4.5 * sigmoid(200),
        Fourier.EXCLUDED_LOSS: 4.0 + 2 * sigmoid(220),
        Fourier.KEY_POWER: sigmoid(180), Fourier.KEY_LOGIT_SHARE: sigmoid(200)})
    progress = drawn("grokking", view)[-1]
    check([progress], view, step=300)
    assert 100 in marked_steps(progress)  # the verdict's fit step, beside its generalization
    assert "all 2 grid points, mean and 95% band over 3 seeds" in progress._suptitle.get_text()


def test_stepwise_ssl(tmp_path, drawn):
    table = grid({"model.init_scale": [0.01, 0.001], "optim.lr": [0.1]})
    for column, value in (("theory_times", [100.0, 220.0]), ("step_times", [110.0, 230.0]),
                          ("rise_ends", [150.0, 260.0]), ("plateaus", [[0, 80], [160, 200]])):
        table[f"verdict/{column}"] = [value] * len(table)
    table = table.assign(**verdict(loss_metric="train/loss", agree=True))
    view = view_of(tmp_path, table, ["model.init_scale", "optim.lr"], lambda r: {
        "embedding/eig_0": sigmoid(110), "embedding/eig_1": sigmoid(230),
        "train/loss": 2 - sigmoid(110) - sigmoid(230) + 0.01})
    figures = drawn("stepwise_ssl", view)
    check(figures, view)
    assert 100.0 in marked_steps(figures[1])  # the loss figure: predicted step times
    assert "all 2 grid points" in figures[0]._suptitle.get_text()
