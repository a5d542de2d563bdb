"""One member of an ensemble: build the model of one value, solve it, and package the run as a dataset.

:func:`run_member` is what a worker executes (a local process or a dask task): it builds the model from
the spec itself, solves it with the spec's solver and returns the run's dataset
(:func:`member_dataset`, the variables of :mod:`issm_emulator.datasets.layout` without the ``run``
dimension) or a failure record, never raising; only the calling process writes files.
"""

from __future__ import annotations

import json
import time
import traceback
import warnings
from typing import Any

import numpy as np

from .layout import FIELDS, utc_now
from .spec import EnsembleError, EnsembleSpec, jsonable, scenario_label

__all__ = ["FRICTION_COEFFICIENT", "failure_result", "initial_fields", "member_dataset", "request_masks",
           "run_member"]

#: level-set output -> (its ``md.mask`` field, the ``md.transient`` flag that lets the solver move it)
_MASKS = {"MaskIceLevelset": ("ice_levelset", "ismovingfront"),
          "MaskOceanLevelset": ("ocean_levelset", "isgroundingline")}


# ------------------------------------------------------------------------------------------- one run
def request_masks(md: Any) -> None:
    """Add ``MaskOceanLevelset`` and ``MaskIceLevelset`` to ``md.transient.requested_outputs`` (if absent)."""
    transient = getattr(md, "transient", None)
    if transient is None:
        return
    outputs = list(np.atleast_1d(getattr(transient, "requested_outputs", ["default"]) or ["default"]))
    outputs = [str(o) for o in outputs]
    for name in ("MaskOceanLevelset", "MaskIceLevelset"):
        if name not in outputs:
            outputs.append(name)
    transient.requested_outputs = outputs


def member_dataset(md: Any, spec: EnsembleSpec, index: int, value: Any) -> Any:
    """The per-run dataset of a solved model: dims ``(time, vertex)``, variables as in the ensemble file
    (:mod:`issm_emulator.datasets.layout`) without the ``run`` dimension.

    A level set the solver did not output is taken from ``md.mask`` and held constant, which is exact when
    the model keeps it fixed (``ismovingfront = 0`` for ``ice_levelset``, ``isgroundingline = 0`` for
    ``ocean_levelset``); otherwise :class:`EnsembleError` is raised.
    """
    import xarray as xr

    from issm_emulator._version import __version__
    from issm_emulator.issm.xarray_export import CONVENTIONS, add_cf_mesh, model_epsg, to_xarray
    from issm_emulator.units import CF_UNITS

    full = to_xarray(md, "TransientSolution")
    nt = full.sizes["time"]
    missing = [k for k in ("Vx", "Vy", "Thickness", "Surface", "Base") if k not in full.data_vars]
    if missing:
        raise EnsembleError(f"solver {spec.solver_name!r} did not output {', '.join(missing)} in "
                            "md.results.TransientSolution")
    data: dict[str, Any] = {}
    for issm_name, name in FIELDS.items():
        if issm_name in full.data_vars and full[issm_name].dims == ("time", "vertex") \
                and not np.isnan(full[issm_name].values).all():
            arr = np.asarray(full[issm_name].values, dtype=np.float64)
            attrs = dict(full[issm_name].attrs)
        elif issm_name in _MASKS:
            flag = _MASKS[issm_name][1]
            if int(getattr(md.transient, flag, 0) or 0):
                raise EnsembleError(f"solver {spec.solver_name!r} did not output {issm_name} although "
                                    f"md.transient.{flag} = 1")
            initial = np.asarray(getattr(md.mask, _MASKS[issm_name][0]), dtype=np.float64).reshape(-1)
            arr = np.broadcast_to(initial, (nt, initial.size)).copy()
            attrs = {"comment": f"not output by the solver; md.mask.{_MASKS[issm_name][0]} held constant "
                                f"(md.transient.{flag} = 0)"}
        else:  # pragma: no cover - the required fields were checked above
            continue
        attrs["units"] = CF_UNITS[issm_name]
        attrs["issm_name"] = issm_name
        data[name] = (("time", "vertex"), arr, attrs)
    for name, var in full.data_vars.items():
        if var.dims == ("time",) and name in CF_UNITS and CF_UNITS[name] != "1" \
                and np.issubdtype(var.dtype, np.floating):
            data[name] = (("time",), np.asarray(var.values, dtype=np.float64), dict(var.attrs))
    from issm_emulator.issm.adapter import read_model

    state = read_model(md, "Transient")  # md's inputs are not changed by the solve: the state at start_time
    for name, (dims, arr, units, long_name) in initial_fields(state).items():
        attrs = {"units": units, "long_name": long_name, **_REDUCED_UNITS.get(name, {})}
        if name in _REDUCED_UNITS:  # UDUNITS has integer powers only: units of the value / (1 s^(1/n) ...)
            attrs.update(units=_reduced_unit(units), issm_units=units)
        if name == "friction_coefficient":
            attrs["friction_law"] = state.friction.law
        data[name] = (dims, arr, attrs)
    data["elements"] = full["elements"]
    ds = xr.Dataset(data, coords={"time": full["time"], "x": full["x"], "y": full["y"]})
    ds = ds.assign_coords({name: ((), v, spec.coord_attrs(name)) for name, v in spec.value_coords(value).items()})
    try:
        from issm_emulator.plugins.manager import get_registry

        solver_version = (str(spec.solver.version) if not isinstance(spec.solver, str)
                          else get_registry().describe(spec.solver)["version"])
    except Exception:  # noqa: BLE001 - provenance only; the run itself succeeded
        solver_version = "unknown"
    ds.attrs = {
        "Conventions": CONVENTIONS,
        "title": f"run {index} of ensemble {spec.name}: " + ", ".join(
            f"{k} = {v}" for k, v in spec.value_coords(value).items()),
        "source": f"issm-emulator {__version__}",
        "ensemble": spec.name,
        "scenario": scenario_label(spec.scenario),
        "parameter": spec.parameter,
        "parameter_units": spec.units or "",
        "parameters": json.dumps(list(spec.parameters)),
        **spec.ensemble_attrs(),
        "run_index": int(index),
        "run_fingerprint": spec.fingerprint(value),
        "solver": spec.solver_name,
        "solver_version": solver_version,
        "solver_options": json.dumps(jsonable(spec.solver_options), sort_keys=True),
        "scenario_kwargs": json.dumps(jsonable(spec.scenario_call_kwargs(value)), sort_keys=True),
        "issm_yts": float(full.attrs.get("issm_yts", 365.0 * 24 * 3600)),
        "created": utc_now(),
        "run_complete": 1,
    }
    return add_cf_mesh(ds, yts=ds.attrs["issm_yts"], epsg=model_epsg(md))


