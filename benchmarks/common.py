"""Helpers shared by the benchmark scripts: finding trained checkpoints, thread control, timing."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ARCHS = ("egcn", "gcn", "cnn")
MODES = ("step", "direct")
SCENARIOS = {"pig": "Pine Island (melt)", "north79": "79N (calving)"}
_NAME = re.compile(r"^(egcn|gcn|cnn)-(step|direct)-([a-z0-9]+)\.pt$")

RESULTS_TITLE = "Validation and results"


@dataclass(frozen=True)
class CheckpointFile:
    """A checkpoint file named ``<arch>-<mode>-<scenario>.pt``."""

    arch: str
    mode: str
    scenario: str
    path: Path

    @property
    def name(self) -> str:
        return f"{self.arch}-{self.mode}-{self.scenario}"


def find_checkpoints(folder: str | os.PathLike, scenario: str | None = None) -> list[CheckpointFile]:
    """The ``<arch>-<mode>-<scenario>.pt`` files in ``folder`` (``*.last.pt`` and other names are skipped),
    in the order egcn, gcn, cnn x step, direct."""
    out = []
    for p in sorted(Path(folder).glob("*.pt")):
        m = _NAME.match(p.name)
        if m and (scenario is None or m.group(3) == scenario):
            out.append(CheckpointFile(m.group(1), m.group(2), m.group(3), p))
    return sorted(out, key=lambda c: (c.scenario, ARCHS.index(c.arch), MODES.index(c.mode)))


def missing_checkpoints(found: list[CheckpointFile], scenarios: tuple[str, ...]) -> list[str]:
    """Names of the 3 x 2 x len(scenarios) expected checkpoints that are not in ``found``."""
    have = {c.name for c in found}
    return [f"{a}-{m}-{s}" for s in scenarios for a in ARCHS for m in MODES if f"{a}-{m}-{s}" not in have]


def set_threads(n: int | None) -> int:
    """Limit torch's intra-op threads (``None``: leave as is); returns the number in use.

    On a machine whose cores are busy with other work, torch's default (one thread per core) spends most
    of its time waiting at OpenMP barriers; one thread is then much faster.
    """
    import torch

    if n is not None:
        torch.set_num_threads(int(n))
    return int(torch.get_num_threads())


def timed(fn, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """``(wall seconds, fn(*args, **kwargs))``."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def quiet(fn, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn`` with pyISSM's prints and UserWarnings silenced."""
    import contextlib
    import io
    import warnings

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore", UserWarning)
        return fn(*args, **kwargs)


def fmt(v: Any, digits: int = 4) -> str:
    """A number for a markdown table (``-`` for None/NaN)."""
    import math

    if v is None:
        return "-"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "-"
        return f"{v:.{digits}g}"
    return str(v)


def flops_per_pass(model: Any, graph: Any, n_scalars: int, n_vectors: int) -> float:
    """FLOPs of one forward pass (the EGCN's ``encode`` for a time-decoded EGCN) on ``graph``, counted by
    ``torch.utils.flop_counter`` on a float64 copy (the float32 CPU path calls oneDNN's fused kernel,
    which the counter does not see)."""
    import copy

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    m = copy.deepcopy(model).double().eval()
    g = graph.clone()
    g.pos = g.pos.double()
    if getattr(g, "edge_vec", None) is not None:
        g.edge_vec = g.edge_vec.double()
    n = g.num_nodes
    s = torch.zeros(n, n_scalars, dtype=torch.float64)
    v = torch.ones(n, n_vectors, 2, dtype=torch.float64)
    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        trunk = getattr(m, "decodes_time", False) and not getattr(m, "time_input", False)
        (m.encode if trunk else m)(g, s, v)  # a time-input increment network: one pass, one output time
    return float(fc.get_total_flops())


def matmul_gflops(threads: int = 1, size: int = 2048, repeats: int = 5) -> float:
    """Median rate (GFLOP/s) of a ``size``-cubed float32 ``torch.matmul`` on ``threads`` threads."""
    import statistics

    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(size, size), torch.randn(size, size)
        a @ b
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)
    return 2.0 * size ** 3 / statistics.median(times) / 1e9


def fem_step_velocities(state: Any) -> dict[int, tuple[Any, Any]]:
    """The velocity ``fem`` computes at every time step of ``state`` (SI), by step number: what a
    replayed loop floor hands to the shared transient loop (:func:`replay_velocities`)."""
    from issm_emulator.solvers.fem import FEMSolver

    res = quiet(FEMSolver()._transient, state.replace(output_frequency=1), False, False)
    return {int(s["step"]): (s["Vx"], s["Vy"]) for s in res.steps}


def replay_velocities(velocities: dict[int, tuple[Any, Any]]):
    """A velocity provider for :func:`issm_emulator.solvers.transient.run_transient` that hands over the
    recorded velocity of each step at no cost, as step mode's network does: the mass-transport matrix then
    changes every step as in a real run (a constant velocity would make it constant and the loop look
    cheaper than it is)."""

    def replay(state, geometry, vx, vy, t, step):
        ux, uy = velocities[step]
        return ux, uy, {"niter": 1}

    return replay
