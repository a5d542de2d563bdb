"""The ensemble specification: a scenario, the swept parameter and its values, and everything else a run
depends on; the scenario registry and the parsing of value ranges.

An :class:`EnsembleSpec` names a scenario (a function returning a ready pyISSM model, found through
:data:`SCENARIOS` or a ``'module:function'`` path by :func:`resolve_scenario`), the swept keyword argument
and its values (with units; :func:`parse_values` reads ranges such as ``'0:70:2 m/yr'``), fixed keyword
arguments, time-stepping overrides, the solver and its options. Its :meth:`~EnsembleSpec.fingerprint`
of one value identifies a finished run file, so a later generation with the same spec skips that run and
one with other options or another value recomputes it; :meth:`~EnsembleSpec.to_dict` is the JSON written
to ``spec.json``. The built-in sweeps (:data:`~issm_emulator.datasets.sweeps.SWEEPS`) are specs with
defaults (:func:`~issm_emulator.datasets.sweeps.ensemble_spec`).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np

from issm_emulator.errors import IssmEmulatorError

from .layout import FIELDS

__all__ = [
    "SCENARIOS",
    "EnsembleError",
    "EnsembleSpec",
    "jsonable",
    "parameter_attrs",
    "parse_values",
    "resolve_scenario",
    "scenario_label",
]


class EnsembleError(IssmEmulatorError):
    """An ensemble cannot be generated or combined (no finished run, inconsistent run files, ...)."""


# ------------------------------------------------------------------------------------------- scenarios
#: Scenario name -> ``'module:function'`` (imported in the worker, so specs stay small and picklable).
SCENARIOS: dict[str, str] = {
    "pine_island": "issm_emulator.scenarios.pine_island:pine_island",
    "north79": "issm_emulator.scenarios.north79:north79",
    "mismip_plus": "issm_emulator.datasets.sweeps:mismip_plus_experiment",
    "mismip_plus_melt": "issm_emulator.datasets.sweeps:mismip_plus_melt",
    "square_melt": "issm_emulator.datasets.sweeps:square_melt",
}

#: Former module of the built-in scenario functions -> their module now: the ``'module:function'`` paths
#: recorded in older ensembles (attribute ``scenario``, ``spec.json``) still resolve.
_MOVED_MODULES: dict[str, str] = {"issm_emulator.datasets.ensemble": "issm_emulator.datasets.sweeps"}


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
    module = _MOVED_MODULES.get(module, module)
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise EnsembleError(f"scenario {scenario!r}: cannot import {target!r} ({exc})") from None
    if not callable(fn):
        raise EnsembleError(f"scenario {scenario!r}: {target!r} is not callable")
    return fn


def scenario_label(scenario: Any) -> str:
    """The scenario as recorded in the files and fingerprints: its name or path, or ``module:qualname``."""
    if isinstance(scenario, str):
        return scenario
    return f"{getattr(scenario, '__module__', '?')}:{getattr(scenario, '__qualname__', repr(scenario))}"


# ------------------------------------------------------------------------------------------- values
#: the most values :func:`parse_values` expands (a sweep's run count is limited further by
#: :data:`issm_emulator.datasets.guard.MAX_RUNS`)
MAX_VALUES = 1_000_000
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
            if len(out) + n + 1 > MAX_VALUES:  # refuse before expanding (0:1e9:1 would fill the memory)
                raise ValueError(f"values {item!r}: {n + 1} values, more than the {MAX_VALUES} a sweep may have")
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
            object.__setattr__(self, "name", f"{scenario_label(self.scenario)}-{self.parameter}")

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

    # --- the interface the runner and the store use (shared with ModelSweepSpec)
    @property
    def parameters(self) -> tuple[str, ...]:
        """The names of the swept coordinates (one for a scenario sweep)."""
        return (self.parameter,)

    def value_coords(self, value: Any) -> dict[str, Any]:
        """``{coordinate name: value}`` of one run."""
        return {self.parameter: value}

    def coord_attrs(self, name: str) -> dict[str, str]:
        """The attributes of a swept coordinate."""
        return parameter_attrs(self)

    def coord_numeric(self, name: str) -> bool:
        """Whether a swept coordinate holds numbers (else strings)."""
        return self.units is not None

    def ensemble_attrs(self) -> dict[str, Any]:
        """Further global attributes of the run files and the combined file (none for scenario sweeps)."""
        return {}

    def prepare(self) -> None:
        """Called once in the calling process before runs start: the scenario function's ``prepare(spec)``
        (the MISMIP+ spin-up), if it has one."""
        prep = getattr(resolve_scenario(self.scenario), "prepare", None)
        if callable(prep):
            prep(self)

    def provenance(self) -> dict[str, Any]:
        """JSON-able description of everything that determines a run except its value."""
        return {
            "ensemble": self.name,
            "scenario": scenario_label(self.scenario),
            "parameter": self.parameter,
            "units": self.units,
            "scenario_kwargs": jsonable(self.scenario_kwargs),
            "years": jsonable(self.years),
            "time_step": jsonable(self.time_step),
            "output_frequency": self.output_frequency,
            "solver": self.solver_name,
            "solver_options": jsonable(self.solver_options),
        }

    def fingerprint(self, value: Any) -> str:
        """sha256 (16 hex digits) of :meth:`provenance` and ``value``: identifies a finished run file."""
        text = json.dumps({**self.provenance(), "value": jsonable(value)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {**self.provenance(), "values": list(self.values), "split_rule": self.split_rule}


def jsonable(obj: Any) -> Any:
    """``obj`` with mappings, sequences and numpy scalars made JSON-able (anything else as ``str``)."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return float(obj)
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


def parameter_attrs(spec: EnsembleSpec) -> dict[str, str]:
    """The attributes of the swept parameter's coordinate (its long name and, if any, its units)."""
    attrs = {"long_name": f"swept scenario parameter {spec.parameter}"}
    if spec.units is not None:
        attrs["units"] = spec.units
    return attrs
