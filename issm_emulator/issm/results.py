"""Filling ``md.results`` from a :class:`~issm_emulator.solvers.base.SolverResult`, as pyISSM does.

pyISSM loads ISSM's ``.outbin`` into ``pyissm.model.classes.results.solution`` objects whose ``steps`` are
``solutionstep`` objects; this module builds the same objects from a backend's SI output:

- every step has ``step`` (int) and ``time`` (years, ``t / yts``) and one attribute per output;
- vertex fields are flat float arrays; scalar outputs (``IceVolume``, ``TotalSmb``, ...) are 1-element
  arrays, exactly what pyISSM reads from ISSM's files (and what survives ``pyissm.model.io.save_model``);
- step 0 also carries ``SolutionType``, ``errlog`` and ``outlog``;
- a transient solution keeps all its steps (k = 1..N, the initial state is not an output); a solution with
  a single step (``StressbalanceSolution``) is stored as that ``solutionstep``, as pyISSM's
  ``load_results_from_disk`` does.

Units: backends return SI; ISSM's user units are those of :data:`issm_emulator.units.CF_UNITS` (the one
table of output units, matching what pyISSM's reader does to ISSM's binary output):

.. math::  v_\\mathrm{md} = v_\\mathrm{SI}\\,\\mathrm{yts}\\ (\\mathrm{m\\,s^{-1} \\to m\\,yr^{-1}}),\\qquad
           F_\\mathrm{md} = F_\\mathrm{SI}\\,\\mathrm{yts}/10^{12}\\ (\\mathrm{kg\\,s^{-1} \\to Gt\\,yr^{-1}}).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from issm_emulator.errors import SolverError
from issm_emulator.issm.solutions import SUPPORTED_SOLUTIONS, TRANSIENT
from issm_emulator.solvers.base import SolverResult

#: Attributes of a result step that are metadata, not outputs.
STEP_METADATA = ("step", "time", "SolutionType", "errlog", "outlog")


#: Outputs stored as integers (ISSM counts).
INTEGER_OUTPUTS = frozenset({"StressbalanceConvergenceNumSteps"})


class _Factors(dict):
    """Per-call cache of SI -> ISSM factors (pint parses each unit once per solution)."""

    def __init__(self, yts: float):
        super().__init__()
        self.yts = float(yts)

    def __missing__(self, name: str) -> float:
        value = scale_factor(name, self.yts)
        self[name] = value
        return value


def scale_factor(name: str, yts: float) -> float:
    """Factor taking output ``name`` from SI to ISSM's user unit (:data:`issm_emulator.units.CF_UNITS`).

    Names without an entry there are returned unscaled, as pyISSM does with ISSM's output.
    """
    from issm_emulator.units import CF_UNITS, SI_TO_ISSM_FACTOR

    if name not in CF_UNITS:
        return 1.0
    return SI_TO_ISSM_FACTOR(name, yts)


def convert_output(name: str, value: Any, yts: float, factors: dict[str, float] | None = None) -> Any:
    """Output ``name`` from SI to ISSM's user units, stored as pyISSM stores it.

    Arrays become flat float64 arrays (int64 for :data:`INTEGER_OUTPUTS`); scalars become 1-element
    arrays, the shape pyISSM reads from ISSM's files. Strings pass through.
    """
    if isinstance(value, str):
        return value
    arr = np.asarray(value)
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise SolverError(f"output {name!r}: expected numbers, got {type(value).__name__} of dtype {arr.dtype}")
    if name in INTEGER_OUTPUTS:
        return np.array(arr, dtype=np.int64).reshape(-1)
    factor = factors[name] if factors is not None else scale_factor(name, yts)
    return (np.array(arr, dtype=np.float64) * factor).reshape(-1)


def _pyissm_results():
    """pyISSM's results module, or the minimal stand-in below when pyISSM is not installed."""
    try:
        from pyissm.model.classes import results
    except ImportError:  # pragma: no cover - pyissm is a dependency; this serves ISSM's own python model
        return _FallbackResults
    return results


class _FallbackSolutionStep:
    """Stand-in for ``pyissm.model.classes.results.solutionstep`` (attributes only)."""

    def get_fieldnames(self):
        return self.__dict__.keys()


class _FallbackSolution:
    """Stand-in for ``pyissm.model.classes.results.solution``: ``steps`` plus field-major access."""

    def __init__(self, steps: list | None = None):
        self.steps = list(steps) if steps is not None else [_FallbackSolutionStep()]

    def __getitem__(self, index: int):
        return self.steps[index]

    def __getattr__(self, name: str):
        if name.startswith("__") or name == "steps":
            raise AttributeError(name)
        values = [getattr(s, name, None) for s in self.steps]
        present = [v for v in values if v is not None]
        if not present:
            raise AttributeError(f"'{name}' not found in solution")
        if len(values) == 1:
            return values[0]
        if len(present) < len(values):
            return values
        try:
            stacked = np.stack([np.atleast_1d(v) for v in values])
        except ValueError:
            return values
        return stacked.ravel() if stacked.ndim == 2 and stacked.shape[1] == 1 else stacked


