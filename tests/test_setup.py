"""Pure-Python replacements of ISSM's set-up helpers: meshes, masks, boundary conditions, rheology,
interpolation."""

from __future__ import annotations

import numpy as np
import pytest

from issm_emulator.errors import ModelInputError
from issm_emulator.issm import setup as S
from issm_emulator.issm.formats import read_arch
from issm_emulator.issm.interpolation import interp_from_mesh_to_mesh2d
from issm_emulator.scenarios.square import new_model, square_front, square_outline, square_shelf_region


def _square(res, outline=None):
    md = new_model()
    S.triangle_mesh(md, square_outline() if outline is None else outline, res)
    return md


@pytest.mark.parametrize("res,nv,ne,ns", [(150000, 44, 68, 18), (50000, 340, 614, 64), (30000, 933, 1738, 126)])
def test_square_mesh_counts(res, nv, ne, ns):
    md = _square(res)
    m = md.mesh
    assert (m.numberofvertices, m.numberofelements, len(m.segments)) == (nv, ne, ns)
    assert m.elements.min() == 1 and m.elements.max() == nv and m.elements.shape == (ne, 3)
    assert m.vertexonboundary.sum() == ns  # closed outline: as many boundary vertices as segments
    # counter-clockwise elements
    el = m.elements - 1
    area2 = ((m.x[el[:, 1]] - m.x[el[:, 0]]) * (m.y[el[:, 2]] - m.y[el[:, 0]])
             - (m.x[el[:, 2]] - m.x[el[:, 0]]) * (m.y[el[:, 1]] - m.y[el[:, 0]]))
    assert np.all(area2 > 0) and np.isclose(area2.sum() / 2, 1e12)


def test_segments_owned_and_outward():
    md = _square(150000)
    m = md.mesh
    s = m.segments - 1
    el = m.elements - 1
    own = el[s[:, 2]]
    assert np.all((own == s[:, [0]]).any(axis=1) & (own == s[:, [1]]).any(axis=1))
    nx, ny = m.y[s[:, 1]] - m.y[s[:, 0]], m.x[s[:, 0]] - m.x[s[:, 1]]
    cx, cy = m.x[own].mean(axis=1), m.y[own].mean(axis=1)
    mx, my = (m.x[s[:, 0]] + m.x[s[:, 1]]) / 2, (m.y[s[:, 0]] + m.y[s[:, 1]]) / 2
    assert np.all(nx * (mx - cx) + ny * (my - cy) > 0)


def test_builtin_outline_gives_issm_mesh(shared_data_dir):
    a = read_arch(shared_data_dir / "SquareShelf.arch")
    md = _square(50000, shared_data_dir / "exp" / "Square.exp")
    assert np.array_equal(md.mesh.x, a["x"].ravel()) and np.array_equal(md.mesh.y, a["y"].ravel())
    assert np.array_equal(md.mesh.elements, a["index"].astype(int))
    md2 = _square(50000)
    assert np.array_equal(md2.mesh.x, md.mesh.x) and np.array_equal(md2.mesh.elements, md.mesh.elements)


def test_round_mesh():
    md = new_model()
    S.round_mesh(md, 1e6, 50000)
    m = md.mesh
    assert (m.numberofvertices, m.numberofelements, len(m.segments)) == (1063, 1999, 125)
    assert m.x[912] == 0.0 and m.y[912] == 0.0


@pytest.mark.parametrize("res,nv,ne,nfloat_el,ngr,nfl,nb,nfront,ndir", [
    (20000, 49, 74, 6, 46, 3, 22, 5, 19), (10000, 182, 318, 35, 167, 15, 44, 8, 38)])
def test_pig_mesh_mask_bc(shared_data_dir, res, nv, ne, nfloat_el, ngr, nfl, nb, nfront, ndir):
    exp = shared_data_dir / "exp"
    md = new_model()
    S.triangle_mesh(md, exp / "Pig.exp", res)
    assert (md.mesh.numberofvertices, md.mesh.numberofelements) == (nv, ne)
    fl = S.flag_elements(md, exp / "PigShelves.exp") & ~S.flag_elements(md, exp / "PigIslands.exp")
    assert fl.sum() == nfloat_el
    S.set_mask(md, exp / "PigShelves.exp", exp / "PigIslands.exp")
    assert ((md.mask.ocean_levelset > 0).sum(), (md.mask.ocean_levelset < 0).sum()) == (ngr, nfl)
    obs = np.linspace(1.0, 2.0, nv)
    md.inversion.vx_obs, md.inversion.vy_obs = obs, -obs
    S.set_marine_ice_sheet_bc(md)
    assert md.mesh.vertexonboundary.sum() == nb
    assert (md.mask.ice_levelset == 0).sum() == nfront
    d = ~np.isnan(md.stressbalance.spcvx)
    assert d.sum() == ndir
    assert np.array_equal(md.stressbalance.spcvx[d], obs[d]) and np.array_equal(md.stressbalance.spcvy[d], -obs[d])


