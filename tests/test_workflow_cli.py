"""The command line's polish: --version, shell completion, --plugin, a device this machine lacks,
and sweep workers that import the installed package whatever the current directory holds."""

import subprocess
import sys

import pytest
import torch
import yaml
from typer.testing import CliRunner

from dynamics_lab import __version__
from dynamics_lab.cli import app
from dynamics_lab.config import experiment_path
from dynamics_lab.sweep.launch import RunRequest, plan
from dynamics_lab.sweep.local import launch_local
from dynamics_lab.tracking.rundir import RunDir


def invoke(*args, **kwargs):
    return CliRunner().invoke(app, [str(a) for a in args], prog_name="dynlab", **kwargs)


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and result.output == f"dynlab {__version__}\n"


def test_shell_completion_is_enabled_and_completes_commands_and_experiments(monkeypatch):
    # Typer detects the parent shell; under `make` that is sh, which it does not support.
    # Its own switch makes `--show-completion SHELL` take the shell named here instead.
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    script = invoke("--show-completion", "bash")
    assert script.exit_code == 0 and "_DYNLAB_COMPLETE=complete_bash" in script.output
    assert "--install-completion" in invoke("--help").output

    def complete(words, cword):
        env = {"_DYNLAB_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": cword}
        return invoke(env=env).output.split()

    assert complete("dynlab re", "1") == ["report", "resume"]
    assert complete("dynlab run gro", "2") == ["grokking"]
    assert complete("dynlab dashboard edge_of", "2") == ["edge_of_stability"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("how", ["flag", "set", "yaml"])
def test_cuda_without_cuda_is_refused_before_anything_is_written(how, runs_root, tmp_path):
    if how == "flag":
        args = ["run", "grokking", "--device", "cuda"]
    elif how == "set":
        args = ["run", "grokking", "--sweep", "--set", "trainer.device=cuda"]
    else:
        raw = yaml.safe_load(experiment_path("grokking").read_text())
        raw["trainer"]["device"] = "cuda"
        path = tmp_path / "on_gpu.yaml"
        path.write_text(yaml.safe_dump(raw))
        args = ["run", str(path)]
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert result.output == ("error: trainer.device=cuda but no CUDA device is visible; valid "
                             "here: auto, cpu\n")
    assert not runs_root.exists()


def test_cuda_is_left_to_the_machine_that_trains_under_slurm(tmp_path):
    request = RunRequest("grokking", overrides=["sweep.slurm.cluster=local"], sweep=True,
                         out=tmp_path, launcher="slurm", device="cuda")
    planned = plan(request)  # the submit host may lack the GPU its nodes have
    assert planned.config.trainer.device == "cuda" and planned.run_dirs


def test_plugin_flag_adds_to_the_plugins_list_and_reaches_wandb_agents(tmp_path):
    plugin = tmp_path / "extra_measure.py"
    plugin.write_text("LOADED = True\n")
    planned = plan(RunRequest("grokking", sweep=True, out=tmp_path / "runs", launcher="wandb",
                              plugins=[str(plugin)]))
    assert planned.config.plugins == [str(plugin)]
    assert f'plugins=["{plugin}"]' in planned.overrides  # the agents' `dynlab agent-run --set`
    for run_dir in planned.run_dirs:
        assert RunDir(run_dir).config()["plugins"] == [str(plugin)]


FAKE_PACKAGE = "raise SystemExit('imported the dynamics_lab in the current directory')\n"


def test_sweep_workers_import_the_installed_package_not_one_in_the_cwd(tmp_path, monkeypatch,
                                                                      tiny_overrides):
    shadow = tmp_path / "checkout"
    (shadow / "dynamics_lab" / "train").mkdir(parents=True)
    for init in ("dynamics_lab/__init__.py", "dynamics_lab/train/__init__.py"):
        (shadow / init).write_text(FAKE_PACKAGE)
    (shadow / "dynamics_lab" / "train" / "worker.py").write_text(FAKE_PACKAGE)
    # The trap is real: a plain `python -m` from that directory imports the fake package.
    plain = subprocess.run([sys.executable, "-m", "dynamics_lab.train.worker"], cwd=shadow,
                           capture_output=True, text=True)
    assert "imported the dynamics_lab in the current directory" in plain.stderr

    planned = plan(RunRequest("grokking", overrides=tiny_overrides, out=tmp_path / "runs"))
    monkeypatch.chdir(shadow)
    statuses = launch_local([planned.run_dirs], workers=1, gpus=[])
    (run_dir,) = planned.run_dirs
    log = (run_dir / "stdout.log").read_text()
    assert statuses == {run_dir: "completed"}, log
    assert "current directory" not in log
