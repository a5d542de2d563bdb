"""The main job (``issm-emulator demo`` / :func:`issm_emulator.demo.run_demo`) at tiny size, offline.

The Pine Island data come from inside the package (``ISSM_EMULATOR_DATA_DIR`` points at an empty folder,
the weights cache too); the emulator runs a tiny EGCN checkpoint built here whose weights are all zero, so
its velocity is the output normaliser's mean (plus the Dirichlet values): a stable, deterministic
stand-in for trained weights whose errors against fem are large and non-zero.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from issm_emulator.cli import main
from issm_emulator.demo import compare_runs, run_demo

RES = 10e3  # 182 vertices
YEARS = 0.5


@pytest.fixture()
def offline(tmp_path, monkeypatch):
    """Empty data and weights caches and no network URL: only the package's own files can be used."""
    data, wcache = tmp_path / "issm-data", tmp_path / "weights-cache"
    data.mkdir()
    wcache.mkdir()
    monkeypatch.setenv("ISSM_EMULATOR_DATA_DIR", str(data))
    monkeypatch.setenv("ISSM_EMULATOR_WEIGHTS_DIR", str(wcache))
    monkeypatch.setenv("ISSM_EMULATOR_WEIGHTS_URL", "http://127.0.0.1:9/")  # nothing listens there
    return data


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory):
    """A tiny EGCN step checkpoint (hidden 8, 2 layers) with normalisers fitted on the 10 km Pine Island
    state and NaN weights: its rollout diverges at the first step."""
    from issm_emulator.issm.adapter import read_model
    from issm_emulator.scenarios.pine_island import pine_island
    from tests.test_rollout import make_checkpoint

    d = tmp_path_factory.mktemp("demo_ckpt")
    state = read_model(pine_island(RES, 5.0, years=YEARS), "Transient")
    return make_checkpoint(d / "egcn-step-random.pt", "egcn", "step", state, nan=True)


@pytest.fixture(scope="module")
def zero_checkpoint(random_checkpoint):
    """The NaN checkpoint with every weight set to zero (stable)."""
    import torch

    from issm_emulator.solvers.emulator.checkpoint import load_checkpoint, save_checkpoint

    ck = load_checkpoint(random_checkpoint)
    with torch.no_grad():
        for p in ck.model.parameters():
            p.zero_()
    return save_checkpoint(random_checkpoint.parent / "egcn-step-zero.pt", ck.model, ck.manifest,
                           ck.input_normalizer, ck.output_normalizer)


def _read(out):
    with xr.open_dataset(out / "pine_island_demo.nc", decode_times=False) as ds:
        return ds.load()