class _FallbackResults:
    solution = _FallbackSolution
    solutionstep = _FallbackSolutionStep

    class default:
        pass


def _outlog(result: SolverResult) -> str:
    from issm_emulator._version import __version__

    lines = [f"issm-emulator {__version__}: {result.solution}"]
    for key, value in result.info.items():
        lines.append(f"{key}: {value}")
    return "\n".join(lines) + "\n"


def build_solution(result: SolverResult, yts: float, *, log: bool = True):
    """``result`` as a ``pyissm.model.classes.results.solution`` in ISSM's user units.

    Parameters
    ----------
    result : SolverResult
        A backend's output (SI). Every step needs ``'step'`` and ``'time'`` (s).
    yts : float
        Seconds per year of the model (``md.constants.yts``).
    log : bool
        Put a summary of ``result.info`` in step 0's ``outlog`` (False: ``''``, as ISSM without logs).

    Returns
    -------
    pyissm.model.classes.results.solution
        ``steps[k]`` holds output step k+1; ``time`` in years; step 0 has ``SolutionType``, ``errlog``
        and ``outlog``.
    """
    if result.solution not in SUPPORTED_SOLUTIONS:
        raise SolverError(f"solver returned results for {result.solution!r}, expected one of "
                          f"{', '.join(SUPPORTED_SOLUTIONS)}")
    if not result.steps:
        raise SolverError(f"solver returned no output steps for {result.solution}")
    if not (np.isfinite(yts) and yts > 0):
        raise SolverError(f"yts: expected a positive number of seconds per year, got {yts!r}")
    R = _pyissm_results()
    factors = _Factors(yts)
    steps = []
    for i, raw in enumerate(result.steps):
        missing = [k for k in ("step", "time") if k not in raw]
        if missing:
            raise SolverError(f"output step {i} of {result.solution} lacks {', '.join(missing)}")
        step = R.solutionstep()
        step.step = int(raw["step"])
        step.time = float(raw["time"]) / float(yts)
        for name, value in raw.items():
            if name in ("step", "time"):
                continue
            if name in ("SolutionType", "errlog", "outlog"):
                raise SolverError(f"output step {i}: {name!r} is set by issm-emulator, not by the solver")
            setattr(step, name, convert_output(name, value, yts, factors))
        steps.append(step)
    steps[0].SolutionType = result.solution
    steps[0].errlog = ""
    steps[0].outlog = _outlog(result) if log else ""
    return R.solution(steps)


def _check_sizes(solution, md: Any) -> None:
    """Vertex fields must have one value per vertex of ``md.mesh``."""
    nv = getattr(getattr(md, "mesh", None), "numberofvertices", None)
    ne = getattr(getattr(md, "mesh", None), "numberofelements", None)
    if nv is None:
        return
    allowed = {1, int(nv)} | ({int(ne)} if ne is not None else set())
    for k, step in enumerate(solution.steps):
        for name, value in vars(step).items():
            if isinstance(value, np.ndarray) and value.size not in allowed:
                raise SolverError(f"output {name!r} of step {k + 1}: expected {nv} values (one per vertex of "
                                  f"md.mesh) or 1 (a scalar), got {value.size}")


def fill_results(md: Any, result: SolverResult, yts: float, *, log: bool = True) -> Any:
    """Put ``result`` in ``md.results.<result.solution>`` and set ``md.private.solution``.

    Everything is built and checked before ``md`` is touched, so a failure leaves ``md`` unchanged.
    A ``TransientSolution`` is stored as a ``results.solution`` (all steps); a single-step solution
    (``StressbalanceSolution``) as its ``results.solutionstep``, as pyISSM stores ISSM's results.

    Returns
    -------
    md
    """
    solution = build_solution(result, yts, log=log)
    _check_sizes(solution, md)
    value = solution if (result.solution == TRANSIENT or len(solution.steps) > 1) else solution.steps[0]
    R = _pyissm_results()
    results = getattr(md, "results", None)
    new_container = results is None or isinstance(results, (list, tuple, dict))
    container = R.default() if new_container else results
    setattr(container, result.solution, value)
    if new_container:
        md.results = container
    private = getattr(md, "private", None)
    if private is not None:
        private.solution = result.solution
    return md


def solution_steps(md: Any, solution: str) -> list:
    """The result steps of ``md.results.<solution>`` as a list (a single step gives a 1-element list).

    Raises
    ------
    issm_emulator.errors.ModelInputError
        ``md.results`` holds no such solution.
    """
    from issm_emulator.errors import ModelInputError

    sol = getattr(getattr(md, "results", None), solution, None)
    if sol is None:
        raise ModelInputError(f"md.results.{solution}", "results of a solve (run issm_emulator.solve first)",
                              "nothing")
    steps = sol.__dict__.get("steps") if hasattr(sol, "__dict__") else None
    if steps is None and isinstance(sol, (list, tuple)):
        steps = list(sol)
    if steps is None:
        steps = [sol]
    if not steps:
        raise ModelInputError(f"md.results.{solution}", "at least one result step", "none")
    return list(steps)
