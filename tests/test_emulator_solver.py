"""The emulator solver backends 'egcn', 'gcn', 'cnn' through issm_emulator.solve and solve_ensemble."""

from __future__ import annotations

import copy
import shutil

import numpy as np
import pytest
import torch

import issm_emulator
from issm_emulator import weights
from issm_emulator.errors import (
    EmulatorDivergedError,
    ExtrapolationWarning,
    ModelInputError,
    OutOfDomainError,
    SolverError,
    UnsupportedOptionError,
)
from issm_emulator.issm.adapter import read_model
from issm_emulator.plugins import manager
from issm_emulator.solvers.emulator.checkpoint import CheckpointMismatchError
from tests.modelfactory import make_square_shelf_md
from tests.test_rollout import make_checkpoint

ARCHS = ["egcn", "gcn", "cnn"]


@pytest.fixture(scope="module")
def state():
    return read_model(make_square_shelf_md(6, 6), "TransientSolution")


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory, state):
    d = tmp_path_factory.mktemp("ckpt")
    return {(a, m): make_checkpoint(d / f"{a}-{m}.pt", a, m, state) for a in ARCHS for m in ("step", "direct")}


@pytest.fixture()
def no_bundled(tmp_path, monkeypatch):
    """An empty bundled-weights folder (whatever the installation ships)."""
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setattr(weights, "bundled_dir", lambda: folder)
    monkeypatch.delenv(manager.ENV_VAR, raising=False)
    manager.reset_default_manager()
    yield folder
    manager.reset_default_manager()


def _md(**kw):
    md = make_square_shelf_md(6, 6, **kw)
    md.transient.requested_outputs = ["default", "IceVolume", "GroundedArea"]
    return md


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("mode", ["step", "direct"])
def test_solve_through_registry_fills_results(ckpts, arch, mode):
    md = _md()
    issm_emulator.solve(md, "Transient", solver=arch, mode=mode, checkpoint=ckpts[arch, mode], device="cpu")
    sol = md.results.TransientSolution
    assert [s.step for s in sol.steps] == [1, 2, 3]
    np.testing.assert_allclose([s.time for s in sol.steps], [1.0, 2.0, 3.0])
    nv = md.mesh.numberofvertices
    for s in sol.steps:
        for name in ("Vx", "Vy", "Vel", "Pressure", "Thickness", "Surface", "Base"):
            assert getattr(s, name).shape == (nv,) and np.all(np.isfinite(getattr(s, name)))
        assert s.IceVolume.shape == (1,) and s.IceVolume[0] > 0
        np.testing.assert_allclose(s.Vel, np.hypot(s.Vx, s.Vy))
    assert f"solver: {arch}" in sol.steps[0].outlog and f"mode: {mode}" in sol.steps[0].outlog
    # floating ice in hydrostatic equilibrium after the update: base = -rho_i/rho_w H
    last = sol.steps[-1]
    np.testing.assert_allclose(last.Base, -md.materials.rho_ice / md.materials.rho_water * last.Thickness)


def test_step_mode_with_grounding_line_migration(ckpts):
    md = _md(grounded_part=True)
    md.groundingline.migration = "SoftMigration"
    md.transient.isgroundingline = 1
    # the fixture was trained (its domain computed) without migration: a refusal unless allowed
    with pytest.raises(OutOfDomainError, match="groundingline_migration: model 'SoftMigration'"):
        issm_emulator.solve(md, "Transient", solver="egcn", checkpoint=ckpts["egcn", "step"], device="cpu")
    assert not hasattr(md.results, "TransientSolution")
    with pytest.warns(ExtrapolationWarning, match="groundingline_migration"):
        issm_emulator.solve(md, "Transient", solver="egcn", checkpoint=ckpts["egcn", "step"], device="cpu",
                            allow_extrapolation=True)
    last = md.results.TransientSolution.steps[-1]
    assert last.MaskOceanLevelset.shape == (md.mesh.numberofvertices,)
    assert 0 < last.GroundedArea[0] < 1e12  # part grounded, part floating


