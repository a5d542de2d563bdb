"""Benchmark: generate the Pine Island melt ensemble with the ``fem`` solver and record the wall time.

The seed paper's ensemble: 36 runs (sub-shelf melt 0-70 m/yr every 2 m/yr), 20 years, monthly time steps
and outputs, on ISSM's Pine Island geometry (``Pig.arch``) meshed at about 3 km. This measures and reports;
it asserts nothing. It writes its section of ``docs/performance.md`` and leaves the dataset in ``--out``
(re-running resumes: finished runs are skipped, so the time reported is that of the runs computed now).

Usage::

    ISSM_EMULATOR_DATA_DIR=../shared/data/issm python benchmarks/pig_ensemble.py --out data/pig-melt
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import xarray as xr
from report import machine_line, write_section

os.environ.setdefault("USER", "issm-emulator")


def main() -> None:
    from issm_emulator.datasets import ensemble_spec, generate_ensemble

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("data/pig-melt"))
    ap.add_argument("--melt-rates", default="0:70:2")
    ap.add_argument("--years", type=float, default=20.0)
    ap.add_argument("--resolution", type=float, default=3e3, help="mesh resolution (m)")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--report", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "performance.md")
    args = ap.parse_args()

    spec = ensemble_spec("pig-melt", args.melt_rates, scenario_kwargs={"resolution": args.resolution},
                         years=args.years)
    runs_dir = args.out / "runs"
    before = len(list(runs_dir.glob("*.nc"))) if runs_dir.exists() else 0
    t0 = time.perf_counter()
    path = generate_ensemble(spec, args.out, workers=args.workers, progress=True)
    wall = time.perf_counter() - t0
    with xr.open_dataset(path) as ds:
        nrun, ntime, nv = ds.sizes["run"], ds.sizes["time"], ds.sizes["vertex"]
        failed = ds.attrs.get("failed_runs", "")
    computed = nrun - before
    body = "\n".join([
        "## Pine Island melt ensemble (`benchmarks/pig_ensemble.py`)",
        "",
        machine_line(),
        "",
        f"`generate_ensemble('pig-melt')` with the `fem` solver: {nrun} runs (melt rates {args.melt_rates} m/yr), "
        f"{args.years:g} years, monthly steps and outputs ({ntime} per run), {nv} vertices "
        f"({args.resolution / 1e3:g} km on ISSM's `Pig.exp`), {args.workers or 'default (2)'} worker processes.",
        "",
        "| runs computed in this call | wall time (s) | per run (s) | target |",
        "|---|---|---|---|",
        f"| {computed} | {wall:.0f} | {wall / max(computed, 1):.1f} | 36 runs in <= 1800 s |",
        "",
        f"Failed runs: {failed if failed not in ('', '[]') else 'none'}.",
    ])
    write_section(args.report, "pig-ensemble", body, title="Performance")
    print(body)


if __name__ == "__main__":
    main()
