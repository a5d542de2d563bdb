"""Parameter-sweep ensembles of a scenario, solved with a registered solver, stored as NetCDF.

An :class:`EnsembleSpec` names a scenario (a function returning a ready pyISSM model), the swept keyword
argument and its values (with units), fixed keyword arguments, time-stepping overrides, the solver and its
options. :func:`generate_ensemble` runs one transient per value and writes

* ``OUT/runs/run-0003_melt_rate-6.nc``: one file per finished run, written to a temporary file in the same
  folder and renamed (:func:`atomic_write_netcdf`), carrying ``run_complete = 1`` and a fingerprint of
  the spec and value (``run_fingerprint``). A later call with the same spec skips these runs, so an
  interrupted generation (crash, Ctrl-C) loses only the runs in flight; a file whose fingerprint differs
  (other options, other value) is recomputed.
* ``OUT/runs/run-0003_melt_rate-6.failed.json``: a failed run's parameter, error type, message and
  traceback. The other runs go on; failed runs are retried by the next call.
* ``OUT/ensemble.nc``: every finished run combined (atomically too), dims ``(run, time, vertex)``:

  ==================  ==================  ====================================================
  variable            dims                meaning (units from :data:`issm_emulator.units.CF_UNITS`)
  ==================  ==================  ====================================================
  vx, vy              run, time, vertex   velocity, m yr^-1
  thickness           run, time, vertex   ice thickness, m
  surface, base       run, time, vertex   surface / base elevation, m
  ice_levelset        run, time, vertex   < 0 ice, > 0 no ice, 0 front (m)
  ocean_levelset      run, time, vertex   > 0 grounded, < 0 floating (m)
  IceVolume, ...      run, time           the scenario's scalar requested outputs (ISSM names)
  vx0, vy0            run, vertex         initial velocity (md.initialization), m yr^-1
  thickness0, ...     run, vertex         initial thickness0, surface0, base0, ice_levelset0,
                                          ocean_levelset0 (md.geometry, md.mask), m
  bed, rheology_B,    run, vertex         static fields (:func:`initial_fields`): bed, hardness,
  friction_coef...                        friction coefficient, smb, floating/grounded melt rate,
                                          spcvx, spcvy (NaN = free), at the start time
  start_time, rho_*   run                 start time (yr), ice / sea-water density; von Mises
                                          runs also ``calving_stress_threshold`` (Pa)
  elements            element, nodes      ``md.mesh.elements`` (1-based)
  x, y (coords)       vertex              m
  time (coord)        time                yr (the model's year, attribute ``issm_yts``)
  <parameter> (coord) run                 the swept value, with its ``units``
  ==================  ==================  ====================================================

  Global attributes record the provenance: ``scenario``, ``ensemble``, ``parameter``, ``solver``,
  ``solver_version``, ``solver_options`` and ``scenario_kwargs`` (JSON), ``source`` (package version),
  ``created`` (UTC), ``split_rule`` and ``failed_runs`` (JSON list).

Runs execute in local worker processes (:class:`concurrent.futures.ProcessPoolExecutor`, ``spawn``
start method) or, given a scheduler address or a ``dask.distributed.Client``, as tasks on that dask
cluster. Workers build the model from the spec themselves and send back the run's dataset; only the
calling process writes files, so the cluster needs no shared file system.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime
import hashlib
import importlib
import json
import math
import multiprocessing
import os
import re
import time
import traceback
import uuid
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import numpy as np

from issm_emulator.errors import IssmEmulatorError, ModelInputError

__all__ = [
    "ENSEMBLE_FILE",
    "RUNS_DIR",
    "SCENARIOS",
    "SWEEPS",
    "EnsembleError",
    "EnsembleSpec",
    "Sweep",
    "atomic_write_netcdf",
    "combine_runs",
    "ensemble_spec",
    "generate_ensemble",
    "initial_fields",
    "mismip_plus_experiment",
    "mismip_plus_melt",
    "parse_values",
    "read_failures",
    "resolve_scenario",
    "run_file_name",
    "run_member",
    "square_melt",
]

ENSEMBLE_FILE = "ensemble.nc"  #: name of the combined dataset in the output folder
RUNS_DIR = "runs"  #: sub-folder of the per-run files

#: ISSM output name -> ensemble variable name (the fields every run stores).
FIELDS: dict[str, str] = {
    "Vx": "vx", "Vy": "vy", "Thickness": "thickness", "Surface": "surface", "Base": "base",
    "MaskIceLevelset": "ice_levelset", "MaskOceanLevelset": "ocean_levelset",
}
_MASKS = {"MaskIceLevelset": ("ice_levelset", "ismovingfront"),
          "MaskOceanLevelset": ("ocean_levelset", "isgroundingline")}


class EnsembleError(IssmEmulatorError):
    """An ensemble cannot be generated or combined (no finished run, inconsistent run files, ...)."""


# ------------------------------------------------------------------------------------------- scenarios
def _time_kwargs(years: Any, time_step: Any, output_frequency: Any) -> tuple[float, float, int]:
    from issm_emulator.units import to_issm

    final = float(to_issm(years, "yr", field="md.timestepping.final_time"))
    dt = float(to_issm(time_step, "yr", field="md.timestepping.time_step"))
    if not (math.isfinite(final) and final > 0):
        raise ModelInputError("md.timestepping.final_time", "a positive run length (years)", repr(years))
    if not (math.isfinite(dt) and 0 < dt <= final):
        raise ModelInputError("md.timestepping.time_step", f"a positive step of at most the run length ({final} yr)",
                              repr(time_step))
    if isinstance(output_frequency, bool) or not isinstance(output_frequency, (int, np.integer)) \
            or output_frequency < 1:
        raise ModelInputError("md.settings.output_frequency", "a positive integer", repr(output_frequency))
    return final, dt, int(output_frequency)


def square_melt(resolution: Any = 200e3, melt_rate: Any = 0.0, *, years: Any = 2.0, time_step: Any = 1.0,
                output_frequency: int = 1) -> Any:
    """ISSM's floating square ice shelf (:func:`issm_emulator.scenarios.square_shelf`) with a uniform
    floating-ice melt rate: the cheap scenario of the ``'square-melt'`` sweep (tests, demos).

    ``basalforcings.floatingice_melting_rate = melt_rate`` (m/yr) on every vertex, grounded melt and SMB 0,
    ``timestepping`` from 0 to ``years`` by ``time_step`` (years), results every ``output_frequency`` steps.
    The default 200 km resolution gives a 26-vertex mesh.
    """
    from issm_emulator.scenarios import square_shelf
    from issm_emulator.units import to_issm

    melt = float(to_issm(melt_rate, "m/yr", field="md.basalforcings.floatingice_melting_rate"))
    if not math.isfinite(melt):
        raise ModelInputError("md.basalforcings.floatingice_melting_rate", "a finite rate (m/yr)", repr(melt_rate))
    res = float(to_issm(resolution, "m", field="resolution"))
    final, dt, freq = _time_kwargs(years, time_step, output_frequency)
    md = square_shelf(res)
    nv = int(md.mesh.numberofvertices)
    md.basalforcings.floatingice_melting_rate = np.full(nv, melt)
    md.basalforcings.groundedice_melting_rate = np.zeros(nv)
    md.smb.mass_balance = np.zeros(nv)
    md.timestepping.start_time = 0.0
    md.timestepping.final_time = final
    md.timestepping.time_step = dt
    md.settings.output_frequency = freq
    md.miscellaneous.name = "SquareShelfMelt"
    return md


def _mismip_initial(resolution: Any, spinup_years: Any, spinup_time_step: Any, spinup_solver: str) -> Any:
    if spinup_years is None:
        return None
    from issm_emulator.scenarios.mismip_plus import mismip_plus_spinup

    return mismip_plus_spinup(resolution, spinup_years, time_step=spinup_time_step, solver=spinup_solver)


def mismip_plus_experiment(resolution: Any = 4e3, experiment: str = "Ice0", *, spinup_years: Any = None,
                           spinup_time_step: Any = 1.0, spinup_solver: str = "fem", years: Any = None,
                           time_step: Any = 1.0, output_frequency: int = 1) -> Any:
    """:func:`issm_emulator.scenarios.mismip_plus.mismip_plus` started from a cached Ice0 spin-up.

    With ``spinup_years`` the run starts from :func:`~issm_emulator.scenarios.mismip_plus.mismip_plus_spinup`
    (``spinup_years`` of Ice0 forcing, cached on disk; :func:`generate_ensemble` computes it once in the
    calling process before the runs start); without, from MISMIP+'s uniform slab. The ``*a``/``*rr``
    experiments start from that same state (the protocol's year-100 state of Ice1r/Ice2r is not chained).
    """
    from issm_emulator.scenarios.mismip_plus import mismip_plus

    initial = _mismip_initial(resolution, spinup_years, spinup_time_step, spinup_solver)
    return mismip_plus(resolution, experiment, years=years, time_step=time_step,
                       output_frequency=output_frequency, initial=initial)


def mismip_plus_melt(resolution: Any = 4e3, melt_factor: Any = 0.2, *, experiment: str = "Ice1r",
                     spinup_years: Any = None, spinup_time_step: Any = 1.0, spinup_solver: str = "fem",
                     years: Any = None, time_step: Any = 1.0, output_frequency: int = 1) -> Any:
    """MISMIP+ Ice1r (or Ice1rr) with the melt factor Omega (``basalforcings.meltrate_factor``, 1/yr) set to
    ``melt_factor``: m = Omega tanh(Hc / Hc0) max(z0 - zb, 0). Other arguments as
    :func:`mismip_plus_experiment`."""
    from issm_emulator.scenarios.mismip_plus import EXPERIMENTS
    from issm_emulator.units import to_issm

    if experiment not in EXPERIMENTS or EXPERIMENTS[experiment][2] != "mismip":
        raise ModelInputError("experiment", "a MISMIP+ experiment with the MISMIP+ melt parameterisation "
                              f"({', '.join(k for k, v in EXPERIMENTS.items() if v[2] == 'mismip')})", repr(experiment))
    omega = float(to_issm(melt_factor, "yr^-1", field="md.basalforcings.meltrate_factor"))
    if not (math.isfinite(omega) and omega >= 0):
        raise ModelInputError("md.basalforcings.meltrate_factor", "a non-negative rate (1/yr)", repr(melt_factor))
    md = mismip_plus_experiment(resolution, experiment, spinup_years=spinup_years,
                                spinup_time_step=spinup_time_step, spinup_solver=spinup_solver, years=years,
                                time_step=time_step, output_frequency=output_frequency)
    md.basalforcings.meltrate_factor = omega
    return md


def _prepare_mismip(spec: EnsembleSpec) -> None:
    kw = spec.scenario_kwargs
    _mismip_initial(kw.get("resolution", 4e3), kw.get("spinup_years"), kw.get("spinup_time_step", 1.0),
                    kw.get("spinup_solver", "fem"))


mismip_plus_experiment.prepare = _prepare_mismip  # type: ignore[attr-defined]
mismip_plus_melt.prepare = _prepare_mismip  # type: ignore[attr-defined]

#: Scenario name -> ``'module:function'`` (imported in the worker, so specs stay small and picklable).
SCENARIOS: dict[str, str] = {
    "pine_island": "issm_emulator.scenarios.pine_island:pine_island",
    "north79": "issm_emulator.scenarios.north79:north79",
    "mismip_plus": "issm_emulator.datasets.ensemble:mismip_plus_experiment",
    "mismip_plus_melt": "issm_emulator.datasets.ensemble:mismip_plus_melt",
    "square_melt": "issm_emulator.datasets.ensemble:square_melt",
}


def resolve_scenario(scenario: str | Callable[..., Any]) -> Callable[..., Any]:
    """The scenario function: a name of :data:`SCENARIOS`, a ``'module:function'`` path or a callable."""
    if callable(scenario):
        return scenario
    if not isinstance(scenario, str):
        raise TypeError(f"scenario: expected a name, 'module:function' or a callable, got {type(scenario).__name__}")
    target = SCENARIOS.get(scenario, scenario)
    if ":" not in target:
        raise EnsembleError(f"unknown scenario {scenario!r}; known: {', '.join(sorted(SCENARIOS))} "
                            "(or give 'module:function')")
    module, _, name = target.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise EnsembleError(f"scenario {scenario!r}: cannot import {target!r} ({exc})") from None
    if not callable(fn):
        raise EnsembleError(f"scenario {scenario!r}: {target!r} is not callable")
    return fn


def _scenario_label(scenario: Any) -> str:
    if isinstance(scenario, str):
        return scenario
    return f"{getattr(scenario, '__module__', '?')}:{getattr(scenario, '__qualname__', repr(scenario))}"


# ------------------------------------------------------------------------------------------- values
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_RANGE = re.compile(rf"^\s*({_NUMBER})\s*:\s*({_NUMBER})\s*(?::\s*({_NUMBER})\s*)?$")
_SINGLE = re.compile(rf"^\s*({_NUMBER})\s*$")


def _dec(text: str, what: str) -> Decimal:
    try:
        d = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{what}: {text!r} is not a number") from None
    if not d.is_finite():
        raise ValueError(f"{what}: {text!r} is not a finite number")
    return d


def parse_values(text: str, *, allow_strings: bool = False) -> tuple[list[Any], str | None]:
    """Parse a sweep's values: ``start:stop:step`` ranges and comma lists, optionally followed by a unit.

    ``'0:70:2'`` is 0, 2, ..., 70 (36 values: ``stop`` is included when it falls on the grid,
    ``start + k*step == stop``); ``'0:5:2'`` is 0, 2, 4; ``'1:3'`` steps by 1; a negative step counts
    down. Items are separated by commas and may mix: ``'0:20:10, 35, 50'``. A unit may follow after a space
    (``'0.65:1.2:0.05 MPa'``). Arithmetic is decimal, so ``0.65:1.2:0.05`` gives exactly 0.65, 0.7, ..., 1.2.

    Parameters
    ----------
    text : str
    allow_strings : bool
        Accept non-numeric items (``'Ice0,Ice1r'``) as strings (then no unit and no ranges).

    Returns
    -------
    (values, unit)
        ``values`` as floats (or strings), in order; ``unit`` the trailing unit or None.

    Raises
    ------
    ValueError
        Empty input, zero step, a step pointing away from ``stop``, duplicate values, bad numbers.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("values: expected a range 'start:stop:step' or a comma list, got an empty string")
    body, unit = text.strip(), None
    head, sep, tail = body.rpartition(" ")
    if sep and re.match(r"^[A-Za-z]", tail):
        last = head.strip().rsplit(",", 1)[-1]
        if _RANGE.match(last) or _SINGLE.match(last):  # '0:70:2 m/yr', '1,2 MPa': a trailing unit
            body, unit = head.strip(), tail
    items = [item.strip() for item in body.split(",")]
    if any(not item for item in items):
        raise ValueError(f"values {text!r}: empty item in the comma list")
    out: list[Any] = []
    for item in items:
        m = _RANGE.match(item)
        if m:
            start, stop = _dec(m.group(1), item), _dec(m.group(2), item)
            step = _dec(m.group(3), item) if m.group(3) else Decimal(1)
            if step == 0:
                raise ValueError(f"values {item!r}: the step must not be 0")
            if (stop - start) * step < 0:
                raise ValueError(f"values {item!r}: step {step} does not lead from {start} to {stop}")
            n = int((stop - start) / step)  # whole steps that stay within [start, stop]
            out.extend(float(start + k * step) for k in range(n + 1))
            continue
        if _SINGLE.match(item):
            out.append(float(_dec(item, item)))
            continue
        if allow_strings and re.match(r"^[A-Za-z_][A-Za-z0-9_+.-]*$", item):
            out.append(item)
            continue
        raise ValueError(f"values {text!r}: cannot read {item!r} (expected a number or start:stop[:step])")
    seen: set[Any] = set()
    dups = [v for v in out if v in seen or seen.add(v)]  # type: ignore[func-returns-value]
    if dups:
        raise ValueError(f"values {text!r}: duplicate value(s) {sorted(set(map(str, dups)))}")
    return out, unit


def _normalise_values(values: Any, units: str | None, parameter: str) -> tuple[Any, ...]:
    if isinstance(values, str):
        parsed, given_unit = parse_values(values, allow_strings=units is None)
        if given_unit is not None:
            if units is None:
                raise EnsembleError(f"values of {parameter!r} take no unit, got {given_unit!r}")
            parsed = [f"{v!r} {given_unit}" for v in parsed]
        values = parsed
    try:
        seq = list(values)
    except TypeError:
        seq = [values]
    if not seq:
        raise EnsembleError(f"no values given for the swept parameter {parameter!r}")
    out: list[Any] = []
    if units is None:
        for v in seq:
            if isinstance(v, (str, np.str_)):
                out.append(str(v))
            elif isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
                out.append(float(v))
            else:
                raise EnsembleError(f"values of {parameter!r}: expected numbers or strings, got {v!r}")
    else:
        from issm_emulator.units import as_quantity

        for v in seq:
            q = as_quantity(v, units, field=parameter)
            mag = q.to(units).magnitude
            if np.ndim(mag) != 0 or not math.isfinite(float(mag)):
                raise EnsembleError(f"values of {parameter!r}: expected finite scalars in {units}, got {v!r}")
            out.append(float(round(float(mag), 12)))
    if len(set(out)) != len(out):
        raise EnsembleError(f"values of {parameter!r} contain duplicates: {out}")
    return tuple(out)


# ------------------------------------------------------------------------------------------- the spec
@dataclass(frozen=True, eq=False)
class EnsembleSpec:
    """One parameter sweep of one scenario.

    Parameters
    ----------
    scenario : str or callable
        A :data:`SCENARIOS` name, ``'module:function'`` or a (module-level, picklable) function returning
        a pyISSM model.
    parameter : str
        The scenario keyword argument that is swept (``'melt_rate'``).
    values : sequence or str
        Its values: numbers in ``units``, pint quantities, strings such as ``'10 m/day'``, or a range
        string for :func:`parse_values` (``'0:70:2'``). Stored as floats in ``units`` (strings when
        ``units`` is None).
    units : str or None
        Unit of the parameter (CF/pint string, e.g. ``'m yr^-1'``, ``'Pa'``); None for categorical values.
        The scenario receives ``ureg.Quantity(value, units)``.
    scenario_kwargs : mapping
        Fixed keyword arguments (``resolution=3e3``, ...).
    solver : str or Solver
        Registered solver name (default ``'fem'``) or a (picklable) backend instance.
    solver_options : mapping
        Passed to ``issm_emulator.solve`` as backend options.
    years, time_step, output_frequency
        If not None, passed to the scenario as the keyword arguments of the same name.
    name : str
        Name of the ensemble (``'pig-melt'``), recorded in the files.
    split_rule : str or None
        Rule of :mod:`issm_emulator.datasets.splits` recorded in the dataset.
    """

    scenario: Any
    parameter: str
    values: Any
    units: str | None = None
    scenario_kwargs: Mapping[str, Any] = field(default_factory=dict)
    solver: Any = "fem"
    solver_options: Mapping[str, Any] = field(default_factory=dict)
    years: Any = None
    time_step: Any = None
    output_frequency: int | None = None
    name: str = ""
    split_rule: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.parameter, str) or not self.parameter.isidentifier():
            raise EnsembleError(f"parameter: expected a keyword-argument name, got {self.parameter!r}")
        if self.parameter in FIELDS.values() or self.parameter in ("run", "time", "x", "y", "elements"):
            raise EnsembleError(f"parameter {self.parameter!r} clashes with a name of the ensemble dataset")
        object.__setattr__(self, "values", _normalise_values(self.values, self.units, self.parameter))
        object.__setattr__(self, "scenario_kwargs", dict(self.scenario_kwargs))
        object.__setattr__(self, "solver_options", dict(self.solver_options))
        if self.parameter in self.scenario_kwargs:
            raise EnsembleError(f"scenario_kwargs must not set the swept parameter {self.parameter!r}")
        if not self.name:
            object.__setattr__(self, "name", f"{_scenario_label(self.scenario)}-{self.parameter}")

    # --- derived
    @property
    def solver_name(self) -> str:
        if isinstance(self.solver, str):
            return self.solver
        return str(getattr(self.solver, "name", "") or type(self.solver).__name__)

    def scenario_call_kwargs(self, value: Any) -> dict[str, Any]:
        """The keyword arguments the scenario is called with for ``value``."""
        kwargs = dict(self.scenario_kwargs)
        for key in ("years", "time_step", "output_frequency"):
            v = getattr(self, key)
            if v is not None:
                kwargs[key] = v
        if self.units is not None:
            from issm_emulator.units import ureg

            kwargs[self.parameter] = ureg.Quantity(float(value), self.units)
        else:
            kwargs[self.parameter] = value
        return kwargs

    def build_model(self, value: Any) -> Any:
        """The pyISSM model of one run."""
        return resolve_scenario(self.scenario)(**self.scenario_call_kwargs(value))

    def with_values(self, values: Any) -> EnsembleSpec:
        return replace(self, values=values)

    def provenance(self) -> dict[str, Any]:
        """JSON-able description of everything that determines a run except its value."""
        return {
            "ensemble": self.name,
            "scenario": _scenario_label(self.scenario),
            "parameter": self.parameter,
            "units": self.units,
            "scenario_kwargs": _jsonable(self.scenario_kwargs),
            "years": _jsonable(self.years),
            "time_step": _jsonable(self.time_step),
            "output_frequency": self.output_frequency,
            "solver": self.solver_name,
            "solver_options": _jsonable(self.solver_options),
        }

    def fingerprint(self, value: Any) -> str:
        """sha256 (16 hex digits) of :meth:`provenance` and ``value``: identifies a finished run file."""
        text = json.dumps({**self.provenance(), "value": _jsonable(value)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {**self.provenance(), "values": list(self.values), "split_rule": self.split_rule}


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return float(obj)
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


# ------------------------------------------------------------------------------------------- sweeps
@dataclass(frozen=True)
class Sweep:
    """A built-in sweep: the defaults :func:`ensemble_spec` fills in."""

    name: str
    scenario: str
    parameter: str
    units: str | None
    default_values: str
    scenario_kwargs: Mapping[str, Any]
    years: Any
    time_step: Any
    split_rule: str | None
    description: str


#: The built-in sweeps (names used by the CLI ``issm-emulator generate <name>``).
SWEEPS: dict[str, Sweep] = {s.name: s for s in (
    Sweep("pig-melt", "pine_island", "melt_rate", "m yr^-1", "0:70:2", {"resolution": 3e3}, 20.0, 1.0 / 12.0,
          "pig-melt", "Pine Island Glacier, uniform sub-shelf melt rate 0-70 m/yr (the seed's 36 runs, 20 yr, "
                      "monthly)"),
    # 79N with ISSM's uniform test friction retreats only below about 0.2 MPa (docs/scenarios), so the default
    # sweep spans retreat and advance rather than copying the seed's Helheim range (0.65-1.2 MPa).
    Sweep("north79-calving", "north79", "stress_threshold", "Pa", "50e3:600e3:50e3", {"resolution": 2e3}, 10.0,
          1.0 / 12.0, "north79-calving", "79N Glacier, von Mises calving stress threshold 0.05-0.6 MPa"),
    Sweep("mismip-plus", "mismip_plus", "experiment", None, "Ice0,Ice1r,Ice2r", {"resolution": 4e3}, None, 1.0,
          None, "MISMIP+ experiments"),
    Sweep("mismip-plus-melt", "mismip_plus_melt", "melt_factor", "yr^-1", "0:0.4:0.05", {"resolution": 4e3},
          None, 1.0, "by-position", "MISMIP+ Ice1r, melt factor Omega 0-0.4 /yr"),
    Sweep("square-melt", "square_melt", "melt_rate", "m yr^-1", "0:50:5", {"resolution": 200e3}, 2.0, 1.0,
          "square-melt", "floating square ice shelf (26 vertices), uniform melt rate 0-50 m/yr: a cheap demo"),
)}


def ensemble_spec(sweep: str, values: Any = None, *, scenario_kwargs: Mapping[str, Any] | None = None,
                  solver: Any = "fem", solver_options: Mapping[str, Any] | None = None, years: Any = None,
                  time_step: Any = None, output_frequency: int | None = None) -> EnsembleSpec:
    """An :class:`EnsembleSpec` of a built-in sweep (:data:`SWEEPS`) with its defaults.

    ``values`` (default: the sweep's), ``scenario_kwargs`` (merged over the sweep's), ``years`` and
    ``time_step`` (default: the sweep's) override the defaults.
    """
    try:
        s = SWEEPS[sweep]
    except KeyError:
        raise EnsembleError(f"unknown sweep {sweep!r}; built-in sweeps: {', '.join(SWEEPS)}") from None
    return EnsembleSpec(
        scenario=s.scenario, parameter=s.parameter, values=s.default_values if values is None else values,
        units=s.units, scenario_kwargs={**s.scenario_kwargs, **(scenario_kwargs or {})}, solver=solver,
        solver_options=dict(solver_options or {}), years=s.years if years is None else years,
        time_step=s.time_step if time_step is None else time_step, output_frequency=output_frequency,
        name=sweep, split_rule=s.split_rule)


# ------------------------------------------------------------------------------------------- files
def _value_text(value: Any) -> str:
    text = format(value, ".10g") if isinstance(value, float) else str(value)
    return re.sub(r"[^A-Za-z0-9.+-]", "_", text)


def run_file_name(index: int, parameter: str, value: Any) -> str:
    """``run-0003_melt_rate-6.nc``: the run's index (4 digits) and parameter value."""
    return f"run-{int(index):04d}_{parameter}-{_value_text(value)}.nc"


def _failure_path(nc_path: Path) -> Path:
    return nc_path.with_name(nc_path.name[:-3] + ".failed.json")


def _atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_netcdf(ds: Any, path: str | os.PathLike, *, encoding: Mapping[str, Any] | None = None) -> Path:
    """Write ``ds`` to ``path`` through a temporary file in the same folder and :func:`os.replace`.

    Readers see either the old file or the complete new one; an error (or Ctrl-C) during the write leaves
    no temporary file behind and the old file, if any, untouched.
    """
    return _atomic_write(Path(path), lambda tmp: ds.to_netcdf(tmp, engine="netcdf4", encoding=encoding))


def _atomic_write_json(obj: Any, path: Path) -> Path:
    return _atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, default=str)))


