"""Does a step network carry over to other meshes? Writes its section of docs/results.md.

For the test runs of each Pine Island ensemble of ``--data`` (e.g. the 2, 3 and 5 km ones), at the outputs
of ``--years``, the step checkpoint (``--checkpoint``, default the published ``egcn-step-pig``) predicts the
velocity of the step from the ensemble's state at its start, in two ways:

* **own mesh**: the network runs on the ensemble's own mesh (the checkpoint's processing mesh switched off);
* **processing mesh**: the network runs on the checkpoint's processing mesh
  (:mod:`issm_emulator.solvers.emulator.processing_mesh`), the fields interpolated there and the velocity back; for a
  checkpoint without one, ``--processing-data`` names an ensemble whose mesh is used instead.

Reported per ensemble: the speed RMSE against the ensemble's (``fem``'s) velocity on the ensemble's mesh
(m/yr, pooled over runs and outputs) and relative to the RMS speed; and what the **transfer alone** costs:
the thickness RMSE of 20-year rollouts (the first ``--transfer-runs`` test runs) whose velocity at each step is
the ensemble's own, moved onto the processing mesh and back, by interpolation (as the runtime's inputs and
the training targets are) and by a least-squares fit of the values whose interpolation back matches it, each
with both rules of the move back (P1 and blended Taylor expansions, ``BACK_RULES``). One step from the true
state, no rollout (rollouts are ``benchmarks/accuracy.py``'s): what a change of mesh costs the network's stress
balance. ``--transfer-via`` adds the transfer-alone costs through other meshes as the processing mesh
(e.g. the 2 km one for the 3 and 5 km ensembles): what a different choice of processing mesh would cost.

Usage::

    python benchmarks/processing_mesh.py --data DATA/pig-melt DATA/pig-melt-2km DATA/pig-melt-5km \
        [--checkpoint weights/egcn-step-pig.pt] [--years 5 10 20] [--transfer-via DATA/pig-melt-2km] \
        [--out docs/results.md]

Measures and reports; asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS_TITLE, set_threads  # noqa: E402
from report import machine_line, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def step_velocities(ckpt, ds, ks: list[int], processing) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Speeds (m/yr) at outputs ``ks`` of every run of ``ds``: the network's one step from output ``k - 1``,
    run as the runtime runs it (:class:`~issm_emulator.solvers.emulator.network.BoundNetwork`) with
    ``processing`` as its processing mesh (None: the ensemble's own mesh), and the ensemble's."""
    from issm_emulator.solvers.emulator.network import BoundNetwork

    saved = ckpt.manifest.get("processing_mesh")
    ckpt.manifest["processing_mesh"] = processing
    try:
        net = BoundNetwork(ckpt, ds.run_state(int(ds.run_positions[0])), "cpu")
    finally:
        ckpt.manifest["processing_mesh"] = saved
    needed = set(ckpt.spec.scalars) | set(ckpt.spec.vectors) | {"surface", "bed", "thickness"}
    pred, true = [], []
    for p in ds.run_positions:
        f = ds.run_arrays(int(p)).fields
        for k in ks:
            arrays = {n: a for n, a in ds.input_arrays(int(p), k).items() if n in needed}
            out = net.predict([net.inputs(arrays if net.remesh is None else net.remesh.features(arrays))])[0]
            pred.append(np.hypot(out["vx"], out["vy"]) * ds.yts)
            true.append(np.hypot(f["vx"][k], f["vy"][k]) * ds.yts)
    return pred, true


