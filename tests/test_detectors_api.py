"""The detector interface: built like every plugin, judging tables from elsewhere (a W&B export,
other column names), three outcomes, what each phenomenon carries (key metric, panels, figures),
imports pointing down, and verdicts across seeds in the report."""

import json
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from dynamics_lab.config import load_experiment
from dynamics_lab.phenomena import build, detect
from dynamics_lab.phenomena.base import Detector
from dynamics_lab.phenomena.battery import all_cases
from dynamics_lab.phenomena.dashboard import Panel
from dynamics_lab.phenomena.grokking.cases import table as grokking_table
from dynamics_lab.registry import PHENOMENA
from dynamics_lab.report.cells import format_cells, seed_cells
from dynamics_lab.schema import ConfigError
from dynamics_lab.sweep.wandb_sweep import sweep_spec

GROKS = grokking_table("grok")
PACKAGE = Path(__file__).parents[1] / "dynamics_lab"
PHENOMENA_DIR = PACKAGE / "phenomena"


def test_built_like_every_plugin():
    section = PHENOMENA.get("grokking").Config(min_delay_ratio=20.0)
    detector = PHENOMENA.build(section)
    assert isinstance(detector, Detector) and detector.config is section
    assert detector.detect(GROKS, {}).outcome == "not_detected"  # 12x < 20x
    assert detect("grokking", GROKS, {"phenomenon": {"min_delay_ratio": 20.0}}).to_dict() == (
        detector.detect(GROKS, {}).to_dict())
    assert build("grokking").config.min_delay_ratio == 2.0  # defaults without a config


def test_a_wandb_export_and_renamed_columns_give_the_same_verdict():
    reference = detect("grokking", GROKS).to_dict()
    exported = GROKS.rename(columns={"step": "_step"}).sample(frac=1.0, random_state=0)
    assert detect("grokking", exported).to_dict() == reference  # _step, rows in any order
    mine = GROKS.rename(columns={"train/acc": "train_acc", "val/acc": "acc_test"})
    columns = {"train/acc": "train_acc", "val/acc": "acc_test"}
    assert detect("grokking", mine, columns=columns).to_dict() == reference
    unmapped = detect("grokking", mine)
    assert unmapped.outcome == "undetermined" and unmapped.reason == "train/acc, val/acc not logged"
    no_step = detect("grokking", GROKS.drop(columns=["step"]))
    assert no_step.outcome == "undetermined" and "no step column" in no_step.reason


def test_a_bad_threshold_key_or_name_is_a_one_line_config_error():
    with pytest.raises(ConfigError) as bad_key:
        detect("grokking", GROKS, {"phenomenon": {"name": "grokking", "min_delay": 3}})
    message = str(bad_key.value)
    assert message.startswith("unknown key 'phenomenon.min_delay' (did you mean "
                              "'phenomenon.min_delay_ratio'?)") and "\n" not in message
    with pytest.raises(ConfigError, match="phenomenon.min_delay_ratio: Input should be"):
        detect("grokking", GROKS, {"phenomenon": {"min_delay_ratio": 0.5}})
    with pytest.raises(ConfigError, match="unknown phenomenon 'grokkin' \\(did you mean"):
        detect("grokkin", GROKS)


def test_verdicts_have_three_outcomes_and_detected_only_for_detected():
    cases = {"detected": GROKS, "not_detected": grokking_table("spike"),
             "undetermined": GROKS.drop(columns=["val/acc"])}
    for expected, frame in cases.items():
        d = detect("grokking", frame).to_dict()
        assert d["outcome"] == expected and d["detected"] is (expected == "detected")
        assert d["reason"] and "\n" not in d["reason"] and json.dumps(d)


@pytest.mark.parametrize("name", PHENOMENA.names())
def test_each_phenomenon_carries_its_key_metric_panels_and_figures(name):
    cls = PHENOMENA.get(name)
    detector = build(name)
    verdict_fields = {f.name for f in fields(cls.verdict_type)} | {"detected"}
    assert detector.key_metric.field in verdict_fields and detector.key_metric.goal in (
        "maximize", "minimize")
    assert detector.key_metric.name == f"verdict/{detector.key_metric.field}"
    assert set(detector.interval_fields) <= verdict_fields
    assert set(detector.field_ranges) <= verdict_fields
    assert all(low < high for low, high in detector.field_ranges.values())
    assert detector.panels and all(isinstance(p, Panel) for p in detector.panels)
    json.dumps([p.to_dict() for p in detector.panels])  # plain data
    assert type(detector).figures is not Detector.figures


def test_the_wandb_sweep_ranks_by_the_phenomenon_key_metric(tmp_path):
    for name, metric in (("grokking", ("verdict/delay_ratio", "maximize")),
                         ("stepwise", ("verdict/spectral_steps", "maximize")),
                         ("scaling_law", ("verdict/error_trained", "minimize"))):
        spec = sweep_spec(load_experiment(name), tmp_path, name, [])
        assert (spec["metric"]["name"], spec["metric"]["goal"]) == metric