def _clean_stale_tmp(folder: Path) -> None:
    """Remove temporary files of writers that no longer run (a crash between write and rename)."""
    for tmp in folder.glob(".*.tmp"):
        parts = tmp.name.split(".")
        try:
            pid = int(parts[-3])
        except (IndexError, ValueError):
            continue
        alive = True
        if pid != os.getpid():
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                alive = False
            except PermissionError:
                alive = True
        if not alive:
            tmp.unlink(missing_ok=True)


def _is_finished(path: Path, fingerprint: str) -> bool:
    if not path.is_file():
        return False
    import xarray as xr

    try:
        with xr.open_dataset(path, engine="netcdf4") as ds:
            return int(ds.attrs.get("run_complete", 0)) == 1 and ds.attrs.get("run_fingerprint") == fingerprint
    except Exception:  # noqa: BLE001 - unreadable file: not finished, it is recomputed
        return False


# ------------------------------------------------------------------------------------------- one run
def _request_masks(md: Any) -> None:
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
    """The per-run dataset of a solved model: dims ``(time, vertex)``, see the module documentation.

    A level set the solver did not output is taken from ``md.mask`` and held constant, which is exact when
    the model keeps it fixed (``ismovingfront = 0`` for ``ice_levelset``, ``isgroundingline = 0`` for
    ``ocean_levelset``); otherwise :class:`EnsembleError` is raised.
    """
    import xarray as xr

    import issm_emulator
    from issm_emulator.issm.xarray_export import to_xarray
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
        attrs = {"units": units, "long_name": long_name}
        if name == "friction_coefficient":
            attrs["friction_law"] = state.friction.law
        data[name] = (dims, arr, attrs)
    data["elements"] = full["elements"]
    ds = xr.Dataset(data, coords={"time": full["time"], "x": full["x"], "y": full["y"]})
    ds = ds.assign_coords({spec.parameter: ((), value, _parameter_attrs(spec))})
    try:
        from issm_emulator.plugins.manager import get_registry

        solver_version = (str(spec.solver.version) if not isinstance(spec.solver, str)
                          else get_registry().describe(spec.solver)["version"])
    except Exception:  # noqa: BLE001 - provenance only; the run itself succeeded
        solver_version = "unknown"
    ds.attrs = {
        "Conventions": "CF-1.8",
        "title": f"run {index} of ensemble {spec.name}: {spec.parameter} = {value}",
        "source": f"issm-emulator {issm_emulator.__version__}",
        "ensemble": spec.name,
        "scenario": _scenario_label(spec.scenario),
        "parameter": spec.parameter,
        "parameter_units": spec.units or "",
        "run_index": int(index),
        "run_fingerprint": spec.fingerprint(value),
        "solver": spec.solver_name,
        "solver_version": solver_version,
        "solver_options": json.dumps(_jsonable(spec.solver_options), sort_keys=True),
        "scenario_kwargs": json.dumps(_jsonable(spec.scenario_call_kwargs(value)), sort_keys=True),
        "issm_yts": float(full.attrs.get("issm_yts", 365.0 * 24 * 3600)),
        "created": _now(),
        "run_complete": 1,
    }
    return ds


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


