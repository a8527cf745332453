"""Plugins without forking: a measurement in a file outside the package runs in a sweep;
entry points register classes; a broken plugin is one line."""

import json
import textwrap

import pandas as pd
import pytest
from typer.testing import CliRunner

from dynamics_lab.cli import app
from dynamics_lab.config import load_experiment
from dynamics_lab.registry import Registry
from dynamics_lab.schema import ConfigError

PLUGIN = '''
"""A user's measurement, living outside dynamics_lab."""
from typing import Literal

import torch

from dynamics_lab.measure import Measurement, MeasurementConfig
from dynamics_lab.registry import MEASUREMENTS


class WeightNormConfig(MeasurementConfig):
    name: Literal["weight_norm"] = "weight_norm"


@MEASUREMENTS.register("weight_norm")
class WeightNorm(Measurement):
    """The L2 norm of all trainable parameters."""

    Config = WeightNormConfig
    prefix = "weights"

    def measure(self, trainer, pl_module, model):
        norm = torch.sqrt(sum(p.detach().pow(2).sum() for p in model.parameters()))
        return {"weights/norm": float(norm)}
'''


@pytest.fixture(scope="module")
def plugin_file(tmp_path_factory):
    # One file per test process: a second file registering the same name would be refused.
    path = tmp_path_factory.mktemp("user_code") / "my_measures.py"
    path.write_text(textwrap.dedent(PLUGIN))
    return path


def test_plugin_measurement_runs_in_a_two_worker_sweep(plugin_file, runs_root, tiny_overrides):
    args = ["run", "grokking", "--sweep", "--workers", "2", "--plugin", str(plugin_file)]
    for o in [*tiny_overrides, "measure.weight_norm={every: 10}", "sweep.seeds=[0, 1]",
              "sweep.grid={}"]:
        args += ["--set", o]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    metrics = sorted(runs_root.rglob("metrics.csv"))
    assert len(metrics) == 2
    for path in metrics:
        table = pd.read_csv(path)
        norms = table["weights/norm"].dropna()
        assert len(norms) >= 4 and (norms > 0).all()
        config = (path.parent / "config.yaml").read_text()
        assert str(plugin_file) in config  # workers import the same file, by absolute path
    assert all(json.loads(p.read_text())["status"] == "completed"
               for p in runs_root.rglob("meta.json"))


def test_relative_plugin_path_is_made_absolute(plugin_file, monkeypatch):
    monkeypatch.chdir(plugin_file.parent)
    config = load_experiment("grokking", overrides=["plugins=[my_measures.py]",
                                                    "measure.weight_norm={}"])
    assert config.plugins == [str(plugin_file.resolve())]


@pytest.mark.parametrize("plugin,message", [
    ("no_such_module_xyz", "plugin 'no_such_module_xyz' cannot be imported"),
    ("/nonexistent/dir/plugin.py", "plugin file not found"),
])
def test_missing_plugin_is_a_one_line_config_error(plugin, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_experiment("grokking", overrides=[f"plugins=[{plugin}]"])
    assert "\n" not in str(info.value)


def test_plugin_that_raises_names_itself(tmp_path):
    bad = tmp_path / "broken.py"
    bad.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ConfigError, match=r"plugins: plugin file .*broken.py failed to import: "
                                          r"RuntimeError: boom"):
        load_experiment("grokking", overrides=[f"plugins=[{bad}]"])


def test_entry_point_class_is_registered_under_its_name(tmp_path, monkeypatch):
    package = tmp_path / "site"
    (package / "widgetpkg").mkdir(parents=True)
    (package / "widgetpkg" / "__init__.py").write_text("class Sprocket:\n    pass\n")
    info = package / "widgetpkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: widgetpkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[dynamics_lab.widgets]\nsprocket = widgetpkg:Sprocket\n")
    monkeypatch.syspath_prepend(str(package))
    widgets = Registry("widget", plural="widgets")
    assert widgets.entry_point_group == "dynamics_lab.widgets"
    assert widgets.get("sprocket").__name__ == "Sprocket"
    assert widgets.names() == ["sprocket"]


def test_the_registered_name_is_written_once_and_the_config_takes_it():
    from typing import Literal

    from dynamics_lab.schema import NamedSection, validate_section

    registry = Registry("widget")

    class WidgetConfig(NamedSection):
        size: int = 1

    @registry.register("widget")
    class Widget:
        Config = WidgetConfig

    assert WidgetConfig().name == "widget"
    assert validate_section(WidgetConfig, {"name": "widget", "size": 2}, "widget").size == 2
    with pytest.raises(ConfigError, match="widget.name: Input should be 'widget'"):
        validate_section(WidgetConfig, {"name": "gadget"}, "widget")

    class Bigger(WidgetConfig):  # a subclass registered under its own name takes that one
        pass

    registry.register("big_widget")(type("BigWidget", (), {"Config": Bigger}))
    assert Bigger().name == "big_widget" and WidgetConfig().name == "widget"

    class Declared(NamedSection):
        name: Literal["declared"] = "declared"

    with pytest.raises(ValueError, match="Declared.name admits 'declared', not 'other'"):
        registry.register("other")(type("Other", (), {"Config": Declared}))
    with pytest.raises(ValueError, match="already the Config of 'widget'"):
        registry.register("again")(type("Again", (), {"Config": WidgetConfig}))
