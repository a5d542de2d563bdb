"""Pine Island Glacier under a range of sub-shelf melt rates, solved together as one ensemble.

Every member is :func:`issm_emulator.scenarios.pine_island` (ISSM's ``Pig.par`` geometry from ``Pig.arch``,
SSA, Budd friction, sub-element grounding-line migration) with its own uniform floating-ice melt rate. All
members share the mesh, so :func:`issm_emulator.solve_ensemble` advances them together: an emulator
(``egcn``, ``gcn``, ``cnn``) runs one batched forward pass per time step for the whole ensemble; ``fem``
solves the members one after the other. Each ``md`` gets its ``md.results.TransientSolution`` exactly as
:func:`issm_emulator.solve` would fill it.

Output (``--out``): ``pig_melt_<solver>.nc`` (all members, dims ``melt_rate, time, vertex``, CF units) and
``pig_melt_<solver>.png`` (ice volume above floatation and grounded area against time).

Needs ISSM's Pine Island data (``Pig.arch``, ``Pig.exp``, ``PigShelves.exp``, ``PigIslands.exp``), fetched
once with pooch into ``$ISSM_EMULATOR_DATA_DIR`` (see docs/data-and-weights.md).

Run ``python examples/pig_melt_ensemble.py --help``; ``--small`` (3 km mesh, 3 members, 3 months) takes a
few seconds.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np


def default_solver() -> str:
    """``'egcn'`` once trained EGCN weights ship inside the package, otherwise ``'fem'``."""
    from issm_emulator import weights

    return "egcn" if weights.has_default("egcn", "step") else "fem"


def melt_rates(text: str) -> list[float]:
    """``'0,10,20'`` or ``'0:70:10'`` (start:stop:step, stop included) -> floats (m/yr)."""
    from issm_emulator.datasets import parse_values

    values, _ = parse_values(text)
    return [float(v) for v in values]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--melt-rates", default="0:70:10", help="floating-ice melt rates (m/yr): list or start:stop:step")
    p.add_argument("--resolution", type=float, default=3e3, help="mesh resolution (m); 3 km is the seed's")
    p.add_argument("--years", type=float, default=20.0, help="run length (years)")
    p.add_argument("--time-step", type=float, default=1.0 / 12.0, help="time step (years)")
    p.add_argument("--output-frequency", type=int, default=12, help="store results every N steps")
    p.add_argument("--solver", default=default_solver(), help="registered solver: fem, egcn, gcn, cnn, ...")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA when available and supported)")
    p.add_argument("--mode", choices=("step", "direct"), default=None, help="emulator mode (default step)")
    p.add_argument("--checkpoint", default=None, help="emulator weights (.pt file or bundled/registered name)")
    p.add_argument("--out", type=Path, default=Path("pig_melt_out"), help="output folder")
    p.add_argument("--small", action="store_true",
                   help="3 km mesh (the bundled weights' mesh), melt rates 0,25,50, 3 months, monthly")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    args = p.parse_args(argv)
    if args.small:
        args.resolution, args.years, args.melt_rates, args.output_frequency = 3e3, 0.25, "0,25,50", 1
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.environ.setdefault("USER", "issm-user")  # pyISSM's Model() reads $USER
    for note in ("pyissm.tools.config.get_issm_dir", "pyissm.model.classes.toolkits",
                 "pyissm.model.classes.cluster.generic"):
        warnings.filterwarnings("ignore", message=re.escape(note))
    import xarray as xr

    import issm_emulator
    from issm_emulator.scenarios import pine_island

    rates = melt_rates(args.melt_rates)
    mds = [pine_island(args.resolution, m, years=args.years, time_step=args.time_step,
                       output_frequency=args.output_frequency) for m in rates]
    print(f"Pine Island: {mds[0].mesh.numberofvertices} vertices, {len(rates)} members "
          f"(melt {rates[0]:g} .. {rates[-1]:g} m/yr), {args.years:g} years by {args.time_step:g} yr")

    options = {k: v for k, v in (("mode", args.mode), ("checkpoint", args.checkpoint)) if v is not None}
    t0 = time.perf_counter()
    issm_emulator.solve_ensemble(mds, "Transient", solver=args.solver, device=args.device, **options)
    wall = time.perf_counter() - t0
    print(f"solver {args.solver!r}: {wall:.2f} s for the ensemble ({wall / len(rates):.2f} s per member)")

    def series(md, name):
        return np.array([float(np.ravel(getattr(s, name))[0]) for s in md.results.TransientSolution.steps])

    print(f"{'melt (m/yr)':>12} {'dVAF (km^3)':>12} {'dGrounded (km^2)':>17} {'bmb (Gt/yr)':>12}")
    for m, md in zip(rates, mds):
        vaf, ga, bmb = series(md, "IceVolumeAboveFloatation"), series(md, "GroundedArea"), \
            series(md, "TotalFloatingBmb")
        print(f"{m:12g} {(vaf[-1] - vaf[0]) / 1e9:12.1f} {(ga[-1] - ga[0]) / 1e6:17.1f} {bmb[-1]:12.1f}")

    ds = xr.concat([issm_emulator.to_xarray(md) for md in mds], dim="melt_rate", coords="minimal",
                   compat="override")
    ds = ds.assign_coords(melt_rate=("melt_rate", np.asarray(rates), {"units": "m yr^-1"}))
    ds.attrs.update(solver=args.solver, wall_time_s=wall)
    args.out.mkdir(parents=True, exist_ok=True)
    nc = args.out / f"pig_melt_{args.solver}.nc"
    ds.to_netcdf(nc)
    print(f"wrote {nc}")
    png = None
    if not args.no_plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
        for m in rates:
            d = ds.sel(melt_rate=m)
            a1.plot(d.time, d.IceVolumeAboveFloatation / 1e9, label=f"{m:g} m/yr")
            a2.plot(d.time, d.GroundedArea / 1e6)
        a1.set(xlabel="time (yr)", ylabel="volume above floatation (km$^3$)")
        a2.set(xlabel="time (yr)", ylabel="grounded area (km$^2$)")
        a1.legend(title="sub-shelf melt", fontsize="small")
        fig.suptitle(f"Pine Island melt ensemble ({args.solver})")
        png = args.out / f"pig_melt_{args.solver}.png"
        fig.savefig(png, dpi=100, bbox_inches="tight")
        plt.close(fig)
        print(f"wrote {png}")
    return {"mds": mds, "dataset": ds, "netcdf": nc, "png": png, "wall_s": wall}


if __name__ == "__main__":
    main(sys.argv[1:])
