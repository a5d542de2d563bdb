"""``md.results`` as an :class:`xarray.Dataset` following CF-1.10 and UGRID-1.0.

Layout: dimensions ``time`` (output steps), ``vertex`` (``md.mesh.numberofvertices``), and, for the mesh,
``element`` x ``nodes`` (3); coordinates ``x``, ``y`` (m, per vertex) and ``time`` (model years); one
variable per result field: ``(time, vertex)`` for vertex fields, ``(time,)`` for scalars such as
``IceVolume``, ``(time, element)`` for per-element fields; ``elements`` holds ``md.mesh.elements``
**1-based**, as ISSM (``start_index = 1``).

CF and UGRID (:func:`add_cf_mesh`, also used for the ensemble files):

* ``mesh``: the UGRID mesh-topology variable (``cf_role = "mesh_topology"``, ``topology_dimension = 2``,
  ``node_coordinates = "x y"``, ``face_node_connectivity = "elements"``); every field on the mesh has
  ``mesh = "mesh"`` and ``location = "node"`` (or ``"face"``). ``xugrid.UgridDataset(ds)`` opens it.
* ``time``: the values are ISSM's model time in years; with ISSM's default year (``md.constants.yts`` =
  365 days) the attributes are ``units = "common_years since 0000-01-01 00:00:00"``, ``calendar =
  "365_day"``, under which an ISSM year is exact and the decoded date's year is the model year
  (``xr.open_dataset`` decodes it to ``cftime.DatetimeNoLeap``; ``decode_times=False`` keeps the years).
  A model with another ``yts`` keeps ``units = "yr"`` (no CF calendar has its year; see ``issm_yts``).
* ``crs``: a CF grid mapping (polar stereographic, with ``crs_wkt``) when the projection is known:
  ``md.mesh.epsg`` (ISSM's own field; the Pine Island and 79N scenarios set 3031 and 3413) or the
  ``epsg`` argument. Only EPSG 3031 and 3413 are known (:data:`GRID_MAPPINGS`); another code is refused,
  and a model without one gets no grid mapping (its x, y are a plane of unknown projection).

``units`` attributes come from :data:`issm_emulator.units.CF_UNITS` and are strings both UDUNITS and pint
read (``'m yr^-1'``, ``'m^3'``, ``'Gt yr^-1'``). Their year is the model's year (``md.constants.yts``,
also stored as the global attribute ``issm_yts``, a number): quantify with issm-emulator's registry to keep
it exact, ``ds.pint.quantify(unit_registry=issm_emulator.units.registry_for(ds.attrs['issm_yts']))``;
pint's default registry reads ``yr`` as the Julian year (365.25 d) and UDUNITS as the tropical year
(365.2422 d), both 0.07 % off ISSM's 365-day year.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from issm_emulator.errors import ModelInputError
from issm_emulator.issm.results import STEP_METADATA, solution_steps
from issm_emulator.issm.solutions import parse_solution
from issm_emulator.state import YTS_DEFAULT

#: ISSM output name -> (long_name, CF standard_name or None).
CF_METADATA: dict[str, tuple[str, str | None]] = {
    "Vx": ("ice velocity, x component", "land_ice_vertical_mean_x_velocity"),
    "Vy": ("ice velocity, y component", "land_ice_vertical_mean_y_velocity"),
    "Vz": ("ice velocity, z component", None),
    "Vel": ("ice speed", None),
    "Thickness": ("ice thickness", "land_ice_thickness"),
    "Surface": ("ice surface elevation", "surface_altitude"),
    "Base": ("ice base elevation", "base_altitude"),
    "Bed": ("bedrock elevation", "bedrock_altitude"),
    "Pressure": ("pressure", None),
    "MaskOceanLevelset": ("ocean level set (> 0 grounded, < 0 floating)", None),
    "MaskIceLevelset": ("ice level set (< 0 ice, > 0 no ice, 0 on the front)", None),
    "IceVolume": ("ice volume", None),
    "IceVolumeAboveFloatation": ("ice volume above floatation", None),
    "GroundedArea": ("grounded ice area", "grounded_ice_sheet_area"),
    "FloatingArea": ("floating ice area", "floating_ice_shelf_area"),
    "TotalSmb": ("total surface mass balance", "tendency_of_land_ice_mass_due_to_surface_mass_balance"),
    "TotalFloatingBmb": ("total basal mass balance of floating ice", None),
    "TotalGroundedBmb": ("total basal mass balance of grounded ice", None),
    "SmbMassBalance": ("surface mass balance (ice equivalent)", "land_ice_surface_specific_mass_balance_rate"),
    "BasalforcingsFloatingiceMeltingRate": ("basal melting rate of floating ice (ice equivalent)", None),
    "BasalforcingsGroundediceMeltingRate": ("basal melting rate of grounded ice (ice equivalent)", None),
    "CalvingCalvingrate": ("calving rate", None),
    "CalvingMeltingrate": ("frontal melting rate", None),
    "StressbalanceConvergenceNumSteps": ("number of nonlinear stress-balance iterations", None),
}


#: The UGRID mesh-topology variable and the CF grid-mapping variable of every dataset written.
MESH_VARIABLE = "mesh"
CRS_VARIABLE = "crs"
CONVENTIONS = "CF-1.10 UGRID-1.0"
#: the time units and calendar under which ISSM's default year (365 days) is exact
TIME_UNITS = "common_years since 0000-01-01 00:00:00"
TIME_CALENDAR = "365_day"
_YTS_365 = 365.0 * 24 * 3600

_WGS84 = {"semi_major_axis": 6378137.0, "inverse_flattening": 298.257223563,
          "reference_ellipsoid_name": "WGS 84", "longitude_of_prime_meridian": 0.0}
_WKT_GEOG = ('GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563,AUTHORITY["EPSG","7030"]],'
             'AUTHORITY["EPSG","6326"]],PRIMEM["Greenwich",0,AUTHORITY["EPSG","8901"]],UNIT["degree",'
             '0.0174532925199433,AUTHORITY["EPSG","9122"]],AUTHORITY["EPSG","4326"]]')


def _wkt(name: str, lat_ts: int, lon0: int, epsg: int) -> str:
    return (f'PROJCS["{name}",{_WKT_GEOG},PROJECTION["Polar_Stereographic"],PARAMETER["latitude_of_origin",'
            f'{lat_ts}],PARAMETER["central_meridian",{lon0}],PARAMETER["false_easting",0],PARAMETER['
            f'"false_northing",0],UNIT["metre",1,AUTHORITY["EPSG","9001"]],AUTHORITY["EPSG","{epsg}"]]')


#: EPSG code -> CF grid-mapping attributes (the WKT is GDAL's WKT1 of the code, checked against pyproj in
#: the tests): Antarctic (3031) and NSIDC Greenland (3413) polar stereographic.
GRID_MAPPINGS: dict[int, dict[str, Any]] = {
    3031: {"grid_mapping_name": "polar_stereographic", "latitude_of_projection_origin": -90.0,
           "standard_parallel": -71.0, "straight_vertical_longitude_from_pole": 0.0, "false_easting": 0.0,
           "false_northing": 0.0, **_WGS84, "epsg_code": "EPSG:3031",
           "crs_wkt": _wkt("WGS 84 / Antarctic Polar Stereographic", -71, 0, 3031)},
    3413: {"grid_mapping_name": "polar_stereographic", "latitude_of_projection_origin": 90.0,
           "standard_parallel": 70.0, "straight_vertical_longitude_from_pole": -45.0, "false_easting": 0.0,
           "false_northing": 0.0, **_WGS84, "epsg_code": "EPSG:3413",
           "crs_wkt": _wkt("WGS 84 / NSIDC Sea Ice Polar Stereographic North", 70, -45, 3413)},
}


def model_epsg(md: Any, epsg: Any = None) -> int | None:
    """The EPSG code of ``md``'s x, y: ``epsg`` when given, else ``md.mesh.epsg`` (ISSM's field; 0 or NaN
    means unknown). Raises :class:`ModelInputError` for a code without a grid mapping here."""
    field = "epsg"
    if epsg is None:
        epsg, field = getattr(getattr(md, "mesh", None), "epsg", None), "md.mesh.epsg"
    try:
        code = float(np.asarray(epsg, dtype=float).reshape(-1)[0]) if epsg is not None else math.nan
    except (TypeError, ValueError, IndexError):
        raise ModelInputError(field, "an EPSG code (3031 or 3413), or 0 for none", repr(epsg)) from None
    if not math.isfinite(code) or code == 0:
        return None
    if int(code) != code or int(code) not in GRID_MAPPINGS:
        raise ModelInputError(field, f"an EPSG code with a known CF grid mapping ({', '.join(map(str, GRID_MAPPINGS))})"
                              ", or 0 for none", repr(epsg))
    return int(code)


def time_attrs(yts: float) -> dict[str, Any]:
    """CF attributes of a time coordinate whose values are ISSM model years of ``yts`` seconds."""
    if float(yts) == _YTS_365:
        return {"units": TIME_UNITS, "calendar": TIME_CALENDAR, "standard_name": "time", "axis": "T",
                "long_name": "model time (ISSM years of 365 days; the date's year is the model year)"}
    return {"units": "yr", "axis": "T",
            "long_name": f"model time in ISSM years of {float(yts):.10g} s (no CF calendar has this year)"}


def add_cf_mesh(ds: Any, *, yts: float, epsg: int | None) -> Any:
    """``ds`` (with ``x``, ``y`` per ``vertex`` and 1-based ``elements``) with the UGRID mesh topology, the
    CF time attributes, the grid mapping of ``epsg`` (None: none) and the ``Conventions`` attribute.

    Every variable on ``vertex`` (``element``) gets ``mesh`` and ``location = "node"`` (``"face"``), and
    ``grid_mapping`` when there is one. Returns a new dataset (``ds`` is not changed).
    """
    ds = ds.copy()
    mesh_attrs = {"cf_role": "mesh_topology", "long_name": "topology of the 2-D triangular ISSM mesh",
                  "topology_dimension": np.int32(2), "node_coordinates": "x y",
                  "face_node_connectivity": "elements", "face_dimension": "element"}
    ds[MESH_VARIABLE] = ((), np.int32(0), mesh_attrs)
    elements_attrs = dict(ds["elements"].attrs)
    elements_attrs.update(cf_role="face_node_connectivity", start_index=ds["elements"].dtype.type(1),
                          long_name="vertices of each triangle (1-based, as md.mesh.elements)")
    ds["elements"].attrs = elements_attrs
    if epsg is not None:
        ds[CRS_VARIABLE] = ((), np.int32(0), dict(GRID_MAPPINGS[epsg]))
    for name in ("x", "y"):
        ds[name].attrs.update(units="m", standard_name=f"projection_{name}_coordinate",
                              long_name=f"{name} of the vertices" + (f" (EPSG:{epsg})" if epsg else ""))
    for name, var in ds.data_vars.items():
        if name in (MESH_VARIABLE, CRS_VARIABLE, "elements"):
            continue
        location = "node" if "vertex" in var.dims else "face" if "element" in var.dims else None
        if location is not None:
            var.attrs.update(mesh=MESH_VARIABLE, location=location)
            if epsg is not None:
                var.attrs["grid_mapping"] = CRS_VARIABLE
    if "time" in ds.coords or "time" in ds:
        ds["time"].attrs = {**{k: v for k, v in ds["time"].attrs.items() if k != "units"}, **time_attrs(yts)}
    ds.attrs["Conventions"] = CONVENTIONS
    return ds


def is_mesh_variable(name: str, var: Any) -> bool:
    """Whether a variable describes the mesh (topology, connectivity, grid mapping), not a field."""
    return name == "elements" or var.attrs.get("cf_role") == "mesh_topology" or "grid_mapping_name" in var.attrs


def _attrs(name: str) -> dict[str, str]:
    from issm_emulator.units import CF_UNITS

    attrs: dict[str, str] = {}
    if name in CF_UNITS:
        attrs["units"] = CF_UNITS[name]
    long_name, standard_name = CF_METADATA.get(name, (None, None))
    if standard_name:
        attrs["standard_name"] = standard_name
    if long_name:
        attrs["long_name"] = long_name
    return attrs


def _mesh(md: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mesh = getattr(md, "mesh", None)
    try:
        x = np.asarray(mesh.x, dtype=float).reshape(-1)
        y = np.asarray(mesh.y, dtype=float).reshape(-1)
        elements = np.asarray(mesh.elements)
    except (AttributeError, TypeError, ValueError):
        raise ModelInputError("md.mesh", "a 2-D mesh with x, y and elements", None) from None
    if y.shape != x.shape:
        raise ModelInputError("md.mesh.y", f"{x.size} values (one per vertex, as md.mesh.x)", str(y.size))
    if elements.ndim != 2 or elements.shape[1] != 3 or not np.issubdtype(elements.dtype, np.number):
        raise ModelInputError("md.mesh.elements", "an (ne, 3) array of 1-based vertex indices",
                              f"shape {elements.shape}")
    return x, y, elements.astype(np.int64)


def to_xarray(md: Any, solution: str = "TransientSolution", *, epsg: int | None = None, ugrid: bool = False):
    """The results of ``solution`` in ``md`` as an :class:`xarray.Dataset`.

    Parameters
    ----------
    md : pyissm.model.Model
        A model with ``md.results.<solution>`` filled (by :func:`issm_emulator.solve` or pyISSM).
    solution : str
        Which results: ``'TransientSolution'`` (default) or ``'StressbalanceSolution'``; ISSM's short
        forms (``'tr'``, ``'sb'``) are accepted.
    epsg : int, optional
        The projection of ``md.mesh.x, y`` (3031 or 3413); default ``md.mesh.epsg`` (0: none known).
    ugrid : bool
        Return an :class:`xugrid.UgridDataset` (needs the optional package ``xugrid``) instead.

    Returns
    -------
    xarray.Dataset
        See the module documentation for the layout. Fields missing in some steps are NaN there.

    Raises
    ------
    ModelInputError
        ``md.results`` holds no such solution, ``md.mesh`` is unusable, or the EPSG code is not one with
        a known grid mapping.
    """
    import xarray as xr

    from issm_emulator._version import __version__

    solution = parse_solution(solution)
    code = model_epsg(md, epsg)
    steps = solution_steps(md, solution)
    x, y, elements = _mesh(md)
    nv, ne, nt = x.size, elements.shape[0], len(steps)
    yts = float(getattr(getattr(md, "constants", None), "yts", YTS_DEFAULT) or YTS_DEFAULT)

    times = np.array([float(np.asarray(getattr(s, "time", np.nan)).reshape(-1)[0]) for s in steps])
    step_numbers = np.array([int(np.asarray(getattr(s, "step", k + 1)).reshape(-1)[0])
                             for k, s in enumerate(steps)], dtype=np.int64)

    names: list[str] = []
    for s in steps:
        names.extend(n for n in vars(s) if n not in STEP_METADATA and n not in names)

    data_vars: dict[str, Any] = {}
    for name in names:
        values = [getattr(s, name, None) for s in steps]
        arrays = [None if v is None or isinstance(v, str) else np.asarray(v).reshape(-1) for v in values]
        sizes = {a.size for a in arrays if a is not None}
        if len(sizes) != 1 or any(a is not None and not np.issubdtype(a.dtype, np.number) for a in arrays):
            continue  # strings, logs and fields of varying size have no place in the (time, ...) layout
        size = sizes.pop()
        if size == nv:
            dims: tuple[str, ...] = ("time", "vertex")
        elif size == 1:
            dims = ("time",)
        elif size == ne:
            dims = ("time", "element")
        else:
            continue
        is_int = all(a is None or np.issubdtype(a.dtype, np.integer) for a in arrays) and \
            all(a is not None for a in arrays)
        out = np.full((nt, size), np.nan) if not is_int else np.zeros((nt, size), dtype=np.int64)
        for k, a in enumerate(arrays):
            if a is not None:
                out[k] = a
        data_vars[name] = (dims, out.reshape(nt) if size == 1 else out, _attrs(name))

    data_vars["step"] = (("time",), step_numbers, {"long_name": "ISSM output step number"})
    data_vars["elements"] = (("element", "nodes"), elements, {})
    coords = {"time": ("time", times, {}), "x": ("vertex", x, {}), "y": ("vertex", y, {})}
    name = str(getattr(getattr(md, "miscellaneous", None), "name", "") or "")
    attrs = {
        "Conventions": CONVENTIONS,
        "title": f"{solution} of ISSM model {name!r}" if name else f"{solution} of an ISSM model",
        "source": f"issm-emulator {__version__}",
        "solution": solution,
        "issm_yts": yts,
        "comment": "units use the model's year of issm_yts seconds; md.mesh.elements is 1-based",
    }
    ds = add_cf_mesh(xr.Dataset(data_vars=data_vars, coords=coords, attrs=attrs), yts=yts, epsg=code)
    if ugrid:
        try:
            import xugrid
        except ImportError as exc:
            raise ImportError("to_xarray(..., ugrid=True) needs the optional package xugrid "
                              "(pip install xugrid); without it, to_xarray returns the same data as an "
                              "xarray.Dataset") from exc
        return xugrid.UgridDataset(ds)
    return ds
