"""Accuracy against cost for networks of different width and depth; writes its section of docs/results.md.

For each checkpoint given (``--checkpoints A.pt B.pt ...``, any mode, same ensemble), on the ``--split``
runs of ``--data``:

* accuracy: :func:`issm_emulator.learning.evaluate.evaluate` (direct checkpoints predict every output from
  the initial state; step checkpoints roll out over the whole run), pooled thickness and speed RMSE and R;
* cost: FLOPs of one graph pass (``torch.utils.flop_counter``), the median wall time of one pass on one
  thread under ``torch.inference_mode()`` (``--repeats``), and the wall time of one 20-year Pine Island solve
  (``--years``) with monthly outputs in this process, next to ``fem``'s.

Usage::

    python benchmarks/network_size.py --data /data/pig-melt --checkpoints egcn-direct-pig.pt egcn32.pt

Measures and reports; asserts nothing.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import flops_per_pass, fmt, quiet  # noqa: E402
from report import machine_line, write_section  # noqa: E402

os.environ.setdefault("USER", "issm-emulator")
ROOT = Path(__file__).resolve().parents[1]


def pass_cost(ckpt, data: Path, repeats: int) -> tuple[float, float]:
    """``(GFLOP per graph pass, median ms per pass)`` on the ensemble's mesh, one thread."""
    import torch

    from issm_emulator.learning.dataset import make_dataset
    from issm_emulator.solvers.emulator.network import intra_op_threads

    decoder = ckpt.model.config.get("decoder")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ds = make_dataset(ckpt.mode, data, "test", spec=ckpt.spec, decoder=decoder)
    sample = ds[0]
    model = ckpt.model.eval()
    s, v = ckpt.input_normalizer.encode(sample.scalars, sample.vectors)

    def one() -> None:
        if decoder and not getattr(model, "time_input", False):  # the EGCN's trunk pass
            model.encode(sample, s, v)
        else:  # one pass (a time-input increment network: one output time)
            model(sample, s, v)

    gflop = flops_per_pass(model, sample, ckpt.spec.n_scalars, ckpt.spec.n_vectors) / 1e9
    with torch.inference_mode():
        times = []
        with intra_op_threads(1):
            one()
            for _ in range(repeats):
                t0 = time.perf_counter()
                one()
                times.append(time.perf_counter() - t0)
    return gflop, 1e3 * statistics.median(times)


def solve_time(path: Path, mode: str, years: float) -> tuple[float, float]:
    """``(fem wall s, emulator wall s)`` of one Pine Island 3 km run, monthly steps and outputs."""
    import issm_emulator
    from issm_emulator.scenarios.pine_island import pine_island

    md = quiet(pine_island, 3e3, 30.0, years=years, output_frequency=1)
    m = copy.deepcopy(md)
    t0 = time.perf_counter()
    quiet(issm_emulator.solve, m, "Transient", solver="fem")
    t_fem = time.perf_counter() - t0
    quiet(issm_emulator.solve, copy.deepcopy(md), "Transient", solver="egcn", mode=mode, checkpoint=str(path))
    m = copy.deepcopy(md)
    t0 = time.perf_counter()
    quiet(issm_emulator.solve, m, "Transient", solver="egcn", mode=mode, checkpoint=str(path))
    return t_fem, time.perf_counter() - t0


def equal_epoch_lines(paths: list[Path]) -> list[str]:
    """Validation loss of every checkpoint at the last epoch they all reached, from the training histories
    written beside them (``<stem>.history.csv``): a comparison at equal training, whatever each run's length.

    Only checkpoints of the same mode and inputs are compared (their losses share a unit): a warm-start step
    network (``--previous-velocity``) is validated on perturbed warm starts, a plain one on the geometry."""
    import csv

    hist = {}
    for p in paths:
        h = p.with_name(p.stem + ".history.csv")
        if h.is_file():
            with h.open() as f:
                hist[p] = {int(r["epoch"]): float(r["validation_loss"]) for r in csv.DictReader(f)}
    from issm_emulator.solvers.emulator.checkpoint import load_checkpoint

    out = []
    modes = {}
    for p in hist:
        ck = load_checkpoint(p)
        modes[p] = ck.mode + (" (warm start)" if "velocity" in ck.spec.vectors and ck.mode == "step" else "")
    for mode in sorted(set(modes.values())):
        group = [p for p in hist if modes[p] == mode]
        if len(group) < 2:
            continue
        common = min(max(hist[p]) for p in group)
        best = {p: min(v for e, v in hist[p].items() if e <= common) for p in group}
        out += ["", f"{mode} mode, at equal training (best validation loss up to epoch {common}, from the "
                "training histories): " + "; ".join(f"`{p.name}` {best[p]:.4g}" for p in group) + "."]
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--checkpoints", type=Path, nargs="+", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--years", type=float, default=20.0)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "results.md")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)

    import tempfile

    from issm_emulator.learning.evaluate import evaluate
    from issm_emulator.solvers.emulator.checkpoint import load_checkpoint

    rows = []
    for path in args.checkpoints:
        ck = load_checkpoint(path)
        cfg = ck.model.config
        tr = ck.extra.get("training", {})
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ev = evaluate(path, args.data, args.split, out_dir=tmp, plots=False)
        overall = ev.overall()
        gflop, ms = pass_cost(ck, args.data, args.repeats)
        t_fem, t_emu = solve_time(path, ck.mode, args.years)
        warm = ck.mode == "step" and "velocity" in ck.spec.vectors
        rows.append({"name": path.name, "mode": ck.mode + (" (warm start)" if warm else ""), "hidden": cfg.get("hidden"), "layers": cfg.get("n_layers"),
                     "vector_hidden": cfg.get("vector_hidden"), "epochs": tr.get("best_epoch"),
                     "params": sum(p.numel() for p in ck.model.parameters()), "gflop": gflop, "ms": ms,
                     "h_rmse": overall[("thickness", "all")]["rmse"], "h_r": overall[("thickness", "all")]["r"],
                     "s_rmse": overall[("speed", "all")]["rmse"], "t_fem": t_fem, "t_emu": t_emu})
        print(rows[-1], flush=True)
    lines = ["## Network size: accuracy against cost (`benchmarks/network_size.py`)", "",
             f"{machine_line()} Accuracy on the `{args.split}` runs of `{args.data.name}` (all outputs, all "
             f"vertices); cost of one graph pass on one thread (FLOPs counted by `torch.utils.flop_counter`); "
             f"wall time of one {args.years:g}-year Pine Island 3 km run with monthly outputs next to `fem`'s, "
             "in this process. *Warm start*: a step network that also gets the velocity at the start of the step "
             "(`train --previous-velocity --velocity-noise`).", "",
             "| checkpoint | mode | width x depth (vector channels) | best epoch | parameters | GFLOP/pass | "
             "ms/pass | thickness RMSE (m) | thickness R | speed RMSE (m/yr) | run (s) | fem run (s) | speed-up |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| `{r['name']}` | {r['mode']} | {r['hidden']} x {r['layers']} ({r['vector_hidden']}) | "
                     f"{r['epochs']} | {r['params']} | {r['gflop']:.3f} | {r['ms']:.1f} | {fmt(r['h_rmse'])} | "
                     f"{r['h_r']:.5f} | {fmt(r['s_rmse'])} | {r['t_emu']:.2f} | {r['t_fem']:.2f} | "
                     f"{r['t_fem'] / r['t_emu']:.1f} |")
    lines += equal_epoch_lines(args.checkpoints)
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section(args.out, "network-size", text, title="Validation and results")


if __name__ == "__main__":
    main()
