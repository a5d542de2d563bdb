"""CF-1.10 and UGRID-1.0 of the outputs (``to_xarray``, run files and ``ensemble.nc``), checked offline with
``ugrid-checks``, ``cf-units`` and ``xugrid`` (the ``dev`` extra)."""

from __future__ import annotations

import json
import numbers

import numpy as np
import pytest
from modelfactory import make_square_shelf_md

import issm_emulator
from issm_emulator.errors import ModelInputError
from issm_emulator.issm.results import fill_results
from issm_emulator.issm.xarray_export import GRID_MAPPINGS, TIME_UNITS, model_epsg
from issm_emulator.solvers.base import SolverResult

YTS = 365.0 * 24 * 3600


@pytest.fixture()
def md():
    md = make_square_shelf_md(nx=5, ny=4)
    nv = md.mesh.numberofvertices
    steps = [{"step": k, "time": k * YTS / 12, "Vx": np.full(nv, 100.0 / YTS), "Vy": np.zeros(nv),
              "Thickness": md.geometry.thickness - k, "IceVolume": 5e12 * k, "TotalSmb": 1e12 / YTS}
             for k in (1, 2, 12)]
    fill_results(md, SolverResult("TransientSolution", steps), YTS)
    return md


def ugrid_problems(path) -> list[str]:
    """Every ugrid-checks statement (requirements and advisories) about the file ``path``."""
    check = pytest.importorskip("ugrid_checks.check")
    checker = check.check_dataset(str(path), print_summary=False)
    return [r.getMessage() for r in checker.logger.report_statement_logrecords()]


def assert_units_parse(ds) -> None:
    """Every ``units`` attribute of ``ds`` (and of its time coordinate) is read by UDUNITS (cf-units)."""
    cf_units = pytest.importorskip("cf_units")
    for var in ds.variables.values():
        if "units" in var.attrs:
            cf_units.Unit(var.attrs["units"], calendar=var.attrs.get("calendar"))  # raises if unparsable


def assert_numeric_attrs(attrs) -> None:
    """Numbers are stored as numbers: no global attribute is a string that reads as a number."""
    for key, value in attrs.items():
        if isinstance(value, str) and not key.endswith("version"):  # a version is text ("0.1")
            try:
                parsed = json.loads(value)
            except ValueError:
                continue
            assert not isinstance(parsed, (int, float)), (key, value)
    for key in ("issm_yts", "run_index", "run_complete", "runs_requested", "runs_finished"):
        if key in attrs:
            assert isinstance(attrs[key], (numbers.Number, np.number)), (key, attrs[key])


def assert_cf_ugrid(ds, path, epsg=None) -> None:
    import xarray as xr

    assert ds.attrs["Conventions"] == "CF-1.10 UGRID-1.0"
    assert ds["mesh"].attrs["cf_role"] == "mesh_topology" and ds["mesh"].attrs["topology_dimension"] == 2
    assert ds["mesh"].attrs["face_node_connectivity"] == "elements" and ds["mesh"].attrs["node_coordinates"] == "x y"
    assert ds["elements"].attrs["cf_role"] == "face_node_connectivity"
    assert int(ds["elements"].attrs["start_index"]) == int(ds["elements"].values.min()) == 1
    assert int(ds["elements"].values.max()) == ds.sizes["vertex"]
    assert ds["time"].attrs["units"] == TIME_UNITS and ds["time"].attrs["calendar"] == "365_day"
    assert_units_parse(ds)
    assert_numeric_attrs(ds.attrs)
    if epsg is None:
        assert "crs" not in ds
    else:
        assert ds["crs"].attrs["grid_mapping_name"] == "polar_stereographic"
        assert ds["crs"].attrs["epsg_code"] == f"EPSG:{epsg}"
    assert ugrid_problems(path) == []
    # the 365-day year is exact: one month of ISSM's year is 365/12 days after the start
    cftime = pytest.importorskip("cftime")
    decoded = xr.open_dataset(path)
    t = decoded["time"].values
    assert isinstance(t[0], cftime.DatetimeNoLeap)
    assert (t[1] - t[0]).total_seconds() == pytest.approx(np.diff(ds["time"].values[:2])[0] * YTS, abs=1e-3)
    decoded.close()
    xugrid = pytest.importorskip("xugrid")
    uds = xugrid.open_dataset(path)
    assert uds.ugrid.grid.n_face == ds.sizes["element"] and uds.ugrid.grid.n_node == ds.sizes["vertex"]
    np.testing.assert_array_equal(uds.ugrid.grid.face_node_connectivity, ds["elements"].values - 1)
    if epsg is not None:
        assert uds.ugrid.grid.crs is not None and uds.ugrid.grid.crs.to_epsg() == epsg


