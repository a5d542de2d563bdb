"""Emulate your own model: from an ISSM-style set-up to a registered emulator that the default solve uses.

The walk of ``docs/own-model.md`` at small size, in one script:

1. build a small marine glacier the way an ISSM ``runme`` does (mesh, mask, parameterisation, boundary
   conditions) and save it with pyISSM's ``save_model``;
2. sweep two uncertain parameters with ``fem`` (``issm_emulator.datasets.sweep_model``): the sub-shelf melt
   rate, and a factor on the model's own friction field;
3. train an EGCN (step mode) on the ensemble and evaluate it on the held-out runs;
4. register the checkpoint (``issm-emulator register``);
5. the unchanged script line ``issm_emulator.solve(md, 'Transient')`` on a new melt rate now runs the
   registered emulator, as ``issm_emulator.solve_info(md)`` shows.

Run ``python examples/own_model.py --help``; ``--small`` (coarse mesh, 8 runs, 2 epochs) takes about a
minute. ``--checkpoints-dir`` registers into another folder than the user checkpoint folder
(``$ISSM_EMULATOR_CHECKPOINTS_DIR``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import time
import warnings
from pathlib import Path

import numpy as np

MELT = "basalforcings.floatingice_melting_rate"
FRICTION = "friction.coefficient*"


def build_model(resolution: float = 25e3, years: float = 3.0):
    """A 200 km x 200 km marine glacier with its own bed and friction field (ISSM-style set-up)."""
    from pyissm.model import Model
    from pyissm.model.param import set_flow_equation

    from issm_emulator.issm.setup import paterson, set_marine_ice_sheet_bc, set_mask, triangle_mesh

    L = 200e3
    domain = {"name": "domain", "closed": True, "density": 1.0,
              "x": np.array([0, L, L, 0, 0.0]), "y": np.array([0, 0, L, L, 0.0])}
    front = {"name": "front", "closed": True, "density": 1.0,
             "x": np.array([-1, -1, L + 1, L + 1, -1.0]), "y": np.array([L - 1, L + 1, L + 1, L - 1, L - 1])}
    shelf = {"name": "shelf", "closed": True, "density": 1.0,
             "x": np.array([0, L, L, 0, 0.0]), "y": np.array([120e3, 120e3, L, L, 120e3])}
    with contextlib.redirect_stdout(io.StringIO()):
        md = Model()
        md = triangle_mesh(md, domain, resolution)
        md = set_mask(md, shelf, "")
    x, y = md.mesh.x, md.mesh.y
    nv, ne = md.mesh.numberofvertices, md.mesh.numberofelements
    H = 1200.0 - 800.0 * y / L
    floating = md.mask.ocean_levelset < 0
    bed = -800.0 + 100.0 * np.cos(2 * np.pi * x / L) - 200.0 * y / L
    base = np.where(floating, -md.materials.rho_ice / md.materials.rho_water * H, bed)
    md.geometry.thickness, md.geometry.base, md.geometry.surface = H, base, base + H
    md.geometry.bed = np.where(floating, np.minimum(bed, base - 10.0), bed)
    md.initialization.vx, md.initialization.vy = np.zeros(nv), np.zeros(nv)
    md.initialization.vz, md.initialization.pressure = np.zeros(nv), np.zeros(nv)
    md.initialization.temperature = np.full(nv, 253.0)
    md.materials.rheology_B = paterson(md.initialization.temperature)
    md.materials.rheology_n = np.full(ne, 3.0)
    md.friction.coefficient = np.where(floating, 0.0, 30.0 + 20.0 * x / L)
    md.friction.p, md.friction.q = np.ones(ne), np.ones(ne)
    md.smb.mass_balance = np.full(nv, 0.5)
    md.basalforcings.groundedice_melting_rate = np.zeros(nv)
    md.basalforcings.floatingice_melting_rate = np.full(nv, 10.0)
    with contextlib.redirect_stdout(io.StringIO()):
        md = set_marine_ice_sheet_bc(md, front)
        md = set_flow_equation(md, SSA="all")
    md.groundingline.migration = "None"
    md.transient.isthermal = 0
    md.stressbalance.restol, md.stressbalance.reltol, md.stressbalance.abstol = 0.05, 0.05, np.nan
    md.timestepping.time_step, md.timestepping.final_time = 1.0, years
    md.settings.output_frequency = 1
    md.miscellaneous.name = "MyGlacier"
    return md


def _quiet(fn, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("own_model_out"), help="output folder")
    p.add_argument("--small", action="store_true", help="50 km mesh, 8 runs, 2 years, 2 epochs")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--checkpoints-dir", type=Path, default=None,
                   help="register into this folder (default: $ISSM_EMULATOR_CHECKPOINTS_DIR or the user folder)")
    args = p.parse_args(argv)
    if args.checkpoints_dir is not None:
        os.environ["ISSM_EMULATOR_CHECKPOINTS_DIR"] = str(args.checkpoints_dir)
    resolution, years, melts, factors, hidden = 25e3, 3.0, "0:60:10", [0.8, 1.0, 1.2], 32
    if args.small:
        resolution, years, melts, factors, hidden, args.epochs = 50e3, 2.0, "0,20,40,60", [0.9, 1.1], 8, 2
    args.out.mkdir(parents=True, exist_ok=True)

    import issm_emulator
    from pyissm.model.io import load_model, save_model

    from issm_emulator.datasets import sweep_model
    from issm_emulator.learning.evaluate import evaluate
    from issm_emulator.learning.train import train
    from issm_emulator.solvers.emulator.catalog import register

    # 1. the model, saved with pyISSM
    model_file = args.out / "my_glacier.nc"
    _quiet(save_model, build_model(resolution, years), str(model_file))
    print(f"1. model saved: {model_file}")
    # 2. the ensemble: melt rate x friction factor, with fem
    t0 = time.perf_counter()
    ens = sweep_model(str(model_file), {MELT: melts, FRICTION: factors}, args.out / "ens", workers=0,
                      progress=False)
    print(f"2. ensemble: {ens} ({time.perf_counter() - t0:.1f} s)")
    # 3. train and evaluate
    t0 = time.perf_counter()
    ckpt = _quiet(train, ens, model="egcn", mode="step", out=args.out / "my_glacier_egcn.pt", epochs=args.epochs,
                  hidden=hidden, layers=2, batch_size=4, progress=False)
    res = _quiet(evaluate, ckpt, ens, "test", out_dir=args.out / "eval", plots=not args.small)
    print(f"3. trained {ckpt.name} ({time.perf_counter() - t0:.1f} s); test split: "
          + ", ".join(f"{r['variable']} RMSE {float(r['rmse']):.3g} {r['unit']}" for r in res.rows
                      if r["run"] == "overall" and r["region"] == "all" and r["variable"] in ("thickness", "speed")))
    # 4. register
    dest = register(ckpt, overwrite=True)
    print(f"4. registered: {dest}")
    # 5. the unchanged solve line, on a melt rate that was not simulated
    md = _quiet(load_model, str(model_file))
    md.basalforcings.floatingice_melting_rate = np.full(md.mesh.numberofvertices, 25.0)
    _quiet(issm_emulator.solve, md, "Transient")
    info = issm_emulator.solve_info(md)
    ck = info["checkpoint"] or {}
    print(f"5. issm_emulator.solve(md, 'Transient') ran {info['solver']!r} ({info['selection']}) with checkpoint "
          f"{ck.get('name')} [{ck.get('source')}], mode {info['mode']}, {info['wall_time_s']:.2f} s")
    return {"model": model_file, "ensemble": ens, "checkpoint": ckpt, "registered": dest, "md": md, "info": info,
            "evaluation": res}


if __name__ == "__main__":
    main()