def _parameter_attrs(spec: EnsembleSpec) -> dict[str, str]:
    attrs = {"long_name": f"swept scenario parameter {spec.parameter}"}
    if spec.units is not None:
        attrs["units"] = spec.units
    return attrs


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _failure(index: int, value: Any, exc: BaseException, tb: str | None = None) -> dict[str, Any]:
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
            _request_masks(md)
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
        return _failure(index, value, exc)


# ------------------------------------------------------------------------------------------- progress
class _Progress:
    def __init__(self, total: int, description: str, enabled: bool):
        self._bar = None
        self.failed = 0
        self.description = description
        if enabled and total > 0:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("elapsed"), TimeElapsedColumn(), TextColumn("ETA"),
                                 TimeRemainingColumn(), console=Console(stderr=True))
            self._task = self._bar.add_task(description, total=total)
            self._bar.start()

    def advance(self, ok: bool) -> None:
        if not ok:
            self.failed += 1
        if self._bar is not None:
            desc = self.description + (f" ({self.failed} failed)" if self.failed else "")
            self._bar.update(self._task, advance=1, description=desc)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


# ------------------------------------------------------------------------------------------- executors
def _run_serial(spec: EnsembleSpec, todo: list[tuple[int, Any]], handle: Callable[[dict], None]) -> None:
    for index, value in todo:
        handle(run_member(spec, index, value))


