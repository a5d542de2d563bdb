"""Time one EGCN forward pass: the implementation before the fast rewrite (a verbatim copy, below) against
:class:`issm_emulator.nn.egcn.EGCN`, on a synthetic graph the size of the Pine Island 3 km mesh.

* Graph: a Delaunay triangulation of 1,814 points in a 70 km disk, 149 of them on the circle, so that it
  has exactly the 10,580 directed edges (both directions of 5,290 sides) of the Pine Island 3 km mesh.
* Models: ``--hidden`` widths (default 64, the published model, and 32) x ``--layers`` layers (4) with
  ``--vector-hidden`` vector channels (16), 13 scalar and 3 vector inputs, ``normalize=True``. The width-64
  model carries the published ``egcn-step-pig.pt`` weights when present (realistic activations: SiLU costs
  more on large arguments), the others their default initialisation. The old and new models share weights.
* Timing: ``torch.inference_mode()``, float32, ``torch.set_num_threads`` 1 and 2 (``--threads``), two
  warm-up passes, then ``--repeats`` passes of old and new interleaved (the median and the minimum wall
  time are reported; on a busy machine the minimum is the steadier number). ``--compile`` adds
  ``torch.compile`` rows.
* FLOPs: counted analytically from the layer sizes of the model's definition, ``2 * in * out`` per row
  of every per-edge and per-vertex ``Linear`` (the "nominal" work of the function, the same for both
  implementations; cross-checked with ``torch.utils.flop_counter.FlopCounterMode`` on the old forward),
  and the matrix-product FLOPs the new implementation actually runs (``FlopCounterMode`` on its plain
  PyTorch path).
* Floor: a 2048 x 2048 x 2048 float32 ``torch.matmul`` gives the machine's matrix-product rate (and,
  for information, the oneDNN kernel that the new pass uses); the "floor ratio" is
  ``time per pass / (nominal FLOPs / matmul rate)``, 1 for a pass that ran at matrix-product speed.

Usage::

    python benchmarks/egcn_pass.py [--hidden 64 32] [--layers 4] [--threads 1 2] [--repeats 9]
                                   [--compile] [--profile]

Prints markdown tables; asserts nothing (the equality of the two implementations is tested in
tests/test_nn_egcn.py; here the largest relative difference of the outputs is printed as a check).
"""

from __future__ import annotations

import argparse
import builtins
import platform
import resource
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.spatial import Delaunay
from torch import Tensor, nn
from torch_geometric.data import Data

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from issm_emulator.nn.egcn import EGCN

PUBLISHED = ROOT / "issm_emulator" / "weights" / "egcn-step-pig.pt"
N_SCALARS, N_VECTORS = 13, 3  # the published model's inputs


from tests.egcn_reference import RefEGCN  # noqa: E402 - the frozen pre-rewrite EGCN (one copy)

# --- the benchmark --------------------------------------------------------------------------------------

def pig_size_graph(n: int = 1814, n_hull: int = 149, radius: float = 70e3, seed: int = 0) -> Data:
    """Delaunay graph of ``n`` points in a disk, ``n_hull`` on its circle: ``2 (3 n - 3 - n_hull)`` directed
    edges (10,580 for the defaults, as the Pine Island 3 km mesh)."""
    rng = np.random.default_rng(seed)
    th = np.sort(rng.uniform(0.0, 2 * np.pi, n_hull))
    r = radius * np.sqrt(rng.uniform(0.0, 0.97 ** 2, n - n_hull))
    a = rng.uniform(0.0, 2 * np.pi, n - n_hull)
    p = np.concatenate([radius * np.stack([np.cos(th), np.sin(th)], 1), np.stack([r * np.cos(a), r * np.sin(a)], 1)])
    tri = Delaunay(p).simplices.astype(np.int64)
    e = np.unique(np.sort(np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]]), axis=1), axis=0)
    ei = torch.from_numpy(np.concatenate([e, e[:, ::-1]]).T.copy())
    return Data(pos=torch.tensor(p, dtype=torch.float32), edge_index=ei, num_nodes=n)


def _lin(rows: int, n_in: int, n_out: int) -> int:
    return 2 * rows * n_in * n_out