def test_run_demo_writes_and_compares(offline, zero_checkpoint, tmp_path):
    lines: list[str] = []
    out = tmp_path / "demo_out"
    res = run_demo(out, years=YEARS, resolution=RES, checkpoint=zero_checkpoint, melt_rate=5.0,
                   output_every=0.25, echo=lines.append)
    assert not any(offline.iterdir()), "the demo wrote into the data cache: it must use the bundled data"
    assert res.vertices == 182
    for name in ("netcdf", "thickness", "speed", "ice_volume", "summary"):
        assert res.files[name].is_file() and res.files[name].stat().st_size > 0
    for png in ("thickness.png", "speed.png", "ice_volume.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    ds = _read(out)
    assert list(ds["solver"].values) == ["fem", "egcn"]
    assert ds.sizes["vertex"] == 182
    # outputs every 3 monthly steps, plus the first and the last step (ISSM's rule)
    np.testing.assert_allclose(ds["time"].values, [1 / 12, 0.25, 0.5], rtol=1e-9)
    # the metrics recomputed from the file
    h = ds["Thickness"].isel(time=-1).values
    rmse_h = float(np.sqrt(np.mean((h[1] - h[0]) ** 2)))
    assert res.metrics["thickness_rmse_m"] == pytest.approx(rmse_h, rel=1e-9)
    assert res.metrics["thickness_rmse_m"] > 0.0
    vx, vy = ds["Vx"].isel(time=-1).values, ds["Vy"].isel(time=-1).values
    rmse_u = float(np.sqrt(np.mean((vx[1] - vx[0]) ** 2 + (vy[1] - vy[0]) ** 2)))
    assert res.metrics["velocity_rmse_myr"] == pytest.approx(rmse_u, rel=1e-9)
    vol = ds["IceVolume"].isel(time=-1).values
    assert res.metrics["ice_volume_diff_pct"] == pytest.approx(100 * (vol[1] - vol[0]) / vol[0], rel=1e-9)
    assert res.speedup == pytest.approx(res.wall_fem_s / res.wall_emulator_s)
    assert res.checkpoint == zero_checkpoint

    text = "\n".join(lines)
    assert (out / "summary.txt").read_text().startswith(lines[0])
    assert "182 vertices" in text
    m = re.search(r"speed-up of egcn over fem: x([0-9.]+)", text)
    assert m and float(m.group(1)) == pytest.approx(round(res.speedup, 1))
    assert f"thickness RMSE {res.metrics['thickness_rmse_m']:.2f} m" in text
    assert "ice volume: fem" in text


def test_compare_runs_identical_runs_have_zero_error(offline, tmp_path):
    import issm_emulator
    from issm_emulator.scenarios.pine_island import pine_island

    md = pine_island(RES, 5.0, years=1 / 6)
    issm_emulator.solve(md, "Transient", solver="fem")
    ds = issm_emulator.to_xarray(md)
    m = compare_runs(ds, ds)
    assert m["thickness_rmse_m"] == 0.0 and m["velocity_rmse_myr"] == 0.0 and m["ice_volume_diff_pct"] == 0.0
    shifted = ds.copy()
    shifted["Thickness"] = ds["Thickness"] + 2.0
    assert compare_runs(ds, shifted)["thickness_rmse_m"] == pytest.approx(2.0)


def test_demo_without_weights_runs_fem_and_says_how(offline, tmp_path, monkeypatch):
    from issm_emulator import weights

    empty = tmp_path / "no-bundled-weights"
    empty.mkdir()
    monkeypatch.setattr(weights, "bundled_dir", lambda: empty)
    lines: list[str] = []
    res = run_demo(tmp_path / "out", years=1 / 6, resolution=RES, maps=False, echo=lines.append)
    text = "\n".join(lines)
    assert "No EGCN weights available" in text and "issm-emulator fetch egcn-step-" in text
    assert "Running fem only" in text
    assert res.wall_emulator_s is None and res.speedup is None and res.metrics == {}
    ds = _read(tmp_path / "out")
    assert list(ds["solver"].values) == ["fem"]
    assert math.isfinite(res.wall_fem_s) and np.all(np.isfinite(ds["Thickness"].values))


def test_demo_with_a_diverging_network_keeps_the_fem_results(offline, random_checkpoint, tmp_path):
    lines: list[str] = []
    res = run_demo(tmp_path / "out", years=YEARS, resolution=RES, checkpoint=random_checkpoint, melt_rate=5.0,
                   maps=False, echo=lines.append)
    text = "\n".join(lines)
    assert "The EGCN emulator diverged" in text and "NaN/inf" in text and str(random_checkpoint) in text
    assert res.speedup is None and res.metrics == {} and res.notes
    assert list(_read(tmp_path / "out")["solver"].values) == ["fem"]


def test_cli_demo(offline, zero_checkpoint, tmp_path):
    out = tmp_path / "cli_out"
    r = CliRunner().invoke(main, ["demo", "--years", "0.25", "--resolution", "10e3", "--out", str(out),
                                  "--checkpoint", str(zero_checkpoint), "--melt-rate", "5", "--no-maps"])
    assert r.exit_code == 0, r.output
    assert "speed-up of egcn over fem" in r.output and "thickness RMSE" in r.output
    assert (out / "pine_island_demo.nc").is_file() and not (out / "speed.png").exists()


def test_cli_demo_bad_checkpoint_is_a_clear_error(offline, tmp_path):
    r = CliRunner().invoke(main, ["demo", "--years", "0.25", "--resolution", "10e3", "--out",
                                  str(tmp_path / "o"), "--checkpoint", str(tmp_path / "missing.pt")])
    assert r.exit_code != 0
    assert "missing.pt" in r.output and "Traceback" not in r.output


def test_demo_with_the_bundled_weights_also_runs_direct_mode(offline, tmp_path):
    """The default demo (bundled step and direct weights) reports the EGCN's direct mode too, offline."""
    from issm_emulator import weights

    weights.default_checkpoint("egcn", "direct")  # bundled: the demo needs no network
    lines: list[str] = []
    # the bundled weights' own mesh (3 km): inside their applicability domain
    res = run_demo(tmp_path / "out", years=0.25, resolution=3e3, maps=False, melt_rate=30.0, echo=lines.append)
    assert res.wall_direct_s is not None and res.wall_direct_s > 0
    assert res.speedup_direct == pytest.approx(res.wall_fem_s / res.wall_direct_s)
    assert np.isfinite(res.metrics_direct["thickness_rmse_m"])
    assert any("direct mode" in line and "speed-up over fem" in line for line in lines)


def test_demo_outside_the_bundled_weights_domain_runs_fem_only_and_says_why(offline, tmp_path):
    lines: list[str] = []
    res = run_demo(tmp_path / "out", years=0.25, resolution=RES, maps=False, melt_rate=30.0, echo=lines.append)
    assert res.wall_emulator_s is None and res.wall_direct_s is None
    assert any("not run" in n and "mesh resolution" in n for n in res.notes)