def transfer_thickness_rmse(ds, processing, runs: int, fitted: bool = False) -> float:
    """Thickness RMSE (m) of 20-year rollouts of the first ``runs`` test runs whose velocity at every step is
    the ensemble's own, moved onto the processing mesh and back (and the Dirichlet values imposed): what the
    transfer alone costs. ``fitted``: the processing-mesh values are not the interpolated velocity but the
    ones whose interpolation back fits it best (:meth:`ProcessingMesh.fit`)."""
    from issm_emulator.solvers.emulator.inputs import impose_dirichlet
    from issm_emulator.solvers.emulator.processing_mesh import processing_for
    from issm_emulator.solvers.transient import run_transient_many

    pm = processing_for(ds.mesh.x, ds.mesh.y, ds.mesh.elements, processing)

    def move(v):
        if pm is None:
            return v
        return pm.back(pm.fit(v) if fitted else pm.forward(v))

    sq = []
    for p in ds.run_positions[:runs]:
        f = ds.run_arrays(int(p)).fields

        def velocity(state, geometry, vx_prev, vy_prev, t, step, f=f):
            v = move(np.stack([f["vx"][step], f["vy"][step]], 1))
            vx, vy = impose_dirichlet(state, v[:, 0], v[:, 1])
            return vx, vy, {"niter": 1}

        steps = run_transient_many([ds.run_state(int(p))], velocity, solver_name="transfer")[0].steps
        h = np.array([st["Thickness"] for st in steps])
        sq.append((h - f["thickness"][1:h.shape[0] + 1]) ** 2)
    return float(np.sqrt(np.mean(sq)))


def rollout_split(ckpt_path: Path, data: Path, mesh, processing) -> tuple[float, float, float]:
    """The checkpoint's test rollouts of ``data`` (on its ``mesh``; thickness RMSE, m, over every run and
    output, as ``benchmarks/accuracy.py`` reports them), and that error split into the part the processing
    mesh can hold (the error field interpolated onto it and back, P1) and the rest (what lies between its
    vertices): ``total^2 ~ held^2 + rest^2``. A large held part is the network's own error on that mesh's
    states, not what the transfer loses."""
    import tempfile

    from issm_emulator.learning.evaluate import evaluate
    from issm_emulator.solvers.emulator.processing_mesh import processing_for

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = evaluate(ckpt_path, data, "test", out_dir=tmp, step_method="rollout", plots=False)
    err = np.concatenate([np.asarray(r.pred["thickness"]) - np.asarray(r.true["thickness"]) for r in res.runs])
    pm = processing_for(mesh.x, mesh.y, mesh.elements, {**processing, "back": "p1"})
    held = err if pm is None else pm.back(pm.forward(err.T)).T
    return (float(np.sqrt(np.mean(err ** 2))), float(np.sqrt(np.mean(held ** 2))),
            float(np.sqrt(np.mean((err - held) ** 2))))


