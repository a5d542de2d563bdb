"""The neural emulators as solver backends: ``egcn`` (equivariant graph network), ``gcn``, ``cnn``.

``issm_emulator.solve(md, 'Transient', solver='egcn', mode='step', checkpoint=None, device=None)``:

* ``mode='step'`` (default): the network gives the velocity of every time step; thickness, grounding line
  and front advance with the fem solver's mass transport, flotation and migration
  (:func:`issm_emulator.solvers.emulator.step.rollout_step_many`); mass is conserved to solver precision;
* ``mode='direct'``: every output step is predicted from the initial state, the forcing and the time
  (:func:`issm_emulator.solvers.emulator.direct.direct_transient_many`);
* ``StressbalanceSolution``: one forward pass of a step-mode network.

``checkpoint`` is a file path, the name of a bundled checkpoint (:mod:`issm_emulator.weights`) or a
loaded :class:`~issm_emulator.solvers.emulator.checkpoint.Checkpoint`; by default the bundled
``weights/<arch>-<mode>-<scenario>.pt``. The checkpoint's manifest is checked against the model: a missing
input refuses the solve, a forcing parameter outside the training range warns
(:class:`~issm_emulator.errors.ExtrapolationWarning`). Before any forward pass the model is checked against
the checkpoint's applicability domain (:mod:`issm_emulator.solvers.emulator.domain`): another glacier,
resolution, time step or physics refuses with :class:`~issm_emulator.errors.OutOfDomainError` unless
``allow_extrapolation=True``.

Nothing here imports torch until a solve runs, so listing the solvers stays cheap.
"""

from __future__ import annotations

import os
import threading
import time as _time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from issm_emulator.errors import SolverError, UnsupportedOptionError
from issm_emulator.solvers.base import STRESSBALANCE, TRANSIENT, Solver, SolverResult
from issm_emulator.state import ModelState

MODES = ("step", "direct")
#: default ``fallback_tol``: estimated RMS velocity error (m/yr) above which a step falls back to fem
DEFAULT_FALLBACK_TOL = 100.0