def _run_local(spec: EnsembleSpec, todo: list[tuple[int, Any]], handle: Callable[[dict], None], workers: int,
               mp_context: str) -> None:
    ctx = multiprocessing.get_context(mp_context)
    pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
    futures = {pool.submit(run_member, spec, i, v): (i, v) for i, v in todo}
    try:
        for fut in cf.as_completed(futures):
            index, value = futures[fut]
            try:
                result = fut.result()
            except Exception as exc:  # noqa: BLE001 - a worker died (BrokenProcessPool, pickling, ...)
                result = _failure(index, value, exc)
            handle(result)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _run_dask(spec: EnsembleSpec, todo: list[tuple[int, Any]], handle: Callable[[dict], None],
              scheduler: Any) -> None:
    try:
        from distributed import Client, as_completed
    except ImportError as exc:  # pragma: no cover - optional dependency
        raise EnsembleError("a dask scheduler was given but dask.distributed is not installed "
                            "(pip install 'issm-emulator[distributed]')") from exc
    own = not isinstance(scheduler, Client)
    client = Client(scheduler) if own else scheduler
    token = uuid.uuid4().hex[:8]
    futures = []
    try:
        futures = [client.submit(run_member, spec, i, v, pure=False, key=f"issm-emulator-run-{i}-{token}")
                   for i, v in todo]
        where = {f.key: (i, v) for f, (i, v) in zip(futures, todo)}
        for fut in as_completed(futures):
            index, value = where[fut.key]
            try:
                result = fut.result()
            except Exception as exc:  # noqa: BLE001 - KilledWorker, CommClosedError, ...
                result = _failure(index, value, exc)
            handle(result)
            fut.release()
    except BaseException:
        for f in futures:
            f.cancel()
        raise
    finally:
        if own:
            client.close()


