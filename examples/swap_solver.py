"""A complete pyISSM transient script in which only the solve line changes.

The model is ISSM's marine ice sheet of the nightly tests (``test/Par/SquareSheetShelf.par``): a
1000 km x 1000 km square, grounded for y < 500 km and floating beyond, ice front on the edge y = 1000 km,
SSA everywhere, Budd friction, grounding-line migration on. It is written the way a pyISSM user writes a
script: outlines as ``.exp`` files, ``triangle`` + ``setmask`` + parameters + boundary conditions + solve.

Two details differ from a script run against a compiled ISSM:

* ``triangle``, ``setmask`` and the boundary-condition helpers come from
  :mod:`issm_emulator.issm.setup` (pure-Python rewrites producing ISSM's meshes and masks), because the
  pyISSM versions call ISSM's compiled wrappers (``pip install pyissm`` does not ship them). With ISSM
  installed you may keep ``pyissm.model.mesh.triangle`` and friends;
* the solve line::

      md = pyissm.model.execute.solve(md, 'Transient')                  # before (needs ISSM)
      md = issm_emulator.solve(md, 'Transient', solver=..., device=...)  # after

Everything after the solve (``md.results.TransientSolution``, plotting, ``save_model``) is plain pyISSM.

Run ``python examples/swap_solver.py --help``; ``--small`` runs a coarse, two-year version in a few
seconds.
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
    """The reference ``'fem'`` solver for this square test domain.

    ``issm_emulator.solve(md, 'Transient')`` with no ``solver=`` uses the EGCN emulator when its default
    weights ship inside the package; those were trained on the Pine Island melt ensemble (3 km mesh) and
    do not apply to a 1000 km square with 150 km elements, so this example names ``fem`` unless
    ``--solver`` says otherwise (``examples/pig_melt_ensemble.py`` shows the emulator where it applies).
    """
    return "fem"


def quiet_pyissm() -> None:
    """Silence pyISSM's import-time notes about the missing compiled ISSM (not needed here)."""
    for note in ("pyissm.tools.config.get_issm_dir", "pyissm.model.classes.toolkits",
                 "pyissm.model.classes.cluster.generic"):
        warnings.filterwarnings("ignore", message=re.escape(note))


def write_outlines(folder: Path) -> dict[str, Path]:
    """ISSM's ``Square.exp``, ``SquareShelf.exp`` and ``SquareFront.exp`` written into ``folder``."""
    from issm_emulator.issm.formats import write_exp

    def box(name: str, x0: float, x1: float, y0: float, y1: float) -> dict:
        return {"name": name, "density": 1.0, "closed": True,
                "x": np.array([x0, x1, x1, x0, x0]), "y": np.array([y0, y0, y1, y1, y0])}

    files = {"domain": folder / "Square.exp", "shelf": folder / "SquareShelf.exp",
             "front": folder / "SquareFront.exp"}
    write_exp(files["domain"], box("domainoutline", 0.0, 1e6, 0.0, 1e6))
    write_exp(files["shelf"], box("shelf", 0.0, 1e6, 5e5, 1e6))
    write_exp(files["front"], box("icefront", -1000.0, 1.1e6, 999999.0, 1.1e6))
    return files


