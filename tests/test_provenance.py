"""Provenance: a run records the user's repository (where the command ran), every installed
distribution, each plugin's content hash, and sweep.json the user's command line; a dry run
prints the runs and their configs and writes nothing."""

import hashlib
import json
import subprocess
import sys

import pytest
import yaml
from conftest import TINY_GROKKING
from typer.testing import CliRunner

from dynamics_lab.cli import app
from dynamics_lab.tracking.provenance import plugin_hashes, repo_state

SETS = [x for o in TINY_GROKKING for x in ("--set", o)]


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), "-c", "user.email=a@b.c", "-c", "user.name=a",
                           *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def user_repo(tmp_path, monkeypatch):
    """The user's own project: a git repository with a plugin file, edited since its commit."""
    repo = tmp_path / "project"
    repo.mkdir()
    (repo / "my_plugin.py").write_text("VALUE = 1\n")
    git(repo, "init", "-q")
    git(repo, "add", "my_plugin.py")
    git(repo, "commit", "-q", "-m", "first")
    (repo / "my_plugin.py").write_text("VALUE = 2\n")  # dirty
    monkeypatch.chdir(repo)
    return repo


def test_a_run_records_the_users_repo_distributions_plugins_and_command(user_repo,
                                                                        monkeypatch):
    argv = ["dynlab", "run", "grokking", "--plugin", "my_plugin.py", *SETS]
    monkeypatch.setattr(sys, "argv", argv)
    result = CliRunner().invoke(app, argv[1:] + ["--out", str(user_repo / "runs")])
    assert result.exit_code == 0, result.output
    (meta_path,) = (user_repo / "runs").rglob("meta.json")
    meta = json.loads(meta_path.read_text())
    head = git(user_repo, "rev-parse", "HEAD")
    assert meta["user_git"] == {"root": str(user_repo.resolve()), "commit": head, "dirty": True}
    assert meta["git"]["commit"] != head  # the package's own checkout, beside it
    assert {"torch", "pandas", "wandb", "lightning"} <= set(meta["distributions"])
    assert len(meta["distributions"]) > 20
    (plugin,) = meta["plugins"].values()
    assert plugin["sha256"] == hashlib.sha256(b"my_plugin.py\0VALUE = 2\n").hexdigest()
    manifest = json.loads((meta_path.parent.parent / "sweep.json").read_text())
    (command,) = manifest["commands"]
    assert command["argv"] == argv and command["cwd"] == str(user_repo)
    assert command["user_git"]["commit"] == head


def test_plugin_hashes_change_with_the_content_and_name_a_missing_plugin(tmp_path):
    (tmp_path / "p.py").write_text("A = 1\n")
    first = plugin_hashes(["p.py", "json", "no_such_module_here"], tmp_path)
    (tmp_path / "p.py").write_text("A = 2\n")
    second = plugin_hashes(["p.py"], tmp_path)
    assert first["p.py"]["sha256"] != second["p.py"]["sha256"]
    assert first["json"]["sha256"] and len(first["json"]["files"]) > 1  # a package: all files
    assert first["no_such_module_here"] == {"files": [], "sha256": None}
    assert repo_state(tmp_path) is None  # not inside a git repository


def test_dry_run_and_print_config_write_nothing(tmp_path):
    out = tmp_path / "runs"
    result = CliRunner().invoke(app, ["run", "grokking", "--sweep", "--dry-run", "--out", str(out),
                                      "--set", "sweep.grid={optim.weight_decay: [0.0, 1.0]}",
                                      "--set", "sweep.seeds=[0, 1]"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert "4 run(s)" in lines[0] and "nothing written" in lines[0]
    assert [line.strip() for line in lines[1:]] == [
        "weight_decay=0.0,seed=0", "weight_decay=0.0,seed=1", "weight_decay=1.0,seed=0",
        "weight_decay=1.0,seed=1"]
    result = CliRunner().invoke(app, ["run", "grokking", "--print-config", "--out", str(out),
                                      "--set", "optim.lr=0.0123"])
    assert result.exit_code == 0, result.output
    config = yaml.safe_load(result.output.split("--- # seed=0\n", 1)[1])
    assert config["optim"]["lr"] == 0.0123 and config["name"] == "grokking"
    assert not out.exists()
    bad = CliRunner().invoke(app, ["run", "grokking", "--dry-run", "--set", "optim.lr=abc"])
    assert bad.exit_code == 2 and not out.exists()
