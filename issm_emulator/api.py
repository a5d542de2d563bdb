"""``issm_emulator.solve``: a drop-in for ``pyissm.model.execute.solve``."""

from __future__ import annotations

import contextlib
import datetime
import io
import os
import re
import time
import warnings
import weakref
from typing import Any

from issm_emulator.errors import (
    FallbackWarning,
    ModelInputError,
    SolverError,
    UnknownSolutionError,
    UnsupportedOptionError,
)
from issm_emulator.issm.solutions import parse_solution
from issm_emulator.plugins.manager import SolverRegistry, get_registry
from issm_emulator.solvers.base import Solver, SolverResult

__all__ = ["resolve_device", "solve", "solve_info"]

#: the built-in emulators the default solve chooses among, and their options fem does not take
EMULATOR_ARCHS = ("egcn", "gcn", "cnn")
_EMULATOR_ONLY = ("mode", "checkpoint", "batch_size", "threads", "compile", "allow_extrapolation", "fallback",
                  "fallback_tol")
_INFO: "weakref.WeakKeyDictionary[Any, dict[str, Any]]" = weakref.WeakKeyDictionary()
_INFO_BY_ID: dict[int, dict[str, Any]] = {}


def solve_info(md: Any) -> dict[str, Any]:
    """What the last :func:`solve` of ``md`` ran.

    Keys: ``solver`` (name), ``checkpoint`` (``{'name', 'sha256', 'source', 'path'}`` or None), ``mode``,
    ``device``, ``fallback_steps`` (steps re-solved by ``fem``), ``domain_violations`` (soft violations
    that warned, or hard ones run with ``allow_extrapolation``), ``wall_time_s``, and ``selection``: how
    the default solve chose (``'explicit'``, ``'emulator'`` or ``'fem-fallback'``) with ``reasons``
    (why each candidate checkpoint did not apply).

    Raises :class:`KeyError` when ``md`` was not solved by :func:`issm_emulator.solve` in this process.
    """
    try:
        info = _INFO.get(md)
    except TypeError:
        info = _INFO_BY_ID.get(id(md))
    if info is None:
        raise KeyError("solve_info: this model has not been solved by issm_emulator.solve in this process")
    return dict(info)


def _remember(md: Any, info: dict[str, Any]) -> None:
    try:
        _INFO[md] = info
    except TypeError:  # not weak-referenceable
        _INFO_BY_ID[id(md)] = info