# ------------------------------------------------------------------------------------------- generate
def generate_ensemble(spec: EnsembleSpec | str, out_dir: str | os.PathLike, *, workers: int | None = None,
                      scheduler: Any = None, progress: bool = True, mp_context: str = "spawn") -> Path:
    """Run every member of ``spec`` that is not finished yet and combine all finished runs.

    Parameters
    ----------
    spec : EnsembleSpec or str
        The sweep (a name of :data:`SWEEPS` uses its defaults).
    out_dir : path
        Output folder (created): ``runs/`` holds one NetCDF per finished run and a ``.failed.json`` per
        failed run; the combined dataset is ``ensemble.nc`` (:data:`ENSEMBLE_FILE`).
    workers : int, optional
        Local worker processes; default ``min(2, os.cpu_count())``. ``0`` runs everything in this process
        (serially; useful for debugging and for solvers that cannot be pickled). Ignored with ``scheduler``.
    scheduler : str or dask.distributed.Client, optional
        Run on a dask cluster: a scheduler address (``'tcp://host:8786'``) or a connected client.
    progress : bool
        Show a progress bar with ETA (on stderr).
    mp_context : str
        Start method of the local worker processes (default ``'spawn'``: safe with threads and torch).

    Returns
    -------
    pathlib.Path
        ``out_dir / 'ensemble.nc'``.

    Raises
    ------
    EnsembleError
        No run of the ensemble finished (each failure is recorded in ``runs/*.failed.json``).

    Notes
    -----
    Finished runs (a run file with ``run_complete = 1`` and this spec's fingerprint) are skipped, so the
    same call resumes an interrupted generation. A failed run does not stop the others; a
    :class:`RuntimeWarning` lists the failures and the combined file records them (``failed_runs``).
    """
    if isinstance(spec, str):
        spec = ensemble_spec(spec)
    if not isinstance(spec, EnsembleSpec):
        raise TypeError(f"spec: expected an EnsembleSpec or a sweep name, got {type(spec).__name__}")
    out = Path(out_dir)
    runs_dir = out / RUNS_DIR
    runs_dir.mkdir(parents=True, exist_ok=True)
    _clean_stale_tmp(runs_dir)
    _clean_stale_tmp(out)
    _atomic_write_json(spec.to_dict(), out / "spec.json")

    todo = []
    for index, value in enumerate(spec.values):
        path = runs_dir / run_file_name(index, spec.parameter, value)
        if not _is_finished(path, spec.fingerprint(value)):
            todo.append((index, value))

    prepare = getattr(resolve_scenario(spec.scenario), "prepare", None)
    if todo and callable(prepare):
        prepare(spec)

    done_before = len(spec.values) - len(todo)
    bar = _Progress(len(todo), f"{spec.name}" + (f" ({done_before} runs done before)" if done_before else ""),
                    progress)

    def handle(result: dict[str, Any]) -> None:
        index, value = result["index"], result["value"]
        path = runs_dir / run_file_name(index, spec.parameter, value)
        if result["ok"]:
            try:
                atomic_write_netcdf(result["dataset"], path, encoding=_run_encoding(result["dataset"]))
            except Exception as exc:  # noqa: BLE001 - e.g. disk full: record, go on
                result = _failure(index, value, exc)
            else:
                _failure_path(path).unlink(missing_ok=True)
        if not result["ok"]:
            record = {k: result[k] for k in ("index", "value", "error_type", "message", "traceback")}
            record.update(run=index, parameter=spec.parameter, units=spec.units, ensemble=spec.name,
                          fingerprint=spec.fingerprint(value), time=_now())
            _atomic_write_json(record, _failure_path(path))
        bar.advance(result["ok"])

    try:
        if not todo:
            pass
        elif scheduler is not None:
            _run_dask(spec, todo, handle, scheduler)
        else:
            n = min(2, os.cpu_count() or 1) if workers is None else int(workers)
            if n < 0:
                raise ValueError(f"workers must be >= 0, got {workers}")
            if n == 0:
                _run_serial(spec, todo, handle)
            else:
                _run_local(spec, todo, handle, min(n, len(todo)), mp_context)
    finally:
        bar.close()
    return combine_runs(spec, out)


