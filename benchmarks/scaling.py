"""Cost per simulated year against mesh size for ``fem`` and the EGCN emulator (step mode); writes its
section of docs/results.md.

Pine Island (``scenarios.pine_island``, melt 30 m/yr, monthly steps) meshed at the resolutions that give
about ``--sizes`` vertices (``nv ~ 1/resolution^2``, calibrated on the 3 km mesh), each solved for
``--years`` years by ``fem`` and by ``egcn`` in step mode with ``--checkpoint`` (the cost of a forward pass
does not depend on how well the network is trained; the network is applied outside the mesh it was trained
on, so its answers there are not meaningful, only its cost). Reported: wall time per simulated year
(model building excluded; the emulator after an untimed one-step warm-up) and the backends' own breakdown
(stress balance / network, mass transport).

Usage::

    python benchmarks/scaling.py --checkpoint /data/ckpt/egcn-step-pig.pt [--sizes 1000 5000 20000]

Measures and reports; asserts nothing.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS_TITLE, flops_per_pass, fmt, matmul_gflops, quiet, set_threads, timed  # noqa: E402
from report import machine_line, write_section  # noqa: E402

os.environ.setdefault("USER", "issm-emulator")

ROOT = Path(__file__).resolve().parents[1]
_REF_RES = 3e3  # m: calibration mesh


def build(resolution: float, years: float):
    from issm_emulator.scenarios.pine_island import pine_island

    return quiet(pine_island, resolution, 30.0, years=years)


def resolution_for(nv_target: int, nv_ref: int) -> float:
    """Resolution giving about ``nv_target`` vertices when ``_REF_RES`` gives ``nv_ref``."""
    return _REF_RES * math.sqrt(nv_ref / nv_target)


def measure(md, years: float, checkpoint: Path | None, device: str) -> dict:
    from issm_emulator import get_solver
    from issm_emulator.issm.adapter import read_model

    state = read_model(md, "Transient")
    out = {"nv": state.numberofvertices, "ne": state.numberofelements}
    fem = get_solver("fem")
    w, res = timed(quiet, fem.solve, state, "TransientSolution")
    out["fem"] = w / years
    out["fem_parts"] = {k: v / years for k, v in res.info.get("timings_s", {}).items()}
    if checkpoint is not None:
        egcn = get_solver("egcn")
        ts = state.timestepping
        short = state.replace(timestepping=type(ts)(ts.start_time, ts.start_time + ts.time_step, ts.time_step,
                                                    ts.interp_forcing))
        quiet(egcn.solve, short, "TransientSolution", mode="step", checkpoint=str(checkpoint), device=device)
        try:
            w, res = timed(quiet, egcn.solve, state, "TransientSolution", mode="step", checkpoint=str(checkpoint),
                           device=device)
            out["egcn"] = w / years
            out["egcn_parts"] = {k: v / years for k, v in res.info.get("timings_s", {}).items()}
            from issm_emulator.graph import mesh_graph
            from issm_emulator.solvers.emulator.checkpoint import load_checkpoint

            ck = load_checkpoint(checkpoint)
            out["gflop_pass"] = flops_per_pass(ck.model, mesh_graph(state.mesh), ck.spec.n_scalars,
                                               ck.spec.n_vectors) / 1e9
            out["passes"] = int(res.info.get("graphs_evaluated", res.info.get("forward_passes", 0)))
            t_net = res.info.get("timings_s", {}).get("network")
            if t_net:
                out["ms_pass"] = 1e3 * t_net / max(out["passes"], 1)
                out["gflops"] = out["gflop_pass"] * out["passes"] / t_net
        except Exception as exc:  # noqa: BLE001 - e.g. divergence far from the training mesh
            out["egcn_error"] = f"{type(exc).__name__}: {str(exc)[:120]}"
    return out


def markdown(args, rows: list[dict]) -> str:
    import torch

    lines = [
        "## Scaling: cost per simulated year against mesh size (`benchmarks/scaling.py`)",
        "",
        machine_line() + f" torch {torch.__version__}, {torch.get_num_threads()} torch thread(s), device "
        f"{args.device}.",
        "",
        f"Pine Island, melt 30 m/yr, monthly steps, {args.years:g} simulated year(s) per measurement; seconds of "
        "wall time per simulated year (model building excluded). `fem`: SSA stress balance + mass transport + "
        "grounding line. `egcn` step mode: the network replaces the SSA solve, the FE mass transport and "
        f"grounding line remain. Checkpoint: `{args.checkpoint.name if args.checkpoint else 'none'}` (trained on "
        "the 3 km mesh; elsewhere only its cost is meaningful).",
        "",
        f"Network cost: FLOPs of one pass (counted by `torch.utils.flop_counter`), the time per pass inside "
        f"the solve, and the achieved rate, next to this machine's float32 `torch.matmul` rate (2048^3, one "
        f"thread): {args.matmul:.1f} GFLOP/s. *Floor ratio* = time per pass / (FLOPs / matmul rate).",
        "",
        "| vertices | elements | resolution (km) | fem (s/yr) | of which stress balance | egcn step (s/yr) | "
        "of which network | mass transport (both) | fem / egcn | GFLOP/pass | ms/pass | GFLOP/s | floor ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        fp, ep = r.get("fem_parts", {}), r.get("egcn_parts", {})
        eg = r.get("egcn")
        egs = fmt(eg, 3) if eg is not None else (f"failed: {r['egcn_error']}" if "egcn_error" in r else "-")
        ratio = f"{r['fem'] / eg:.2f}" if eg else "-"
        floor = (r["ms_pass"] / (1e3 * r["gflop_pass"] / args.matmul)) if r.get("ms_pass") else None
        lines.append(f"| {r['nv']} | {r['ne']} | {r['resolution'] / 1e3:.2f} | {fmt(r['fem'], 3)} | "
                     f"{fmt(fp.get('stressbalance'), 3)} | {egs} | {fmt(ep.get('network'), 3)} | "
                     f"{fmt(fp.get('masstransport'), 2)} / {fmt(ep.get('masstransport'), 2)} | {ratio} | "
                     f"{fmt(r.get('gflop_pass'), 3)} | {fmt(r.get('ms_pass'), 3)} | {fmt(r.get('gflops'), 3)} | "
                     f"{fmt(floor, 3)} |")
    if len(rows) >= 2:
        import numpy as np

        nv = np.array([r["nv"] for r in rows], float)
        slopes = []
        for key in ("fem", "egcn"):
            t = np.array([r.get(key, np.nan) for r in rows], float)
            ok = np.isfinite(t)
            if ok.sum() >= 2:
                slopes.append(f"{key} ~ nv^{np.polyfit(np.log(nv[ok]), np.log(t[ok]), 1)[0]:.2f}")
        if slopes:
            lines += ["", "Least-squares power law over these sizes: " + ", ".join(slopes) + "."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=None, help="EGCN step-mode checkpoint (any training)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000])
    ap.add_argument("--years", type=float, default=0.5, help="simulated years per measurement")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (1 on a busy machine)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "results.md")
    args = ap.parse_args(argv)
    set_threads(args.threads)
    args.matmul = matmul_gflops(1)
    nv_ref = int(build(_REF_RES, args.years).mesh.numberofvertices)
    rows = []
    for n in args.sizes:
        res = resolution_for(n, nv_ref)
        md = build(res, args.years)
        r = {"resolution": res, **measure(copy.deepcopy(md), args.years, args.checkpoint, args.device)}
        rows.append(r)
        print(f"{r['nv']} vertices ({res:.0f} m): fem {r['fem']:.2f} s/yr, egcn "
              f"{r.get('egcn', r.get('egcn_error'))}", flush=True)
    body = markdown(args, rows)
    write_section(args.out, "scaling", body, title=RESULTS_TITLE)
    print(body)


if __name__ == "__main__":
    main()
