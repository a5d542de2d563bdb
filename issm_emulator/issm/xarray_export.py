"""``md.results`` as an :class:`xarray.Dataset` with CF metadata.

Layout: dimensions ``time`` (output steps), ``vertex`` (``md.mesh.numberofvertices``), and, for the mesh,
``element`` x ``nodes`` (3); coordinates ``x``, ``y`` (m, per vertex) and ``time`` (years); one variable
per result field: ``(time, vertex)`` for vertex fields, ``(time,)`` for scalars such as ``IceVolume``,
``(time, element)`` for per-element fields; ``elements`` holds ``md.mesh.elements`` **1-based**, as ISSM.

``units`` attributes come from :data:`issm_emulator.units.CF_UNITS` and are strings both UDUNITS and pint
read (``'m yr^-1'``, ``'m^3'``, ``'Gt yr^-1'``). Their year is the model's year (``md.constants.yts``,
also stored as the global attribute ``issm_yts``): quantify with issm-emulator's registry to keep it
exact, ``ds.pint.quantify(unit_registry=issm_emulator.units.registry_for(ds.attrs['issm_yts']))``;
pint's default registry reads ``yr`` as the Julian year (365.25 d).
"""

from __future__ import annotations

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


def to_xarray(md: Any, solution: str = "TransientSolution"):
    """The results of ``solution`` in ``md`` as an :class:`xarray.Dataset`.

    Parameters
    ----------
    md : pyissm.model.Model
        A model with ``md.results.<solution>`` filled (by :func:`issm_emulator.solve` or pyISSM).
    solution : str
        Which results: ``'TransientSolution'`` (default) or ``'StressbalanceSolution'``; ISSM's short
        forms (``'tr'``, ``'sb'``) are accepted.

    Returns
    -------
    xarray.Dataset
        See the module documentation for the layout. Fields missing in some steps are NaN there.

    Raises
    ------
    ModelInputError
        ``md.results`` holds no such solution, or ``md.mesh`` is unusable.
    """
    import xarray as xr

    from issm_emulator._version import __version__

    solution = parse_solution(solution)
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
    data_vars["elements"] = (("element", "nodes"), elements,
                             {"long_name": "vertices of each triangle (1-based, as md.mesh.elements)",
                              "start_index": 1, "cf_role": "face_node_connectivity"})
    coords = {
        "time": ("time", times, {"units": "yr", "long_name": "model time", "axis": "T"}),
        "x": ("vertex", x, {"units": "m", "standard_name": "projection_x_coordinate", "long_name": "x"}),
        "y": ("vertex", y, {"units": "m", "standard_name": "projection_y_coordinate", "long_name": "y"}),
    }
    name = str(getattr(getattr(md, "miscellaneous", None), "name", "") or "")
    attrs = {
        "Conventions": "CF-1.8",
        "title": f"{solution} of ISSM model {name!r}" if name else f"{solution} of an ISSM model",
        "source": f"issm-emulator {__version__}",
        "solution": solution,
        "issm_yts": yts,
        "comment": "units use the model's year of issm_yts seconds; md.mesh.elements is 1-based",
    }
    return xr.Dataset(data_vars=data_vars, coords=coords, attrs=attrs)