def nominal_flops(model: EGCN, n: int, e: int) -> int:
    """``2 * in * out`` per row of every Linear of the model's definition (per-vertex and per-edge)."""
    cfg = model.config
    hd, c, s, cv, a = cfg["hidden"], cfg["vector_hidden"], cfg["n_scalars"], cfg["n_vectors"], cfg["edge_attr_dim"]
    n_out = len(cfg["scalar_outputs"])
    total = _lin(n, s + cv, hd) + _lin(n, hd, hd) + _lin(2 * n, cv, c) + _lin(n, hd, cv)  # encoders, input gate
    if n_out:
        total += _lin(n, hd, hd) + _lin(n, hd, n_out) + (_lin(n, s, n_out) if s else 0)
    for layer in [*model.layers, model.velocity_decoder]:
        f, ci, co, fo = layer.scalar_in, layer.vector_in, layer.vector_out, layer.scalar_out
        total += 2 * _lin(n, f, hd) + _lin(e, 1 + 5 * ci + a, hd) + _lin(e, hd, hd) + 2 * _lin(e, hd, co)
        total += 2 * _lin(2 * n, ci, co) + _lin(n, f, co)  # mix_self, mix_neigh (x and y rows), gate
        if fo:
            total += _lin(n, f + hd, hd) + _lin(n, hd, fo)
    return total


def counted_flops(model: nn.Module, args: tuple) -> int:
    """Matrix-product FLOPs that ``model(*args)`` runs, by ``FlopCounterMode`` (with gradients enabled, so
    that the new model takes its plain PyTorch path, whose products the counter knows)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        model(*args)
    return int(counter.get_total_flops())


def matmul_rate(threads: int, repeats: int = 7, size: int = 2048) -> tuple[float, float]:
    """GFLOP/s of a ``size``^3 float32 product: ``torch.matmul`` and oneDNN's linear (nan if unavailable)."""
    torch.set_num_threads(threads)
    x, y = torch.randn(size, size), torch.randn(size, size)
    rates = []
    runs = [lambda: x @ y]
    try:
        op = torch.ops.mkldnn._linear_pointwise
        op(x[:8], y, None, "none", [], "")
        runs.append(lambda: op(x, y, None, "none", [], ""))
    except (AttributeError, RuntimeError):
        pass
    for run in runs:
        run()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            run()
            ts.append(time.perf_counter() - t0)
        rates.append(2 * size ** 3 / statistics.median(ts) / 1e9)
    return rates[0], rates[1] if len(rates) > 1 else float("nan")


def make_models(hidden: int, layers: int, vector_hidden: int) -> tuple[RefEGCN, EGCN, str]:
    kw = {"hidden": hidden, "n_layers": layers, "vector_hidden": vector_hidden, "normalize": True}
    torch.manual_seed(0)
    old = RefEGCN(N_SCALARS, N_VECTORS, (), **kw)
    new = EGCN(N_SCALARS, N_VECTORS, (), **kw)
    weights = "default init"
    if PUBLISHED.exists():
        ck = torch.load(PUBLISHED, weights_only=True)
        cfg = ck["model_config"]
        if cfg == new.config:
            old.load_state_dict(ck["state_dict"])
            weights = "published egcn-step-pig"
    new.load_state_dict(old.state_dict())  # strict: identical keys and shapes
    return old.eval(), new.eval(), weights


def time_passes(fns: dict[str, Any], args: tuple, repeats: int) -> dict[str, dict[str, float]]:
    """Median and minimum wall time (ms) and minor page faults per pass, the functions interleaved."""
    with torch.inference_mode():
        for f in fns.values():
            f(*args)
            f(*args)
        ts: dict[str, list[float]] = {k: [] for k in fns}
        faults = dict.fromkeys(fns, 0)
        for _ in range(repeats):
            for k, f in fns.items():
                r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                t0 = time.perf_counter()
                f(*args)
                ts[k].append(time.perf_counter() - t0)
                faults[k] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0
    return {k: {"median": 1e3 * statistics.median(v), "min": 1e3 * min(v), "faults": faults[k] / repeats}
            for k, v in ts.items()}


def max_rel_diff(a: dict[str, Tensor], b: dict[str, Tensor]) -> float:
    return max(float((a[k].double() - b[k].double()).abs().max() / b[k].double().abs().max().clamp_min(1e-30))
               for k in b)