class EmulatorSolver(Solver):
    """A trained emulator network of architecture :attr:`arch` used as a solver backend.

    Options
    -------
    mode : ``'step'`` (default) or ``'direct'``
    checkpoint : path, bundled name or loaded Checkpoint; default the bundled weights of ``arch`` and mode
    batch_size : int, optional
        Most graphs per forward pass (ensemble members in step mode, output times in direct mode);
        default by device and graph size (:class:`~issm_emulator.solvers.emulator.network.RuntimePolicy`,
        ``ISSM_EMULATOR_BATCH_SIZE``).
    threads : int, optional
        Torch intra-op threads during the solve (restored afterwards); default by graph size on a CPU
        (``ISSM_EMULATOR_THREADS``).
    compile : bool, optional
        Run the network through ``torch.compile`` (falls back to eager with a warning where it cannot);
        default False (``ISSM_EMULATOR_COMPILE=1``).
    progress : bool, default False
        Show a progress bar.
    allow_extrapolation : bool, default False
        Run outside the checkpoint's applicability domain, with an
        :class:`~issm_emulator.errors.ExtrapolationWarning` per violation instead of a refusal.
    fallback : ``'fem'`` or None (default)
        Re-solve with ``fem`` the steps whose error indicator (the estimated RMS velocity error of the
        emulated velocity, :mod:`~issm_emulator.solvers.emulator.indicator`) exceeds ``fallback_tol``.
    fallback_tol : float, default 100
        The estimated velocity error (m/yr) above which a step falls back (0: every step; the result is then
        ``fem``'s).
    """

    arch: ClassVar[str] = ""
    version: ClassVar[str] = "0.1"
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")
    solutions: ClassVar[tuple[str, ...]] = (TRANSIENT, STRESSBALANCE)
    _OPTIONS: ClassVar[tuple[str, ...]] = ("mode", "checkpoint", "batch_size", "threads", "compile", "progress",
                                           "allow_extrapolation", "fallback", "fallback_tol")

    def __init__(self) -> None:
        if not self.arch:
            raise TypeError("EmulatorSolver is abstract: use EGCNSolver, GCNSolver or CNNSolver")
        self._cache: dict[tuple, Any] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------------------------
    def check_options(self, options: dict[str, Any]) -> None:
        unknown = sorted(set(options) - set(self._OPTIONS))
        if unknown:
            raise TypeError(f"solver {self.name!r} got unknown option(s): {', '.join(unknown)}; it accepts "
                            f"{', '.join(self._OPTIONS)}")
        mode = options.get("mode", "step")
        if mode not in MODES:
            raise UnsupportedOptionError(f"solver {self.name!r}: mode={mode!r}; expected 'step' or 'direct'")
        bs = options.get("batch_size")
        if bs is not None and (isinstance(bs, bool) or not isinstance(bs, int) or bs < 1):
            raise UnsupportedOptionError(f"solver {self.name!r}: batch_size={bs!r}; expected a positive int")
        th = options.get("threads")
        if th is not None and (isinstance(th, bool) or not isinstance(th, int) or th < 1):
            raise UnsupportedOptionError(f"solver {self.name!r}: threads={th!r}; expected a positive int")
        if options.get("compile") is not None and not isinstance(options["compile"], bool):
            raise UnsupportedOptionError(f"solver {self.name!r}: compile={options['compile']!r}; expected True "
                                         "or False")
        if "progress" in options and not isinstance(options["progress"], bool):
            raise TypeError(f"solver {self.name!r} option 'progress' must be a bool, got "
                            f"{type(options['progress']).__name__}")
        for flag in ("allow_extrapolation",):
            if flag in options and not isinstance(options[flag], bool):
                raise TypeError(f"solver {self.name!r} option {flag!r} must be a bool, got "
                                f"{type(options[flag]).__name__}")
        if options.get("fallback") not in (None, "fem"):
            raise UnsupportedOptionError(f"solver {self.name!r}: fallback={options['fallback']!r}; expected 'fem' "
                                         "or None")
        tol = options.get("fallback_tol", DEFAULT_FALLBACK_TOL)
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0:
            raise UnsupportedOptionError(f"solver {self.name!r}: fallback_tol={tol!r}; expected a number >= 0 "
                                         "(an estimated velocity error in m/yr)")
        ck = options.get("checkpoint")
        if ck is not None and not isinstance(ck, (str, os.PathLike)):
            from issm_emulator.solvers.emulator.checkpoint import Checkpoint

            if not isinstance(ck, Checkpoint):
                raise TypeError(f"solver {self.name!r}: checkpoint must be a path, a bundled checkpoint name or "
                                f"a loaded Checkpoint, got {type(ck).__name__}")

    def checkpoint_path(self, mode: str, checkpoint: str | os.PathLike | None) -> Path:
        """The file of ``checkpoint`` (path or bundled name), or the bundled default of this arch and mode."""
        from issm_emulator import weights

        if checkpoint is None:
            return weights.default_checkpoint(self.arch, mode)
        return weights.resolve(checkpoint)

    def load(self, mode: str, checkpoint: Any, device: Any) -> Any:
        """The :class:`~issm_emulator.solvers.emulator.checkpoint.Checkpoint` to run (loaded files are cached per device)."""
        from issm_emulator.solvers.emulator.checkpoint import Checkpoint
        from issm_emulator.solvers.emulator.network import load

        if isinstance(checkpoint, Checkpoint):
            return load(checkpoint, device)
        path = self.checkpoint_path(mode, checkpoint).resolve()
        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size, str(device))
        with self._lock:
            ck = self._cache.get(key)
            if ck is None:
                ck = load(path, device)
                self._cache = {k: v for k, v in self._cache.items() if k[0] != str(path)}
                self._cache[key] = ck
        return ck

    # ------------------------------------------------------------------------------------------------------
    def solve(self, state: ModelState, solution: str, *, device: str | None = None,
              **options: Any) -> SolverResult:
        return self.solve_many([state], solution, device=device, **options)[0]

    def solve_many(self, states: Sequence[ModelState], solution: str, *, device: Any = None,
                   **options: Any) -> list[SolverResult]:
        """Solve several models on the same mesh together (one batched forward pass per step).

        The states must share ``mesh.x``, ``mesh.y`` and ``mesh.elements`` (checked by
        :func:`issm_emulator.solve_ensemble`; here the first state's mesh is used for the graph).
        """
        from issm_emulator.solvers.emulator.direct import direct_transient_many
        from issm_emulator.solvers.emulator.network import torch_device
        from issm_emulator.solvers.emulator.step import rollout_step_many, stressbalance_many

        self.check_options(options)
        if solution not in self.solutions:
            raise SolverError(f"solver {self.name!r} solves {', '.join(self.solutions)}, not {solution!r}")
        mode = options.get("mode", "step")
        if solution == STRESSBALANCE and mode != "step":
            raise UnsupportedOptionError(f"solver {self.name!r}: {STRESSBALANCE} uses a step-mode network (one "
                                         f"velocity from the current state); mode={mode!r} is not available")
        dev = torch_device(device)
        t0 = _time.perf_counter()
        ckpt = self.load(mode, options.get("checkpoint"), dev)
        violations = self.check_domain(ckpt, states, solution, mode,
                                       allow_extrapolation=bool(options.get("allow_extrapolation", False)))
        kw: dict[str, Any] = {"device": dev, "batch_size": options.get("batch_size"), "arch": self.arch,
                              "solver_name": self.name, "threads": options.get("threads"),
                              "compile": options.get("compile")}
        fb = {"fallback": options.get("fallback"),
              "fallback_tol": float(options.get("fallback_tol", DEFAULT_FALLBACK_TOL))}
        if solution == STRESSBALANCE:
            results = stressbalance_many(ckpt, list(states), **kw)
        elif mode == "step":
            results = rollout_step_many(ckpt, list(states), progress=bool(options.get("progress")), **kw, **fb)
        else:
            results = direct_transient_many(ckpt, list(states), progress=bool(options.get("progress")), **kw,
                                            **fb)
        wall = _time.perf_counter() - t0
        source = str(ckpt.path) if ckpt.path is not None else "in-memory checkpoint"
        name = ckpt.path.stem if ckpt.path is not None else "in-memory checkpoint"
        for r, v in zip(results, violations):
            r.info.update(solver=self.name, version=self.version, arch=self.arch, checkpoint=source,
                          checkpoint_name=name, checkpoint_sha256=ckpt.content_sha256, torch_device=str(dev),
                          wall_time_s=wall, domain_violations=[str(x) for x in v],
                          fallback_steps=int(r.info.get("fallback_steps", 0)))
        return results

    def check_domain(self, ckpt: Any, states: Sequence[ModelState], solution: str, mode: str, *,
                     allow_extrapolation: bool = False) -> list[list[Any]]:
        """Check every state against the checkpoint's applicability domain (refuse or warn, see
        :func:`~issm_emulator.solvers.emulator.domain.enforce`); the violations of each state."""
        from issm_emulator.solvers.emulator.domain import check_domain, enforce
        from issm_emulator.solvers.transient import transient_schedule

        out = []
        for st in states:
            times = None
            if solution == TRANSIENT and mode == "direct":
                times = [s.time for s in transient_schedule(st) if s.output]
            v = check_domain(ckpt.domain, st, mode=mode, times=times)
            if solution == STRESSBALANCE:  # one velocity: the time step and span do not apply
                v = [x for x in v if not x.what.startswith("time")]
            who = f"solver {self.name!r} with checkpoint {ckpt.path.name if ckpt.path is not None else '(in memory)'}"
            enforce(v, allow_extrapolation=allow_extrapolation, who=who)
            out.append(v)
        return out


class EGCNSolver(EmulatorSolver):
    name: ClassVar[str] = "egcn"
    arch: ClassVar[str] = "egcn"
    description: ClassVar[str] = ("E(2)-equivariant graph network emulator (step mode: network velocity + FE mass "
                                  "transport; direct mode: state at t)")


class GCNSolver(EmulatorSolver):
    name: ClassVar[str] = "gcn"
    arch: ClassVar[str] = "gcn"
    description: ClassVar[str] = "graph-convolution (GCNConv) emulator baseline"


class CNNSolver(EmulatorSolver):
    name: ClassVar[str] = "cnn"
    arch: ClassVar[str] = "cnn"
    description: ClassVar[str] = "convolutional emulator baseline on a regular grid"


#: solver name -> class
EMULATORS: dict[str, type[EmulatorSolver]] = {c.name: c for c in (EGCNSolver, GCNSolver, CNNSolver)}