def _run_encoding(ds: Any) -> dict[str, Any]:
    return {name: {"zlib": True, "complevel": 1} for name, var in ds.data_vars.items()
            if np.issubdtype(var.dtype, np.floating)}


def read_failures(out_dir: str | os.PathLike, spec: EnsembleSpec | None = None) -> list[dict[str, Any]]:
    """The failure records in ``out_dir/runs`` (those of ``spec``'s current values when given)."""
    runs_dir = Path(out_dir) / RUNS_DIR
    records = []
    for p in sorted(runs_dir.glob("run-*.failed.json")):
        try:
            rec = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if spec is not None:
            idx = int(rec.get("index", -1))
            if not (0 <= idx < len(spec.values)) or rec.get("fingerprint") != spec.fingerprint(spec.values[idx]):
                continue
        records.append(rec)
    return records


def combine_runs(spec: EnsembleSpec, out_dir: str | os.PathLike) -> Path:
    """Combine the finished run files of ``spec`` in ``out_dir/runs`` into ``out_dir/ensemble.nc``.

    Run files are read one at a time and written into the combined file run by run, so memory stays at one
    run. Runs with other output times get NaN at the times they lack.

    Raises
    ------
    EnsembleError
        No finished run, or runs on different meshes.
    """
    import netCDF4
    import xarray as xr

    import issm_emulator

    out = Path(out_dir)
    runs_dir = out / RUNS_DIR
    finished: list[tuple[int, Any, Path]] = []
    for index, value in enumerate(spec.values):
        path = runs_dir / run_file_name(index, spec.parameter, value)
        if _is_finished(path, spec.fingerprint(value)):
            finished.append((index, value, path))
    failures = read_failures(out, spec)
    if not finished:
        detail = "; ".join(f"run {f['index']} ({spec.parameter} = {f['value']}): {f['error_type']}: "
                           f"{f['message'][:200]}" for f in failures[:5])
        raise EnsembleError(f"ensemble {spec.name!r}: no run finished in {runs_dir}" +
                            (f"; failures: {detail}" if detail else ""))

    # pass 1: metadata (times, variables, mesh) without loading the fields
    times: list[np.ndarray] = []
    variables: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {}
    first = None
    yts = None
    solver_versions = set()
    for index, value, path in finished:
        with xr.open_dataset(path, engine="netcdf4") as ds:
            if first is None:
                first = xr.Dataset({"elements": ds["elements"].load()},
                                   coords={"x": ds["x"].load(), "y": ds["y"].load()})
                yts = ds.attrs.get("issm_yts")
                time_attrs = dict(ds["time"].attrs)
            else:
                for name in ("x", "y"):
                    if not np.array_equal(ds[name].values, first[name].values):
                        raise EnsembleError(f"run file {path.name} has another mesh ({name} differs) than run "
                                            f"{finished[0][0]}; an ensemble needs one mesh")
                if not np.array_equal(ds["elements"].values, first["elements"].values):
                    raise EnsembleError(f"run file {path.name} has other elements than run {finished[0][0]}; "
                                        "an ensemble needs one mesh")
            times.append(np.asarray(ds["time"].values, dtype=np.float64))
            for name, var in ds.data_vars.items():
                if name != "elements" and name not in variables:
                    variables[name] = (var.dims, dict(var.attrs))
            solver_versions.add(str(ds.attrs.get("solver_version", "")))
    assert first is not None
    all_times = np.unique(np.concatenate(times))
    nrun, nt = len(finished), all_times.size

    values = [v for _, v, _ in finished]
    param_values = np.array(values, dtype=np.float64 if spec.units is not None else object)
    skeleton = xr.Dataset(
        {"elements": first["elements"]},
        coords={
            "run": ("run", np.array([i for i, _, _ in finished], dtype=np.int64),
                    {"long_name": "index of the run in the ensemble specification"}),
            spec.parameter: ("run", param_values, _parameter_attrs(spec)),
            "time": ("time", all_times, time_attrs),
            "x": first["x"],
            "y": first["y"],
        },
    )
    failed_short = [{k: f.get(k) for k in ("index", "value", "error_type", "message")} for f in failures]
    skeleton.attrs = {
        "Conventions": "CF-1.8",
        "title": f"ensemble {spec.name}: {spec.parameter} sweep of scenario {_scenario_label(spec.scenario)}",
        "source": f"issm-emulator {issm_emulator.__version__}",
        "ensemble": spec.name,
        "scenario": _scenario_label(spec.scenario),
        "parameter": spec.parameter,
        "parameter_units": spec.units or "",
        "solver": spec.solver_name,
        "solver_version": ",".join(sorted(v for v in solver_versions if v)),
        "solver_options": json.dumps(_jsonable(spec.solver_options), sort_keys=True),
        "scenario_kwargs": json.dumps(spec.provenance()["scenario_kwargs"], sort_keys=True),
        "years": json.dumps(_jsonable(spec.years)),
        "time_step": json.dumps(_jsonable(spec.time_step)),
        "output_frequency": json.dumps(spec.output_frequency),
        "issm_yts": float(yts) if yts is not None else 365.0 * 24 * 3600,
        "created": _now(),
        "split_rule": spec.split_rule or "",
        "runs_requested": len(spec.values),
        "runs_finished": nrun,
        "failed_runs": json.dumps(failed_short, default=str),
        "comment": "units use the model's year of issm_yts seconds; elements are 1-based (md.mesh.elements)",
    }
    coord_names = f"{spec.parameter} x y"

    def write(tmp: Path) -> None:
        skeleton.to_netcdf(tmp, engine="netcdf4")
        with netCDF4.Dataset(tmp, "a") as nc:
            nc.set_auto_mask(False)
            ncvars = {}
            for name, (dims, attrs) in variables.items():
                full_dims = ("run",) + tuple(dims)
                shape = [nrun] + [nt if d == "time" else nc.dimensions[d].size for d in dims]
                v = nc.createVariable(name, "f8", full_dims, zlib=True, complevel=1, fill_value=np.nan,
                                      chunksizes=[1] + shape[1:])
                v.setncatts({k: (json.dumps(a) if isinstance(a, (dict, list)) else a)
                             for k, a in attrs.items() if k not in ("_FillValue", "coordinates")})
                v.coordinates = coord_names if "vertex" in dims else spec.parameter
                ncvars[name] = (v, dims)
            for k, (index, value, path) in enumerate(finished):
                with xr.open_dataset(path, engine="netcdf4") as ds:
                    pos = np.searchsorted(all_times, ds["time"].values)
                    for name, (v, dims) in ncvars.items():
                        if name not in ds:
                            continue
                        arr = np.asarray(ds[name].values, dtype=np.float64)
                        if np.array_equal(pos, np.arange(nt)):
                            v[k, ...] = arr
                        else:
                            block = np.full((nt,) + arr.shape[1:], np.nan)
                            block[pos] = arr
                            v[k, ...] = block

    path = _atomic_write(out / ENSEMBLE_FILE, write)
    if failures:
        warnings.warn(f"ensemble {spec.name!r}: {len(failures)} of {len(spec.values)} runs failed (see "
                      f"{runs_dir}/*.failed.json): " + "; ".join(
                          f"run {f['index']}: {f['error_type'].rsplit('.', 1)[-1]}: {f['message'][:120]}"
                          for f in failures[:3]), RuntimeWarning, stacklevel=2)
    return path
