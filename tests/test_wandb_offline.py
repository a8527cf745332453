"""The W&B path, offline: run id in meta.json, verdict in the summary, sweep group, sync hint."""

import json

import pandas as pd
import pytest
from typer.testing import CliRunner
from wandb_records import OfflineRun

from dynamics_lab.cli import app


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc login
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))


def test_offline_run_records_id_verdict_and_sync_hint(offline, tmp_path, tiny_overrides):
    sets = [x for o in tiny_overrides for x in ("--set", o)]
    result = CliRunner().invoke(app, ["run", "grokking", "--wandb", "--out", str(tmp_path / "runs"),
                                      *sets])
    assert result.exit_code == 0, result.output
    assert "wandb sync" in result.output
    run = next((tmp_path / "runs").rglob("meta.json")).parent
    meta = json.loads((run / "meta.json").read_text())
    assert meta["wandb_id"] and meta["wandb_offline"] is True
    offline_runs = list(run.rglob(f"offline-run-*-{meta['wandb_id']}"))
    assert offline_runs, "the offline W&B run lives in the run directory"
    # Offline runs keep summary and history in the run's protobuf log; strings appear verbatim.
    record = next(offline_runs[0].glob("*.wandb")).read_bytes()
    verdict = json.loads((run / "verdict.json").read_text())
    for text in ("verdict/summary", verdict["summary"], "verdict/detected", "val/acc",
                 "trainer/global_step", "grokking", run.parent.name):  # group = sweep id
        assert text.encode() in record, text


def test_no_wandb_flag_keeps_it_off(offline, tmp_path, tiny_overrides):
    sets = [x for o in tiny_overrides for x in ("--set", o)]
    result = CliRunner().invoke(app, ["run", "grokking", "--no-wandb", "--out",
                                      str(tmp_path / "runs"), *sets])
    assert result.exit_code == 0
    meta = json.loads(next((tmp_path / "runs").rglob("meta.json")).read_text())
    assert "wandb_id" not in meta


def test_a_netrc_login_counts_for_the_host_wandb_talks_to(offline, tmp_path, monkeypatch):
    from dynamics_lab.tracking.wandb import has_login

    home = tmp_path / "home"
    home.mkdir()
    assert not has_login()
    (home / ".netrc").write_text("machine wandb.example.org\n  login user\n  password k\n")
    (home / ".netrc").chmod(0o600)
    assert not has_login()  # a login for another host is not a W&B login
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.org")
    assert has_login()


def test_every_ensemble_member_is_its_own_wandb_run(offline, tmp_path, tiny_overrides):
    sets = [x for o in tiny_overrides for x in ("--set", o)]
    result = CliRunner().invoke(app, ["run", "grokking", "--wandb", "--ensemble", "2", "--out",
                                      str(tmp_path / "runs"), *sets,
                                      "--set", "measure.hessian={every: 20, probe_size: 32}"])
    assert result.exit_code == 0, result.output
    members = sorted(p.parent for p in (tmp_path / "runs").rglob("meta.json"))
    ids = [json.loads((m / "meta.json").read_text())["wandb_id"] for m in members]
    assert len(members) == 2 and len(set(ids)) == 2
    for member, run_id in zip(members, ids):
        run = OfflineRun(member)
        assert run.run.run_id == run_id and run.run.run_group == member.parent.name
        logged = {r["trainer/global_step"]: r["hessian/lambda_max"] for r in run.history
                  if "hessian/lambda_max" in r}
        local = pd.read_csv(member / "metrics.csv").dropna(subset=["hessian/lambda_max"])
        assert logged == dict(zip(local["step"], local["hessian/lambda_max"]))  # its own values
        assert run.summary["verdict/summary"] == json.loads(
            (member / "verdict.json").read_text())["summary"]