def profile_new(model: EGCN, args: tuple, rows: int = 15) -> None:
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(1)
    with torch.inference_mode():
        for _ in range(3):
            model(*args)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(10):
                model(*args)
    print("\ntorch.profiler, new pass, 1 thread, 10 passes:\n")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--hidden", type=int, nargs="+", default=[64, 32], help="widths (default: 64 32)")
    ap.add_argument("--layers", type=int, default=4, help="EquivariantConv layers (default: 4)")
    ap.add_argument("--vector-hidden", type=int, default=16, help="vector channels (default: 16)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch threads (default: 1 2)")
    ap.add_argument("--repeats", type=int, default=9, help="timed passes per case, >= 7 (default: 9)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile'd models")
    ap.add_argument("--profile", action="store_true", help="print a torch.profiler table of the new pass")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "performance.md",
                    help="markdown file whose 'egcn-pass' section is rewritten")
    ap.add_argument("--no-write", action="store_true", help="print only")
    opts = ap.parse_args(argv)
    repeats = max(7, opts.repeats)
    lines: list[str] = []

    def print(*a: Any, end: str = "\n", **kw: Any) -> None:  # noqa: A001 - echo and keep for the report
        text = " ".join(str(x) for x in a) + end
        lines.append(text)
        builtins.print(*a, end=end, **kw)

    g = pig_size_graph()
    n, e = g.num_nodes, g.edge_index.shape[1]
    gen = torch.Generator().manual_seed(1)
    args = (g, torch.randn(n, N_SCALARS, generator=gen), torch.randn(n, N_VECTORS, 2, generator=gen))
    print(f"# EGCN forward pass: {n} vertices, {e} directed edges, float32, torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} default threads\n")

    rates = {th: matmul_rate(th) for th in opts.threads}
    print("| threads | torch.matmul 2048^3 GFLOP/s | oneDNN linear 2048^3 GFLOP/s |\n|---:|---:|---:|")
    for th, (mm, dnn) in rates.items():
        print(f"| {th} | {mm:.1f} | {dnn:.1f} |")

    rows = []
    for hidden in opts.hidden:
        old, new, weights = make_models(hidden, opts.layers, opts.vector_hidden)
        flops = nominal_flops(old, n, e)
        counted_old, counted_new = counted_flops(old, args), counted_flops(new, args)
        with torch.inference_mode():
            diff = max_rel_diff(new(*args), old(*args))
        geom = EGCN.graph_geometry(g, torch.float32)  # what the emulator runtime computes once per graph

        def runtime(*a: Any, _new: EGCN = new, _geom: Any = geom) -> Any:
            return _new(*a, geometry=_geom)

        fns: dict[str, Any] = {"old": old, "new": new, "new, runtime": runtime}
        if opts.compile:
            fns["old compiled"], fns["new compiled"] = torch.compile(old), torch.compile(new)
            with torch.inference_mode():
                for k in ("old compiled", "new compiled"):
                    t0 = time.perf_counter()
                    fns[k](*args)
                    print(f"\n{k} (width {hidden}): first call (compilation) {time.perf_counter() - t0:.1f} s",
                          end="")
            print()
        for th in opts.threads:
            torch.set_num_threads(th)
            res = time_passes(fns, args, repeats)
            mm = rates[th][0]
            for k, r in res.items():
                rows.append((hidden, th, k, r, flops, counted_new if k.startswith("new") else counted_old, mm,
                             res["old"]["median"] / r["median"]))
        print(f"\nwidth {hidden} x {opts.layers} layers, {opts.vector_hidden} vector channels ({weights}): "
              f"nominal {flops / 1e9:.3f} GFLOP/pass (FlopCounterMode on the old forward: {counted_old / 1e9:.3f}), "
              f"the new forward runs {counted_new / 1e9:.3f} GFLOP of matrix products; "
              f"max relative output difference new vs old {diff:.1e}")
        if opts.profile and hidden == opts.hidden[0]:
            profile_new(new, args)

    print("\n| width | threads | forward | ms/pass (median) | ms/pass (min) | speed-up (median) | GFLOP/pass "
          "nominal | GFLOP/pass run | GFLOP/s (nominal / median) | matmul GFLOP/s | floor ratio | page faults/pass |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for hidden, th, k, r, flops, counted, mm, speedup in rows:
        floor_ms = 1e3 * flops / (mm * 1e9)
        print(f"| {hidden} | {th} | {k} | {r['median']:.1f} | {r['min']:.1f} | {speedup:.2f} | {flops / 1e9:.3f} | "
              f"{counted / 1e9:.3f} | {flops / (r['median'] * 1e6):.1f} | {mm:.1f} | {r['median'] / floor_ms:.2f} | "
              f"{r['faults']:.0f} |")
    print("\nfloor ratio = (ms/pass) / (nominal FLOPs / torch.matmul rate); speed-up = old eager median / median; "
          "*new, runtime*: the new forward as the emulator runtime calls it, with the graph's edge geometry and "
          "sparse mean operator computed once (`EGCN.graph_geometry`)")
    if not opts.no_write:
        from report import machine_line, write_section

        text = "".join(lines).replace("# EGCN forward pass:", "## EGCN forward pass (`benchmarks/egcn_pass.py`)\n\n"
                                      + machine_line() + " Synthetic Pine-Island-sized graph:", 1)
        write_section(opts.out, "egcn-pass", text, title="Performance")


if __name__ == "__main__":
    main()