def _choose_default(reg: SolverRegistry, state: Any, solution: str, options: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The default solve's backend name and options: an applicable emulator checkpoint, else ``fem``."""
    from issm_emulator.solvers.emulator.catalog import select

    specs = reg.specs()
    archs = tuple(a for a in EMULATOR_ARCHS if a in specs)
    if not archs or "fem" not in specs:  # a registry without the built-in emulators (or fem): its own default
        return reg.default_name(), options, {"selection": "registry default", "reasons": []}
    if options.get("checkpoint") is not None:  # a checkpoint was named: its solver, its domain check
        from issm_emulator.solvers.emulator.checkpoint import Checkpoint, load_checkpoint
        from issm_emulator.weights import resolve

        ck = options["checkpoint"]
        ck = ck if isinstance(ck, Checkpoint) else load_checkpoint(resolve(ck))
        opts = {**options, "mode": options.get("mode", ck.mode)}
        return str(ck.manifest.get("arch") or ck.config.get("arch")), opts, {"selection": "explicit", "reasons": []}
    chosen, candidates = select(state, solution=solution, archs=archs, mode=options.get("mode"))
    reasons = [f"{c.name} ({c.source}): " + "; ".join(str(v) for v in c.violations if v.hard)
               for c in candidates if any(v.hard for v in c.violations)]
    if chosen is not None:
        return chosen.arch, {**options, "checkpoint": str(chosen.path), "mode": chosen.mode}, \
            {"selection": "emulator", "reasons": reasons, "source": chosen.source}
    dropped = sorted(k for k in options if k in _EMULATOR_ONLY)
    why = " | ".join(reasons) if reasons else "no emulator checkpoint is installed"
    warnings.warn(FallbackWarning(
        f"no emulator checkpoint applies to this model, so it is solved with 'fem' (the reference solver): "
        f"{why}. To emulate it, train one for it (issm-emulator generate --model ..., train, register; see "
        f"docs/own-model.md)" + (f"; ignored emulator option(s): {', '.join(dropped)}" if dropped else "")),
        stacklevel=3)
    return "fem", {k: v for k, v in options.items() if k not in _EMULATOR_ONLY}, \
        {"selection": "fem-fallback", "reasons": reasons}


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return bool(torch.cuda.is_available())


def resolve_device(device: Any, backend: Solver) -> str:
    """The device a solve runs on.

    ``None``: ``'cuda'`` when the backend lists it and ``torch.cuda.is_available()``, else ``'cpu'``.
    A device string (``'cpu'``, ``'cuda'``, ``'cuda:1'``) or ``torch.device`` is checked against the
    backend's ``devices``.

    Raises
    ------
    UnsupportedOptionError
        The backend does not run on that device, or CUDA was asked for but is not available.
    """
    devices = tuple(backend.devices)
    name = backend.name or type(backend).__name__
    if device is None:
        if "cuda" in devices and _cuda_available():
            return "cuda"
        if "cpu" in devices:
            return "cpu"
        raise UnsupportedOptionError(f"device=None: solver {name!r} runs only on {', '.join(devices) or 'nothing'}"
                                     f" and none of them is available; pass device= explicitly")
    dev = str(device).strip().lower()
    kind = dev.split(":", 1)[0]
    if kind not in devices:
        raise UnsupportedOptionError(f"device={device!r}: solver {name!r} supports "
                                     f"{', '.join(repr(d) for d in devices)}")
    if kind == "cuda" and not _cuda_available():
        raise UnsupportedOptionError(f"device={device!r}: CUDA is not available here "
                                     f"(torch.cuda.is_available() is False); use device='cpu'")
    return dev


def _reject(option: str, value: Any, why: str) -> None:
    raise UnsupportedOptionError(f"{option}={value!r} is not supported by issm_emulator.solve: {why}")


_CONSISTENCY_FIELD = re.compile(r"Model consistency error: (?:model not consistent: )?(?:md\.)?"
                                r"([A-Za-z_][A-Za-z_0-9]*(?:\.[A-Za-z_][A-Za-z_0-9]*)+)")


_DEFINITION_STRINGS = tuple(f"Outputdefinition{i}" for i in range(1, 100))  # as pyISSM's check


def _gate_in_memory(d: Any) -> bool:
    """A ``massfluxatgate`` definition whose gate travels with it (``.profile`` or ``.segments``) and whose
    ``profilename`` names no file."""
    import numpy as np

    if type(d).__name__ != "massfluxatgate":
        return False
    name = getattr(d, "profilename", None)
    if isinstance(name, str) and name and os.path.isfile(name):
        return False
    if getattr(d, "profile", None) is not None:
        return True
    seg = getattr(d, "segments", None)
    try:
        arr = np.asarray(seg, dtype=float)
    except (TypeError, ValueError):
        return seg is not None
    return arr.size > 1 or (arr.size == 1 and not np.isnan(arr.ravel()[0]))


def _split_gates(md: Any) -> tuple[Any, list[Any] | None]:
    """``(md.outputdefinition, the definitions pyISSM should check)``, or ``(None, None)`` when there is
    no in-memory flux gate. The in-memory gates get pyISSM's checks here, except its file test."""
    od = getattr(md, "outputdefinition", None)
    defs = getattr(od, "definitions", None)
    if not isinstance(defs, list) or not any(_gate_in_memory(d) for d in defs):
        return None, None
    keep = []
    for k, d in enumerate(defs):
        if not _gate_in_memory(d):
            keep.append(d)
            continue
        path = f"md.outputdefinition.definitions[{k}]"
        for attr in ("name", "profilename"):
            if not isinstance(getattr(d, attr, None), str):
                raise ModelInputError(f"{path}.{attr}", "a string", repr(getattr(d, attr, None)))
        if getattr(d, "definitionstring", None) not in _DEFINITION_STRINGS:
            raise ModelInputError(f"{path}.definitionstring", "one of 'Outputdefinition1' ... "
                                  "'Outputdefinition99'", repr(getattr(d, "definitionstring", None)))
    return od, keep


def _pyissm_consistency(md: Any, solution: str) -> None:
    """:func:`_pyissm_check` with every pint quantity of ``md`` in ISSM's unit for its duration (pyISSM's
    check strips units; ``md`` gets its own objects back afterwards)."""
    from issm_emulator.issm.fields import quantities_converted

    with quantities_converted(md):
        _pyissm_check(md, solution)


def _pyissm_check(md: Any, solution: str) -> None:
    """Run pyISSM's ``is_model_self_consistent`` for ``solution`` and leave ``md.private`` as it was.

    Only for pyISSM models (objects with ``model_class_names`` and ``check_message``); pyISSM's messages,
    printed to stdout, become the :class:`ModelInputError` message.

    Flux gates (``massfluxatgate`` output definitions) that carry their gate in memory (``.profile`` or
    ``.segments``, read by :func:`issm_emulator.issm.adapter.read_model`) while ``profilename`` names no
    file are checked here instead of by pyISSM: pyISSM's check requires the ``.exp`` file, which ISSM only
    needs to compute the segments when it writes its input file. They get pyISSM's other checks (string
    ``name`` and ``profilename``, ``definitionstring`` in ``Outputdefinition1..99``) and are hidden from
    pyISSM's check for its duration (``md.outputdefinition.definitions`` is restored afterwards).
    """
    private = getattr(md, "private", None)
    if private is None or not callable(getattr(md, "model_class_names", None)) \
            or not callable(getattr(md, "check_message", None)):
        return
    try:
        from pyissm.model.execute import is_model_self_consistent
    except ImportError:  # pragma: no cover - pyissm is a dependency
        return
    saved = {k: getattr(private, k) for k in ("solution", "isconsistent") if hasattr(private, k)}
    od, keep = _split_gates(md)
    all_defs = od.definitions if od is not None else None
    out = io.StringIO()
    try:
        if od is not None:
            od.definitions = keep
        private.solution = solution
        with contextlib.redirect_stdout(out):
            is_model_self_consistent(md)
    except Exception as exc:  # noqa: BLE001 - pyISSM raises RuntimeError (or anything) after printing why
        messages = out.getvalue().strip() or f"{type(exc).__name__}: {exc}"
        m = _CONSISTENCY_FIELD.search(messages)
        field = f"md.{m.group(1)}" if m else "md"
        raise ModelInputError(field, f"a model that passes pyISSM's consistency check for {solution} "
                                     f"(check_consistency=False skips that check)",
                              messages.replace("\n", "; ")) from None
    finally:
        for k, v in saved.items():
            setattr(private, k, v)
        if od is not None:
            od.definitions = all_defs


def _runtime_name(md: Any, runtime_name: bool) -> str:
    name = str(getattr(getattr(md, "miscellaneous", None), "name", "") or "")
    if not runtime_name:
        return name
    now = datetime.datetime.now()
    return f"{name}-{now:%m-%d-%Y-%H-%M-%S}-{os.getpid()}"


def solve(md: Any, solution_string: str, *, solver: str | Solver | None = None, device: Any = None,
          batch: bool = False, check_consistency: bool = True, restart: Any = None, load_only: bool = False,
          no_log: bool = False, runtime_name: bool = True, registry: SolverRegistry | None = None,
          **options: Any) -> Any:
    """Solve an ISSM model with an issm-emulator backend, like ``pyissm.model.execute.solve``.

    Parameters
    ----------
    md : pyissm.model.Model
        The model (any object with pyISSM's attribute paths). Only read until the solve succeeded.
    solution_string : str
        ``'Transient'``/``'tr'``/``'TransientSolution'`` or ``'Stressbalance'``/``'sb'``/
        ``'StressbalanceSolution'`` (case-insensitive).
    solver : str or Solver, optional
        Registered solver name (:func:`issm_emulator.available_solvers`) or a backend instance. Default:
        an emulator checkpoint (registered, bundled or downloaded) whose applicability domain contains the
        model (:func:`issm_emulator.solvers.emulator.catalog.select`); when none applies, ``fem`` with a
        :class:`~issm_emulator.errors.FallbackWarning` saying why. :func:`solve_info` tells which ran.
    device : str or torch.device, optional
        ``None``: CUDA when the backend supports it and it is available, else CPU.
    batch, restart, load_only
        pyISSM's cluster options. They have no meaning without ISSM's executable: any value other than
        the default (False, None, False) raises :class:`UnsupportedOptionError`.
    check_consistency : bool
        True (default): also run pyISSM's own ``is_model_self_consistent`` (for pyISSM models), as
        pyISSM's solve does. False skips only that check: the fields the solver uses are always
        validated by :func:`issm_emulator.issm.adapter.read_model`, so nothing safety-critical is skipped.
    no_log : bool
        True leaves ``outlog`` empty (pyISSM: do not load the logs).
    runtime_name : bool
        As pyISSM: ``md.private.runtimename`` becomes ``<md.miscellaneous.name>-<date>-<pid>`` (True) or
        ``md.miscellaneous.name`` (False).
    registry : SolverRegistry, optional
        Where ``solver`` names are looked up (default: the process-wide registry of installed plugins).
    **options
        Passed to the backend's ``solve`` (unknown ones are rejected by the backend).

    Returns
    -------
    md
        The same object, with ``md.results.<Solution>`` filled (pyISSM's ``results.solution``; ISSM's user
        units) and ``md.private.solution`` set. On any error ``md`` is left exactly as it was.

    Raises
    ------
    UnknownSolutionError, UnsupportedOptionError, UnknownSolverError, ModelInputError, SolverError
    """
    if batch:
        _reject("batch", batch, "there is no cluster job to queue; the solve runs in this process")
    if restart is not None:
        _reject("restart", restart, "a surrogate keeps no ISSM execution directory to restart from")
    if load_only:
        _reject("load_only", load_only, "there are no ISSM output files to load; call solve without it")
    solution = parse_solution(solution_string)

    from issm_emulator.issm.adapter import read_model
    from issm_emulator.issm.results import fill_results

    state = None
    selection: dict[str, Any] = {"selection": "explicit", "reasons": []}
    if isinstance(solver, Solver):
        backend, solver_name = solver, solver.name or type(solver).__name__
    elif solver is None or isinstance(solver, str):
        reg = registry if registry is not None else get_registry()
        if solver is None:
            state = read_model(md, solution)
            if check_consistency:
                _pyissm_consistency(md, solution)
            solver_name, options, selection = _choose_default(reg, state, solution, dict(options))
        else:
            solver_name = solver
        backend = reg.get(solver_name)
    else:
        raise TypeError(f"solver: expected a registered solver name or a Solver instance, got "
                        f"{type(solver).__name__}")
    if solution not in tuple(backend.solutions):
        raise UnknownSolutionError(f"solver {solver_name!r} does not implement {solution}; it implements "
                                   f"{', '.join(backend.solutions) or 'nothing'}")
    dev = resolve_device(device, backend)

    if state is None:
        state = read_model(md, solution)
        if check_consistency:
            _pyissm_consistency(md, solution)

    t0 = time.perf_counter()
    result = backend.solve(state, solution, device=dev, **options)
    wall = time.perf_counter() - t0
    if not isinstance(result, SolverResult):
        raise SolverError(f"solver {solver_name!r} returned {type(result).__name__}, expected a SolverResult")
    if result.solution != solution:
        raise SolverError(f"solver {solver_name!r} returned a {result.solution!r} for a {solution} request")
    info = {"solver": solver_name, "solver_version": str(backend.version), "device": dev,
            "wall_time_s": round(wall, 6)}
    result = SolverResult(result.solution, result.steps, {**info, **result.info})

    runtimename = _runtime_name(md, runtime_name)
    fill_results(md, result, state.yts, log=not no_log)  # builds everything first, then assigns
    private = getattr(md, "private", None)
    if private is not None and hasattr(private, "runtimename"):
        private.runtimename = runtimename
    ri = result.info
    ckpt = None
    if ri.get("checkpoint_name"):
        ckpt = {"name": ri["checkpoint_name"], "sha256": ri.get("checkpoint_sha256", ""),
                "path": ri.get("checkpoint"), "source": selection.get("source", "explicit")}
    _remember(md, {"solver": solver_name, "checkpoint": ckpt, "mode": ri.get("mode", "fem" if ckpt is None else None),
                   "device": dev, "fallback_steps": int(ri.get("fallback_steps", 0)),
                   "domain_violations": list(ri.get("domain_violations", [])), "wall_time_s": round(wall, 6),
                   **selection})
    return md
