"""``issm-emulator checkpoints``, ``register`` and ``domain`` (issm_emulator.solvers.emulator.cli)."""

from __future__ import annotations

import json

import torch
from click.testing import CliRunner

from issm_emulator import weights
from issm_emulator.cli import main
from issm_emulator.learning.train import train
from issm_emulator.solvers.emulator import catalog
from issm_emulator.solvers.emulator.checkpoint import load_checkpoint

TINY = {"hidden": 8, "layers": 1, "batch_size": 2, "progress": False}


def test_domain_register_and_list(ens, tmp_path, monkeypatch):
    bundled = tmp_path / "bundled"
    bundled.mkdir()
    monkeypatch.setattr(weights, "bundled_dir", lambda: bundled)
    monkeypatch.setenv(weights.CACHE_ENV_VAR, str(tmp_path / "cache"))
    monkeypatch.setenv(catalog.CHECKPOINTS_ENV_VAR, str(tmp_path / "user"))
    ck = train(ens, model="gcn", mode="step", out=tmp_path / "sq.pt", epochs=1, calibrate_indicator=False, **TINY)
    # an older checkpoint: no domain, no content hash
    raw = torch.load(ck, weights_only=True)
    del raw["manifest"]["domain"], raw["content_sha256"]
    torch.save(raw, tmp_path / "old.pt")
    runner = CliRunner()
    res = runner.invoke(main, ["register", str(tmp_path / "old.pt")])
    assert res.exit_code == 1 and "no content hash" in res.output
    res = runner.invoke(main, ["domain", str(tmp_path / "old.pt"), "--data", str(ens)])
    assert res.exit_code == 0, res.output
    assert "edges" in res.output and "indicator: e = exp(" in res.output
    fixed = load_checkpoint(tmp_path / "old.pt")
    assert fixed.domain["mesh_sha256"] == load_checkpoint(ck).domain["mesh_sha256"] and fixed.indicator
    res = runner.invoke(main, ["register", str(tmp_path / "old.pt"), "--name", "square-gcn"])
    assert res.exit_code == 0 and (tmp_path / "user" / "square-gcn.pt").is_file(), res.output
    res = runner.invoke(main, ["checkpoints"])
    assert res.exit_code == 0 and "square-gcn [registered] gcn step" in res.output
    assert "forcing melt_rate: [" in res.output and "m/yr" in res.output
    listed = json.loads(runner.invoke(main, ["checkpoints", "--json"]).output)
    assert [e["name"] for e in listed] == ["square-gcn"] and listed[0]["domain"]["edge_length"]
