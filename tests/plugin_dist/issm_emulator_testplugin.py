"""A third-party issm-emulator plugin (test distribution): the ``frozen-test`` solver.

The solver keeps the initial state: every output step repeats the initial velocity and geometry, and the
ice volume is integrated from the thickness, so the results are computed from the state it receives.
"""

from __future__ import annotations

import numpy as np

from issm_emulator.plugins.hookspecs import hookimpl
from issm_emulator.solvers.base import STRESSBALANCE, Solver, SolverResult, vel

FACTORY_CALLS = []


class FrozenSolver(Solver):
    name = "frozen-test"
    version = "0.0.1"
    description = "keeps the initial velocity and geometry (test plugin)"
    devices = ("cpu",)

    def solve(self, state, solution, *, device=None, **options):
        self.check_options(options)
        x, y, tri = state.mesh.x, state.mesh.y, state.mesh.elements
        area = 0.5 * np.abs((x[tri[:, 1]] - x[tri[:, 0]]) * (y[tri[:, 2]] - y[tri[:, 0]])
                            - (x[tri[:, 2]] - x[tri[:, 0]]) * (y[tri[:, 1]] - y[tri[:, 0]]))
        volume = float(np.sum(area * state.geometry.thickness[tri].mean(axis=1)))
        ts = state.timestepping
        if solution == STRESSBALANCE:
            times = [ts.start_time]
        else:
            n = round((ts.final_time - ts.start_time) / ts.time_step)
            times = [ts.start_time + k * ts.time_step for k in range(1, n + 1)]
        steps = []
        for k, t in enumerate(times, start=1):
            step = {"step": k, "time": t, "Vx": state.vx, "Vy": state.vy, "Vel": vel(state.vx, state.vy),
                    "IceVolume": volume}
            if solution != STRESSBALANCE:
                step.update(Thickness=state.geometry.thickness, Surface=state.geometry.surface,
                            Base=state.geometry.base)
            steps.append(step)
        return SolverResult(solution, steps, {"device": device})


def _factory():
    FACTORY_CALLS.append(1)
    return FrozenSolver()


@hookimpl
def issm_emulator_solvers():
    return [("frozen-test", _factory)]