def mesh_discrepancy(ds, ref, processing, ks: list[int]) -> tuple[float, float] | None:
    """Speed RMSE (m/yr) between two ensembles' own (``fem``) velocities for the same runs (same forcing
    value) at outputs ``ks``, compared at the vertices of the processing mesh (``ref`` is the ensemble on
    that mesh; ``ds``'s velocity is interpolated there): how far the two meshes' solutions of one glacier
    lie apart, and the RMS speed of ``ref`` at those runs and outputs (m/yr). A network that sees both
    meshes' states on one mesh must tell them apart to predict each mesh's own solution. None where no run
    matches."""
    from issm_emulator.solvers.emulator.processing_mesh import processing_for

    pm = processing_for(ds.mesh.x, ds.mesh.y, ds.mesh.elements, processing)
    by_value = {ref.run_value(int(p)): int(p) for p in ref.run_positions}
    sq, ref_sq = [], []
    for p in ds.run_positions:
        q = by_value.get(ds.run_value(int(p)))
        if q is None:
            continue
        f, g = ds.run_arrays(int(p)).fields, ref.run_arrays(q).fields
        for k in ks:
            v = np.stack([f["vx"][k], f["vy"][k]], 1)
            v = v if pm is None else pm.forward(v)
            speed_ref = np.hypot(g["vx"][k], g["vy"][k]) * ds.yts
            sq.append((np.hypot(v[:, 0], v[:, 1]) * ds.yts - speed_ref) ** 2)
            ref_sq.append(speed_ref ** 2)
    if not sq:
        return None
    return float(np.sqrt(np.mean(np.concatenate(sq)))), float(np.sqrt(np.mean(np.concatenate(ref_sq))))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, nargs="+", required=True, help="Pine Island ensembles (2, 3, 5 km...)")
    ap.add_argument("--checkpoint", type=Path, default=ROOT / "issm_emulator" / "weights" / "egcn-step-pig.pt")
    ap.add_argument("--processing-data", type=Path, default=None,
                    help="ensemble whose mesh is the processing mesh of a checkpoint that records none")
    ap.add_argument("--years", type=float, nargs="+", default=[5.0, 10.0, 20.0])
    ap.add_argument("--transfer-runs", type=int, default=2,
                    help="test runs of the transfer-alone rollouts (0: none)")
    ap.add_argument("--transfer-via", type=Path, nargs="*", default=[],
                    help="ensembles whose meshes are tried as other processing meshes: the transfer-alone "
                         "costs of every other --data ensemble through each (a table of its own)")
    ap.add_argument("--no-rollouts", action="store_true",
                    help="skip the test rollouts (and their split into what the processing mesh holds)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "results.md")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    set_threads(args.threads)

    from issm_emulator.learning.dataset import StepDataset, open_ensemble
    from issm_emulator.solvers.emulator.checkpoint import load_checkpoint
    from issm_emulator.solvers.emulator.domain import median_edge_length
    from issm_emulator.solvers.emulator.processing_mesh import BACK_RULES, mesh_record

    ckpt = load_checkpoint(args.checkpoint)
    ckpt.model.eval()
    processing = ckpt.processing_mesh
    if processing is None and args.processing_data is not None:
        ds = open_ensemble(args.processing_data)
        processing = mesh_record(ds["x"].values, ds["y"].values, np.asarray(ds["elements"].values) - 1)
    from issm_emulator.solvers.emulator.processing_mesh import processing_for

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sets = {data: StepDataset(data, "test", spec=ckpt.spec) for data in args.data}
    ref = next((d for d in sets.values() if processing is not None
                and processing_for(d.mesh.x, d.mesh.y, d.mesh.elements, processing) is None), None)
    rows = []
    for data in args.data:
        ds = sets[data]
        ks = sorted({int(np.argmin(np.abs(ds.output_times - y))) + 1 for y in args.years})
        h = median_edge_length(ds.mesh.x, ds.mesh.y, ds.mesh.elements)
        row = [data.name, f"{ds.mesh.nv}", f"{h / 1e3:.2f} km"]
        for proc in [None] + ([processing] if processing is not None else []):
            pred, true = step_velocities(ckpt, ds, ks, proc)
            err = float(np.sqrt(np.mean([(a - b) ** 2 for a, b in zip(pred, true)])))
            rms = float(np.sqrt(np.mean([b ** 2 for b in true])))
            row.append(f"{err:.1f} m/yr ({100 * err / rms:.1f} %)")
        if processing is not None and args.transfer_runs > 0:
            for f in (False, True):
                cost = [transfer_thickness_rmse(ds, {**processing, "back": b}, args.transfer_runs, fitted=f)
                        for b in BACK_RULES]
                row.append(" / ".join(f"{c:.2f}" for c in cost) + " m")
        if ref is not None:
            found = mesh_discrepancy(ds, ref, processing, ks)
            row.append("-" if found is None else f"{found[0]:.1f} m/yr ({100 * found[0] / found[1]:.1f} %)")
        if processing is not None and not args.no_rollouts:
            total, held, rest = rollout_split(args.checkpoint, data, ds.mesh, processing)
            row.append(f"{total:.2f} m ({held:.2f} / {rest:.2f} m)")
        rows.append(row)
        print(" | ".join(row), flush=True)
    cols = ["ensemble", "vertices", "median edge", "own mesh"]
    if processing is not None:
        cols += ["processing mesh"] + ([f"transfer alone: thickness RMSE ({' / '.join(BACK_RULES)})",
                                        "fitted transfer alone"]
                                         if args.transfer_runs > 0 else [])
        cols += [] if ref is None else ["fem vs fem"]
        cols += [] if args.no_rollouts else ["rollouts: thickness RMSE (held / rest)"]
    via_rows = []
    for via in args.transfer_via if args.transfer_runs > 0 else []:
        vd = open_ensemble(via)
        record = mesh_record(vd["x"].values, vd["y"].values, np.asarray(vd["elements"].values) - 1)
        for data in args.data:
            ds = sets[data]
            if processing_for(ds.mesh.x, ds.mesh.y, ds.mesh.elements, record) is None:
                continue  # the processing mesh itself: no transfer
            cost = [transfer_thickness_rmse(ds, {**record, "back": b}, args.transfer_runs, fitted=f)
                    for f in (False, True) for b in BACK_RULES]
            n = len(BACK_RULES)
            via_rows.append([via.name, data.name, " / ".join(f"{c:.2f}" for c in cost[:n]) + " m",
                             " / ".join(f"{c:.2f}" for c in cost[n:]) + " m"])
            print(" | ".join(via_rows[-1]), flush=True)
    via_table = [] if not via_rows else [
        "",
        f"Transfer alone through other processing meshes (`--transfer-via`; {args.transfer_runs} test runs, "
        f"thickness RMSE, {' / '.join(BACK_RULES)}): what each ensemble's own velocity costs when moved through "
        "that mesh instead of the checkpoint's.",
        "",
        "| processing mesh of | ensemble | transfer alone | fitted transfer alone |",
        "|---|---|---|---|",
        *("| " + " | ".join(r) + " |" for r in via_rows),
    ]
    source = "none" if processing is None else "recorded" if ckpt.processing_mesh is not None \
        else f"the mesh of {args.processing_data.name}"
    body = "\n".join([
        "## Step networks on other meshes (`benchmarks/processing_mesh.py`)",
        "",
        f"Step checkpoint `{args.checkpoint.name}` (processing mesh: {source}); test runs, outputs at years "
        f"{', '.join(f'{y:g}' for y in args.years)}: speed RMSE of one step from the ensemble's state against "
        "the ensemble's velocity, on the ensemble's mesh (and relative to its RMS speed). *Transfer alone*: "
        f"thickness RMSE of 20-year rollouts of {args.transfer_runs} test runs driven by the ensemble's own "
        "velocity moved onto the processing mesh and back, what the transfer costs by itself (a network "
        "trained through the processing mesh can partly make up for it: a reference, not a bound). *Fitted*: "
        "the same with the processing-mesh values that fit the model's velocity best after the move back "
        "(least squares), which a network trained with its loss on the model's own mesh could learn. Each "
        f"with both rules of the move back, {' / '.join(BACK_RULES)} (the checkpoint's: "
        f"{(processing or {}).get('back', 'p1')}). *Rollouts*: the checkpoint's 20-year test rollouts, every "
        "run and output, and their thickness error split into the part the processing mesh holds (the error "
        "field interpolated onto it and back) and the rest, in quadrature. *fem vs fem*: the speed RMSE between "
        "the ensemble's own velocity and that of the ensemble on the processing mesh, same runs and outputs, "
        "at the processing mesh's vertices (and relative to the latter's RMS speed): how far the two meshes' "
        "solutions of the same glacier lie apart, against which the *processing mesh* column shows whether "
        "the network tells the meshes' states apart. "
        + machine_line(),
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
        *("| " + " | ".join(r) + " |" for r in rows),
        *via_table,
    ])
    write_section(args.out, "processing-mesh", body, title=RESULTS_TITLE)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
