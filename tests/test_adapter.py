"""Tests of the pyISSM model adapter (:func:`issm_emulator.issm.adapter.read_model`)."""

from __future__ import annotations

import copy
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from issm_emulator.errors import ModelInputError, UnknownSolutionError
from issm_emulator.issm.adapter import global_value, read_model
from issm_emulator.state import Forcing, ModelState

try:
    from tests.modelfactory import make_square_shelf_md
except ImportError:  # tests/ itself on sys.path (plain ``pytest`` without the root on the path)
    from modelfactory import make_square_shelf_md

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from pyissm.model.classes import basalforcings, calving, friction

YTS = 365.0 * 24.0 * 3600.0


@pytest.fixture()
def md():
    return make_square_shelf_md()


# ----------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------
def snapshot(obj, path="md", seen=None) -> dict:
    """Every numeric / string leaf of a model tree, deep-copied, with array flags."""
    seen = set() if seen is None else seen
    out = {}
    if id(obj) in seen:
        return out
    seen.add(id(obj))
    for name, value in sorted(vars(obj).items()):
        p = f"{path}.{name}"
        if isinstance(value, np.ndarray):
            out[p] = (value.copy(), value.dtype, value.flags.writeable)
        elif isinstance(value, (int, float, str, bool, np.number, list, tuple, dict)) or value is None:
            out[p] = copy.deepcopy(value)
        elif hasattr(value, "__dict__"):
            out.update(snapshot(value, p, seen))
    return out


def assert_same(before: dict, after: dict) -> None:
    assert before.keys() == after.keys()
    for key, old in before.items():
        new = after[key]
        if isinstance(old, tuple) and len(old) == 3 and isinstance(old[0], np.ndarray):
            assert old[1] == new[1] and old[2] == new[2], key
            assert np.array_equal(old[0], new[0], equal_nan=old[0].dtype.kind in "fc"), key
        elif isinstance(old, float) and np.isnan(old):
            assert isinstance(new, float) and np.isnan(new), key
        else:
            assert repr(old) == repr(new), key