def build_model(outlines: dict[str, Path], resolution: float, years: float, time_step: float):
    """The SquareSheetShelf model, parameterised as ISSM's Par file does (ISSM's user units)."""
    import pyissm
    from pyissm.model.param import set_flow_equation

    from issm_emulator.issm.setup import paterson, set_marine_ice_sheet_bc, set_mask, triangle_mesh

    md = pyissm.model.Model()
    md = triangle_mesh(md, str(outlines["domain"]), resolution)   # ISSM: md = triangle(md, 'Square.exp', res)
    md = set_mask(md, str(outlines["shelf"]), "")                 # ISSM: md = setmask(md, 'SquareShelf.exp', '')
    nv, ne = md.mesh.numberofvertices, md.mesh.numberofelements
    x, y = md.mesh.x, md.mesh.y

    # geometry (m): thickness 1000 m -> 300 m towards the front; the shelf floats in hydrostatic equilibrium
    di = md.materials.rho_ice / md.materials.rho_water
    hmin, hmax = 300.0, 1000.0
    ymin, ymax, xmin, xmax = y.min(), y.max(), x.min(), x.max()
    md.geometry.thickness = hmax + (hmin - hmax) * (y - ymin) / (ymax - ymin) \
        + 0.1 * (hmin - hmax) * (x - xmin) / (xmax - xmin)
    grounded_base = -di * (hmax + (hmin - hmax) * (ymax / 2 - ymin) / (ymax - ymin))
    md.geometry.base = np.where(y <= ymax / 2, grounded_base, -di * md.geometry.thickness)
    md.geometry.surface = md.geometry.base + md.geometry.thickness
    md.geometry.bed = np.where(md.mask.ocean_levelset < 0, md.geometry.base - 10.0, md.geometry.base)

    # initial state, rheology (Paterson at -20 C), forcing (m/yr ice equivalent), Budd friction
    md.initialization.vx = np.zeros(nv)
    md.initialization.vy = np.zeros(nv)
    md.initialization.vz = np.zeros(nv)
    md.initialization.pressure = np.zeros(nv)
    md.initialization.temperature = np.full(nv, 273.0 - 20.0)
    md.materials.rheology_B = paterson(md.initialization.temperature)
    md.materials.rheology_n = 3.0 * np.ones(ne)
    md.smb.mass_balance = 10.0 * np.ones(nv)
    md.basalforcings.groundedice_melting_rate = 5.0 * np.ones(nv)
    md.basalforcings.floatingice_melting_rate = 5.0 * np.ones(nv)
    md.friction.coefficient = np.where(md.mask.ocean_levelset < 0, 0.0, 20.0)
    md.friction.p = np.ones(ne)
    md.friction.q = np.ones(ne)

    # numerics
    md.masstransport.stabilization = 1
    md.stressbalance.restol = 0.05
    md.stressbalance.reltol = 0.05
    md.stressbalance.abstol = np.nan
    md = set_flow_equation(md, SSA="all")
    md = set_marine_ice_sheet_bc(md, str(outlines["front"]))      # ISSM: SetMarineIceSheetBC(md, 'SquareFront.exp')

    # transient: no thermal model, grounding line migrates, a few integrated outputs
    md.transient.isthermal = 0
    md.transient.isgroundingline = 1
    md.groundingline.migration = "SubelementMigration"
    md.timestepping.start_time = 0.0
    md.timestepping.time_step = time_step
    md.timestepping.final_time = years
    md.transient.requested_outputs = ["default", "IceVolume", "IceVolumeAboveFloatation", "GroundedArea"]
    md.miscellaneous.name = "SquareSheetShelf"
    return md


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--resolution", type=float, default=25e3, help="mesh resolution (m)")
    p.add_argument("--years", type=float, default=20.0, help="run length (years)")
    p.add_argument("--time-step", type=float, default=0.5, help="time step (years)")
    p.add_argument("--solver", default=default_solver(),
                   help="registered solver (issm-emulator solvers): fem, egcn, gcn, cnn or a plugin")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA when the solver "
                                                  "supports it and it is available)")
    p.add_argument("--mode", choices=("step", "direct"), default=None,
                   help="emulator mode (egcn/gcn/cnn only; default step)")
    p.add_argument("--checkpoint", default=None, help="emulator weights: a .pt file or a bundled/registered "
                                                      "name (default: the bundled weights)")
    p.add_argument("--out", type=Path, default=Path("swap_solver_out"),
                   help="folder for the outlines, the results (NetCDF) and a map (PNG)")
    p.add_argument("--small", action="store_true", help="coarse and short: 100 km, 2 years, 1-year steps")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG map")
    args = p.parse_args(argv)
    if args.small:
        args.resolution, args.years, args.time_step = 100e3, 2.0, 1.0
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.environ.setdefault("USER", "issm-user")  # pyISSM's Model() reads $USER
    quiet_pyissm()
    import issm_emulator

    args.out.mkdir(parents=True, exist_ok=True)
    md = build_model(write_outlines(args.out), args.resolution, args.years, args.time_step)
    print(f"model: {md.mesh.numberofvertices} vertices, {md.mesh.numberofelements} elements, "
          f"{args.years:g} years by {args.time_step:g} yr")

    options = {k: v for k, v in (("mode", args.mode), ("checkpoint", args.checkpoint)) if v is not None}
    t0 = time.perf_counter()
    # ---------------------------------------------------------------- the only line that changes
    # md = pyissm.model.execute.solve(md, 'Transient')
    md = issm_emulator.solve(md, "Transient", solver=args.solver, device=args.device, **options)
    # --------------------------------------------------------------------------------------------
    wall = time.perf_counter() - t0

    # unchanged pyISSM post-processing: ISSM's result objects and units (m/yr, m, years, m^3, m^2)
    sol = md.results.TransientSolution
    times = np.array([s.time for s in sol.steps])
    vol = np.array([float(np.ravel(s.IceVolume)[0]) for s in sol.steps])
    gla = np.array([float(np.ravel(s.GroundedArea)[0]) for s in sol.steps])
    last = sol.steps[-1]
    print(f"solver {args.solver!r}: {len(sol.steps)} output steps, t = {times[0]:g} .. {times[-1]:g} yr, "
          f"{wall:.2f} s wall")
    print(f"final max speed {np.max(last.Vel):.1f} m/yr, thickness {np.min(last.Thickness):.1f} .. "
          f"{np.max(last.Thickness):.1f} m")
    print(f"ice volume {vol[0] / 1e9:.1f} -> {vol[-1] / 1e9:.1f} km^3, grounded area {gla[0] / 1e6:.0f} -> "
          f"{gla[-1] / 1e6:.0f} km^2")

    ds = issm_emulator.to_xarray(md)  # dims (time, vertex), CF units attributes
    nc = args.out / f"square_sheet_shelf_{args.solver}.nc"
    ds.to_netcdf(nc)
    print(f"wrote {nc}")
    png = None
    if not args.no_plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 4.5))
        tri = np.asarray(md.mesh.elements) - 1  # ISSM's elements are 1-based
        pc = ax.tripcolor(md.mesh.x / 1e3, md.mesh.y / 1e3, tri, last.Vel, shading="gouraud")
        fig.colorbar(pc, ax=ax, label="speed (m/yr)")
        ax.set(xlabel="x (km)", ylabel="y (km)", aspect="equal", title=f"Vel at {times[-1]:g} yr ({args.solver})")
        png = args.out / f"speed_{args.solver}.png"
        fig.savefig(png, dpi=100, bbox_inches="tight")
        plt.close(fig)
        print(f"wrote {png}")
    return {"md": md, "netcdf": nc, "png": png, "wall_s": wall}


if __name__ == "__main__":
    main(sys.argv[1:])
