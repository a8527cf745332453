"""Nothing lost at the edges: a checkpoint is replaced atomically inside the run dir (a kill or a
full disk mid-write keeps the previous one), a resume checks the checkpoint and config.yaml
before it changes any file, and a run stopped any way (SIGHUP, a full disk, a crashed detector,
a lost or mangled meta.json) goes on from its last good checkpoint."""

import errno
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import lightning as L
import pandas as pd
import pytest
import torch
from conftest import one_line_error
from typer.testing import CliRunner

from dynamics_lab.cli import app
from dynamics_lab.config import load_experiment
from dynamics_lab.sweep import prepare_sweep, reopen_sweep, single
from dynamics_lab.tracking.checkpoint import checkpoint_step
from dynamics_lab.tracking.rundir import RunDir, Status
from dynamics_lab.train.runner import execute
from dynamics_lab.train.worker import run_one

TINY = ["task.p=23", "task.train_fraction=0.5", "model.embed_dim=8", "model.width=32",
        "trainer.max_steps=40", "trainer.eval_every=10", "trainer.log_every=10",
        "trainer.checkpoint_every=20", "logging.wandb=false"]
LONG = ["trainer.batch_size=32", "trainer.max_steps=600"]  # a signal lands mid-run


def quiet(*_):
    pass


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def prepared(root, *overrides):
    config = load_experiment("grokking", "quick", [*TINY, *overrides])
    return RunDir(prepare_sweep(config, [single(config)], root)[0])


def snapshot(path):
    return {p: p.read_bytes() for p in Path(path).rglob("*") if p.is_file()}



