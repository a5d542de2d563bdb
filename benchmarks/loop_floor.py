"""The transient loop's floor: what a ``fem`` transient costs besides its stress balance, per phase.

Pine Island 3 km (``scenarios.pine_island``, melt ``--melt`` m/yr, ``--years`` years, monthly steps and
outputs). One ``fem`` run records the velocity of every step (and its own ``timings_s`` split); then the
shared loop (:func:`issm_emulator.solvers.transient.run_transient`) is run ``--repeats`` times with a
velocity provider that replays those velocities at no cost, as step mode's network would hand them over:
the mass-transport matrix changes every step as in a real run. Prints the median (and min) seconds per
phase (``info['timings_s']``: stressbalance, i.e. the bookkeeping around the replayed velocity,
masstransport, groundingline, outputs) and of the whole loop (forcing included).

``--save PATH.npz`` writes the ``fem`` run's numeric outputs at every output step (SI: Thickness, Vx, Vy,
the other vertex fields and the scalar diagnostics), and ``--compare PATH.npz`` prints their largest
difference from a saved file, relative to the field's largest value: the check that a change to the loop
leaves the results as they were.

Usage::

    python benchmarks/loop_floor.py [--repeats 5] [--years 20] [--save before.npz | --compare before.npz]

Measures and reports; asserts nothing. Timings on a shared machine vary; compare medians of one process.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import quiet, replay_velocities

PHASES = ("stressbalance", "masstransport", "groundingline", "outputs")
FIELDS = ("Thickness", "Vx", "Vy")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--resolution", type=float, default=3e3)
    ap.add_argument("--melt", type=float, default=30.0)
    ap.add_argument("--years", type=float, default=20.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--save", type=Path, default=None, help="write the fem run's fields to this .npz")
    ap.add_argument("--compare", type=Path, default=None, help="compare the fem run's fields with this .npz")
    args = ap.parse_args(argv)

    from issm_emulator.issm.adapter import read_model
    from issm_emulator.physics.fe import P1Mesh
    from issm_emulator.scenarios.pine_island import pine_island
    from issm_emulator.solvers.fem import FEMSolver
    from issm_emulator.solvers.transient import run_transient

    md = quiet(pine_island, args.resolution, args.melt, years=args.years, output_frequency=1)
    state = quiet(read_model, copy.deepcopy(md), "Transient")
    t0 = time.perf_counter()
    res = quiet(FEMSolver()._transient, state, False, False)
    t_fem = time.perf_counter() - t0
    steps = res.steps
    print(f"Pine Island {args.resolution / 1e3:g} km, {state.mesh.x.size} vertices, {len(steps)} steps; "
          f"fem run {t_fem:.2f} s, timings_s: "
          + ", ".join(f"{k} {v:.3f}" for k, v in res.info["timings_s"].items()), flush=True)
    # every numeric output of every step (the vertex fields and the scalar diagnostics)
    names = [n for n, v in steps[0].items() if isinstance(v, (float, np.ndarray)) and n not in ("time",)]
    fields = {n: np.stack([np.asarray(s[n], float) for s in steps]) for n in names}
    if args.save is not None:
        np.savez(args.save, **fields)
        print(f"saved {args.save}")
    if args.compare is not None:
        ref = np.load(args.compare)
        for n in FIELDS + tuple(n for n in ref.files if n not in FIELDS):
            scale = np.max(np.abs(ref[n])) or 1.0
            print(f"{n}: max |new - ref| / max |ref| = {np.max(np.abs(fields[n] - ref[n])) / scale:.3e}"
                  + ("  (max of the pointwise relative difference "
                     f"{np.max(np.abs(fields[n] - ref[n]) / np.maximum(np.abs(ref[n]), 1e-300)):.3e})"
                     if n in FIELDS else ""))

    replay = replay_velocities({int(s["step"]): (np.asarray(s["Vx"], float), np.asarray(s["Vy"], float))
                                for s in steps})

    pmesh = P1Mesh.from_mesh(state.mesh)
    per: dict[str, list[float]] = {k: [] for k in (*PHASES, "loop")}
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        r = run_transient(state, replay, pmesh=pmesh, solver_name="loop")
        wall = time.perf_counter() - t0
        tim = r.info["timings_s"]
        for k in PHASES:
            per[k].append(tim[k])
        per["loop"].append(wall)
    print(f"loop floor over {args.repeats} runs (s, median / min):")
    for k, v in per.items():
        print(f"  {k:14s} {statistics.median(v):.3f} / {min(v):.3f}")


if __name__ == "__main__":
    main()
