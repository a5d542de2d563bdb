"""Training one network on ensembles of one glacier on several meshes (issm_emulator.learning.collection)."""

from __future__ import annotations

import numpy as np
import pytest

from issm_emulator.issm.adapter import read_model
from issm_emulator.learning.collection import EnsembleCollection
from issm_emulator.learning.dataset import StepDataset
from issm_emulator.learning.train import train
from issm_emulator.solvers.emulator.checkpoint import load_checkpoint
from issm_emulator.solvers.emulator.domain import check_domain

TINY = {"hidden": 8, "layers": 1, "batch_size": 2, "progress": False}


def _square(resolution):
    from issm_emulator.datasets.spec import resolve_scenario

    md = resolve_scenario("square_melt")(resolution=resolution, melt_rate=10.0, years=3.0, time_step=1.0)
    return read_model(md, "TransientSolution")


def test_collection_keeps_each_mesh_and_refuses_other_features(ens, ens_fine):
    a, b = StepDataset(ens, "train"), StepDataset(ens_fine, "train", spec=StepDataset(ens, "train").spec)
    col = EnsembleCollection([a, b])
    assert len(col) == len(a) + len(b)
    assert col[0].num_nodes == a.mesh.nv and col[len(a)].num_nodes == b.mesh.nv != a.mesh.nv
    assert col.forcing_ranges()["melt_rate"][1] >= a.forcing_ranges()["melt_rate"][1]


@pytest.mark.parametrize("arch", ["egcn", "gcn", "cnn"])
def test_one_checkpoint_for_two_meshes(ens, ens_fine, tmp_path, arch):
    out = train([ens, ens_fine], model=arch, mode="step", out=tmp_path / "m.pt", epochs=2, **TINY)
    ck = load_checkpoint(out)
    dom = ck.domain
    sizes = ck.manifest["extra"]["mesh_vertices"]
    assert len(dom["mesh_sha256"]) == 2 and len(sizes) == 2 and sizes[0] != sizes[1]
    lo, hi = dom["edge_length"]
    assert lo < hi  # both resolutions recorded
    # both training meshes and a mesh between them lie in the domain; a much finer one does not
    for res in (200e3, 150e3, 175e3):
        assert [v for v in check_domain(dom, _square(res)) if v.hard] == [], res
    assert any(v.what.startswith("mesh resolution") for v in check_domain(dom, _square(60e3)))
    if arch == "cnn":  # one grid spacing for every mesh (the first one's mean edge length), not one per mesh
        from issm_emulator.nn.cnn import mean_edge_length

        m = StepDataset(ens, "train").mesh
        assert ck.model.cell_size == pytest.approx(mean_edge_length(m.x, m.y, m.elements))


def test_fine_tuning_starts_from_the_checkpoint(ens, ens_fine, tmp_path):
    base = train(ens, model="egcn", mode="step", out=tmp_path / "base.pt", epochs=1, **TINY)
    tuned = train([ens, ens_fine], model="egcn", mode="step", out=tmp_path / "tuned.pt", epochs=1, init_from=base,
                  lr=1e-12, **TINY)
    a, b = load_checkpoint(base), load_checkpoint(tuned)
    # a vanishing learning rate: the weights and normalisers are the starting checkpoint's
    for k, v in a.model.state_dict().items():
        np.testing.assert_allclose(v.numpy(), b.model.state_dict()[k].numpy(), rtol=1e-6, atol=1e-9)
    assert a.input_normalizer.to_dict() == b.input_normalizer.to_dict()
    assert b.extra["training"]["init_from"]["sha256"] == a.content_sha256