def steps(run):
    return pd.read_csv(run.metrics_path)["step"].tolist()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Completed tiny runs: `base` (seed 0), its `sibling` (seed 1, same shapes), and `other`
    (another experiment with another model, stopped at step 20)."""
    root = tmp_path_factory.mktemp("trained")
    runs = {"base": prepared(root / "base"), "sibling": prepared(root / "sibling", "seed=1"),
            "other": prepared(root / "other", "name=other", "model.width=16",
                              "trainer.max_steps=20")}
    for run in runs.values():
        assert execute(run, echo=quiet).status == Status.COMPLETED
    return runs


@pytest.fixture
def killed(trained, tmp_path):
    """A copy of `base` recorded `killed`: `dynlab resume` would continue it."""
    run = RunDir(shutil.copytree(trained["base"].path, tmp_path / "killed"))
    run.update_meta(status=Status.KILLED)
    run.verdict_path.unlink()
    return run


# -- checkpoints are replaced atomically, inside the run dir ------------------------------

INJECT = '''
import errno, os, signal


def inject(directory, action):
    """The second file written into `directory` gets half of its first write, then `action`:
    the same fault for os.write and os.sendfile (a copy from another filesystem)."""
    sessions, real_write, real_sendfile = [], os.write, os.sendfile

    def hit(fd):
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return False
        if not path.startswith(directory):
            return False
        if os.lseek(fd, 0, os.SEEK_CUR) == 0:
            sessions.append(path)
        return len(sessions) >= 2

    def write(fd, data):
        if hit(fd):
            real_write(fd, bytes(data)[: len(data) // 2])
            action()
        return real_write(fd, data)

    def sendfile(out, in_, offset, count):
        if hit(out):
            real_sendfile(out, in_, offset, count // 2)
            action()
        return real_sendfile(out, in_, offset, count)

    os.write, os.sendfile = write, sendfile
    return lambda: (setattr(os, "write", real_write), setattr(os, "sendfile", real_sendfile))
'''
namespace: dict = {}
exec(INJECT, namespace)
inject = namespace["inject"]


@pytest.fixture
def node_tmp(monkeypatch):
    """$TMPDIR on another filesystem (tmpfs), as on a cluster node; checked to stay empty."""
    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm")
    path = Path(f"/dev/shm/dynlab-test-{os.getpid()}-{time.monotonic_ns()}")
    path.mkdir()
    monkeypatch.setenv("TMPDIR", str(path))
    monkeypatch.setattr("tempfile.tempdir", str(path))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_kill_midway_through_a_checkpoint_write_keeps_the_previous_one(tmp_path, node_tmp):
    run = prepared(tmp_path / "s")
    script = INJECT + (
        "import sys\nfrom dynamics_lab.tracking.rundir import RunDir\n"
        "from dynamics_lab.train.runner import execute\n"
        "inject(sys.argv[1] + '/checkpoints', lambda: os.kill(os.getpid(), signal.SIGKILL))\n"
        "execute(RunDir(sys.argv[1]), echo=lambda *_: None)\n")
    proc = subprocess.run([sys.executable, "-c", script, str(run.path)], timeout=120,
                          capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert checkpoint_step(run.last_checkpoint) == 20, "the step-20 checkpoint is intact"
    assert not list(node_tmp.iterdir()), "nothing is written to (or left in) $TMPDIR"

    assert run_one(run.path, echo=quiet) == Status.COMPLETED  # the sweep's retry resumes it
    assert run.meta["resumed_at_steps"] == [20] and steps(run) == [0, 10, 20, 30, 40]
    assert sorted(p.name for p in run.checkpoint_dir.iterdir()) == ["last.ckpt"]


def test_a_full_disk_fails_the_run_in_one_line_and_keeps_the_good_checkpoint(tmp_path, node_tmp):
    run = prepared(tmp_path / "s")

    def no_space():
        raise OSError(errno.ENOSPC, "No space left on device")

    undo = inject(str(run.checkpoint_dir), no_space)
    try:
        result = execute(run, echo=quiet)
    finally:
        undo()
    meta = run.meta
    assert result.status == Status.FAILED and meta["status"] == "failed" and meta["ended"]
    assert "No space left on device" in meta["error"] and "\n" not in meta["error"]
    assert checkpoint_step(run.last_checkpoint) == 20
    assert sorted(p.name for p in run.checkpoint_dir.iterdir()) == ["last.ckpt"]
    assert not list(node_tmp.iterdir())

    echoed = []
    assert run_one(run.path, echo=echoed.append) == Status.COMPLETED  # space freed: go on
    assert run.meta["resumed_at_steps"] == [20] and steps(run) == [0, 10, 20, 30, 40]
    assert any("resuming" in line for line in echoed)


def test_a_temp_file_left_by_a_killed_write_is_cleared_on_resume(killed):
    stray = killed.checkpoint_dir / ".last.ckpt.12345.deadbeef.tmp"
    stray.write_bytes(b"half a checkpoint")
    assert execute(killed, resume=True, echo=quiet).status == Status.COMPLETED
    assert not stray.exists()


# -- a resume checks before it cuts -------------------------------------------------------


def test_a_checkpoint_from_another_experiment_is_refused_before_anything_changes(
        killed, trained):
    shutil.copy(trained["other"].last_checkpoint, killed.last_checkpoint)
    before = snapshot(killed.path)
    one_line_error(invoke("resume", killed.path), "last.ckpt")
    assert snapshot(killed.path) == before, "metrics.csv and meta.json untouched"


def test_a_sibling_runs_checkpoint_is_refused(killed, trained):
    shutil.copy(trained["sibling"].last_checkpoint, killed.last_checkpoint)
    before = snapshot(killed.path)
    one_line_error(invoke("resume", killed.path), "another run")
    assert snapshot(killed.path) == before


def test_a_checkpoint_past_max_steps_is_refused(killed):
    checkpoint = torch.load(killed.last_checkpoint, weights_only=False)
    checkpoint["global_step"] = 60
    torch.save(checkpoint, killed.last_checkpoint)
    before = snapshot(killed.path)
    one_line_error(invoke("resume", killed.path), "60", "max_steps")
    assert snapshot(killed.path) == before


def test_an_edited_config_yaml_is_refused_on_resume(killed):
    text = killed.config_path.read_text()
    killed.config_path.write_text(text.replace("lr: 0.003", "lr: 0.03"))
    assert killed.config_path.read_text() != text
    before = snapshot(killed.path)
    one_line_error(invoke("resume", killed.path), "config.yaml", "--set")
    assert snapshot(killed.path) == before


def test_a_non_utf8_config_yaml_is_one_line_on_resume(killed):
    killed.config_path.write_bytes(killed.config_path.read_bytes() + b"# caf\xe9\n")
    before = snapshot(killed.path)
    one_line_error(invoke("resume", killed.path), "config.yaml")
    assert snapshot(killed.path) == before


def test_resume_set_max_steps_extends_a_finished_run_and_records_it(trained, tmp_path):
    run = RunDir(shutil.copytree(trained["base"].path, tmp_path / "run"))
    result = invoke("resume", run.path, "--set", "trainer.max_steps=60")
    assert result.exit_code == 0, result.output
    meta = run.meta
    assert meta["status"] == "completed" and meta["resumed_at_steps"] == [40]
    assert meta["resume_overrides"] == [{"at_step": 40, "set": {"trainer.max_steps": 60}}]
    assert run.config()["trainer"]["max_steps"] == 60
    assert steps(run) == [0, 10, 20, 30, 40, 50, 60]
    assert checkpoint_step(run.last_checkpoint) == 60


@pytest.mark.parametrize("override, words", [
    ("optim.lr=0.1", ["optim.lr", "trainer.max_steps"]),
    ("trainer.max_steps=30", ["30", "step 40"]),
    ("trainer.max_steps=-5", ["trainer.max_steps"]),
])
def test_resume_set_refuses_what_would_mix_two_configs(killed, override, words):
    before = snapshot(killed.path)
    one_line_error(invoke("resume", killed.path, "--set", override), *words)
    assert snapshot(killed.path) == before


# -- stopped any way, the run goes on -----------------------------------------------------


@pytest.fixture
def hup_ignored():
    """Without our handler SIGHUP would end pytest itself; a no-op stands in as the default."""
    previous = signal.signal(signal.SIGHUP, lambda *_: None)
    yield
    signal.signal(signal.SIGHUP, previous)


def test_sighup_stops_a_run_like_sigterm(tmp_path, hup_ignored):
    run = prepared(tmp_path / "s", *LONG)

    def hang_up():
        deadline = time.time() + 120
        while not run.last_checkpoint.exists() and time.time() < deadline:
            time.sleep(0.005)
        os.kill(os.getpid(), signal.SIGHUP)

    threading.Thread(target=hang_up, daemon=True).start()
    result = execute(run, echo=quiet)
    meta = run.meta
    assert result.status == Status.KILLED and meta["ended"] and "SIGHUP" in meta["error"]
    assert 20 <= checkpoint_step(run.last_checkpoint) < 600


def test_sighup_on_a_local_sweep_stops_it_like_ctrl_c(hup_ignored):
    from dynamics_lab.sweep.local import launch_local

    def hung_up(job, env):  # the terminal closes while a worker runs
        os.kill(os.getpid(), signal.SIGHUP)
        time.sleep(1.5)
        return {}

    with pytest.raises(KeyboardInterrupt):
        launch_local([[Path("a")]], 1, run=hung_up)


def test_an_overflowing_step_size_diverges_with_a_verdict(tmp_path):
    run = prepared(tmp_path / "s", "optim.lr=1e308")
    result = execute(run, echo=quiet)
    assert result.status == Status.DIVERGED, run.meta.get("error")
    assert run.verdict_path.exists() and result.verdict["phenomenon"] == "grokking"


def test_a_run_whose_detector_failed_is_only_judged_again(trained, tmp_path, monkeypatch):
    run = RunDir(shutil.copytree(trained["base"].path, tmp_path / "run"))
    run.verdict_path.unlink()
    run.update_meta(status=Status.FAILED, error="verdict: ZeroDivisionError: boom")
    before = run.metrics_path.read_bytes()

    def no_training(*args, **kwargs):
        raise AssertionError("a run that trained to the end is not trained again")

    monkeypatch.setattr(L.Trainer, "fit", no_training)
    assert run_one(run.path, echo=quiet) == Status.COMPLETED
    assert run.verdict_path.exists() and run.metrics_path.read_bytes() == before
    assert "attempts" not in run.meta


def test_a_fresh_start_says_why(killed):
    killed.last_checkpoint.write_bytes(b"not a checkpoint")
    echoed = []
    assert run_one(killed.path, echo=echoed.append) == Status.COMPLETED
    assert any("afresh" in line and "last.ckpt" in line for line in echoed), echoed
    assert "last.ckpt" in killed.meta["restarted"]


@pytest.mark.parametrize("content", ["{\"status\": \"compl", "[]", "null"])
def test_resume_sweep_rebuilds_a_mangled_meta_json(trained, tmp_path, content):
    config = load_experiment("grokking", "quick", TINY)
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    shutil.copy(trained["base"].path.parent / "sweep.json", sweep / "sweep.json")
    run = RunDir(shutil.copytree(trained["base"].path, sweep / trained["base"].path.name))
    run.meta_path.write_text(content)
    dirs, unrecoverable = reopen_sweep(config, [single(config)], sweep)
    assert dirs == [run.path] and not unrecoverable
    assert run.meta["status"] == "killed" and (run.path / "meta.json.corrupt").exists()
    assert run_one(run.path, echo=quiet) == Status.COMPLETED
    assert run.meta["resumed_at_steps"] == [40]


def test_resume_sweep_on_the_command_line_goes_on_past_a_truncated_meta_json(trained, tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    shutil.copy(trained["base"].path.parent / "sweep.json", sweep / "sweep.json")
    run = RunDir(shutil.copytree(trained["base"].path, sweep / trained["base"].path.name))
    run.meta_path.write_text(run.meta_path.read_text()[:40])
    result = invoke("run", "grokking", *[a for o in TINY for a in ("--set", o)],
                    "--resume-sweep", sweep)
    assert result.exit_code == 0, result.output
    assert run.meta["status"] == "completed"


# -- one line, nothing touched ------------------------------------------------------------


@pytest.mark.parametrize("name, content", [("meta.json", "[]"), ("meta.json", "null"),
                                           ("verdict.json", "[]"), ("verdict.json", "null"),
                                           ("meta.json", b"\xff\xfe{}")])
def test_show_names_a_mangled_json_file(trained, tmp_path, name, content):
    run = RunDir(shutil.copytree(trained["base"].path, tmp_path / "run"))
    target = run.path / name
    target.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = snapshot(run.path)
    one_line_error(invoke("show", run.path), name)
    assert snapshot(run.path) == before


@pytest.mark.parametrize("content", ["[]", "null"])
def test_resume_names_a_mangled_meta_json_and_touches_nothing(killed, content):
    killed.meta_path.write_text(content)
    before = snapshot(killed.path)
    one_line_error(invoke("resume", killed.path), "meta.json")
    assert snapshot(killed.path) == before


def test_a_lock_that_is_a_directory_is_one_line(killed):
    killed.lock_path.mkdir()
    old = time.time() - 3600  # an old one, not a lock being written right now
    os.utime(killed.lock_path, (old, old))
    before = snapshot(killed.path)
    one_line_error(invoke("resume", killed.path), ".lock")
    assert snapshot(killed.path) == before and killed.lock_path.is_dir()


def test_a_run_dir_deleted_mid_run_is_one_line(runs_root, monkeypatch):
    class Vandal(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step >= 10:
                shutil.rmtree(trainer.default_root_dir, ignore_errors=True)

    monkeypatch.setattr("dynamics_lab.train.runner.build_measurements", lambda config: [Vandal()])
    result = invoke("run", "grokking", *[a for o in TINY for a in ("--set", o)])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert lines[-1].startswith("error:") and "deleted" in lines[-1], result.output
    assert "Traceback" not in result.output and len(lines) == 2
    assert not list(runs_root.rglob("meta.json")), "the deleted run dir is not recreated"
