"""A network's processing mesh (solvers.emulator.processing_mesh): transfers, inputs, runtime, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from issm_emulator.graph import mesh_graph
from issm_emulator.issm.adapter import read_model
from issm_emulator.learning.dataset import StepDataset
from issm_emulator.learning.train import train
from issm_emulator.nn.features import build_inputs
from issm_emulator.solvers.emulator.checkpoint import load_checkpoint
from issm_emulator.solvers.emulator.inputs import feature_arrays
from issm_emulator.solvers.emulator.network import BoundNetwork
from issm_emulator.solvers.emulator.processing_mesh import (
    ProcessingMesh,
    mesh_record,
    p1_interpolation,
    processing_for,
    taylor_interpolation,
)
from issm_emulator.solvers.emulator.step import rollout_step

TINY = {"hidden": 8, "layers": 1, "batch_size": 2, "progress": False}

# the unit square as two triangles, and a finer mesh of it (four triangles around the centre)
SQ_X, SQ_Y = np.array([0.0, 1.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0, 1.0])
SQ_E = np.array([[0, 1, 2], [0, 2, 3]])
FINE_X, FINE_Y = np.array([0.0, 1.0, 1.0, 0.0, 0.5]), np.array([0.0, 0.0, 1.0, 1.0, 0.5])
FINE_E = np.array([[0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]])


def _square(resolution):
    from issm_emulator.datasets.spec import resolve_scenario

    md = resolve_scenario("square_melt")(resolution=resolution, melt_rate=10.0, years=3.0, time_step=1.0)
    return read_model(md, "TransientSolution")


def test_p1_interpolation_is_exact_for_linear_fields_and_projects_outside_points():
    px = np.array([0.25, 0.9, 0.5, 1.5, -1.0])
    py = np.array([0.1, 0.8, 0.5, 0.5, 2.0])
    m = p1_interpolation(SQ_X, SQ_Y, SQ_E, px, py)
    f = 3.0 * SQ_X - 2.0 * SQ_Y + 1.0
    got = m @ f
    np.testing.assert_allclose(got[:3], 3.0 * px[:3] - 2.0 * py[:3] + 1.0, atol=1e-12)
    # outside: the nearest boundary point, (1, 0.5) and the corner (0, 1)
    np.testing.assert_allclose(got[3:], [3.0 - 1.0 + 1.0, -2.0 + 1.0], atol=1e-12)
    np.testing.assert_allclose(np.asarray(m.sum(1)).ravel(), 1.0)


def test_taylor_interpolation_is_exact_at_vertices_and_for_linear_fields_and_follows_curvature():
    # a 9 x 9 grid of the unit square (two triangles per cell), sampled on a finer, shifted set of points
    g = np.linspace(0.0, 1.0, 9)
    gx, gy = (a.ravel() for a in np.meshgrid(g, g))
    i, j = (a.ravel() for a in np.meshgrid(np.arange(8), np.arange(8)))
    v = j * 9 + i
    e = np.concatenate([np.stack([v, v + 1, v + 10], 1), np.stack([v, v + 10, v + 9], 1)])
    t = taylor_interpolation(gx, gy, e, gx, gy)
    np.testing.assert_allclose(t.toarray(), np.eye(gx.size), atol=1e-12)  # at the vertices: the values
    p = np.linspace(0.03, 0.97, 23)
    px, py = (a.ravel() for a in np.meshgrid(p, p))
    t = taylor_interpolation(gx, gy, e, px, py)
    np.testing.assert_allclose(t @ (3.0 * gx - 2.0 * gy + 1.0), 3.0 * px - 2.0 * py + 1.0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(t.sum(1)).ravel(), 1.0, atol=1e-12)
    # a bump two cells wide: between vertices P1 cuts its chords, the blended Taylor expansions follow it
    f = lambda x, y: np.exp(-((x - 0.5) ** 2 + (y - 0.4) ** 2) / 0.05)
    p1_err = np.abs(p1_interpolation(gx, gy, e, px, py) @ f(gx, gy) - f(px, py))
    taylor_err = np.abs(t @ f(gx, gy) - f(px, py))
    assert np.sqrt(np.mean(taylor_err ** 2)) < 0.6 * np.sqrt(np.mean(p1_err ** 2))


def test_the_back_rule_is_recorded_and_checked():
    rec = mesh_record(SQ_X, SQ_Y, SQ_E, back="taylor")
    assert rec["back"] == "taylor"
    with pytest.raises(ValueError, match="back: expected one of p1, taylor, got 'cubic'"):
        mesh_record(SQ_X, SQ_Y, SQ_E, back="cubic")
    taylor = processing_for(FINE_X, FINE_Y, FINE_E, rec)
    old = {k: rec[k] for k in ("x", "y", "elements")}  # a record from before the option: P1
    p1 = processing_for(FINE_X, FINE_Y, FINE_E, old)
    assert (taylor.back_rule, p1.back_rule) == ("taylor", "p1") and taylor is not p1
    np.testing.assert_allclose(p1.to_source.toarray(),
                               p1_interpolation(SQ_X, SQ_Y, SQ_E, FINE_X, FINE_Y).toarray())
    np.testing.assert_allclose(taylor.to_source.toarray(),
                               taylor_interpolation(SQ_X, SQ_Y, SQ_E, FINE_X, FINE_Y).toarray())


def test_features_keep_dirichlet_conditions_on_the_boundary_and_recompute_graph_features():
    pm = ProcessingMesh.onto(SQ_X, SQ_Y, SQ_E, FINE_X, FINE_Y, FINE_E)
    assert pm.nv == 5 and pm.n_source == 4
    arrays = {"thickness": np.array([100.0, 200.0, 300.0, 200.0]),
              "dirichlet_mask": np.array([1.0, 1.0, 0.0, 0.0]),
              "velocity_dirichlet": np.array([[1.0, 2.0], [1.0, 2.0], [0.0, 0.0], [0.0, 0.0]]),
              "is_boundary": np.zeros(4), "is_front": np.zeros(4),
              "ice_levelset": np.array([-1.0, -1.0, 1.0, 1.0]), "calving_threshold": 3e5}
    out = pm.features(arrays)
    np.testing.assert_allclose(out["thickness"], [100, 200, 300, 200, 200])
    # the centre interpolates a mask of 1/2 but is no boundary vertex: not Dirichlet
    np.testing.assert_array_equal(out["dirichlet_mask"], [1, 1, 0, 0, 0])
    np.testing.assert_allclose(out["velocity_dirichlet"][:, 0], [1, 1, 0, 0, 0])
    np.testing.assert_array_equal(out["is_boundary"], [1, 1, 1, 1, 0])
    # the ice level set is 0 at the centre: ISSM's explicit front marker
    np.testing.assert_array_equal(out["is_front"], [1, 1, 0, 0, 1])
    assert out["calving_threshold"] == 3e5
    np.testing.assert_allclose(pm.back(pm.forward(3.0 * SQ_X + SQ_Y)), 3.0 * SQ_X + SQ_Y, atol=1e-12)


def test_fitted_values_move_back_at_least_as_well_as_interpolated_ones():
    # the coarse square is the processing mesh of the finer one: the centre value must be fitted
    pm = ProcessingMesh.onto(FINE_X, FINE_Y, FINE_E, SQ_X, SQ_Y, SQ_E)
    linear = np.stack([2.0 * FINE_X - FINE_Y, FINE_X + 3.0], 1)
    np.testing.assert_allclose(pm.fit(linear), pm.forward(linear), atol=1e-9)  # linear: nothing to gain
    bump = np.array([0.0, 0.0, 0.0, 0.0, 1.0])  # a peak at the centre, invisible to the corners
    fitted, sampled = pm.back(pm.fit(bump)), pm.back(pm.forward(bump))
    assert np.sum((fitted - bump) ** 2) < np.sum((sampled - bump) ** 2)
    assert pm.fit(np.zeros((5, 0))).shape == (4, 0)


def test_a_mesh_is_its_own_processing_mesh_and_transfers_are_cached():
    rec = {"x": SQ_X.tolist(), "y": SQ_Y.tolist(), "elements": SQ_E.tolist()}
    assert processing_for(SQ_X, SQ_Y, SQ_E, rec) is None
    assert processing_for(SQ_X, SQ_Y, SQ_E, None) is None
    a = processing_for(FINE_X, FINE_Y, FINE_E, rec)
    assert a is not None and a.nv == 4 and processing_for(FINE_X, FINE_Y, FINE_E, rec) is a


@pytest.fixture(scope="module")
def proc_ckpt(ens, tmp_path_factory):
    """A tiny step EGCN trained with ``processing_mesh=True`` on the session ensemble (200 km square)."""
    out = tmp_path_factory.mktemp("proc") / "m.pt"
    return train(ens, model="egcn", mode="step", out=out, epochs=1, processing_mesh=True, **TINY)


def test_the_checkpoint_records_its_training_mesh(ens, proc_ckpt):
    ck = load_checkpoint(proc_ckpt)
    mesh = StepDataset(ens, "train").mesh
    rec = ck.processing_mesh
    np.testing.assert_allclose(rec["x"], mesh.x)
    np.testing.assert_array_equal(rec["elements"], mesh.elements)


def test_the_runtime_runs_the_network_on_the_processing_mesh(proc_ckpt):
    ck = load_checkpoint(proc_ckpt)
    own, other = _square(200e3), _square(150e3)
    assert BoundNetwork(ck, own, "cpu").remesh is None
    net = BoundNetwork(ck, other, "cpu")
    pm = net.remesh
    assert pm is not None and net.nv == len(ck.processing_mesh["x"]) != other.numberofvertices
    g = other.geometry
    fields = {"thickness": g.thickness, "surface": g.surface, "base": g.base, "bed": g.bed,
              "ocean_levelset": other.masks.ocean_levelset, "ice_levelset": other.masks.ice_levelset,
              "vx": other.vx, "vy": other.vy, "smb": np.zeros(other.numberofvertices),
              "melt_rate": np.full(other.numberofvertices, 10.0 / other.yts)}
    pred = net.predict([net.inputs(net.arrays(other, **fields))])[0]
    assert pred["vx"].shape == (other.numberofvertices,)
    # by hand: the inputs interpolated onto the processing mesh, one pass there, the velocity back
    graph = mesh_graph(other.mesh)
    arrays = pm.features(feature_arrays(other, edge_index=graph.edge_index.numpy(),
                                        is_boundary=graph.is_boundary.numpy(), **fields))
    s, v = build_inputs(ck.spec, pm.mesh, **arrays)
    s, v = ck.input_normalizer.encode(s, v)
    with torch.inference_mode():
        raw = ck.model(pm.graph, s, v)["velocity"].reshape(-1, 1, 2)
    _, vel = ck.output_normalizer.decode(raw.new_zeros((raw.shape[0], 0)), raw)
    np.testing.assert_allclose(pred["vx"], pm.back(vel.reshape(-1, 2).double().numpy())[:, 0], rtol=1e-5,
                               atol=1e-12)
    # a rollout on the other mesh: the model's own Dirichlet values are imposed after the transfer back
    res = rollout_step(ck, other)
    vx = np.asarray(res.steps[-1]["Vx"])
    spc = np.asarray(other.stressbalance.spcvx, float)
    fixed = ~np.isnan(spc)
    assert vx.shape == (other.numberofvertices,) and np.all(np.isfinite(vx))
    np.testing.assert_allclose(vx[fixed], spc[fixed])


def test_training_on_several_meshes_through_the_processing_mesh(ens, ens_fine, tmp_path):
    base = StepDataset(ens, "train")
    ds = StepDataset(ens_fine, "train", spec=base.spec, processing_mesh=base.mesh)
    assert ds.remesh is not None and ds.mesh.nv != base.mesh.nv
    sample = ds[0]
    assert sample.num_nodes == base.mesh.nv and sample.scalars.shape[0] == base.mesh.nv
    p, k = ds.samples[0]
    f = ds.run_arrays(p).fields
    np.testing.assert_allclose(sample.y_velocity.numpy(), ds.remesh.forward(np.stack([f["vx"][k], f["vy"][k]], 1)),
                               rtol=1e-5, atol=1e-12)
    fitted = StepDataset(ens_fine, "train", spec=base.spec, processing_mesh=base.mesh, fit_targets=True)
    np.testing.assert_allclose(fitted[0].y_velocity.numpy(), ds.remesh.fit(np.stack([f["vx"][k], f["vy"][k]], 1)),
                               rtol=1e-5, atol=1e-12)
    out = train([ens, ens_fine], model="egcn", mode="step", out=tmp_path / "m.pt", epochs=1,
                processing_mesh=True, fit_targets=True, **TINY)
    ck = load_checkpoint(out)
    np.testing.assert_allclose(ck.processing_mesh["x"], base.mesh.x)
    lo, hi = ck.domain["edge_length"]
    assert lo < hi  # the applicability domain records both meshes, not the processing mesh alone
    assert ck.extra["training"]["fit_targets"] is True
    # the back rule (Taylor, the default) is recorded, and the runtime moves the network's outputs back by it
    assert ck.processing_mesh["back"] == "taylor"
    assert ck.extra["training"]["processing_back"] == "taylor"
    fine = _square(150e3)  # ens_fine's mesh
    net = BoundNetwork(ck, fine, "cpu")
    assert net.remesh is not None and net.remesh.back_rule == "taylor"



@pytest.mark.parametrize("method", ["teacher-forced", "rollout"])
def test_evaluation_on_another_mesh_compares_on_that_mesh(ens_fine, proc_ckpt, tmp_path, method):
    from issm_emulator.learning.evaluate import evaluate

    res = evaluate(proc_ckpt, ens_fine, "test", out_dir=tmp_path / method, step_method=method, plots=False)
    assert res.method == method
    nv = StepDataset(ens_fine, "test").mesh.nv
    assert all(r.pred["vx"].shape[-1] == nv and np.all(np.isfinite(r.pred["vx"])) for r in res.runs)
    rows = [r for r in res.rows if r["run"] == "overall" and r["region"] == "all" and r["variable"] == "vx"]
    assert rows and all(np.isfinite(r["rmse"]) for r in rows)
