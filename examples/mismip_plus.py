"""MISMIP+ (Asay-Davis et al., 2016): spin up to steady state, then the Ice0, Ice1r and Ice2r experiments.

1. :func:`issm_emulator.scenarios.mismip_plus_spinup` runs the Ice0 forcing from a 100 m slab for
   ``--spinup-years`` and caches the final state as NetCDF (``--cache-dir``, default the user cache
   folder); later runs with the same resolution, length, step and solver reuse it.
2. :func:`issm_emulator.scenarios.mismip_plus` builds the three 100-year experiments from that steady
   state: Ice0 (control), Ice1r (depth-dependent sub-shelf melt, ``basalforcings.mismip``) and Ice2r
   (100 m/yr melt of floating ice beyond x = 480 km, the protocol's stand-in for a calving event).
3. The three share the mesh and are solved together with :func:`issm_emulator.solve_ensemble`.

Printed: ice volume above floatation and grounded area at the start and end of each experiment (the
MISMIP+ diagnostics). Written (``--out``): ``mismip_plus_<solver>.nc`` (dims ``experiment, time, vertex``)
and ``mismip_plus_<solver>.png``. No download is needed.

Run ``python examples/mismip_plus.py --help``; ``--small`` (20 km, 100-year spin-up, 5-year experiments)
takes a few seconds. The default (8 km, 10 000-year spin-up with ``fem``) takes a few minutes the first
time, most of it in the spin-up.
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

EXPERIMENTS = ("Ice0", "Ice1r", "Ice2r")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--resolution", type=float, default=8e3, help="mesh resolution (m)")
    p.add_argument("--spinup-years", type=float, default=10000.0, help="length of the Ice0 spin-up (years)")
    p.add_argument("--years", type=float, default=100.0, help="length of each experiment (years)")
    p.add_argument("--time-step", type=float, default=1.0, help="time step (years)")
    p.add_argument("--experiments", default=",".join(EXPERIMENTS), help="comma list of MISMIP+ experiments "
                                                                         "starting at year 0")
    p.add_argument("--solver", default="fem", help="registered solver of the experiments (the spin-up always "
                                                   "uses fem)")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (emulators only)")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="where the spin-up is cached (default: pooch.os_cache('issm-emulator')/mismip-plus)")
    p.add_argument("--out", type=Path, default=Path("mismip_plus_out"), help="output folder")
    p.add_argument("--small", action="store_true", help="20 km mesh, 100-year spin-up, 5-year experiments")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    args = p.parse_args(argv)
    if args.small:
        args.resolution, args.spinup_years, args.years = 20e3, 100.0, 5.0
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.environ.setdefault("USER", "issm-user")  # pyISSM's Model() reads $USER
    for note in ("pyissm.tools.config.get_issm_dir", "pyissm.model.classes.toolkits",
                 "pyissm.model.classes.cluster.generic"):
        warnings.filterwarnings("ignore", message=re.escape(note))
    import xarray as xr

    import issm_emulator
    from issm_emulator.scenarios import mismip_plus, mismip_plus_spinup
    from issm_emulator.scenarios.mismip_plus import spinup_cache_path

    experiments = [e.strip() for e in args.experiments.split(",") if e.strip()]
    cached = spinup_cache_path(args.resolution, args.spinup_years, args.time_step, "fem", args.cache_dir)
    print(f"spin-up: {args.spinup_years:g} years at {args.resolution / 1e3:g} km "
          f"({'cached' if cached.is_file() else 'computing'}: {cached})")
    t0 = time.perf_counter()
    steady = mismip_plus_spinup(args.resolution, args.spinup_years, time_step=args.time_step, solver="fem",
                                cache_dir=args.cache_dir)
    print(f"spin-up ready in {time.perf_counter() - t0:.1f} s")

    mds = [mismip_plus(args.resolution, e, years=args.years, time_step=args.time_step, initial=steady)
           for e in experiments]
    t0 = time.perf_counter()
    issm_emulator.solve_ensemble(mds, "Transient", solver=args.solver, device=args.device)
    wall = time.perf_counter() - t0
    print(f"{len(mds)} experiments x {args.years:g} years on {mds[0].mesh.numberofvertices} vertices with "
          f"{args.solver!r}: {wall:.2f} s")

    def series(md, name):
        return np.array([float(np.ravel(getattr(s, name))[0]) for s in md.results.TransientSolution.steps])

    print(f"{'experiment':>10} {'VAF start -> end (km^3)':>26} {'grounded area start -> end (km^2)':>35}")
    for e, md in zip(experiments, mds):
        vaf, ga = series(md, "IceVolumeAboveFloatation") / 1e9, series(md, "GroundedArea") / 1e6
        print(f"{e:>10} {vaf[0]:12.0f} -> {vaf[-1]:9.0f} {ga[0]:19.0f} -> {ga[-1]:11.0f}")

    ds = xr.concat([issm_emulator.to_xarray(md) for md in mds], dim="experiment", coords="minimal",
                   compat="override")
    ds = ds.assign_coords(experiment=("experiment", experiments))
    ds.attrs.update(solver=args.solver, spinup_years=args.spinup_years, resolution_m=args.resolution)
    args.out.mkdir(parents=True, exist_ok=True)
    nc = args.out / f"mismip_plus_{args.solver}.nc"
    ds.to_netcdf(nc)
    print(f"wrote {nc}")
    png = None
    if not args.no_plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
        for e in experiments:
            d = ds.sel(experiment=e)
            a1.plot(d.time, d.IceVolumeAboveFloatation / 1e9, label=e)
            a2.plot(d.time, d.GroundedArea / 1e6, label=e)
        a1.set(xlabel="time (yr)", ylabel="volume above floatation (km$^3$)")
        a2.set(xlabel="time (yr)", ylabel="grounded area (km$^2$)")
        a1.legend()
        fig.suptitle(f"MISMIP+ ({args.solver}, {args.resolution / 1e3:g} km)")
        png = args.out / f"mismip_plus_{args.solver}.png"
        fig.savefig(png, dpi=100, bbox_inches="tight")
        plt.close(fig)
        print(f"wrote {png}")
    return {"mds": mds, "dataset": ds, "netcdf": nc, "png": png, "wall_s": wall}


if __name__ == "__main__":
    main(sys.argv[1:])