def test_setmask_401(shared_data_dir):
    md = _square(150000)
    fl = S.flag_elements(md, shared_data_dir / "exp" / "SquareShelf.exp")
    assert fl.sum() == 32
    S.set_mask(md, square_shelf_region(), "")
    assert (md.mask.ocean_levelset > 0).sum() == 27 and (md.mask.ocean_levelset < 0).sum() == 17
    assert np.all(md.mask.ocean_levelset[md.mesh.y == 5e5] > 0)  # on-edge vertices are inside, hence grounded
    assert np.all(md.mask.ice_levelset == -1)


def test_setmask_all_none_and_flags():
    md = _square(150000)
    S.set_mask(md, "all", "")
    assert np.all(md.mask.ocean_levelset == -1)
    S.set_mask(md, "", "")
    assert np.all(md.mask.ocean_levelset == 1)
    S.set_mask(md, "all", "all")  # grounded wins
    assert np.all(md.mask.ocean_levelset == 1)
    flags = np.zeros(md.mesh.numberofelements)
    flags[0] = 1
    S.set_mask(md, flags, "")
    # one floating element: its vertices stay grounded if they touch another (grounded) element
    assert np.all(md.mask.ocean_levelset == 1)
    with pytest.raises(ModelInputError, match="element flags"):
        S.flag_elements(md, np.ones(5))


def test_on_edge_rule():
    c = {"x": np.array([0.0, 1.0, 1.0, 0.0, 0.0]), "y": np.array([0.0, 0.0, 1.0, 1.0, 0.0])}
    x = np.array([0.5, 1.0, 0.0, 1.5, 0.5, 1.0])
    y = np.array([0.5, 0.5, 1.0, 0.5, 0.0, 1.0])
    assert S.contour_points_inside(c, x, y, 1).tolist() == [True, True, True, False, True, True]
    assert S.contour_points_inside(c, x, y, 0).tolist() == [True, False, False, False, False, False]
    # crossing number only: the bottom edge is in, the top and right edges are out
    assert S.contour_points_inside(c, x, y, 2).tolist() == [True, False, False, False, True, False]


@pytest.mark.parametrize("res,nfront,ndir", [(150000, 5, 15), (50000, 17, 49), (30000, 33, 95)])
def test_ice_shelf_bc_counts(res, nfront, ndir):
    md = _square(res)
    S.set_mask(md, "all", "")
    S.set_ice_shelf_bc(md, square_front())
    front = md.mask.ice_levelset == 0
    assert front.sum() == nfront and np.all(md.mesh.y[front] == 1e6)
    d = ~np.isnan(md.stressbalance.spcvx)
    assert d.sum() == ndir and np.all(md.stressbalance.spcvx[d] == 0) and np.all(md.stressbalance.spcvy[d] == 0)
    corners = (md.mesh.y == 1e6) & ((md.mesh.x == 0) | (md.mesh.x == 1e6))
    assert np.all(d[corners])
    assert np.all(md.smb.mass_balance == 0) and np.all(md.basalforcings.floatingice_melting_rate == 0)
    assert np.all(np.isnan(md.masstransport.spcthickness))


def test_sheet_and_shelf_without_front():
    md = _square(50000)
    S.set_mask(md, "all", "")
    S.set_ice_shelf_bc(md)
    assert (~np.isnan(md.stressbalance.spcvx)).sum() == 64 and np.all(md.mask.ice_levelset == -1)
    md = _square(150000)
    S.set_mask(md, "", "")
    md.smb.mass_balance = 3.0 * np.ones(44)
    S.set_ice_sheet_bc(md)
    assert (~np.isnan(md.stressbalance.spcvy)).sum() == 18
    assert np.all(md.smb.mass_balance == 3.0)  # set forcings are kept


def test_bc_needs_mask():
    md = _square(150000)
    with pytest.raises(ModelInputError, match="md.mask.ice_levelset"):
        S.set_ice_sheet_bc(md)


def test_paterson():
    assert S.paterson(253.0) == 181573028.48017007
    t = np.array([223.15 - 10, 233.15, 253.0, 263.15, 270.0, 273.15, 300.0])
    b = S.paterson(t)
    assert b.shape == t.shape and np.all(np.diff(b[:-1]) < 0)
    # B = A^(-1/3) * 1e3 with Paterson's table: A(-10 C) = 4.9e-16 s^-1 kPa^-3
    assert S.paterson(263.15) == pytest.approx((4.9e-16) ** (-1 / 3) * 1e3, rel=1e-6)
    assert b[-1] == 1e6  # negative fit replaced by 1e6
    with pytest.raises(ValueError):
        S.paterson(-1.0)


