"""Flux gates (ISSM's ``massfluxatgate`` outputs ``MassFlux<N>``): the integral, the adapter, the solver.

The ISSM reference is test 101 (``Archive101.arch`` fields 8-13, tolerance 1e-13).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from issm_emulator.errors import ModelInputError
from issm_emulator.issm.adapter import read_model
from issm_emulator.issm.formats import write_exp
from issm_emulator.issm.interpolation import mesh_profile_intersection
from issm_emulator.physics.diagnostics import mass_flux
from issm_emulator.physics.fe import P1Mesh
from tests.modelfactory import make_square_shelf_md, square_mesh

RHO = 917.0


def _gate(name: str, x, y, k: int = 1, **attrs):
    from pyissm.model.classes.massfluxatgate import massfluxatgate

    m = massfluxatgate(name=name, definitionstring=f"Outputdefinition{k}", profilename=f"{name}.exp")
    if x is not None:
        m.profile = {"x": np.asarray(x, float), "y": np.asarray(y, float)}
    for key, value in attrs.items():
        setattr(m, key, value)
    return m


def _md_with_gates(gates, requested, transient: bool = False):
    md = make_square_shelf_md(nx=5, ny=5, transient=transient)
    md.outputdefinition.definitions = list(gates)
    if transient:
        md.transient.requested_outputs = list(requested)
    else:
        md.stressbalance.requested_outputs = list(requested)
    return md


# ----------------------------------------------------------------------------------------------------
# the integral
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("issm", [True, False])
def test_uniform_flow_gives_rho_h_u_l(issm):
    x, y, tri = square_mesh(7, 6, 1000.0)
    pm = P1Mesh(x, y, tri)
    H, u, v = 350.0, 2.5e-6, -1.0e-6
    ones = np.ones(x.size)
    # a polyline through many elements, and a circle (closed: net flux of a uniform field is zero)
    p = {"x": [110.0, 480.0, 905.0], "y": [95.0, 770.0, 310.0]}
    seg = mesh_profile_intersection(tri + 1, x, y, p)
    seg[:, 4] -= 1
    q = mass_flux(pm, seg, H * ones, u * ones, v * ones, RHO, issm_point_values=issm)
    # rho H (u.n) L per straight segment, n = (dy, -dx) / L
    dx, dy = np.diff(p["x"]), np.diff(p["y"])
    expected = RHO * H * np.sum(u * dy - v * dx)
    assert q == pytest.approx(expected, rel=1e-13)
    th = np.linspace(0.0, 2.0 * np.pi, 41)
    circ = mesh_profile_intersection(tri + 1, x, y, {"x": 500 + 300 * np.cos(th), "y": 500 + 300 * np.sin(th)})
    circ[:, 4] -= 1
    assert abs(mass_flux(pm, circ, H * ones, u * ones, v * ones, RHO, issm_point_values=issm)) \
        <= 1e-12 * RHO * H * abs(u) * 2000


def test_linear_thickness_exact_integral():
    x, y, tri = square_mesh(5, 5, 1000.0)
    pm = P1Mesh(x, y, tri)
    H = 100.0 + 0.3 * x + 0.1 * y  # linear: represented exactly by P1
    vx = np.full(x.size, 1e-6)
    vy = 2e-6 + 1e-9 * x
    seg = mesh_profile_intersection(tri + 1, x, y, {"x": [100.0, 900.0], "y": [600.0, 600.0]})
    seg[:, 4] -= 1
    # along y = 600 from x0 = 100 to x1 = 900: n = (0, -1), u.n = -vy, ds = dx
    x0, x1 = 100.0, 900.0
    a = 100.0 + 0.1 * 600.0
    # integral of (a + 0.3 x)(2e-6 + 1e-9 x) dx
    F = lambda t: a * 2e-6 * t + (a * 1e-9 + 0.3 * 2e-6) * t ** 2 / 2 + 0.3e-9 * t ** 3 / 3
    expected = -RHO * (F(x1) - F(x0))
    assert mass_flux(pm, seg, H, vx, vy, RHO, issm_point_values=False) == pytest.approx(expected, rel=1e-13)


def test_issm_point_values_follow_gauss_from_coords():
    """ISSM's GaussTria::GaussFromCoords: coord1 = det(P-P3, P2-P3)/area, coord2 = det(P1-P3, P-P3)/area,
    coord3 = 1 - coord1 - coord2 (area, not twice the area): rebuilt here independently for one piece."""
    x = np.array([0.0, 1000.0, 200.0])
    y = np.array([0.0, 100.0, 900.0])
    tri = np.array([[0, 1, 2]])
    pm = P1Mesh(x, y, tri)
    H = np.array([300.0, 500.0, 800.0])
    vx = np.array([1e-6, 3e-6, -2e-6])
    vy = np.array([2e-6, -1e-6, 4e-6])
    p1, p2 = (300.0, 200.0), (500.0, 350.0)
    seg = np.array([[*p1, *p2, 0.0]])
    area = (x[1] * y[2] - y[1] * x[2] + x[0] * y[1] - y[0] * x[1] + x[2] * y[0] - y[2] * x[0]) / 2

    def issm_value(f, px, py):
        c1 = ((px - x[2]) * (y[1] - y[2]) - (x[1] - x[2]) * (py - y[2])) / area
        c2 = ((x[0] - x[2]) * (py - y[2]) - (px - x[2]) * (y[0] - y[2])) / area
        return c1 * f[0] + c2 * f[1] + (1 - c1 - c2) * f[2]

    h1, h2 = issm_value(H, *p1), issm_value(H, *p2)
    u1, u2, v1, v2 = issm_value(vx, *p1), issm_value(vx, *p2), issm_value(vy, *p1), issm_value(vy, *p2)
    length = np.hypot(p2[0] - p1[0], p2[1] - p1[1])
    n0 = np.cos(np.arctan2(p1[0] - p2[0], p2[1] - p1[1]))
    n1 = np.sin(np.arctan2(p1[0] - p2[0], p2[1] - p1[1]))
    expected = RHO * length * ((1 / 3 * (h1 - h2) * (u1 - u2) + 0.5 * h2 * (u1 - u2) + 0.5 * (h1 - h2) * u2
                                + h2 * u2) * n0
                               + (1 / 3 * (h1 - h2) * (v1 - v2) + 0.5 * h2 * (v1 - v2) + 0.5 * (h1 - h2) * v2
                                  + h2 * v2) * n1)
    assert mass_flux(pm, seg, H, vx, vy, RHO) == pytest.approx(expected, rel=1e-13)
    assert mass_flux(pm, seg, H, vx, vy, RHO, issm_point_values=False) != pytest.approx(expected, rel=1e-3)


def test_mass_flux_rejects_bad_segments():
    x, y, tri = square_mesh(3, 3, 10.0)
    pm = P1Mesh(x, y, tri)
    f = np.ones(x.size)
    with pytest.raises(ValueError, match="shape"):
        mass_flux(pm, np.zeros((2, 4)), f, f, f, RHO)
    with pytest.raises(ValueError, match="element"):
        mass_flux(pm, np.array([[0.0, 0.0, 1.0, 1.0, 8.0]]), f, f, f, RHO)
    assert mass_flux(pm, np.zeros((0, 5)), f, f, f, RHO) == 0.0


# ----------------------------------------------------------------------------------------------------
# the adapter
# ----------------------------------------------------------------------------------------------------
def test_adapter_reads_profile_segments_and_exp_file(tmp_path):
    line = {"x": [1e5, 7e5], "y": [2e5, 9e5]}
    md = _md_with_gates([_gate("MassFlux1", line["x"], line["y"])], ["default", "MassFlux1"])
    seg = read_model(md, "sb").extras["mass_flux_gates"]["MassFlux1"]
    ref = mesh_profile_intersection(md.mesh.elements, md.mesh.x, md.mesh.y, line)
    assert seg.shape == ref.shape and not seg.flags.writeable
    assert np.array_equal(seg[:, :4], ref[:, :4]) and np.array_equal(seg[:, 4], ref[:, 4] - 1)
    # ISSM's own layout: precomputed 1-based segments
    md.outputdefinition.definitions = [_gate("MassFlux1", None, None, segments=ref)]
    assert np.array_equal(read_model(md, "sb").extras["mass_flux_gates"]["MassFlux1"], seg)
    # the profilename .exp file
    path = tmp_path / "gate.exp"
    write_exp(path, {"name": "gate", "x": np.array(line["x"]), "y": np.array(line["y"]), "density": 1.0})
    md.outputdefinition.definitions = [_gate("MassFlux1", None, None, profilename=str(path))]
    np.testing.assert_allclose(read_model(md, "sb").extras["mass_flux_gates"]["MassFlux1"], seg, rtol=0,
                               atol=1e-6)
    # a gate that is not requested is not read
    md.stressbalance.requested_outputs = ["default"]
    md.outputdefinition.definitions = [_gate("MassFlux1", None, None)]
    assert "mass_flux_gates" not in read_model(md, "sb").extras


@pytest.mark.parametrize("attrs, field", [
    ({}, r"md\.outputdefinition\.definitions\[0\]: expected a gate"),
    ({"profile": {"x": [1e5], "y": [2e5]}}, r"definitions\[0\]\.profile: expected a polyline of at least 2"),
    ({"profile": {"x": [1e5, np.nan], "y": [2e5, 3e5]}}, r"definitions\[0\]\.profile\['x'\]"),
    ({"profile": {"xx": [1e5, 2e5]}}, r"definitions\[0\]\.profile: expected a contour with 'x' and 'y'"),
    ({"profile": {"x": [2e6, 3e6], "y": [2e6, 3e6]}}, r"definitions\[0\]\.profile: expected a gate that crosses"),
    ({"segments": np.zeros((3, 4))}, r"definitions\[0\]\.segments: expected an array of shape \(nseg, 5\)"),
    ({"segments": np.array([[1e5, 1e5, 2e5, 2e5, 99.0]])}, r"definitions\[0\]\.segments: expected 1-based"),
    ({"segments": np.array([[9e5, 1e5, 9.5e5, 1e5, 1.0]])}, r"definitions\[0\]\.segments: expected piece end"),
    ({"profilename": "/nonexistent/gate.exp"}, r"definitions\[0\]: expected a gate.*no such file"),
])
def test_adapter_rejects_malformed_gates(attrs, field):
    md = _md_with_gates([_gate("MassFlux1", None, None, **attrs)], ["MassFlux1"])
    with pytest.raises(ModelInputError, match=field):
        read_model(md, "sb")


def test_adapter_rejects_bad_names_and_duplicates(tmp_path):
    line = ([1e5, 7e5], [2e5, 9e5])
    md = _md_with_gates([_gate("MassFlux1", *line), _gate("MassFlux1", *line, k=2)], ["MassFlux1"])
    with pytest.raises(ModelInputError, match=r"definitions\[1\]\.name: expected a name used by one"):
        read_model(md, "sb")
    md.outputdefinition.definitions = [_gate("", *line)]
    with pytest.raises(ModelInputError, match=r"definitions\[0\]\.name: expected a non-empty string"):
        read_model(md, "sb")
    bad = tmp_path / "bad.exp"
    bad.write_text("## Name:gate\n## Icon:0\n# Points Count Value\nnot numbers\n")
    md.outputdefinition.definitions = [_gate("MassFlux1", None, None, profilename=str(bad))]
    with pytest.raises(ModelInputError, match=r"definitions\[0\]\.profilename: expected a readable"):
        read_model(md, "sb")


# ----------------------------------------------------------------------------------------------------
# solve(): stress balance, transient, consistency check, units
# ----------------------------------------------------------------------------------------------------
def test_solve_stressbalance_gate_with_consistency_check():
    import issm_emulator as ie
    from issm_emulator.units import CF_UNITS, SI_TO_ISSM_FACTOR

    line = ([1e5, 7e5], [2e5, 9e5])
    md = _md_with_gates([_gate("MassFlux1", *line)], ["default", "MassFlux1"])
    defs = md.outputdefinition.definitions
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the gate is produced, not skipped
        ie.solve(md, "sb", solver="fem")  # check_consistency=True: no MassFlux1.exp exists
    assert md.outputdefinition.definitions is defs and len(defs) == 1
    r = md.results.StressbalanceSolution
    st = read_model(md, "sb")
    expected = mass_flux(P1Mesh.from_mesh(st.mesh), st.extras["mass_flux_gates"]["MassFlux1"],
                         md.geometry.thickness, r.Vx / st.yts, r.Vy / st.yts, RHO)
    assert float(np.ravel(r.MassFlux1)[0]) == pytest.approx(expected, rel=1e-12)  # kg/s, not converted
    assert CF_UNITS["MassFlux1"] == "kg s^-1" and "MassFlux42" in CF_UNITS
    assert SI_TO_ISSM_FACTOR("MassFlux3") == 1.0
    # pyISSM's other checks still apply to in-memory gates
    md.outputdefinition.definitions[0].definitionstring = "Outputdefinition0"
    with pytest.raises(ModelInputError, match=r"definitions\[0\]\.definitionstring"):
        ie.solve(md, "sb", solver="fem")


def test_solve_transient_gate_every_step():
    import issm_emulator as ie

    line = ([1e5, 9e5], [5e5, 5.5e5])
    md = _md_with_gates([_gate("MassFlux1", *line)], ["default", "MassFlux1"], transient=True)
    md.timestepping.final_time = 2 * md.timestepping.time_step
    ie.solve(md, "tr", solver="fem", check_consistency=False)
    steps = md.results.TransientSolution.steps
    st = read_model(md, "tr")
    pm = P1Mesh.from_mesh(st.mesh)
    seg = st.extras["mass_flux_gates"]["MassFlux1"]
    values = []
    for s in steps:  # the thickness at the end of the step and the step's velocities
        q = mass_flux(pm, seg, np.ravel(s.Thickness), np.ravel(s.Vx) / st.yts, np.ravel(s.Vy) / st.yts, RHO)
        assert float(np.ravel(s.MassFlux1)[0]) == pytest.approx(q, rel=1e-12)
        values.append(q)
    assert len(steps) == 2 and values[0] != values[1]


def test_101_mass_flux_matches_issm_archive(issm_data_dir):
    import issm_emulator as ie
    from issm_emulator.validation.cases import archive_fields, build_case, max_relative_error

    md, solution = build_case(101)
    ie.solve(md, solution, solver="fem")  # with pyISSM's consistency check; no MassFlux<k>.exp on disk
    r = md.results.StressbalanceSolution
    checked = 0
    for _, label, _, output, value, tol in archive_fields(101):
        if not label.startswith("MassFlux"):
            continue
        err = max_relative_error(value, np.ravel(getattr(r, output)))
        assert err <= tol, (label, err)  # ISSM's tolerance 1e-13; reached: <= 4.4e-14
        checked += 1
    assert checked == 6