#: Fields whose ISSM unit has a fractional power (``Pa s^(1/3)``), which UDUNITS cannot parse: their
#: ``units`` is the unit of the value divided by the fractional part at 1 (``Pa``; ``1``), the full unit is
#: ``issm_units`` (pint reads it), and ``comment`` says so.
_REDUCED_UNITS = {name: {"comment": "UDUNITS has integer powers only: 'units' is the unit of the value divided "
                         "by the fractional-power part taken at 1 (e.g. B / (1 s^(1/3)) in Pa); 'issm_units' "
                         "is the full unit"}
                  for name in ("rheology_B", "friction_coefficient")}


def _reduced_unit(unit: str) -> str:
    """``'Pa s^(1/3)'`` -> ``'Pa'``, ``'s^(1/2) m^(-1/2)'`` -> ``'1'``: the factors with fractional powers
    dropped (see :data:`_REDUCED_UNITS`)."""
    kept = [f for f in unit.split() if "/" not in f]
    return " ".join(kept) or "1"


#: friction law -> (ISSM field of the basal friction coefficient, its SI unit)
FRICTION_COEFFICIENT = {"budd": ("coefficient", "s^(1/2) m^(-1/2)"), "coulomb": ("coefficient", "s^(1/2) m^(-1/2)"),
                        "weertman": ("C", "Pa m^(-1/m) s^(1/m)")}


def _hardness_unit(n: Any) -> str:
    ns = np.unique(np.asarray(n, float))
    return f"Pa s^(1/{ns[0]:g})" if ns.size == 1 else "Pa s^(1/n)"