def test_stressbalance_one_forward_pass(ckpts):
    md = _md()
    issm_emulator.solve(md, "Stressbalance", solver="gcn", checkpoint=ckpts["gcn", "step"], device="cpu")
    sb = md.results.StressbalanceSolution
    assert sb.Vx.shape == (md.mesh.numberofvertices,) and np.all(np.isfinite(sb.Vel))
    # Dirichlet conditions hold: spcvx = 0 on the three non-front sides
    fixed = ~np.isnan(md.stressbalance.spcvx)
    np.testing.assert_array_equal(sb.Vx[fixed], 0.0)
    with pytest.raises(UnsupportedOptionError, match="step-mode"):
        issm_emulator.solve(_md(), "Stressbalance", solver="gcn", mode="direct",
                            checkpoint=ckpts["gcn", "direct"], device="cpu")


def test_extrapolation_warning_names_parameter_and_range(ckpts):
    md = _md()
    md.basalforcings.floatingice_melting_rate = np.full(md.mesh.numberofvertices, 50.0)  # trained on 0-20 m/yr
    with pytest.warns(ExtrapolationWarning, match=r"'melt_rate'.*50 m/yr.*outside the training range.*20 m/yr"):
        issm_emulator.solve(md, "Transient", solver="egcn", checkpoint=ckpts["egcn", "step"], device="cpu")
    assert hasattr(md.results, "TransientSolution")


def test_nan_weights_diverge_and_leave_md_untouched(tmp_path, state):
    ck = make_checkpoint(tmp_path / "nan.pt", "egcn", "step", state, nan=True)
    md = _md()
    before = copy.deepcopy(md)
    with pytest.raises(EmulatorDivergedError, match="step 1") as exc:
        issm_emulator.solve(md, "Transient", solver="egcn", checkpoint=ck, device="cpu")
    assert exc.value.step == 1
    assert not hasattr(md.results, "TransientSolution")
    np.testing.assert_array_equal(md.geometry.thickness, before.geometry.thickness)
    assert md.private.solution == before.private.solution


def test_manifest_mismatch_refused(ckpts, tmp_path, state):
    md = _md()
    with pytest.raises(CheckpointMismatchError, match="'egcn' network, but 'gcn'"):
        issm_emulator.solve(md, "Transient", solver="gcn", checkpoint=ckpts["egcn", "step"], device="cpu")
    with pytest.raises(CheckpointMismatchError, match="mode 'step'"):
        issm_emulator.solve(md, "Transient", solver="cnn", mode="direct", checkpoint=ckpts["cnn", "step"],
                            device="cpu")
    ck = make_checkpoint(tmp_path / "calv.pt", "egcn", "step", state, parameters=("calving_threshold",))
    with pytest.raises(CheckpointMismatchError, match="calving_threshold"):
        issm_emulator.solve(md, "Transient", solver="egcn", checkpoint=ck, device="cpu")
    assert not hasattr(md.results, "TransientSolution")


def test_bad_options_refused(ckpts):
    with pytest.raises(UnsupportedOptionError, match="mode='fast'"):
        issm_emulator.solve(_md(), "Transient", solver="egcn", mode="fast", checkpoint=ckpts["egcn", "step"])
    with pytest.raises(TypeError, match="unknown option"):
        issm_emulator.solve(_md(), "Transient", solver="egcn", checkpoint=ckpts["egcn", "step"], foo=1)
    with pytest.raises(SolverError, match="no such file"):
        issm_emulator.solve(_md(), "Transient", solver="egcn", checkpoint="/nonexistent/x.pt", device="cpu")


def test_missing_default_weights_clear_error_and_fem_default(no_bundled):
    md = _md()
    with pytest.raises(weights.WeightsNotFoundError, match=r"egcn-step-<scenario>\.pt.*issm-emulator train"):
        issm_emulator.solve(md, "Transient", solver="egcn", device="cpu")
    assert isinstance(weights.WeightsNotFoundError("x"), SolverError)
    assert not hasattr(md.results, "TransientSolution")
    assert manager.default_solver_name() == "fem"