def test_interpolation_linear_exact_and_outside():
    md = _square(150000)
    el, x, y = md.mesh.elements.astype(float), md.mesh.x, md.mesh.y
    f = 3.0 + 2e-6 * x - 5e-6 * y
    rng = np.random.default_rng(1)
    xq, yq = rng.uniform(0, 1e6, 200), rng.uniform(0, 1e6, 200)
    v = interp_from_mesh_to_mesh2d(el, x, y, f, xq, yq)
    assert np.allclose(v, 3.0 + 2e-6 * xq - 5e-6 * yq, rtol=0, atol=1e-12)
    two = interp_from_mesh_to_mesh2d(el, x, y, np.column_stack([f, 2 * f]), xq, yq)
    assert two.shape == (200, 2) and np.allclose(two[:, 1], 2 * v)
    # outside: value at the projection on the nearest boundary edge
    out = interp_from_mesh_to_mesh2d(el, x, y, f, np.array([-5e5, 3e5]), np.array([2e5, 1.7e6]))
    assert np.allclose(out, [3.0 - 5e-6 * 2e5, 3.0 + 2e-6 * 3e5 - 5.0], atol=1e-12)


def test_interpolation_identical_mesh(shared_data_dir):
    a = read_arch(shared_data_dir / "SquareShelf.arch")
    md = _square(50000)
    v = interp_from_mesh_to_mesh2d(a["index"], a["x"], a["y"], a["vx"][:, 0], md.mesh.x, md.mesh.y)
    assert np.array_equal(v, a["vx"][:, 0])


def test_paterson_is_pyissms():
    import warnings

    from pyissm.tools.materials import paterson as pyissm_paterson

    t = np.concatenate([np.linspace(0.0, 320.0, 64001), 273.15 + np.array([-50, -45, -40, -35, -30, -25, -20,
                                                                              -15, -10, -5, -2, 0.0])])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ref = pyissm_paterson(t)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pyISSM's DeprecationWarning does not leak
        assert np.array_equal(S.paterson(t), ref)
        assert isinstance(S.paterson(253.0), float)
    with pytest.raises(ValueError, match="Kelvin"):  # pyISSM would return B = 0
        S.paterson(np.array([253.0, np.nan]))


def test_bc_helpers_are_pyissms_without_front():
    import copy
    import warnings

    from pyissm.model import bc

    for name, floating in (("set_ice_shelf_bc", "all"), ("set_ice_sheet_bc", ""),
                           ("set_marine_ice_sheet_bc", square_shelf_region())):
        md = _square(50000)
        S.set_mask(md, floating, "")
        md.initialization.temperature = 253.0 * np.ones(md.mesh.numberofvertices)
        ref = copy.deepcopy(md)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            getattr(bc, name)(ref)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # pyISSM's notes are silenced
            getattr(S, name)(md)
        for section, field in (("stressbalance", "spcvx"), ("stressbalance", "spcvy"), ("mask", "ice_levelset"),
                               ("smb", "mass_balance"), ("basalforcings", "floatingice_melting_rate"),
                               ("basalforcings", "geothermalflux"), ("masstransport", "spcthickness")):
            a, b = getattr(getattr(md, section), field), getattr(getattr(ref, section), field)
            assert np.array_equal(a, b, equal_nan=True), (name, section, field)


def test_marine_bc_with_front_file(shared_data_dir):
    md = _square(50000)
    S.set_mask(md, square_shelf_region(), "")
    nv = md.mesh.numberofvertices
    md.initialization.temperature = 253.0 * np.ones(nv)
    obs = np.linspace(1.0, 2.0, nv)[:, None]
    md.inversion.vx_obs, md.inversion.vy_obs = obs, -obs
    S.set_marine_ice_sheet_bc(md, shared_data_dir / "exp" / "SquareFront.exp")
    front = md.mask.ice_levelset == 0
    assert front.sum() == 17 and np.all(md.mesh.y[front] == 1e6)  # the file's front only, not the guessed one
    d = ~np.isnan(md.stressbalance.spcvx)
    assert d.sum() == 49 and np.array_equal(md.stressbalance.spcvx[d], obs[d, 0])
    assert md.inversion.vx_obs.shape == (nv, 1)  # put back as given
    onb = md.mesh.vertexonboundary.astype(bool)
    assert np.array_equal(md.hydrology.spcwatercolumn[:, 0], onb.astype(float))
    grounded = md.mask.ocean_levelset > 0
    assert np.all(md.basalforcings.geothermalflux[grounded] == 50e-3)
    assert np.all(md.basalforcings.geothermalflux[~grounded] == 0)


def test_marine_bc_warns_without_dirichlet():
    md = _square(150000)
    S.set_mask(md, "all", "")
    with pytest.warns(UserWarning, match="ice front all around") as rec:
        S.set_marine_ice_sheet_bc(md)
    assert len(rec) == 1 and np.all(np.isnan(md.stressbalance.spcvx))
