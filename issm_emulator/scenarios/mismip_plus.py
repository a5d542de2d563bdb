"""MISMIP+ (Asay-Davis et al., 2016, GMD 9, 2471-2497): an idealised marine ice stream in a channel.

Domain ``[0, 640 km] x [0, 80 km]``, calving front fixed at ``x = 640 km``, bed

    B(x, y) = max(Bx(x) + By(y), -720 m)
    Bx = B0 + B2 x'^2 + B4 x'^4 + B6 x'^6,  x' = x / 300 km,
         B0 = -150 m, B2 = -728.8 m, B4 = 343.91 m, B6 = -50.57 m
    By = dc / (1 + exp(-2 (y - Ly/2 - wc) / fc)) + dc / (1 + exp(2 (y - Ly/2 + wc) / fc)),
         Ly = 80 km, fc = 4 km, dc = 500 m, wc = 24 km

with Weertman sliding ``tau_b = C |u|^(m-1) u`` (m = 1/3, C = 3.16e6 Pa m^-1/3 s^1/3), Glen's law
with ``A = 6.338e-25 Pa^-3 s^-1``, accumulation 0.3 m/yr, rho_i = 918, rho_w = 1028 kg m^-3,
g = 9.81 m s^-2 and a year of 31 556 926 s.

**Weertman in ISSM.** ISSM's ``Friction::GetAlpha2Weertman`` computes the drag coefficient
``alpha2 = C_issm^2 |u|^(1/m_issm - 1)`` (so ``tau_b = C_issm^2 |u|^(1/m_issm - 1) u``; pyISSM's
docstring still shows the older ``C^(-1/m)`` form). Matching the MISMIP+ law term by term gives
``m_issm = 1 / m`` = 3 and ``C_issm = sqrt(C)`` = 1777.64 Pa^1/2 m^-1/6 s^1/6 (see
:func:`weertman_issm_parameters`), the values of ISSM's own MISMIP+ set-up (where the same law is
written as Budd with ``p = 3, q = 0``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from issm_emulator._files import atomic_write
from issm_emulator._version import __version__
from issm_emulator.errors import ModelInputError

from .pine_island import (
    _length_m,
    _positive_int,
    _years,
    new_model,
    set_initial_velocity,
    set_ssa,
    set_transient,
)

__all__ = [
    "EXPERIMENTS",
    "MISMIP_PLUS",
    "mismip_plus",
    "mismip_plus_bed",
    "mismip_plus_spinup",
    "spinup_cache_path",
    "weertman_issm_parameters",
]

#: The MISMIP+ constants (SI, rates in m/yr).
MISMIP_PLUS: dict[str, float] = {
    "Lx": 640e3, "Ly": 80e3,
    "B0": -150.0, "B2": -728.8, "B4": 343.91, "B6": -50.57, "xbar": 300e3, "Bmax_depth": -720.0,
    "fc": 4e3, "dc": 500.0, "wc": 24e3,
    "C": 3.16e6, "m": 1.0 / 3.0, "A": 6.338e-25, "n": 3.0,
    "accumulation": 0.3, "rho_ice": 918.0, "rho_water": 1028.0, "g": 9.81, "yts": 31556926.0,
    "melt_Omega": 0.2, "melt_Hc0": 75.0, "melt_z0": -100.0,
    "calving_melt": 100.0, "calving_x": 480e3,
}

#: Experiment -> (start time, default duration in years, melt: None | 'mismip' | 'calving').
EXPERIMENTS: dict[str, tuple[float, float, str | None]] = {
    "Ice0": (0.0, 100.0, None),
    "Ice1r": (0.0, 100.0, "mismip"),
    "Ice1ra": (100.0, 900.0, None),
    "Ice1rr": (100.0, 900.0, "mismip"),
    "Ice2r": (0.0, 100.0, "calving"),
    "Ice2ra": (100.0, 900.0, None),
    "Ice2rr": (100.0, 900.0, "calving"),
}

REQUESTED_OUTPUTS = ("default", "IceVolume", "IceVolumeAboveFloatation", "GroundedArea", "FloatingArea",
                     "TotalFloatingBmb")

_WALL_TOL = 0.1  # m, as ISSM's MISMIP+ set-up: a vertex within 0.1 m of a wall is on it


def mismip_plus_bed(x: Any, y: Any) -> np.ndarray:
    """The MISMIP+ bed B(x, y) (m) at points ``x``, ``y`` (m); see the module docstring."""
    c = MISMIP_PLUS
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    xp = x / c["xbar"]
    bx = c["B0"] + c["B2"] * xp ** 2 + c["B4"] * xp ** 4 + c["B6"] * xp ** 6
    half = c["Ly"] / 2.0
    by = (c["dc"] / (1.0 + np.exp(-2.0 * (y - half - c["wc"]) / c["fc"]))
          + c["dc"] / (1.0 + np.exp(2.0 * (y - half + c["wc"]) / c["fc"])))
    return np.maximum(bx + by, c["Bmax_depth"])


def weertman_issm_parameters(C: float = MISMIP_PLUS["C"], m: float = MISMIP_PLUS["m"]) -> tuple[float, float]:
    """ISSM's Weertman ``(friction.C, friction.m)`` for the law ``tau_b = C |u|^(m-1) u`` (SI).

    ISSM: ``tau_b = C_issm^2 |u|^(1/m_issm - 1) u``, hence ``m_issm = 1/m`` and ``C_issm = sqrt(C)``.
    """
    if not (C > 0 and m > 0 and math.isfinite(C) and math.isfinite(m)):
        raise ValueError(f"weertman_issm_parameters: C and m must be positive, got C={C!r}, m={m!r}")
    return math.sqrt(C), 1.0 / m


def mismip_plus(resolution: Any = 4e3, experiment: str = "Ice0", *, years: Any = None, time_step: Any = 1.0,
                output_frequency: int = 1, initial: Any = None, initial_thickness: float = 100.0) -> Any:
    """A MISMIP+ experiment as a pyISSM model (SSA, Weertman sliding, grounding-line migration).

    Experiments (times in years, following the MISMIP+ protocol; ``years`` overrides the duration):

    ===========  ==========  =========================================================================
    experiment   time span   ocean forcing
    ===========  ==========  =========================================================================
    Ice0         0 - 100     none (control run from the spun-up steady state)
    Ice1r        0 - 100     MISMIP+ melt (``basalforcings.mismip``): m = Omega tanh(Hc/Hc0)
                             max(z0 - zb, 0), Omega = 0.2 /yr, Hc0 = 75 m, z0 = -100 m,
                             Hc = zb - bed the water-column thickness
    Ice1ra       100 - 1000  none (re-advance; start from the Ice1r state at year 100)
    Ice1rr       100 - 1000  the Ice1r melt continued (start from the Ice1r state at year 100)
    Ice2r        0 - 100     "calving event": 100 m/yr melt of floating ice where x > 480 km
    Ice2ra       100 - 1000  none (start from the Ice2r state at year 100)
    Ice2rr       100 - 1000  the Ice2r melt continued (start from the Ice2r state at year 100)
    ===========  ==========  =========================================================================

    Approximations: Ice2r removes the shelf downstream of x = 480 km by the protocol's own substitute for
    models without calving, a 100 m/yr melt rate applied to floating ice there (ISSM applies
    ``floatingice_melting_rate`` only where the ice floats); the calving front stays at x = 640 km
    (``ismovingfront = 0``, ``ice_levelset = 0`` on the x = 640 km vertices). The melt is switched off in
    the ``*a`` experiments by starting them as separate runs at year 100, as the protocol does.

    Set-up: ``triangle`` mesh of the rectangle at ``resolution``; bed :func:`mismip_plus_bed`; Weertman
    friction ``C = sqrt(3.16e6)``, ``m = 3`` in ISSM's convention (:func:`weertman_issm_parameters`) on
    the grounded part of the ice; ``B = A^(-1/3)`` = 1.1642e8 Pa s^(1/3), ``n = 3``
    (``rheology_law = 'None'``); SMB 0.3 m/yr; free slip on the side walls (``spcvy = 0`` on y = 0 and
    y = 80 km), no flow at x = 0 (``spcvx = spcvy = 0``); ``SubelementMigration``; stress balance
    ``restol = reltol = 0.01``, ``abstol = NaN``.

    Initial state: ``initial`` (a pyISSM model on the same mesh, whose last ``TransientSolution`` step or
    else its geometry and initial velocity are used, or a mapping/xarray Dataset with ``thickness``,
    ``surface``, ``base``, ``vx``, ``vy`` per vertex, e.g. from :func:`mismip_plus_spinup`). Without it, a
    uniform slab of ``initial_thickness`` m: grounded (base on the bed) where ``H > -(rho_w/rho_i) bed``,
    floating in hydrostatic equilibrium elsewhere, with ``vx = 1 m/yr, vy = 0`` (ISSM's MISMIP+ set-up
    starts from 1 m/yr so that the first viscosity is finite); only a sensible start for a spin-up.

    ``ocean_levelset`` is the continuous flotation level set ISSM's migration writes,
    ``H + (rho_w / rho_i) bed`` (> 0 grounded).

    Parameters
    ----------
    resolution : float, pint Quantity or str
        Element size (plain numbers in m).
    experiment : str
        One of :data:`EXPERIMENTS`.
    years, time_step : float, Quantity, str (years); ``years`` None = the protocol's duration.
    output_frequency : int
    initial : pyissm Model, Mapping, xarray.Dataset or None
    initial_thickness : float
        Slab thickness (m) when ``initial`` is None.

    Returns
    -------
    pyissm.model.Model
    """
    from pyissm.model.classes import basalforcings, friction

    from issm_emulator.issm.setup import triangle_mesh

    if experiment not in EXPERIMENTS:
        raise ModelInputError("experiment", f"one of {sorted(EXPERIMENTS)}", repr(experiment))
    start, default_duration, forcing = EXPERIMENTS[experiment]
    c = MISMIP_PLUS
    res = _length_m(resolution, "resolution")
    duration = default_duration if years is None else _years(years, "md.timestepping.final_time")
    dt = _years(time_step, "md.timestepping.time_step")
    if dt > duration:
        raise ModelInputError("md.timestepping.time_step", f"at most the run length ({duration} yr)", f"{dt} yr")
    freq = _positive_int(output_frequency, "md.settings.output_frequency")
    if not (np.isfinite(initial_thickness) and initial_thickness > 0):
        raise ModelInputError("initial_thickness", "a positive thickness (m)", repr(initial_thickness))

    md = new_model(f"MISMIP+{experiment}")
    outline = {"name": "MISMIP+", "x": np.array([0.0, c["Lx"], c["Lx"], 0.0, 0.0]),
               "y": np.array([0.0, 0.0, c["Ly"], c["Ly"], 0.0]), "closed": True}
    triangle_mesh(md, outline, res)
    x, y = md.mesh.x, md.mesh.y
    nv, ne = md.mesh.numberofvertices, md.mesh.numberofelements

    md.constants.g = c["g"]
    md.constants.yts = c["yts"]
    md.materials.rho_ice = c["rho_ice"]
    md.materials.rho_water = c["rho_water"]
    md.materials.rheology_B = np.full(nv, c["A"] ** (-1.0 / c["n"]))
    md.materials.rheology_n = np.full(ne, c["n"])
    md.materials.rheology_law = "None"

    bed = mismip_plus_bed(x, y)
    md.geometry.bed = bed
    state = _initial_state(md, initial, initial_thickness, bed)
    md.geometry.thickness = state["thickness"]
    md.geometry.base = state["base"]
    md.geometry.surface = state["base"] + state["thickness"]
    set_initial_velocity(md, state["vx"], state["vy"])
    md.initialization.temperature = np.full(nv, 268.15)  # unused (isthermal = 0); pyISSM checks it exists
    md.mask.ocean_levelset = md.geometry.thickness + c["rho_water"] / c["rho_ice"] * bed
    ice = -np.ones(nv)
    front = np.abs(x - c["Lx"]) < _WALL_TOL
    ice[front] = 0.0
    md.mask.ice_levelset = ice

    C_issm, m_issm = weertman_issm_parameters(c["C"], c["m"])
    md.friction = friction.weertman()
    md.friction.C = np.full(nv, C_issm)
    md.friction.m = np.full(ne, m_issm)
    md.friction.linearize = 0

    set_ssa(md)
    _set_walls(md, front)

    md.smb.mass_balance = np.full(nv, c["accumulation"])
    if forcing == "mismip":
        md.basalforcings = basalforcings.mismip()
        md.basalforcings.meltrate_factor = c["melt_Omega"]
        md.basalforcings.threshold_thickness = c["melt_Hc0"]
        md.basalforcings.upperdepth_melt = c["melt_z0"]
        md.basalforcings.geothermalflux = np.zeros(nv)
    else:
        md.basalforcings = basalforcings.default()
        melt = np.zeros(nv)
        if forcing == "calving":
            melt[x > c["calving_x"]] = c["calving_melt"]
        md.basalforcings.floatingice_melting_rate = melt
        md.basalforcings.geothermalflux = np.zeros(nv)
    md.basalforcings.groundedice_melting_rate = np.zeros(nv)

    md.masstransport.stabilization = 1
    md.stressbalance.restol = 0.01
    md.stressbalance.reltol = 0.01
    md.stressbalance.abstol = np.nan
    md.stressbalance.maxiter = 100
    md.groundingline.migration = "SubelementMigration"
    set_transient(md, duration=duration, time_step=dt, output_frequency=freq, isgroundingline=1,
                  ismovingfront=0, requested_outputs=REQUESTED_OUTPUTS, start_time=start)
    return md


def _set_walls(md: Any, front: np.ndarray) -> None:
    """Free slip on y = 0 and y = Ly (spcvy = 0), no flow at x = 0, nothing imposed on the front."""
    c = MISMIP_PLUS
    x, y = md.mesh.x, md.mesh.y
    nv = md.mesh.numberofvertices
    spcvx = np.full(nv, np.nan)
    spcvy = np.full(nv, np.nan)
    sides = (np.abs(y) < _WALL_TOL) | (np.abs(y - c["Ly"]) < _WALL_TOL)
    spcvy[sides] = 0.0
    inflow = np.abs(x) < _WALL_TOL
    spcvx[inflow] = 0.0
    spcvy[inflow] = 0.0
    md.stressbalance.spcvx = spcvx
    md.stressbalance.spcvy = spcvy
    md.stressbalance.spcvz = np.full(nv, np.nan)
    md.stressbalance.referential = np.full((nv, 6), np.nan)
    md.stressbalance.loadingforce = np.zeros((nv, 3))
    md.masstransport.spcthickness = np.full(nv, np.nan)
    onb = np.asarray(md.mesh.vertexonboundary).astype(bool)
    on_wall = sides | inflow | front
    if np.any(onb & ~on_wall):
        raise RuntimeError("mismip_plus: a boundary vertex lies on no wall of the rectangle (mesh error)")
    md.thermal.spctemperature = np.full(nv, np.nan)
    md.hydrology.spcwatercolumn = np.column_stack([onb.astype(float), np.zeros(nv)])


def _initial_state(md: Any, initial: Any, slab: float, bed: np.ndarray) -> dict[str, np.ndarray]:
    c = MISMIP_PLUS
    nv = md.mesh.numberofvertices
    di = c["rho_ice"] / c["rho_water"]
    if initial is None:
        h = np.full(nv, float(slab))
        grounded = h > -bed / di
        base = np.where(grounded, bed, -di * h)
        return {"thickness": h, "base": base, "vx": np.ones(nv), "vy": np.zeros(nv)}
    fields = _fields_of(initial)
    out = {}
    for key in ("thickness", "base", "vx", "vy", "x", "y"):
        if key not in fields:
            continue
        arr = np.asarray(fields[key], dtype=np.float64).ravel()
        if arr.size != nv:
            raise ModelInputError(f"initial.{key}", f"{nv} values (the MISMIP+ mesh at this resolution)",
                                  f"{arr.size} values")
        out[key] = arr
    for key in ("thickness", "base", "vx", "vy"):
        if key not in out:
            raise ModelInputError(f"initial.{key}", "a per-vertex field of the initial state", "nothing")
    if "x" in out and not (np.allclose(out["x"], md.mesh.x, atol=1e-6) and np.allclose(out["y"], md.mesh.y, atol=1e-6)):
        raise ModelInputError("initial.x/y", "the vertices of the MISMIP+ mesh at this resolution",
                              "other coordinates")
    if np.any(out["thickness"] <= 0) or np.any(~np.isfinite(out["thickness"])):
        raise ModelInputError("initial.thickness", "positive finite values", "non-positive or NaN values")
    base = np.maximum(out["base"], bed)  # grounded ice sits on the bed (ISSM requires base >= bed)
    return {"thickness": out["thickness"], "base": base, "vx": out["vx"], "vy": out["vy"]}


def _fields_of(initial: Any) -> dict[str, Any]:
    """Per-vertex initial fields from a pyISSM model (last transient step if any) or a mapping."""
    if isinstance(initial, Mapping) or hasattr(initial, "data_vars"):
        return {k: np.asarray(initial[k]) for k in ("thickness", "surface", "base", "vx", "vy", "x", "y")
                if k in initial}
    if not hasattr(initial, "geometry"):
        raise ModelInputError("initial", "a pyISSM model, a mapping or an xarray Dataset of per-vertex fields",
                              type(initial).__name__)
    out = {"x": initial.mesh.x, "y": initial.mesh.y}
    steps = getattr(getattr(getattr(initial, "results", None), "TransientSolution", None), "steps", None)
    if steps:
        last = steps[-1]
        out.update(thickness=last.Thickness, base=last.Base, vx=last.Vx, vy=last.Vy)
    else:
        out.update(thickness=initial.geometry.thickness, base=initial.geometry.base,
                   vx=initial.initialization.vx, vy=initial.initialization.vy)
    return out


def _default_cache_dir() -> Path:
    import pooch

    return Path(pooch.os_cache("issm-emulator")) / "mismip-plus"


def spinup_cache_path(resolution: Any, years: Any, time_step: Any = 1.0, solver: str = "fem",
                      cache_dir: Any = None) -> Path:
    """Where :func:`mismip_plus_spinup` caches its steady state (NetCDF)."""
    res = _length_m(resolution, "resolution")
    yrs = _years(years, "years")
    dt = _years(time_step, "md.timestepping.time_step")
    folder = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
    return folder / f"mismip_plus_Ice0_spinup_{res:.6g}m_{yrs:.6g}yr_dt{dt:.6g}yr_{solver}.nc"


def mismip_plus_spinup(resolution: Any = 4e3, years: Any = 10000.0, *, time_step: Any = 1.0, solver: str = "fem",
                       cache_dir: Any = None, initial_thickness: float = 100.0,
                       drift_tolerance: float = 1e-3) -> Any:
    """Spin MISMIP+ up to steady state (Ice0 forcing) and return an ``'Ice0'`` model starting from it.

    Runs :func:`mismip_plus` ``'Ice0'`` for ``years`` from a slab of ``initial_thickness`` m with
    ``issm_emulator.solve(md, 'Transient', solver=solver)`` and stores the final state (``thickness``,
    ``surface``, ``base``, ``vx``, ``vy``, ``ocean_levelset`` and the vertex coordinates, plus the
    grounded-area history) as NetCDF in ``cache_dir`` (default: the pooch cache folder
    ``pooch.os_cache('issm-emulator')/mismip-plus``), keyed by resolution, years, time step and solver
    (:func:`spinup_cache_path`). The file is written to a temporary name and renamed, so an interrupted
    run never leaves a partial cache; later calls read it instead of running again.

    The grounding line should have stopped moving: the relative change of the grounded area over the
    last tenth of the run is stored (attribute ``grounded_area_drift``) and a ``RuntimeWarning`` is issued
    when it exceeds ``drift_tolerance`` (run longer).

    Returns
    -------
    pyissm.model.Model
        ``mismip_plus(resolution, 'Ice0', initial=<steady state>)`` (t = 0 - 100).
    """
    import xarray as xr

    path = spinup_cache_path(resolution, years, time_step, solver, cache_dir)
    res = _length_m(resolution, "resolution")
    duration = _years(years, "years")
    dt = _years(time_step, "md.timestepping.time_step")
    if not path.is_file():
        nsteps = max(1, round(duration / dt))
        freq = max(1, nsteps // 100)
        md = mismip_plus(res, "Ice0", years=duration, time_step=dt, output_frequency=freq,
                         initial_thickness=initial_thickness)
        from issm_emulator.api import solve

        solved = solve(md, "Transient", solver=solver)
        md = solved if solved is not None else md
        _write_spinup(path, md, solver=solver, resolution=res, years=duration, time_step=dt)
    with xr.open_dataset(path) as ds:
        state = {k: ds[k].values.copy() for k in ("thickness", "surface", "base", "vx", "vy", "x", "y")}
        drift = float(ds.attrs.get("grounded_area_drift", np.nan))
    if np.isfinite(drift) and drift > drift_tolerance:
        warnings.warn(f"mismip_plus_spinup: the grounded area still changed by {drift:.2e} (relative) over the "
                      f"last tenth of the {duration:g}-year spin-up; not yet at steady state, run longer",
                      RuntimeWarning, stacklevel=2)
    return mismip_plus(res, "Ice0", time_step=dt, initial=state)


def _write_spinup(path: Path, md: Any, *, solver: str, resolution: float, years: float, time_step: float) -> None:
    import datetime

    import xarray as xr


    steps = md.results.TransientSolution.steps
    if not steps:
        raise ModelInputError("md.results.TransientSolution", "at least one output step after the spin-up",
                              "no steps")
    last = steps[-1]
    c = MISMIP_PLUS
    h = np.asarray(last.Thickness, dtype=np.float64).ravel()
    base = np.asarray(last.Base, dtype=np.float64).ravel()
    ocean = getattr(last, "MaskOceanLevelset", None)
    if ocean is None:
        ocean = h + c["rho_water"] / c["rho_ice"] * np.asarray(md.geometry.bed)
    times = np.array([_scalar(s.time) for s in steps])
    garea = np.array([_scalar(getattr(s, "GroundedArea", np.nan)) for s in steps])
    drift = _grounded_area_drift(times, garea)
    vertex = ("vertex",)
    ds = xr.Dataset(
        {
            "x": (vertex, np.asarray(md.mesh.x, dtype=np.float64), {"units": "m"}),
            "y": (vertex, np.asarray(md.mesh.y, dtype=np.float64), {"units": "m"}),
            "thickness": (vertex, h, {"units": "m"}),
            "base": (vertex, base, {"units": "m"}),
            "surface": (vertex, np.asarray(last.Surface, dtype=np.float64).ravel(), {"units": "m"}),
            "vx": (vertex, np.asarray(last.Vx, dtype=np.float64).ravel(), {"units": "m yr-1"}),
            "vy": (vertex, np.asarray(last.Vy, dtype=np.float64).ravel(), {"units": "m yr-1"}),
            "ocean_levelset": (vertex, np.asarray(ocean, dtype=np.float64).ravel(), {"units": "m"}),
            "grounded_area": (("time",), garea, {"units": "m2"}),
        },
        coords={"time": ("time", times, {"units": "yr"})},
        attrs={
            "title": "MISMIP+ Ice0 spin-up (steady state)",
            "scenario": "mismip_plus", "experiment": "Ice0", "solver": solver,
            "resolution_m": resolution, "years": years, "time_step_yr": time_step,
            "grounded_area_drift": drift,
            "issm_emulator_version": __version__,
            "date_created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        },
    )
    atomic_write(path, ds.to_netcdf)


def _scalar(value: Any) -> float:
    """A results scalar (ISSM stores them as floats or 1-element arrays) as a float."""
    arr = np.asarray(value, dtype=np.float64).ravel()
    return float(arr[0]) if arr.size else float("nan")


def _grounded_area_drift(times: np.ndarray, area: np.ndarray) -> float:
    """Relative change of the grounded area over the last tenth of the run (NaN when unknown)."""
    ok = np.isfinite(area)
    if ok.sum() < 2:
        return float("nan")
    t, a = times[ok], area[ok]
    t0 = t[-1] - 0.1 * (t[-1] - t[0])
    k = int(np.searchsorted(t, t0, side="left"))
    k = min(k, t.size - 2)
    ref = abs(a[-1]) if a[-1] != 0 else 1.0
    return float(abs(a[-1] - a[k]) / ref)