@pytest.mark.parametrize("epsg", [None, 3031, 3413])
def test_to_xarray_is_cf_and_ugrid(md, tmp_path, epsg):
    ds = issm_emulator.to_xarray(md, epsg=epsg)
    assert ds.Vx.attrs["mesh"] == "mesh" and ds.Vx.attrs["location"] == "node"
    assert ("grid_mapping" in ds.Vx.attrs) == (epsg is not None)
    assert "mesh" not in ds.IceVolume.attrs
    np.testing.assert_allclose(ds.time, [1 / 12, 2 / 12, 1.0])  # in memory: model years, as md.results
    path = tmp_path / "out.nc"
    ds.to_netcdf(path)
    assert_cf_ugrid(ds, path, epsg)


def test_projection_comes_from_md_mesh_epsg(md):
    assert model_epsg(md) is None  # a model that says nothing gets no grid mapping (no guess)
    md.mesh.epsg = 3413
    assert model_epsg(md) == 3413 and "crs" in issm_emulator.to_xarray(md)
    assert model_epsg(md, 3031) == 3031  # the argument wins
    md.mesh.epsg = 32633
    with pytest.raises(ModelInputError, match=r"md\.mesh\.epsg"):
        issm_emulator.to_xarray(md)


def test_grid_mappings_agree_with_pyproj():
    pyproj = pytest.importorskip("pyproj")
    for code, attrs in GRID_MAPPINGS.items():
        assert pyproj.CRS.from_wkt(attrs["crs_wkt"]).to_epsg() == code
        assert pyproj.CRS.from_cf(attrs).equals(pyproj.CRS.from_epsg(code), ignore_axis_order=True)


def test_xugrid_object(md):
    xugrid = pytest.importorskip("xugrid")
    uds = issm_emulator.to_xarray(md, ugrid=True)
    assert isinstance(uds, xugrid.UgridDataset) and uds.ugrid.grid.n_face == md.mesh.numberofelements


def test_reduced_units_of_fractional_powers():
    from issm_emulator.datasets.member import _reduced_unit

    assert _reduced_unit("Pa s^(1/3)") == "Pa" and _reduced_unit("s^(1/2) m^(-1/2)") == "1"
    assert _reduced_unit("Pa m^(-1/m) s^(1/m)") == "Pa"


@pytest.mark.data
def test_ensemble_files_are_cf_and_ugrid(tmp_path, issm_data_dir):
    """A Pine Island ensemble of two short runs: the run files and ensemble.nc pass the same checks, with
    the Antarctic grid mapping; B and the Budd coefficient have UDUNITS units plus their full ISSM unit."""
    import xarray as xr

    from issm_emulator.datasets import EnsembleSpec, generate_ensemble

    spec = EnsembleSpec(scenario="pine_island", parameter="melt_rate", values=[0.0, 10.0], units="m yr^-1",
                        scenario_kwargs={"resolution": 10e3}, years=2 / 12, time_step=1 / 12, name="cf")
    path = generate_ensemble(spec, tmp_path / "ens", workers=1, progress=False)
    runs = sorted((tmp_path / "ens" / "runs").glob("*.nc"))
    assert len(runs) == 2
    for p in (runs[0], path):
        with xr.open_dataset(p, decode_times=False) as ds:
            assert_cf_ugrid(ds, p, 3031)
            assert ds["rheology_B"].attrs["units"] == "Pa" and ds["rheology_B"].attrs["issm_units"] == "Pa s^(1/3)"
            assert ds["friction_coefficient"].attrs["units"] == "1"
            assert ds["friction_coefficient"].attrs["issm_units"] == "s^(1/2) m^(-1/2)"
            assert ds["thickness"].attrs["grid_mapping"] == "crs" and ds["thickness"].attrs["location"] == "node"
            np.testing.assert_allclose(ds["time"].values, [1 / 12, 2 / 12])
