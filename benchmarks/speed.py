"""Wall time of the same Pine Island run with ``fem`` and with each emulator; writes its section of
docs/results.md.

1. **One run**: ``scenarios.pine_island`` (``--resolution``, melt ``--melt`` m/yr, ``--years`` years, monthly
   steps and outputs) solved in this process by ``fem`` and by every Pine Island checkpoint in
   ``--checkpoints`` (``egcn``/``gcn``/``cnn`` x ``step``/``direct``), through ``issm_emulator.solve``.
   Emulators get one untimed one-step solve first (checkpoint loading, first-call set-up), then the timed
   run; the speed-up is ``t_fem / t_emulator``. The emulator's final thickness and speed are compared with
   fem's (RMSE), so a fast but wrong network shows as such.
2. **Ensemble throughput**: ``--members`` members (melt rates 0, 2, ..., 70 m/yr, the first N) on one mesh:
   ``fem`` member after member (the first ``--fem-members`` timed, the rest scaled from their mean when
   fewer are asked), each emulator through ``issm_emulator.solve_ensemble`` (one batched forward pass per
   step for all members).
3. GPU rows when ``torch.cuda.is_available()`` (device named).

Usage::

    python benchmarks/speed.py --checkpoints /data/ckpt [--years 20] [--resolution 3e3] [--members 36]

Measures and reports; asserts nothing.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    RESULTS_TITLE,
    fem_step_velocities,
    find_checkpoints,
    fmt,
    quiet,
    replay_velocities,
    set_threads,
    timed,
)
from report import machine_line, write_section  # noqa: E402

os.environ.setdefault("USER", "issm-emulator")

ROOT = Path(__file__).resolve().parents[1]


def build(resolution: float, melt: float, years: float, output_frequency: int):
    from issm_emulator.scenarios.pine_island import pine_island

    return quiet(pine_island, resolution, melt, years=years, output_frequency=output_frequency)


def with_melt(md, rate: float):
    out = copy.deepcopy(md)
    out.basalforcings.floatingice_melting_rate = np.full(md.mesh.numberofvertices, float(rate))
    return out


def final_fields(md) -> dict[str, np.ndarray]:
    s = md.results.TransientSolution[-1]
    return {"H": np.asarray(s.Thickness, float).ravel(),
            "speed": np.hypot(np.asarray(s.Vx, float).ravel(), np.asarray(s.Vy, float).ravel())}


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


def devices(requested: list[str] | None) -> list[str]:
    import torch

    if requested:
        return requested
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def device_name(dev: str) -> str:
    import torch

    if dev.startswith("cuda"):
        return f"{dev} ({torch.cuda.get_device_name(torch.device(dev))})"
    return f"cpu ({torch.get_num_threads()} torch thread(s))"


def sync(dev: str) -> None:
    import torch

    if dev.startswith("cuda"):
        torch.cuda.synchronize()


def loop_floor(base, velocities) -> float:
    """Wall time of the shared transient loop with a velocity that costs nothing: ``fem``'s velocity of each
    step replayed (:func:`common.replay_velocities`), so the mass transport sees the same matrices as in a
    real run. What step mode costs besides its network passes (mass transport, migration, melt, outputs)."""
    from issm_emulator.issm.adapter import read_model
    from issm_emulator.solvers.transient import run_transient

    state = quiet(read_model, copy.deepcopy(base), "TransientSolution")
    wall, _ = timed(run_transient, state, replay_velocities(velocities), solver_name="loop")
    return wall


def single_run(args, base, ckpts, devs) -> tuple[dict, list[dict]]:
    """fem, the loop floor and every emulator on one run, ``args.repeats`` times interleaved (fem, floor,
    each emulator, then again), so that a busy spell of the shared machine hits them alike; medians."""
    import issm_emulator

    short = copy.deepcopy(base)
    short.timestepping.final_time = short.timestepping.start_time + short.timestepping.time_step
    rows = [{"ckpt": c, "device": device_name(dev), "dev": dev, "walls": []} for c in ckpts for dev in devs]
    for r in rows:  # warm-up: load the checkpoint, first call
        c = r["ckpt"]
        try:
            quiet(issm_emulator.solve, copy.deepcopy(short), "Transient", solver=c.arch, mode=c.mode,
                  checkpoint=str(c.path), device=r["dev"])
        except Exception as exc:  # noqa: BLE001 - a failing network is reported, not fatal
            r["error"] = f"{type(exc).__name__}: {str(exc)[:160]}"
    from issm_emulator.issm.adapter import read_model

    velocities = fem_step_velocities(quiet(read_model, copy.deepcopy(base), "TransientSolution"))
    fem_walls, floors, ref, nout = [], [], None, 0
    for rep in range(args.repeats):
        md = copy.deepcopy(base)
        wall, _ = timed(quiet, issm_emulator.solve, md, "Transient", solver="fem")
        fem_walls.append(wall)
        ref, nout = final_fields(md), len(md.results.TransientSolution.steps)
        floors.append(loop_floor(base, velocities))
        for r in rows:
            if "error" in r:
                continue
            c, dev = r["ckpt"], r["dev"]
            try:
                m = copy.deepcopy(base)
                sync(dev)
                wall, _ = timed(quiet, issm_emulator.solve, m, "Transient", solver=c.arch, mode=c.mode,
                                checkpoint=str(c.path), device=dev)
                sync(dev)
                r["walls"].append(wall)
                f = final_fields(m)
                r.update(h_rmse=rmse(f["H"], ref["H"]), v_rmse=rmse(f["speed"], ref["speed"]))
            except Exception as exc:  # noqa: BLE001 - a diverging network is reported, not fatal
                r["error"] = f"{type(exc).__name__}: {str(exc)[:160]}"
        print(f"repeat {rep + 1}/{args.repeats}: fem {fem_walls[-1]:.2f} s, floor {floors[-1]:.2f} s, "
              + ", ".join(f"{r['ckpt'].name} {r['walls'][-1]:.2f} s" for r in rows if r["walls"]), flush=True)
    t_fem = float(np.median(fem_walls))
    fem_row = {"wall": t_fem, "loop": float(np.median(floors)), "nout": nout, "repeats": args.repeats}
    for r in rows:
        if r["walls"] and "error" not in r:
            r["wall"] = float(np.median(r["walls"]))
            r["speedup"] = t_fem / r["wall"]
    return fem_row, rows


def ensemble(args, base, ckpts, devs) -> tuple[dict, list[dict]]:
    import issm_emulator

    rates = np.arange(0.0, 70.0 + 1e-9, 2.0)[: args.members]
    eb = base
    if args.ensemble_years is not None:
        eb = copy.deepcopy(base)
        eb.timestepping.final_time = eb.timestepping.start_time + args.ensemble_years
    n_fem = min(args.fem_members or len(rates), len(rates))
    times = []
    for r in rates[:n_fem]:
        md = with_melt(eb, r)
        w, _ = timed(quiet, issm_emulator.solve, md, "Transient", solver="fem")
        times.append(w)
    fem_total = float(np.sum(times)) * (len(rates) / n_fem)
    fem = {"members": len(rates), "measured": n_fem, "wall": fem_total}
    print(f"fem ensemble: {fem_total:.1f} s for {len(rates)} members ({n_fem} measured)", flush=True)
    rows = []
    short = copy.deepcopy(eb)
    short.timestepping.final_time = short.timestepping.start_time + short.timestepping.time_step
    for c in ckpts:
        if c.mode not in args.ensemble_modes:
            continue
        for dev in devs:
            row = {"ckpt": c, "device": device_name(dev)}
            try:
                quiet(issm_emulator.solve_ensemble, [with_melt(short, r) for r in rates[:2]], "Transient",
                      solver=c.arch, mode=c.mode, checkpoint=str(c.path), device=dev)
                walls = []
                for _ in range(args.ensemble_repeats):  # short runs: the median of a few, as the single run
                    mds = [with_melt(eb, r) for r in rates]
                    sync(dev)
                    w, _ = timed(quiet, issm_emulator.solve_ensemble, mds, "Transient", solver=c.arch, mode=c.mode,
                                 checkpoint=str(c.path), device=dev, batch_size=args.batch_size)
                    sync(dev)
                    walls.append(w)
                wall = float(np.median(walls))
                row.update(wall=wall, speedup=fem_total / wall)
                print(f"{c.name} ensemble on {dev}: {wall:.1f} s (x{fem_total / wall:.2f})", flush=True)
            except Exception as exc:  # noqa: BLE001
                row["error"] = f"{type(exc).__name__}: {str(exc)[:160]}"
                print(f"{c.name} ensemble on {dev}: {row['error']}", flush=True)
            rows.append(row)
    return fem, rows


def markdown(args, nv: int, ne: int, singles: list[tuple[int, dict, list[dict]]], femE: dict | None,
             rowsE: list[dict], missing: list[str], ctx: dict | None = None) -> str:
    import torch

    steps = round(args.years * 12)
    lines = [
        "## Speed: one Pine Island run and an ensemble (`benchmarks/speed.py`)",
        "",
        machine_line() + f" torch {torch.__version__}; CUDA available: {torch.cuda.is_available()}.",
        "",
        f"Pine Island (`scenarios.pine_island`), {args.resolution / 1e3:g} km mesh: {nv} vertices, {ne} elements; "
        f"floating-ice melt {args.melt:g} m/yr; {args.years:g} years in {steps} monthly steps. Wall time of "
        "`issm_emulator.solve` in one process (model building excluded; emulators after an untimed one-step "
        f"warm-up that loads the checkpoint), median of {args.repeats} repeats run interleaved (fem, loop floor, "
        "each emulator, then again), default run-time policy (`RuntimePolicy`). *RMSE vs fem*: final "
        "thickness and speed of the emulator run against the fem run. *Loop floor*: the shared transient loop "
        "with a velocity that costs nothing (fem's velocity of each step replayed, so the mass transport sees "
        "the matrices of a real run), i.e. what step mode costs besides its network passes.",
    ]
    for freq, fem1, rows1 in singles:
        lines += [
            "",
            f"**Output every {freq} step(s)** ({fem1['nout']} outputs). fem: {fem1['wall']:.2f} s; loop floor: "
            f"{fem1['loop']:.2f} s, so step mode can be at most {fem1['wall'] / fem1['loop']:.1f}x faster than "
            "fem however cheap its network.",
            "",
            "| solver | mode | device | wall time (s) | speed-up vs fem | thickness RMSE vs fem (m) | "
            "speed RMSE vs fem (m/yr) |",
            "|---|---|---|---|---|---|---|",
            f"| fem | - | cpu | {fem1['wall']:.2f} | 1 | - | - |",
        ]
        for r in rows1:
            c = r["ckpt"]
            if "error" in r:
                lines.append(f"| {c.arch} | {c.mode} | {r['device']} | failed: {r['error']} | - | - | - |")
            else:
                lines.append(f"| {c.arch} | {c.mode} | {r['device']} | {r['wall']:.2f} | {r['speedup']:.2f} | "
                             f"{fmt(r['h_rmse'])} | {fmt(r['v_rmse'])} |")
    if femE is not None:
        ey = args.ensemble_years if args.ensemble_years is not None else args.years
        scaled = (f"{femE['measured']} members timed, total scaled to {femE['members']}"
                  if femE["measured"] < femE["members"] else "all members timed")
        lines += [
            "",
            f"Ensemble throughput: {femE['members']} members (melt rates 0, 2, ... m/yr), {ey:g} years each, output "
            f"every {args.output_frequency[0]} step(s). fem: "
            f"members solved one after the other in this process ({scaled}); emulators: "
            f"`issm_emulator.solve_ensemble`, median of {args.ensemble_repeats} repeats (step mode: batched forward "
            "passes per step, the FE mass transport "
            "per member; time-decoded direct mode: one trunk pass per member, then a decoder per output time).",
            "",
            "| solver | mode | device | wall time (s) | members per minute | speed-up vs fem |",
            "|---|---|---|---|---|---|",
            f"| fem (sequential) | - | cpu | {femE['wall']:.1f} | {60 * femE['members'] / femE['wall']:.2f} | 1 |",
        ]
        if set(args.ensemble_modes) != {"step", "direct"}:
            lines.append(f"| (only {', '.join(args.ensemble_modes)} mode timed here) | | | | | |")
        for r in rowsE:
            c = r["ckpt"]
            if "error" in r:
                lines.append(f"| {c.arch} | {c.mode} | {r['device']} | failed: {r['error']} | - | - |")
            else:
                lines.append(f"| {c.arch} | {c.mode} | {r['device']} | {r['wall']:.1f} | "
                             f"{60 * femE['members'] / r['wall']:.2f} | {r['speedup']:.2f} |")
    if not torch.cuda.is_available():
        lines += ["", "No GPU on this machine: CPU rows only."]
    if missing:
        lines += ["", f"Not timed (no checkpoint when this ran): {', '.join(missing)}."]
    lines += [
        "",
        "**What these numbers compare.** Our `fem` is this package's own vectorised SSA finite-element solver "
        "(warm-started Picard iterations at ISSM's `restol = 0.05`, sparse direct solves, monthly steps), not "
        "ISSM. The seed paper's 44x (Pine Island) and 260x (Helheim) speed-ups are against ISSM (about 15 s per "
        "20-year Pine Island run on a 10 km mesh, per the seed's repository), for direct-mode "
        "networks on GPU predicting 240-260 outputs; they are not reproduced by this table, and the ratio "
        "depends as much on the reference solver's cost as on the network's."
        + (f" For scale, our fem on the 10 km mesh ({ctx['nv']} vertices), 20 years in monthly steps: "
           f"{ctx['wall']:.2f} s." if ctx else "")
        + " Step mode calls the network "
        "once per time step and runs the FE mass transport, grounding-line and output code of `fem` as well, "
        "so it can only save the stress-balance share of a step (the loop floor above); direct mode skips time "
        "stepping altogether: the GCN and CNN, whose network takes the time as an input, cost one forward pass "
        "per output (up to 16 outputs stacked in one pass), the EGCN one trunk pass per run plus one small "
        "per-vertex decoder per output.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", type=Path, required=True, help="folder of <arch>-<mode>-pig.pt")
    ap.add_argument("--years", type=float, default=20.0)
    ap.add_argument("--resolution", type=float, default=3e3, help="mesh resolution (m)")
    ap.add_argument("--melt", type=float, default=30.0, help="floating-ice melt rate of the single run (m/yr)")
    ap.add_argument("--output-frequency", type=int, nargs="+", default=[1, 12],
                    help="output every that many monthly steps; one single-run table per value (default 1 12)")
    ap.add_argument("--members", type=int, default=36, help="ensemble members (0 skips the ensemble)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="timed repeats of the single run, interleaved; medians reported (default 3)")
    ap.add_argument("--ensemble-repeats", type=int, default=3,
                    help="timed repeats of each emulator ensemble, median reported (default 3)")
    ap.add_argument("--fem-members", type=int, default=None,
                    help="time only this many fem members and scale to --members (default: all)")
    ap.add_argument("--ensemble-years", type=float, default=None, help="years of each member (default --years)")
    ap.add_argument("--ensemble-modes", nargs="+", choices=["step", "direct"], default=["step", "direct"],
                    help="emulator modes timed in the ensemble table (default both)")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="members per forward pass (default: the runtime's policy)")
    ap.add_argument("--device", action="append", default=None, help="torch device(s) (default cpu [+ cuda])")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads around the whole run (default: the runtime's policy per solve)")
    ap.add_argument("--no-context", dest="context", action="store_false",
                    help="skip the 20-year fem run on the seed's 10 km mesh (context for its ISSM timing)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "results.md")
    args = ap.parse_args(argv)
    set_threads(args.threads)

    from common import missing_checkpoints

    ckpts = find_checkpoints(args.checkpoints, "pig")
    missing = missing_checkpoints(ckpts, ("pig",))
    devs = devices(args.device)
    singles = []
    bases = {}
    for freq in args.output_frequency:
        base = bases[freq] = build(args.resolution, args.melt, args.years, freq)
        nv, ne = int(base.mesh.numberofvertices), int(base.mesh.numberofelements)
        print(f"Pine Island: {nv} vertices, output every {freq} step(s); checkpoints: "
              f"{', '.join(c.name for c in ckpts) or 'none'}", flush=True)
        singles.append((freq, *single_run(args, base, ckpts, devs)))
    ens_base = bases[args.output_frequency[0]]
    femE, rowsE = (ensemble(args, ens_base, ckpts, devs) if args.members > 0 else (None, []))
    ctx = None
    if args.context:
        import issm_emulator

        m10 = build(10e3, 30.0, 20.0, 1)
        w, _ = timed(quiet, issm_emulator.solve, m10, "Transient", solver="fem")
        ctx = {"nv": int(m10.mesh.numberofvertices), "wall": w}
    body = markdown(args, nv, ne, singles, femE, rowsE, missing, ctx)
    write_section(args.out, "speed", body, title=RESULTS_TITLE)
    print(body)
    if not all(math.isfinite(fem1["wall"]) for _, fem1, _ in singles):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