def test_bundled_default_weights_make_egcn_the_default(no_bundled, ckpts):
    shutil.copy(ckpts["egcn", "step"], no_bundled / "egcn-step-square.pt")
    assert weights.list_bundled() == ["egcn-step-square"]
    assert weights.resolve("egcn-step-square") == no_bundled / "egcn-step-square.pt"
    assert manager.default_solver_name() == "egcn"
    md = _md()
    issm_emulator.solve(md, "Transient", device="cpu")
    assert "solver: egcn" in md.results.TransientSolution.steps[0].outlog
    assert "egcn-step-square.pt" in md.results.TransientSolution.steps[0].outlog


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal when CUDA is absent")
def test_cuda_refused_without_cuda(ckpts):
    md = _md()
    with pytest.raises(UnsupportedOptionError, match="CUDA is not available"):
        issm_emulator.solve(md, "Transient", solver="egcn", device="cuda", checkpoint=ckpts["egcn", "step"])
    assert not hasattr(md.results, "TransientSolution")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("arch", ARCHS)
def test_cuda_matches_cpu(ckpts, arch):
    a, b = _md(), _md()
    issm_emulator.solve(a, "Transient", solver=arch, device="cpu", checkpoint=ckpts[arch, "step"])
    issm_emulator.solve(b, "Transient", solver=arch, device="cuda", checkpoint=ckpts[arch, "step"])
    for sa, sb in zip(a.results.TransientSolution.steps, b.results.TransientSolution.steps):
        np.testing.assert_allclose(sb.Vx, sa.Vx, rtol=1e-4, atol=1e-4 * np.abs(sa.Vx).max())
        np.testing.assert_allclose(sb.Thickness, sa.Thickness, rtol=1e-5)


# ------------------------------------------------------------------------------------------------------------
# solve_ensemble
# ------------------------------------------------------------------------------------------------------------
def _melt_mds(rates):
    mds = []
    for r in rates:
        md = _md()
        md.basalforcings.floatingice_melting_rate = np.full(md.mesh.numberofvertices, float(r))
        mds.append(md)
    return mds


@pytest.mark.parametrize(("arch", "mode"), [("egcn", "step"), ("cnn", "step"), ("gcn", "direct")])
def test_ensemble_equals_individual_solves(ckpts, arch, mode):
    rates = (0.0, 4.0, 12.0)
    ens = issm_emulator.solve_ensemble(_melt_mds(rates), solver=arch, mode=mode, checkpoint=ckpts[arch, mode],
                                       device="cpu")
    ind = [issm_emulator.solve(md, "Transient", solver=arch, mode=mode, checkpoint=ckpts[arch, mode],
                               device="cpu") for md in _melt_mds(rates)]
    for a, b in zip(ens, ind):
        sa, sb = a.results.TransientSolution, b.results.TransientSolution
        assert [s.step for s in sa.steps] == [s.step for s in sb.steps]
        for x, y in zip(sa.steps, sb.steps):
            for name in ("Vx", "Vy", "Thickness", "IceVolume"):
                ref = getattr(y, name)
                np.testing.assert_allclose(getattr(x, name), ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max())
        assert "ensemble_size: 3" in sa.steps[0].outlog
    th = [md.results.TransientSolution.steps[-1].Thickness for md in ens]
    assert not np.allclose(th[0], th[2])  # the members' melt differs


def test_ensemble_rejects_different_meshes(ckpts):
    mds = [_md(), make_square_shelf_md(7, 6)]
    with pytest.raises(ModelInputError, match=r"^md\.mesh: .*member 1") as exc:
        issm_emulator.solve_ensemble(mds, checkpoint=ckpts["egcn", "step"], device="cpu")
    assert exc.value.field == "md.mesh"
    assert not any(hasattr(md.results, "TransientSolution") for md in mds)


def test_ensemble_all_or_nothing(ckpts):
    mds = _melt_mds((0.0, 5.0, 1e300))  # the last member's input overflows float32: the network gives NaN
    with pytest.warns(ExtrapolationWarning), pytest.raises(EmulatorDivergedError, match="ensemble member 2"):
        issm_emulator.solve_ensemble(mds, checkpoint=ckpts["egcn", "step"], device="cpu")
    assert not any(hasattr(md.results, "TransientSolution") for md in mds)


def test_ensemble_with_a_non_emulator_solver_runs_members(ckpts):
    mds = _melt_mds((0.0, 10.0))
    issm_emulator.solve_ensemble(mds, solver="fem", device="cpu")
    one = issm_emulator.solve(_melt_mds((10.0,))[0], "Transient", solver="fem")
    np.testing.assert_allclose(mds[1].results.TransientSolution.steps[-1].Thickness,
                               one.results.TransientSolution.steps[-1].Thickness, rtol=1e-10)
