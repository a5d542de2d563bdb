"""The built-in sweeps (:data:`SWEEPS`, for ``issm-emulator generate <name>``) and the scenario functions
they run that are not plain :mod:`issm_emulator.scenarios` builders.

:func:`square_melt` (the cheap floating square shelf with a uniform melt rate), :func:`mismip_plus_experiment`
and :func:`mismip_plus_melt` (MISMIP+ from a cached spin-up) wrap the scenario builders with the keyword
arguments a sweep sets (the swept value, ``years``, ``time_step``, ``output_frequency``); they are
registered by name in :data:`~issm_emulator.datasets.spec.SCENARIOS`. A scenario function may carry a
``prepare(spec)`` attribute, which :func:`~issm_emulator.datasets.runner.generate_ensemble` calls once in the
calling process before the runs start (the MISMIP+ spin-up). :func:`ensemble_spec` turns a sweep's name
into an :class:`~issm_emulator.datasets.spec.EnsembleSpec` with its defaults.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from issm_emulator.errors import ModelInputError

from .spec import EnsembleError, EnsembleSpec

__all__ = ["SWEEPS", "Sweep", "ensemble_spec", "mismip_plus_experiment", "mismip_plus_melt", "square_melt"]


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
    (``spinup_years`` of Ice0 forcing, cached on disk;
    :func:`~issm_emulator.datasets.runner.generate_ensemble` computes it once in the calling process before
    the runs start); without, from MISMIP+'s uniform slab. The ``*a``/``*rr``
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
