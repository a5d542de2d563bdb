"""How well the emulators' error indicator ranks their true velocity error; writes its section of
docs/results.md.

For each published checkpoint ``<arch>-<mode>-<scenario>.pt`` in ``--checkpoints``, on the **test** split of
its ensemble (``--data-pig``, ``--data-north79``), :func:`issm_emulator.learning.applicability.indicator_pairs`
gives, for every output step of every test run, the relative SSA residual ``r`` of the emulated velocity,
its Picard correction ``c`` and its true RMS velocity error ``e`` against ``fem``. Reported: the Spearman
rank correlations of ``r`` and of the calibrated estimate (a monotone function of ``c``) with ``e``, the
calibration stored in the checkpoint (fitted on the validation split), and the median ratio of the
estimate to the true error on the test split.

Usage::

    python benchmarks/indicator.py --data-pig /data/pig-melt --data-north79 /data/north79-calving \\
        --checkpoints weights [--out docs/results.md] [--threads 1]

Measures and reports; asserts nothing.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS_TITLE, find_checkpoints, fmt, quiet, set_threads  # noqa: E402
from report import machine_line, write_section  # noqa: E402

os.environ.setdefault("USER", "issm-emulator")
ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-pig", type=Path)
    ap.add_argument("--data-north79", type=Path)
    ap.add_argument("--checkpoints", type=Path, default=ROOT / "weights")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "results.md")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", default=None, help="Comma-separated checkpoint names (default: all found).")
    args = ap.parse_args(argv)
    set_threads(args.threads)

    from issm_emulator.learning.applicability import indicator_pairs
    from issm_emulator.solvers.emulator.checkpoint import load_checkpoint
    from issm_emulator.solvers.emulator.indicator import Indicator, spearman

    data = {"pig": args.data_pig, "north79": args.data_north79}
    only = set(args.only.split(",")) if args.only else None
    rows = []
    for cf in find_checkpoints(args.checkpoints):
        if only is not None and cf.name not in only:
            continue
        folder = data.get(cf.scenario)
        if folder is None:
            print(f"skip {cf.name}: no --data-{cf.scenario}")
            continue
        ck = load_checkpoint(cf.path)
        t0 = time.perf_counter()
        r, c, e = quiet(indicator_pairs, ck, folder, "test")
        wall = time.perf_counter() - t0
        yts = 365.0 * 24 * 3600
        ind = Indicator(["EmulatorVelocityError"], ck.indicator)
        est = np.array([ind.estimate(v * yts) for v in c])
        cal = ck.indicator or {}
        rows.append({"name": cf.name, "n": int(e.size), "rho_r": spearman(r, e), "rho_c": spearman(est, e),
                     "rho_val": cal.get("spearman", math.nan), "ratio": float(np.median(est / (e * yts))),
                     "e_lo": float(e.min() * yts), "e_hi": float(e.max() * yts), "wall": wall})
        print(f"{cf.name}: Spearman r {rows[-1]['rho_r']:.3f}, estimate {rows[-1]['rho_c']:.3f} "
              f"({e.size} test outputs, {wall:.0f} s)")
    if not rows:
        print("no checkpoint evaluated")
        return 1
    lines = [
        "## Error indicator (`benchmarks/indicator.py`)",
        "",
        machine_line(),
        "",
        "For every output step of every **test** run: the emulated velocity's relative SSA residual `r`, and "
        "the calibrated estimate of the RMS velocity error from its Picard correction, against the true RMS "
        "velocity error `e` (fem). Spearman rank correlation over all test outputs; the calibration was fitted "
        "on the validation split (`issm-emulator domain` / `train`). See docs/applicability.md.",
        "",
        "| checkpoint | test outputs | Spearman(r, e) | Spearman(estimate, e) | Spearman on validation | "
        "median estimate / e | true e range (m/yr) |",
        "|---|---|---|---|---|---|---|",
    ]
    for w in rows:
        lines.append(f"| {w['name']} | {w['n']} | {fmt(w['rho_r'], 3)} | {fmt(w['rho_c'], 3)} | "
                     f"{fmt(w['rho_val'], 3)} | {fmt(w['ratio'], 3)} | {w['e_lo']:.0f}-{w['e_hi']:.0f} |")
    write_section(args.out, "indicator", "\n".join(lines), title=RESULTS_TITLE)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