def initial_fields(state: Any) -> dict[str, tuple[tuple[str, ...], np.ndarray, str, str]]:
    """The initial state (at ``md.timestepping.start_time``) and the static fields of a run, as stored in
    the ensemble: ``{name: (dims, array, CF units, long name)}`` in ISSM's user units (m/yr for velocities
    and rates, m, Pa, yr).

    ``vx0, vy0`` are ``md.initialization.vx/vy``; ``thickness0, surface0, base0`` ``md.geometry``;
    ``ice_levelset0, ocean_levelset0`` ``md.mask``; ``bed``; ``friction_coefficient`` (Budd/Coulomb
    ``coefficient`` or Weertman ``C``, SI, law in the attribute ``friction_law``); ``rheology_B``;
    ``smb`` and ``floatingice_melting_rate`` / ``groundedice_melting_rate`` evaluated at the start time
    (a parameterised floating melt on the initial geometry); ``spcvx, spcvy`` (NaN = free);
    ``calving_stress_threshold`` (von Mises calving, floating ice, Pa, first vertex: the value is uniform
    in the built-in sweeps); scalars ``start_time`` (yr), ``rho_ice``, ``rho_water`` (kg m^-3).
    """
    yts = float(state.yts)
    t0 = float(state.timestepping.start_time)
    interp = bool(state.timestepping.interp_forcing)
    v = ("vertex",)
    out: dict[str, tuple[tuple[str, ...], np.ndarray, str, str]] = {
        "vx0": (v, np.asarray(state.vx, float) * yts, "m yr^-1", "initial ice velocity x (md.initialization.vx)"),
        "vy0": (v, np.asarray(state.vy, float) * yts, "m yr^-1", "initial ice velocity y (md.initialization.vy)"),
        "thickness0": (v, np.asarray(state.geometry.thickness, float), "m", "initial ice thickness"),
        "surface0": (v, np.asarray(state.geometry.surface, float), "m", "initial surface elevation"),
        "base0": (v, np.asarray(state.geometry.base, float), "m", "initial base elevation"),
        "ice_levelset0": (v, np.asarray(state.masks.ice_levelset, float), "m", "initial ice level set"),
        "ocean_levelset0": (v, np.asarray(state.masks.ocean_levelset, float), "m", "initial ocean level set"),
        "bed": (v, np.asarray(state.geometry.bed, float), "m", "bed elevation (md.geometry.bed)"),
        "rheology_B": (v, np.asarray(state.materials.rheology_B, float), _hardness_unit(state.materials.rheology_n),
                       "ice hardness B (md.materials.rheology_B)"),
        "smb": (v, np.asarray(state.smb.at(t0, interp), float) * yts, "m yr^-1",
                "surface mass balance at the start time, ice equivalent (md.smb.mass_balance)"),
        "spcvx": (v, np.asarray(state.stressbalance.spcvx, float) * yts, "m yr^-1",
                  "prescribed velocity x (md.stressbalance.spcvx), NaN = free"),
        "spcvy": (v, np.asarray(state.stressbalance.spcvy, float) * yts, "m yr^-1",
                  "prescribed velocity y (md.stressbalance.spcvy), NaN = free"),
        "start_time": ((), np.asarray(t0 / yts), "yr", "model time of the initial state"),
        "rho_ice": ((), np.asarray(float(state.materials.rho_ice)), "kg m^-3", "ice density"),
        "rho_water": ((), np.asarray(float(state.materials.rho_water)), "kg m^-3", "sea water density"),
    }
    law = state.friction.law
    if law in FRICTION_COEFFICIENT:
        key, unit = FRICTION_COEFFICIENT[law]
        out["friction_coefficient"] = (v, np.asarray(state.friction.fields[key], float), unit,
                                       f"basal friction coefficient (md.friction.{key}, {law} law)")
    bf = state.basalforcings
    if bf.kind in ("linear", "mismip") or bf.floatingice_melting_rate is not None:
        from issm_emulator.physics.melt import floating_melt_rate

        fmb = floating_melt_rate(state, t0, base=np.asarray(state.geometry.base, float))
        out["floatingice_melting_rate"] = (v, np.asarray(fmb, float) * yts, "m yr^-1",
                                           (f"floating-ice basal melt rate at the start time ({bf.kind} "
                                            "parameterisation, initial geometry)"))
    out["groundedice_melting_rate"] = (v, np.asarray(bf.groundedice_melting_rate.at(t0, interp), float) * yts,
                                       "m yr^-1", "grounded-ice basal melt rate at the start time")
    if state.calving.law == "vonmises":
        thr = np.asarray(state.calving.params["stress_threshold_floatingice"], float).reshape(-1)
        out["calving_stress_threshold"] = ((), np.asarray(thr[0]), "Pa",
                                           "von Mises calving stress threshold, floating ice")
    return out


def failure_result(index: int, value: Any, exc: BaseException, tb: str | None = None) -> dict[str, Any]:
    """The result of a failed run (see :func:`run_member`): the exception's type, message and traceback."""
    return {"ok": False, "index": int(index), "value": value,
            "error_type": f"{type(exc).__module__}.{type(exc).__qualname__}", "message": str(exc),
            "traceback": tb if tb is not None else "".join(traceback.format_exception(exc))}


def run_member(spec: EnsembleSpec, index: int, value: Any) -> dict[str, Any]:
    """Build, solve and package one run (this is what a worker executes).

    Returns ``{'ok': True, 'index', 'value', 'dataset', 'wall_time_s', 'warnings'}`` or, when anything
    raised, ``{'ok': False, 'index', 'value', 'error_type', 'message', 'traceback'}``.
    """
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            md = spec.build_model(value)
            request_masks(md)
            from issm_emulator.api import solve

            solve(md, "Transient", solver=spec.solver, **spec.solver_options)
            ds = member_dataset(md, spec, index, value)
        messages = list(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))
        wall = time.perf_counter() - t0
        ds.attrs["wall_time_s"] = round(wall, 3)
        ds.attrs["warnings"] = json.dumps(messages[:20])
        return {"ok": True, "index": int(index), "value": value, "dataset": ds, "wall_time_s": wall,
                "warnings": messages}
    except Exception as exc:  # noqa: BLE001 - every failure is recorded, the ensemble goes on
        return failure_result(index, value, exc)
