"""issm_emulator.to_xarray: layout, 1-based elements, CF attributes and units pint-xarray quantifies."""

from __future__ import annotations

import numpy as np
import pytest
from modelfactory import make_square_shelf_md

import issm_emulator
from issm_emulator.errors import ModelInputError
from issm_emulator.issm.results import fill_results
from issm_emulator.solvers.base import SolverResult

YTS = 365.0 * 24 * 3600


@pytest.fixture()
def md():
    md = make_square_shelf_md(nx=5, ny=4)
    nv = md.mesh.numberofvertices
    steps = [{"step": k, "time": k * YTS, "Vx": np.full(nv, 100.0 * k / YTS), "Vy": np.zeros(nv),
              "Vel": np.full(nv, 100.0 * k / YTS), "Thickness": md.geometry.thickness - k,
              "IceVolume": 5e12 * k, "TotalSmb": 1e12 / YTS, "StressbalanceConvergenceNumSteps": k}
             for k in (1, 2, 3)]
    steps[2]["GroundedArea"] = 7.0  # present in one step only: NaN elsewhere
    fill_results(md, SolverResult("TransientSolution", steps), YTS)
    return md


def test_layout(md):
    ds = issm_emulator.to_xarray(md)
    nv, ne = md.mesh.numberofvertices, md.mesh.numberofelements
    assert dict(ds.sizes) == {"time": 3, "vertex": nv, "element": ne, "nodes": 3}
    np.testing.assert_allclose(ds.time, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(ds.x, md.mesh.x)
    np.testing.assert_array_equal(ds.y, md.mesh.y)
    assert ds.Vx.dims == ("time", "vertex") and ds.Thickness.dims == ("time", "vertex")
    np.testing.assert_allclose(ds.Vx.isel(time=1), 200.0)
    np.testing.assert_allclose(ds.Thickness.isel(time=2), md.geometry.thickness - 3)
    assert ds.IceVolume.dims == ("time",)
    np.testing.assert_allclose(ds.IceVolume, [5e12, 1e13, 1.5e13])
    np.testing.assert_array_equal(ds.step, [1, 2, 3])
    assert ds.StressbalanceConvergenceNumSteps.dtype.kind == "i"
    assert np.isnan(ds.GroundedArea[:2]).all() and ds.GroundedArea[2] == 7.0
    assert "SolutionType" not in ds and "outlog" not in ds


def test_elements_are_one_based(md):
    ds = issm_emulator.to_xarray(md, "tr")
    assert ds.elements.dims == ("element", "nodes")
    np.testing.assert_array_equal(ds.elements, md.mesh.elements)
    assert ds.elements.min() == 1 and ds.elements.max() == md.mesh.numberofvertices
    assert ds.elements.attrs["start_index"] == 1


def test_cf_attributes(md):
    ds = issm_emulator.to_xarray(md)
    assert ds.attrs["Conventions"] == "CF-1.10 UGRID-1.0" and ds.attrs["source"].startswith("issm-emulator")
    assert ds.attrs["issm_yts"] == YTS
    assert ds.Thickness.attrs["standard_name"] == "land_ice_thickness"
    assert ds.Vx.attrs["units"] == "m yr^-1" and ds.TotalSmb.attrs["units"] == "Gt yr^-1"
    assert ds.IceVolume.attrs["units"] == "m^3" and ds.x.attrs["units"] == "m"
    assert all("long_name" in ds[v].attrs for v in ("Vx", "Vel", "Thickness", "IceVolume", "TotalSmb"))


def test_units_quantify_with_pint_xarray(md):
    pytest.importorskip("pint_xarray")
    from issm_emulator.units import registry_for

    ds = issm_emulator.to_xarray(md)
    q = ds.pint.quantify()  # pint's default registry reads every units string
    assert str(q.Vel.pint.units) == "meter / year"
    assert q.IceVolume.pint.to("km^3").pint.magnitude[0] == pytest.approx(5e3)
    # issm-emulator's registry keeps ISSM's year exact
    q = ds.pint.quantify(unit_registry=registry_for(ds.attrs["issm_yts"]))
    np.testing.assert_allclose(q.Vx.pint.to("m/s").pint.magnitude[0], 100.0 / YTS, rtol=1e-12)
    np.testing.assert_allclose(q.TotalSmb.pint.to("kg/s").pint.magnitude, 1e12 / YTS, rtol=1e-12)
    assert q.Thickness.pint.to("km").pint.magnitude.max() == pytest.approx((md.geometry.thickness.max() - 1) / 1e3)


def test_stressbalance_and_missing_results(md):
    with pytest.raises(ModelInputError, match=r"md\.results\.StressbalanceSolution"):
        issm_emulator.to_xarray(md, "StressbalanceSolution")
    nv = md.mesh.numberofvertices
    fill_results(md, SolverResult("StressbalanceSolution", [{"step": 1, "time": 0.0, "Vx": np.ones(nv) / YTS}]),
                 YTS)
    ds = issm_emulator.to_xarray(md, "sb")
    assert ds.sizes["time"] == 1 and ds.attrs["solution"] == "StressbalanceSolution"
    np.testing.assert_allclose(ds.Vx, 1.0)


def test_netcdf_round_trip(md, tmp_path):
    import xarray as xr

    ds = issm_emulator.to_xarray(md)
    path = tmp_path / "out.nc"
    ds.to_netcdf(path, engine="netcdf4")
    back = xr.load_dataset(path, engine="netcdf4", decode_times=False)  # time stays in model years
    xr.testing.assert_identical(back, ds)
    decoded = xr.load_dataset(path, engine="netcdf4")  # CF decoding: a 365-day calendar, year = model year
    assert [(t.year, t.month, t.day, t.calendar) for t in decoded.time.values] == \
        [(k, 1, 1, "noleap") for k in (1, 2, 3)]