def test_phenomena_import_neither_upward_nor_matplotlib():
    code = ("import sys, dynamics_lab.phenomena, dynamics_lab.phenomena.battery, "
            "dynamics_lab.metric_names, dynamics_lab.thresholds; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'torch') "
            "or m.startswith(('dynamics_lab.report', 'dynamics_lab.tracking', "
            "'dynamics_lab.sweep', 'dynamics_lab.train', 'dynamics_lab.config'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    for path in PHENOMENA_DIR.rglob("*.py"):
        text = path.read_text()
        assert "dynamics_lab.report" not in text and "dynamics_lab.tracking" not in text, path


BUILT_IN = sorted(p.name for p in PHENOMENA_DIR.iterdir() if (p / "__init__.py").is_file())


def test_the_built_in_phenomena_are_the_folders_and_every_folder_is_registered():
    registered = {name: PHENOMENA.get(name).__module__.split(".") for name in PHENOMENA.names()}
    folders = {name: parts[2] for name, parts in registered.items()
               if parts[:2] == ["dynamics_lab", "phenomena"]}
    assert sorted(set(folders.values())) == BUILT_IN
    assert all(folder == name for name, folder in folders.items())


@pytest.mark.parametrize("name", BUILT_IN)
def test_each_phenomenon_folder_is_self_contained(name):
    """Adding a phenomenon is its folder (and an experiment YAML): the battery finds its cases
    through the registry, and no code outside phenomenon folders names it. A phenomenon may build
    on another one's detector (eos_quadratic on edge_of_stability): that import is in the
    derived folder, so the base stays one folder that nothing shared knows of."""
    cases = PHENOMENA.get(name).cases()
    assert cases and {c.phenomenon for c in cases} == {name}
    assert (PHENOMENA_DIR / name / "cases.py").is_file()
    assert [c.id for c in all_cases([name])] == [c.id for c in cases]
    assert {c.id for c in cases} <= {c.id for c in all_cases()}
    pattern = re.compile(rf"phenomena[./]{name}\b")
    naming = []
    for path in PACKAGE.rglob("*.py"):
        inside = path.relative_to(PHENOMENA_DIR).parts if PHENOMENA_DIR in path.parents else ()
        if len(inside) > 1 and inside[0] in BUILT_IN:
            continue  # a phenomenon folder: its own, or one that builds on this one
        naming += [f"{path.relative_to(PACKAGE.parent)}:{i}" for i, line in
                   enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert not naming, f"{name} is named outside its folder: {naming}"


def test_verdicts_across_seeds_count_outcomes_and_give_t_intervals():
    rows = []
    for lr, ratios in ((0.1, [0.9, 0.95, 1.0]), (0.2, [0.4, None, 0.8])):
        for seed, ratio in enumerate(ratios):
            outcome = ("undetermined" if ratio is None else
                       "detected" if ratio >= 0.5 else "not_detected")
            rows.append({"optim.lr": lr, "seed": seed, "status": "completed",
                         "verdict/outcome": outcome, "verdict/fraction_within": ratio,
                         "verdict/step_times": [10 * (seed + 1), None]})
    rows.append({"optim.lr": 0.2, "seed": 3, "status": "failed"})
    cells = seed_cells(pd.DataFrame(rows), ["optim.lr"], ("fraction_within", "step_times"))
    first, second = cells.iloc[0], cells.iloc[1]
    assert first["seeds"] == "3/3" and second["seeds"] == "1/3" and second["runs"] == 4
    assert (second["detected"], second["not_detected"], second["undetermined"]) == (1, 1, 1)
    half = stats.t.ppf(0.975, 2) * np.std([0.9, 0.95, 1.0], ddof=1) / np.sqrt(3)
    assert first["fraction_within_mean"] == pytest.approx(0.95)
    assert first["fraction_within_ci_low"] == pytest.approx(0.95 - half)
    assert first["step_times[0]_mean"] == pytest.approx(20.0)  # lists: one column per item
    assert np.isnan(first["step_times[1]_mean"])
    text = format_cells(cells, ["optim.lr"], ("fraction_within",))
    assert f"lr=0.1: 3/3 seeds detected; fraction_within 0.95 [{0.95 - half:.3g}," in text
    assert "lr=0.2: 1/3 seeds detected (1 undetermined)" in text


def test_an_interval_across_seeds_stays_within_the_fields_range():
    # Three seeds' fractions 0.9, 0.95, 1.0: the t-interval's upper end is 1.07, a fraction no
    # run can have; cut to the detector's range it ends at 1. Step times cannot go below 0.
    rows = [{"optim.lr": 0.1, "seed": seed, "status": "completed", "verdict/outcome": "detected",
             "verdict/fraction_within": value, "verdict/step_times": [steps]}
            for seed, (value, steps) in enumerate([(0.9, 5), (0.95, 5), (1.0, 400)])]
    table = pd.DataFrame(rows)
    fields = ("fraction_within", "step_times")
    raw = seed_cells(table, ["optim.lr"], fields).iloc[0]
    assert raw["fraction_within_ci_high"] > 1 and raw["step_times[0]_ci_low"] < 0
    ranges = build("edge_of_stability").field_ranges | build("stepwise").field_ranges
    cut = seed_cells(table, ["optim.lr"], fields, ranges).iloc[0]
    assert cut["fraction_within_ci_high"] == 1.0 and cut["step_times[0]_ci_low"] == 0.0
    assert cut["fraction_within_ci_low"] == raw["fraction_within_ci_low"]
    assert cut["step_times[0]_ci_high"] == raw["step_times[0]_ci_high"]


def test_every_experiment_is_named_for_the_phenomenon_it_judges():
    from dynamics_lab.config import list_experiments

    names = list_experiments()
    assert sorted(names) == PHENOMENA.names()
    for name in names:
        for profile in ("quick", "full"):
            assert load_experiment(name, profile).phenomenon.name == name
    results = Path(__file__).parents[1] / "results"
    assert {p.name for p in results.iterdir() if p.is_dir()} <= set(names)