def all_arrays(obj, seen=None):
    """Every numpy array reachable from a ModelState (dataclasses, dicts, Forcings)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from all_arrays(v, seen)
    elif hasattr(obj, "__dataclass_fields__"):
        for name in obj.__dataclass_fields__:
            yield from all_arrays(getattr(obj, name), seen)


def nv_ne(md):
    return md.mesh.numberofvertices, md.mesh.numberofelements


# ----------------------------------------------------------------------------------------------------------
# valid models
# ----------------------------------------------------------------------------------------------------------
def test_valid_model_si_units_and_read_only(md):
    nv, ne = nv_ne(md)
    md.initialization.vx = np.ones(nv)  # 1 m/yr
    md.initialization.vy = np.arange(nv, dtype=float).reshape(nv, 1)  # ISSM column vector
    md.stressbalance.abstol = 10.0  # m/yr
    md.materials.rheology_B = 2e8  # scalar, broadcast per vertex
    md.friction.p = np.full(ne, 2.0)  # Budd p != 1 is kept
    times = np.array([0.0, 2.0])  # years
    md.smb.mass_balance = np.vstack([np.column_stack([np.zeros(nv), np.full(nv, 10.0)]), times])
    md.timestepping.interp_forcing = 1
    before = snapshot(md)

    state = read_model(md)

    assert_same(before, snapshot(md))
    assert isinstance(state, ModelState)
    np.testing.assert_array_equal(state.vx, np.full(nv, 1.0 / YTS))
    np.testing.assert_allclose(state.vy, np.arange(nv) / YTS)
    assert state.stressbalance.abstol == pytest.approx(10.0 / YTS)
    np.testing.assert_array_equal(state.mesh.elements, np.asarray(md.mesh.elements) - 1)
    assert state.mesh.elements.dtype == np.int64 and state.mesh.elements.min() == 0
    np.testing.assert_array_equal(state.mesh.segments[:, :2], np.asarray(md.mesh.segments)[:, :2] - 1)
    np.testing.assert_array_equal(state.materials.rheology_B, np.full(nv, 2e8))
    assert state.materials.rheology_n.shape == (ne,)
    assert state.friction.law == "budd"
    np.testing.assert_array_equal(state.friction.fields["p"], np.full(ne, 2.0))
    assert state.timestepping.time_step == YTS and state.timestepping.final_time == 3 * YTS
    assert state.yts == YTS and state.g == 9.81 and state.sealevel == 0.0
    # forcing time series: times in s, values in m/s, evaluated like ISSM
    smb = state.smb
    assert smb.is_transient
    np.testing.assert_array_equal(smb.times, times * YTS)
    np.testing.assert_allclose(smb.at(1.0 * YTS), np.full(nv, 5.0 / YTS))
    np.testing.assert_allclose(smb.at(1.0 * YTS, interp=False), np.zeros(nv))
    np.testing.assert_allclose(smb.at(10.0 * YTS), np.full(nv, 10.0 / YTS))
    # geometry and masks as given
    np.testing.assert_array_equal(state.geometry.thickness, md.geometry.thickness)
    np.testing.assert_array_equal(state.masks.ice_levelset, md.mask.ice_levelset)
    assert np.isnan(state.stressbalance.spcvx).sum() == np.isnan(md.stressbalance.spcvx).sum()
    # every array is a read-only copy
    arrays = list(all_arrays(state))
    assert len(arrays) > 20
    for arr in arrays:
        assert not arr.flags.writeable
    with pytest.raises(ValueError):
        state.geometry.thickness[0] = 1.0
    assert state.geometry.thickness[0] == md.geometry.thickness[0]


def test_custom_yts_and_start_time(md):
    yts = 365.2422 * 24 * 3600
    md.constants.yts = yts
    md.initialization.vx = np.full(md.mesh.numberofvertices, 100.0)
    md.timestepping.start_time, md.timestepping.final_time, md.timestepping.time_step = 2.0, 4.0, 0.5
    state = read_model(md)
    np.testing.assert_allclose(state.vx, 100.0 / yts)
    assert state.timestepping.start_time == pytest.approx(2.0 * yts)
    assert state.timestepping.time_step == pytest.approx(0.5 * yts)


def test_stressbalance_validates_only_what_it_needs():
    md = make_square_shelf_md(transient=False)  # SMB and melt rates left unset (NaN)
    state = read_model(md, "StressbalanceSolution")
    assert state.extras["solution"] == "StressbalanceSolution"
    np.testing.assert_array_equal(state.smb.values, 0.0)
    assert read_model(md, "sb").extras["solution"] == "StressbalanceSolution"
    with pytest.raises(ModelInputError, match=r"md\.smb\.mass_balance"):
        read_model(md, "TransientSolution")
    with pytest.raises(UnknownSolutionError, match="Stressbalance"):
        read_model(md, "ThermalSolution")


def test_partly_grounded_factory_model():
    md = make_square_shelf_md(nx=5, ny=7, grounded_part=True)
    state = read_model(md)
    grounded = state.masks.ocean_levelset > 0
    assert grounded.any() and (~grounded).any()
    np.testing.assert_array_equal(state.friction.fields["coefficient"][grounded], 20.0)
    np.testing.assert_array_equal(state.friction.fields["coefficient"][~grounded], 0.0)
    # grounded ice is above flotation, floating ice exactly at it
    H, b = state.geometry.thickness, state.geometry.base
    assert (state.materials.rho_ice * H[grounded] < state.materials.rho_water * -b[grounded]).sum() == 0
    np.testing.assert_allclose(b[~grounded], -917.0 / 1023.0 * H[~grounded])


def test_factory_mesh_is_ccw_and_bc_like_issm():
    md = make_square_shelf_md(nx=4, ny=3, length=3e5)
    x, y, el = md.mesh.x, md.mesh.y, np.asarray(md.mesh.elements) - 1
    area = 0.5 * ((x[el[:, 1]] - x[el[:, 0]]) * (y[el[:, 2]] - y[el[:, 0]])
                  - (x[el[:, 2]] - x[el[:, 0]]) * (y[el[:, 1]] - y[el[:, 0]]))
    assert (area > 0).all() and area.sum() == pytest.approx(3e5**2)
    front = y == 3e5
    np.testing.assert_array_equal(md.mask.ice_levelset[front], 0.0)
    free = np.isnan(md.stressbalance.spcvx)
    # free vertices: interior ones and the front except its two corners
    on_boundary = np.asarray(md.mesh.vertexonboundary, bool)
    np.testing.assert_array_equal(free, ~on_boundary | (front & (x > 0) & (x < 3e5)))


@pytest.mark.parametrize("cls, law, extra", [
    (friction.weertman, "weertman", {"C": 3000.0, "m": 3.0}),
    (friction.coulomb, "coulomb", {"coefficient": 20.0, "coefficientcoulomb": 1.0, "p": 1.0, "q": 1.0}),
])
def test_pyissm_friction_classes(md, cls, law, extra):
    md.friction = cls()
    for k, v in extra.items():
        setattr(md.friction, k, v)
    state = read_model(md)
    assert state.friction.law == law
    assert set(state.friction.fields) == set(extra)


@pytest.mark.parametrize("cls, law, extra, check", [
    (calving.vonmises, "vonmises", {}, ("stress_threshold_floatingice", 150e3)),
    (calving.levermann, "levermann", {"coeff": 4.89e13}, ("coeff", 4.89e13)),
    (calving.minthickness, "minthickness", {"min_thickness": 400.0}, ("min_thickness", 400.0)),
    (calving.default, "default", {"calvingrate": 365.0}, ("calvingrate", 365.0 / YTS)),
])
def test_pyissm_calving_classes(md, cls, law, extra, check):
    md.transient.ismovingfront = 1
    md.calving = cls()
    for k, v in extra.items():
        setattr(md.calving, k, v)
    state = read_model(md)
    assert state.calving.law == law
    value = state.calving.params[check[0]]
    value = value.values if isinstance(value, Forcing) else value
    np.testing.assert_allclose(value, check[1])
    assert state.levelset.migration_max == pytest.approx(1e12 / YTS)


def test_pyissm_mismip_basalforcings(md):
    md.basalforcings = basalforcings.mismip()
    md.basalforcings.groundedice_melting_rate = np.zeros(md.mesh.numberofvertices)
    state = read_model(md)
    assert state.basalforcings.kind == "mismip"
    assert state.basalforcings.params["meltrate_factor"] == pytest.approx(0.2 / YTS)
    assert state.basalforcings.params["upperdepth_melt"] == -100.0


def test_nan_allowed_in_bed_and_spc(md):
    md.geometry.bed = np.nan  # pyISSM's "unset"
    md.stressbalance.spcvx = np.full(md.mesh.numberofvertices, np.nan)
    state = read_model(md, "StressbalanceSolution")
    assert np.isnan(state.geometry.bed).all() and state.geometry.bed.shape == (md.mesh.numberofvertices,)
    assert np.isnan(state.stressbalance.spcvx).all()
    md.geometry.bed = np.where(md.mesh.x > 5e5, np.nan, -1000.0)
    np.testing.assert_array_equal(np.isnan(read_model(md).geometry.bed), md.mesh.x > 5e5)


def test_snapshot_detects_changes(md):
    """The "md unchanged" checks below can fail: a changed value, dtype or writeable flag is seen."""
    before = snapshot(md)
    md.geometry.thickness[0] += 1.0
    with pytest.raises(AssertionError):
        assert_same(before, snapshot(md))
    md = make_square_shelf_md()
    before = snapshot(md)
    md.mesh.x.flags.writeable = False
    with pytest.raises(AssertionError):
        assert_same(before, snapshot(md))


def test_large_mesh_is_fast():
    import time

    md = make_square_shelf_md(nx=250, ny=250)  # 62 500 vertices, 124 002 elements
    md.mesh.vertexonboundary = np.nan  # recomputed from the triangles
    t0 = time.perf_counter()
    state = read_model(md)
    assert time.perf_counter() - t0 < 2.0
    assert state.mesh.vertexonboundary.sum() == 4 * 249


def test_sealevel_uniform_field(md):
    md.initialization.sealevel = np.full(md.mesh.numberofvertices, 3.5)
    assert read_model(md).sealevel == 3.5
    md.solidearth.initialsealevel = -1.0  # takes precedence when present
    assert read_model(md).sealevel == -1.0


# ----------------------------------------------------------------------------------------------------------
# ISSM's own Python classes (identified by class name)
# ----------------------------------------------------------------------------------------------------------
def issm_class(name: str, **attrs):
    """An instance of a class called ``name`` (like ISSM's ``frictionweertman``) holding ``attrs``."""
    return type(name, (SimpleNamespace,), {})(**attrs)


def issm_style_model(md):
    """The factory model re-expressed as a tree shaped like ISSM's own Python ``model``."""
    nv, ne = nv_ne(md)

    def section(name, src, **overrides):
        attrs = {k: copy.deepcopy(v) for k, v in vars(src).items()}
        attrs.update(overrides)
        return issm_class(name, **attrs)

    return SimpleNamespace(
        mesh=section("mesh2d", md.mesh), mask=section("mask", md.mask),
        geometry=section("geometry", md.geometry),
        constants=section("constants", md.constants), materials=section("matice", md.materials),
        initialization=section("initialization", md.initialization),
        stressbalance=section("stressbalance", md.stressbalance),
        masstransport=section("masstransport", md.masstransport),
        groundingline=section("groundingline", md.groundingline), levelset=section("levelset", md.levelset),
        settings=section("issmsettings", md.settings),
        timestepping=section("timestepping", md.timestepping),
        transient=section("transient", md.transient, ismovingfront=1),
        smb=issm_class("SMBforcing", mass_balance=np.full(nv, 0.5)),
        friction=issm_class("frictionweertman", C=np.full(nv, 1e4), m=3.0, linearize=0),
        basalforcings=issm_class(
            "linearbasalforcings", groundedice_melting_rate=np.zeros(nv), perturbation_melting_rate=np.nan,
            deepwater_melting_rate=np.array([[50.0, 100.0], [0.0, 5.0]]), upperwater_melting_rate=0.0,
            deepwater_elevation=-800.0, upperwater_elevation=-400.0, geothermalflux=np.zeros(ne)),
        calving=issm_class("calvinglevermann", coeff=2e13),
        frontalforcings=issm_class("frontalforcings", meltingrate=np.full(nv, 10.0), ablationrate=np.nan),
    )


def test_issm_style_class_names(md):
    tree = issm_style_model(md)
    nv, _ = nv_ne(md)
    before = snapshot(tree, "tree")
    state = read_model(tree)
    assert_same(before, snapshot(tree, "tree"))
    assert state.friction.law == "weertman"
    np.testing.assert_array_equal(state.friction.fields["m"], np.full(md.mesh.numberofelements, 3.0))
    bf = state.basalforcings
    assert bf.kind == "linear" and bf.floatingice_melting_rate is None
    deep = bf.params["deepwater_melting_rate"]
    assert isinstance(deep, Forcing) and deep.values.shape == (1, 2)
    assert global_value(deep, 2.5 * YTS) == pytest.approx(75.0 / YTS)
    assert global_value(bf.params["deepwater_elevation"], 0.0) == -800.0
    np.testing.assert_array_equal(bf.params["perturbation_melting_rate"].values, 0.0)
    assert state.calving.law == "levermann"
    np.testing.assert_array_equal(state.calving.params["coeff"], np.full(nv, 2e13))
    np.testing.assert_allclose(state.frontal_meltingrate.values, 10.0 / YTS)
    np.testing.assert_allclose(state.smb.values, 0.5 / YTS)
    assert state.transient.ismovingfront == 1


def test_issm_style_unknown_class_lists_supported(md):
    tree = issm_style_model(md)
    tree.friction = issm_class("frictionschoof", C=1.0, m=1.0, Cmax=1.0)
    with pytest.raises(ModelInputError) as info:
        read_model(tree)
    msg = str(info.value)
    assert msg.startswith("md.friction:") and "frictionweertman" in msg and "friction.default" in msg


# ----------------------------------------------------------------------------------------------------------
# malformed models: each raises ModelInputError naming the field, and leaves md untouched
# ----------------------------------------------------------------------------------------------------------
def _set(path, value):
    """Mutator: ``md.<path> = value(md)`` (value may be a constant or a function of md)."""
    def mutate(md):
        *parents, last = path.split(".")
        obj = md
        for p in parents:
            obj = getattr(obj, p)
        setattr(obj, last, value(md) if callable(value) else value)
    return mutate


def _edit(path, fn):
    """Mutator: ``md.<path> = fn(copy of md.<path>, md)``."""
    def mutate(md):
        *parents, last = path.split(".")
        obj = md
        for p in parents:
            obj = getattr(obj, p)
        setattr(obj, last, fn(np.array(getattr(obj, last), copy=True), md))
    return mutate


def _delete(path):
    def mutate(md):
        *parents, last = path.split(".")
        obj = md
        for p in parents:
            obj = getattr(obj, p)
        delattr(obj, last)
    return mutate


def _both(*mutators):
    def mutate(md):
        for m in mutators:
            m(md)
    return mutate


def _assign(a, idx, v):
    a[idx] = v
    return a


def _times_row(md, values, times):
    nv = md.mesh.numberofvertices
    return np.vstack([np.tile(values, (nv, 1)), times])


MOVING = _set("transient.ismovingfront", 1)
nv_of = lambda md: md.mesh.numberofvertices
ne_of = lambda md: md.mesh.numberofelements

MALFORMED = [
    # (id, mutation, field named in the message, extra text expected in the message, solution)
    ("higher-order-flow", _set("flowequation.isHO", 1), "flowequation.isHO", "SSA equations only",
     "TransientSolution"),
    ("thickness-short", _edit("geometry.thickness", lambda a, md: a[:-1]), "geometry.thickness",
     "expected 36 values (one per vertex), got 35", "TransientSolution"),
    ("thickness-none", _set("geometry.thickness", None), "geometry.thickness", None, "TransientSolution"),
    ("thickness-deleted", _delete("geometry.thickness"), "geometry.thickness", None, "TransientSolution"),
    ("thickness-negative",
     _both(_edit("geometry.thickness", lambda a, md: _assign(a, 3, -5.0)),
           _edit("geometry.surface", lambda a, md: _assign(a, 3, md.geometry.base[3] - 5.0))),
     "geometry.thickness", ">= 0", "TransientSolution"),
    ("thickness-nan", _edit("geometry.thickness", lambda a, md: _assign(a, 0, np.nan)), "geometry.thickness",
     "NaN", "StressbalanceSolution"),
    ("surface-inf", _edit("geometry.surface", lambda a, md: _assign(a, 2, np.inf)), "geometry.surface", "inf",
     "TransientSolution"),
    ("surface-inconsistent", _edit("geometry.surface", lambda a, md: a + 10.0), "geometry.thickness",
     "surface - base", "TransientSolution"),
    ("thickness-per-element", _set("geometry.thickness", lambda md: np.ones(ne_of(md))), "geometry.thickness",
     "one per vertex", "TransientSolution"),
    ("elements-0-based", _edit("mesh.elements", lambda a, md: a - 1), "mesh.elements", "1-based",
     "TransientSolution"),
    ("elements-out-of-range", _edit("mesh.elements", lambda a, md: _assign(a, (0, 0), nv_of(md) + 1)),
     "mesh.elements", "between 1 and", "TransientSolution"),
    ("elements-non-integer", _edit("mesh.elements", lambda a, md: _assign(a.astype(float), (1, 1), 2.5)),
     "mesh.elements", "integer", "TransientSolution"),
    ("elements-clockwise", _edit("mesh.elements", lambda a, md: _assign(a, 4, a[4, [0, 2, 1]])),
     "mesh.elements", "clockwise", "StressbalanceSolution"),
    ("elements-zero-area", _edit("mesh.elements", lambda a, md: _assign(a, 0, [1, 2, 3])), "mesh.elements",
     "zero area", "TransientSolution"),
    ("elements-4-columns", _edit("mesh.elements", lambda a, md: np.column_stack([a, a[:, 0]])),
     "mesh.elements", "shape", "TransientSolution"),
    ("x-wrong-length", _edit("mesh.x", lambda a, md: np.append(a, 0.0)), "mesh.x", "one per vertex",
     "TransientSolution"),
    ("y-nan", _edit("mesh.y", lambda a, md: _assign(a, 5, np.nan)), "mesh.y", "NaN", "TransientSolution"),
    ("segments-0-based", _edit("mesh.segments", lambda a, md: a - 1), "mesh.segments", "1-based",
     "TransientSolution"),
    ("B-per-element", _set("materials.rheology_B", lambda md: np.full(ne_of(md), 1e8)),
     "materials.rheology_B",
     "one per vertex", "TransientSolution"),
    ("n-per-vertex", _set("materials.rheology_n", lambda md: np.full(nv_of(md), 3.0)), "materials.rheology_n",
     "expected 50 values (one per element), got 36", "StressbalanceSolution"),
    ("rho-ice-negative", _set("materials.rho_ice", -917.0), "materials.rho_ice", "> 0", "TransientSolution"),
    ("friction-p-per-vertex", _set("friction.p", lambda md: np.ones(nv_of(md))), "friction.p",
     "one per element",
     "TransientSolution"),
    ("friction-coefficient-nan", _edit("friction.coefficient", lambda a, md: _assign(a, 1, np.nan)),
     "friction.coefficient", "NaN", "StressbalanceSolution"),
    ("friction-unknown-class", _set("friction", lambda md: friction.schoof()), "friction",
     "friction.weertman",
     "TransientSolution"),
    ("vx-unset", _set("initialization.vx", np.nan), "initialization.vx", "unset", "StressbalanceSolution"),
    ("spcvx-inf", _edit("stressbalance.spcvx", lambda a, md: _assign(a, 0, np.inf)), "stressbalance.spcvx",
     "inf", "StressbalanceSolution"),
    ("spcvy-short", _edit("stressbalance.spcvy", lambda a, md: a[:10]), "stressbalance.spcvy", "got 10",
     "StressbalanceSolution"),
    ("ice-levelset-length", _edit("mask.ice_levelset", lambda a, md: a[1:]), "mask.ice_levelset",
     "one per vertex", "TransientSolution"),
    ("ocean-levelset-none", _set("mask.ocean_levelset", None), "mask.ocean_levelset", None,
     "TransientSolution"),
    ("time-step-zero", _set("timestepping.time_step", 0.0), "timestepping.time_step", "positive",
     "TransientSolution"),
    ("time-step-negative", _set("timestepping.time_step", -1.0), "timestepping.time_step", "positive",
     "TransientSolution"),
    ("final-before-start", _set("timestepping.final_time", -1.0), "timestepping.final_time", "start_time",
     "TransientSolution"),
    ("basalforcings-unknown-class", _set("basalforcings", lambda md: basalforcings.pico()), "basalforcings",
     "linearbasalforcings", "TransientSolution"),
    ("calving-unknown-class", _both(MOVING, _set("calving", lambda md: calving.crevassedepth())), "calving",
     "calvingvonmises", "TransientSolution"),
    ("migration-unknown", _set("groundingline.migration", "FastMigration"), "groundingline.migration",
     "SubelementMigration", "TransientSolution"),
    ("maxiter-zero", _set("stressbalance.maxiter", 0), "stressbalance.maxiter", ">= 1",
     "StressbalanceSolution"),
    ("restol-negative", _set("stressbalance.restol", -0.1), "stressbalance.restol", "> 0",
     "StressbalanceSolution"),
    ("smb-times-not-increasing",
     _set("smb.mass_balance", lambda md: _times_row(md, [1.0, 2.0, 3.0], [0, 2, 1])),
     "smb.mass_balance", "increasing", "TransientSolution"),
    ("smb-wrong-row-count", _set("smb.mass_balance", lambda md: np.zeros((nv_of(md) + 2, 2))),
     "smb.mass_balance", "37 rows", "TransientSolution"),
    ("floating-melt-nan", _set("basalforcings.floatingice_melting_rate", np.nan),
     "basalforcings.floatingice_melting_rate", None, "TransientSolution"),
    ("basalforcings-anonymous-namespace",
     _set("basalforcings", lambda md: SimpleNamespace(**{**vars(basalforcings.linear()),
                                                         "groundedice_melting_rate": np.zeros(nv_of(md))})),
     "basalforcings", "linearbasalforcings", "TransientSolution"),
    ("output-frequency-zero", _set("settings.output_frequency", 0), "settings.output_frequency", ">= 1",
     "TransientSolution"),
    ("requested-outputs-numbers", _set("transient.requested_outputs", [1, 2]), "transient.requested_outputs",
     "strings", "TransientSolution"),
    ("levermann-negative-coeff",
     _both(MOVING, _set("calving", lambda md: calving.levermann()), _set("calving.coeff", -1.0)),
     "calving.coeff", "> 0", "TransientSolution"),
    ("frontal-melt-nan", _both(MOVING, _set("frontalforcings.meltingrate", np.nan)),
     "frontalforcings.meltingrate",
     None, "TransientSolution"),
    ("reinit-frequency-zero", _both(MOVING, _set("levelset.reinit_frequency", 0)),
     "levelset.reinit_frequency",
     ">= 1", "TransientSolution"),
    ("yts-zero", _set("constants.yts", 0.0), "constants.yts", "> 0", "TransientSolution"),
    ("sealevel-non-uniform", _set("initialization.sealevel", lambda md: np.linspace(0, 1, nv_of(md))),
     "initialization.sealevel", "uniform", "TransientSolution"),
    ("hydrology-on", _set("transient.ishydrology", 1), "transient.ishydrology", "not modelled",
     "TransientSolution"),
    ("spcvx-missing-stressbalance", _delete("stressbalance.spcvx"), "stressbalance.spcvx", None,
     "StressbalanceSolution"),
    ("interp-forcing-2", _set("timestepping.interp_forcing", 2), "timestepping.interp_forcing", "one of 0, 1",
     "TransientSolution"),
]


def test_enough_malformed_cases():
    assert len(MALFORMED) >= 25
    assert len({case[0] for case in MALFORMED}) == len(MALFORMED)


@pytest.mark.parametrize("mutate, field, text, solution", [c[1:] for c in MALFORMED],
                         ids=[c[0] for c in MALFORMED])
def test_malformed_model(mutate, field, text, solution):
    md = make_square_shelf_md()
    mutate(md)
    before = snapshot(md)
    with pytest.raises(ModelInputError) as info:
        read_model(md, solution)
    msg = str(info.value)
    assert info.value.field == f"md.{field}"
    assert msg.startswith(f"md.{field}: expected "), msg
    if text is not None:
        assert text in msg, msg
    assert_same(before, snapshot(md))


def test_linear_deepwater_series_not_increasing(md):
    md.basalforcings = basalforcings.linear()
    md.basalforcings.groundedice_melting_rate = np.zeros(md.mesh.numberofvertices)
    md.basalforcings.deepwater_melting_rate = np.array([[50.0, 100.0, 10.0], [0.0, 5.0, 4.0]])
    before = snapshot(md)
    with pytest.raises(ModelInputError, match=r"^md\.basalforcings\.deepwater_melting_rate: .*increasing"):
        read_model(md)
    assert_same(before, snapshot(md))


def test_issm_package_imports_only_lower_layers():
    """``issm_emulator.issm`` (reading md, ISSM formats and helpers) sits below the solvers' front ends: it
    imports only these packages of issm_emulator, never the root package (``__init__``)."""
    import ast
    from pathlib import Path

    import issm_emulator.issm

    allowed = ("errors", "state", "units", "graph", "progress", "_version", "physics", "solvers", "issm")
    for path in Path(issm_emulator.issm.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                parts = (node.module or "").split(".") if node.level == 2 else ["issm"]
                names = [parts[0]] if parts[0] else [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("issm_emulator"):
                tail = node.module.split(".")[1:]
                names = tail[:1] if tail else [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name.split(".")[1] if "." in a.name else "" for a in node.names
                         if a.name.startswith("issm_emulator")]
            else:
                continue
            bad = [n for n in names if n not in allowed]
            assert not bad, f"{path.name}:{node.lineno} imports issm_emulator {bad}"


def test_read_model_and_global_value_importable_from_adapter():
    import issm_emulator
    from issm_emulator.issm import adapter

    assert issm_emulator.read_model is adapter.read_model
    for name in adapter.__all__:
        assert getattr(adapter, name) is not None
