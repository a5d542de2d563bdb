"""Evaluation of a trained emulator against the finite-element truth of an ensemble split.

How the predictions are made:

* **direct** checkpoints: every output time ``t_k`` of every run is predicted from the run's initial state
  (the same inputs as in training, :class:`~issm_emulator.learning.dataset.DirectDataset`), so velocity and
  thickness are evaluated;
* **step** checkpoints, ``step_method='rollout'`` (the default when possible): the run's model is rebuilt
  from the ensemble's provenance (scenario, its keyword arguments and the run's parameter value) and
  advanced by :func:`issm_emulator.solvers.emulator.step.rollout_step_many` (network velocity + FE mass transport,
  autoregressive: errors accumulate as in use), so velocity and thickness are evaluated;
  ``step_method='teacher-forced'`` (the fallback when the model cannot be rebuilt): the velocity of output
  ``k`` is predicted from the FE geometry of output ``k - 1`` (one-step error only, no thickness).

Predicted velocities take the prescribed values (``spcvx``/``spcvy``) where these are set, as in
the solver. Metrics, per run and pooled over the split ("overall"), over all vertices and over the fast-flowing
vertices (FE speed > ``fast_threshold``, default 1000 m/yr, at that time), for vx, vy, speed (m/yr) and
thickness (m):

.. math:: \\mathrm{RMSE} = \\sqrt{\\tfrac{1}{n}\\sum (\\hat y - y)^2}, \\qquad
          R = \\frac{\\sum (\\hat y - \\bar{\\hat y})(y - \\bar y)}
                   {\\sqrt{\\sum (\\hat y - \\bar{\\hat y})^2 \\sum (y - \\bar y)^2}}

Files in ``out_dir``: ``metrics.csv``, ``metrics.md``, ``timeseries.csv`` (ice volume and grounded area of
the FE truth and of the emulator), ``timeseries.png`` and ``error_map_run-XXXX.png`` (speed and thickness
errors on the mesh with grounding line and ice front, :mod:`issm_emulator.issm.plotting`, at ``plot_times``).
Ice volume is ``sum_e A_e [ice] mean_e(H)`` and
grounded area ``sum_e A_e [ice] f_e`` with ISSM's sub-element grounded fraction ``f_e`` of the ocean level
set (the FE run's level set; for direct predictions the flotation level set
``H + rho_w / rho_i * bed`` of the predicted thickness).
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from issm_emulator.errors import UnsupportedOptionError
from issm_emulator.learning.dataset import DirectDataset, StepDataset, collate
from issm_emulator.learning.objective import predict_batch
from issm_emulator.physics import masks as _masks
from issm_emulator.physics.fe import P1Mesh
from issm_emulator.solvers.emulator.checkpoint import Checkpoint, load_checkpoint

__all__ = ["VARIABLES", "EvaluationResult", "RunPrediction", "evaluate", "regression_metrics", "run_metrics",
           "steps_at_outputs"]

#: evaluated variables and their units
VARIABLES = {"vx": "m/yr", "vy": "m/yr", "speed": "m/yr", "thickness": "m"}


def regression_metrics(pred: Any, true: Any) -> dict[str, float]:
    """``{'n', 'rmse', 'r'}`` of ``pred`` against ``true`` over the entries where both are finite
    (``r`` is NaN with fewer than 2 points or a constant series)."""
    p = np.asarray(pred, float).ravel()
    t = np.asarray(true, float).ravel()
    ok = np.isfinite(p) & np.isfinite(t)
    p, t = p[ok], t[ok]
    n = int(p.size)
    if n == 0:
        return {"n": 0, "rmse": math.nan, "r": math.nan}
    rmse = float(np.sqrt(np.mean((p - t) ** 2)))
    dp, dt = p - p.mean(), t - t.mean()
    den = math.sqrt(float(np.sum(dp * dp)) * float(np.sum(dt * dt)))
    r = float(np.sum(dp * dt) / den) if n > 1 and den > 0 else math.nan
    return {"n": n, "rmse": rmse, "r": r}


@dataclass
class RunPrediction:
    """Truth and prediction of one run at its evaluated outputs: arrays ``(T, nv)`` (m/yr, m); ``time``
    in years (model time). Thickness predictions are NaN when the method does not predict thickness."""

    run: int
    value: Any
    time: np.ndarray
    true: dict[str, np.ndarray]
    pred: dict[str, np.ndarray]
    series: dict[str, np.ndarray] = field(default_factory=dict)  #: volume/grounded area (T+1,) with t0
    #: the FE run's ``ocean_levelset`` and ``ice_levelset`` (T, nv) at the evaluated outputs (for the maps)
    levelsets: dict[str, np.ndarray] = field(default_factory=dict)


def run_metrics(rp: Sequence[RunPrediction] | RunPrediction, fast_threshold: float = 1000.0) -> list[dict[str, Any]]:
    """Metric rows (variable x region) pooled over the given run(s)."""
    rps = [rp] if isinstance(rp, RunPrediction) else list(rp)
    rows = []
    true_speed = np.concatenate([np.hypot(r.true["vx"], r.true["vy"]).ravel() for r in rps])
    fast = true_speed > fast_threshold
    for var, unit in VARIABLES.items():
        p = np.concatenate([_var(r.pred, var).ravel() for r in rps])
        t = np.concatenate([_var(r.true, var).ravel() for r in rps])
        for region, sel in (("all", slice(None)), ("fast", fast)):
            m = regression_metrics(p[sel], t[sel])
            rows.append({"variable": var, "region": region, "unit": unit, **m})
    return rows


def _var(d: dict[str, np.ndarray], var: str) -> np.ndarray:
    if var == "speed":
        return np.hypot(d["vx"], d["vy"])
    return d[var]


@dataclass
class EvaluationResult:
    """Metric rows (``run`` is ``'overall'`` for the pooled rows), the markdown report, written files."""

    rows: list[dict[str, Any]]
    markdown: str
    files: dict[str, Path]
    method: str
    runs: list[RunPrediction]

    def overall(self) -> dict[tuple[str, str], dict[str, Any]]:
        """The pooled rows (``run == 'overall'``) by ``(variable, region)``, e.g. ``[("thickness", "all")]``."""
        return {(r["variable"], r["region"]): r for r in self.rows if r.get("run") == "overall"}


# --------------------------------------------------------------------------------------------- predictions
def _on_data_mesh(dataset: Any, values: np.ndarray) -> np.ndarray:
    """Values on the mesh the network runs on (first axis) at the vertices of the dataset's mesh."""
    return values if dataset.remesh is None else dataset.remesh.back(values)


def _predict_dataset(ckpt: Checkpoint, dataset: Any, device: torch.device, batch_size: int) -> dict:

    model = ckpt.model.to(device).eval()
    in_norm, out_norm = ckpt.input_normalizer.to(device), ckpt.output_normalizer.to(device)
    outs = tuple(ckpt.spec.scalar_outputs)
    preds: dict[tuple[int, int], dict[str, np.ndarray]] = {}
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    with torch.no_grad():
        for batch in loader:
            batch = batch.to(device)
            batch.scalars = batch.scalars.to(next(model.parameters()).dtype)
            batch.vectors = batch.vectors.to(next(model.parameters()).dtype)
            out = predict_batch(model, batch, in_norm, out_norm, outs)
            ptr = batch.ptr.cpu().numpy()
            for j, (p, k) in enumerate(zip(batch.run.cpu().tolist(), batch.k.cpu().tolist())):
                a, b = ptr[j], ptr[j + 1]
                preds[(p, k)] = {n: _on_data_mesh(dataset, v[a:b].detach().cpu().double().numpy())
                                 for n, v in out.items()}
    return preds


def _predict_decoded(ckpt: Checkpoint, dataset: Any, device: torch.device) -> dict:
    """A time-decoded direct network (:class:`~issm_emulator.nn.direct.EGCNDirect`: per run one trunk pass on
    the initial state, then the run's sample times decoded; :class:`~issm_emulator.nn.increment.TimeInputIncrement`:
    one GCN/CNN pass per sample time); initial state + predicted change."""
    model = ckpt.model.to(device).eval()
    dtype = next(model.parameters()).dtype
    in_norm, out_norm = ckpt.input_normalizer.to(device), ckpt.output_normalizer.to(device)
    names = tuple(ckpt.spec.scalar_outputs)
    by_run: dict[int, list[int]] = {}
    for p, k in dataset.samples:
        by_run.setdefault(int(p), []).append(int(k))
    graph = dataset.net_graph.to(device)
    preds: dict[tuple[int, int], dict[str, np.ndarray]] = {}
    with torch.no_grad():
        for p, ks in by_run.items():
            arrays = dataset.state_arrays(p, 0)
            arrays["time"] = 0.0
            s, v = dataset.inputs(arrays)
            s, v = in_norm.encode(s.to(device, dtype), v.to(device, dtype))
            ra = dataset.run_arrays(p)
            times = torch.as_tensor(ra.time[ks], dtype=dtype, device=device)
            res = model(graph, s, v, times)
            vel = _on_data_mesh(dataset, (res["velocity"] * out_norm.vector_scale[0]).double().cpu().numpy())
            v0 = np.stack([ra.fields["vx"][0], ra.fields["vy"][0]], axis=1)
            for j, k in enumerate(ks):
                d = {"velocity": v0 + vel[:, j]}
                for i, n in enumerate(names):
                    d[n] = ra.fields[n][0] + _on_data_mesh(dataset, (res[n][:, j] * out_norm.scalar_std[i])
                                                           .double().cpu().numpy())
                preds[(p, k)] = d
    return preds


def _flotation_levelset(h: np.ndarray, bed: np.ndarray, rho_i: float, rho_w: float) -> np.ndarray:
    return h + rho_w / rho_i * bed


def _series(pm: P1Mesh, h: np.ndarray, phi: np.ndarray, ice: np.ndarray) -> tuple[float, float]:
    e = pm.elements
    ice_el = _masks.ice_elements(e, ice)
    a = np.abs(pm.area) * ice_el
    vol = float(np.sum(a * pm.element_mean(h)))
    if not np.all(np.isfinite(phi)):
        return vol, math.nan
    return vol, float(np.sum(a * _masks.grounded_portion(e, phi)))


def steps_at_outputs(steps: list[dict[str, Any]], output_times: Any) -> np.ndarray:
    """For each of ``output_times`` (model time, s), the index of the rollout step (``steps[i]["time"]``, s)
    at that time, or -1 where the rollout did not stop there (within a second, or 1e-6 relative)."""
    t = np.asarray(output_times, float)
    st_t = np.array([s["time"] for s in steps], float)
    if not st_t.size:
        return np.full(t.shape, -1, np.int64)
    i = np.abs(st_t[None, :] - t[:, None]).argmin(axis=1)
    hit = np.abs(st_t[i] - t) <= 1e-6 * np.maximum(1.0, np.abs(t)) + 1.0
    return np.where(hit, i, -1)


def _rollout_states(dataset: Any) -> list[Any]:
    """The rebuilt initial model states of the dataset's runs (raises when they cannot be rebuilt)."""
    return [dataset.run_state(p) for p in dataset.run_positions]


# --------------------------------------------------------------------------------------------- evaluate
def evaluate(checkpoint: str | os.PathLike | Checkpoint, data: str | os.PathLike, split: str | None = "test", *,
             out_dir: str | os.PathLike, times: Iterable[float] | None = None, device: Any = "cpu",
             batch_size: int = 8, plot_times: Iterable[float] | None = None, plots: bool = True,
             fast_threshold: float = 1000.0, step_method: str = "auto", max_map_runs: int = 4,
             split_rule: Any = None) -> EvaluationResult:
    """Evaluate a checkpoint on the runs of ``split`` and write metrics and plots to ``out_dir``.

    Parameters
    ----------
    checkpoint : checkpoint file or loaded :class:`~issm_emulator.solvers.emulator.checkpoint.Checkpoint`
    data : ensemble folder or file
    split : ``'test'``, ``'validation'``, ``'train'`` or ``'all'``
    out_dir : output folder (created)
    times : model times (yr) to evaluate (nearest outputs); default all outputs
    device : torch device of the network
    batch_size : graphs per forward pass
    plot_times : times (yr) of the error maps; default the first and last evaluated outputs
    plots : write the figures
    fast_threshold : speed (m/yr) above which a vertex counts as fast-flowing
    step_method : ``'auto'``, ``'rollout'`` or ``'teacher-forced'`` (step checkpoints; see module doc)
    max_map_runs : error maps for at most this many runs
    split_rule : the split rule (a name, value lists such as ``'test=10,30;validation=20'``, or a callable;
        :mod:`issm_emulator.datasets.splits`); default: the one the checkpoint was trained with when ``train``
        was given one, else the ensemble's

    Returns
    -------
    EvaluationResult
    """
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UnsupportedOptionError(f"device={device!r}: CUDA is not available here (torch.cuda.is_available() "
                                     "is False); use --device cpu")
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint, map_location="cpu")
    mode = ckpt.mode
    spec = ckpt.spec
    moving = "ice_levelset" in spec.scalar_outputs
    cls = DirectDataset if mode == "direct" else StepDataset
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # step-pairing notes were given at training
        if split_rule is None:  # the rule the checkpoint was trained with, when it was given explicitly
            split_rule = (ckpt.manifest.get("extra") or {}).get("split_rule")
        dataset = cls(data, split, spec=spec, moving_front=moving, times=times, rule=split_rule,
                      processing_mesh=ckpt.processing_mesh)
    if len(dataset.run_positions) == 0:
        raise ValueError(f"the {split!r} split of {dataset.path} has no runs")
    for q in dataset.run_positions:  # refuses a mismatch; warns when a run's forcing is outside training
        ckpt.check(spec, dataset.forcing(q), mode=mode)
    yts = dataset.yts
    pm = dataset.mesh

    method = "direct"
    rollout_out: dict[int, list[dict[str, Any]]] = {}
    if mode == "step":
        if step_method not in ("auto", "rollout", "teacher-forced"):
            raise ValueError(f"step_method must be 'auto', 'rollout' or 'teacher-forced', got {step_method!r}")
        method = "teacher-forced"
        if step_method in ("auto", "rollout"):
            try:
                from issm_emulator.solvers.emulator.step import rollout_step_many

                states = _rollout_states(dataset)
                results = rollout_step_many(ckpt, states, device=dev, batch_size=batch_size)
                rollout_out = {int(p): r.steps for p, r in zip(dataset.run_positions, results)}
                method = "rollout"
            except Exception as exc:
                if step_method == "rollout":
                    raise
                warnings.warn(f"step rollout not possible ({type(exc).__name__}: {exc}); evaluating one-step "
                              "teacher-forced velocities instead", RuntimeWarning, stacklevel=2)
    if method == "rollout":
        preds = {}
    elif getattr(ckpt.model, "decodes_time", False):
        preds = _predict_decoded(ckpt, dataset, dev)
        method = "direct-decoded"
    else:
        preds = _predict_dataset(ckpt, dataset, dev, batch_size)

    runs: list[RunPrediction] = []
    for p in dataset.run_positions:
        p = int(p)
        ra = dataset.run_arrays(p)
        ks = sorted(k for q, k in dataset.samples if q == p)
        if not ks:
            continue
        f = ra.fields
        t_yr = ra.time[ks] / yts + float(ra.static.get("start_time", 0.0))
        true = {"vx": f["vx"][ks] * yts, "vy": f["vy"][ks] * yts, "thickness": f["thickness"][ks]}
        nan = np.full_like(true["vx"], np.nan)
        pred = {"vx": nan.copy(), "vy": nan.copy(), "thickness": nan.copy()}
        phi_p = np.full_like(nan, np.nan)
        ice_p = np.asarray(f["ice_levelset"][ks], float).copy()
        rho_i, rho_w = float(ra.static.get("rho_ice", 917.0)), float(ra.static.get("rho_water", 1023.0))
        if method == "rollout":
            steps = rollout_out[p]
            at = steps_at_outputs(steps, ra.time[ks] + float(ra.static.get("start_time", 0.0)) * yts)
            for j, i in enumerate(at):
                if i < 0:
                    continue
                s = steps[int(i)]
                pred["vx"][j], pred["vy"][j] = np.asarray(s["Vx"]) * yts, np.asarray(s["Vy"]) * yts
                pred["thickness"][j] = np.asarray(s["Thickness"])
                if "MaskOceanLevelset" in s:
                    phi_p[j] = np.asarray(s["MaskOceanLevelset"])
                if "MaskIceLevelset" in s:
                    ice_p[j] = np.asarray(s["MaskIceLevelset"])
        else:
            spx, spy = ra.static["spcvx"], ra.static["spcvy"]  # m/s, NaN = free
            for j, k in enumerate(ks):
                out = preds[(p, k)]
                vx = np.where(np.isfinite(spx), spx, out["velocity"][:, 0])
                vy = np.where(np.isfinite(spy), spy, out["velocity"][:, 1])
                pred["vx"][j], pred["vy"][j] = vx * yts, vy * yts
                if "thickness" in out:
                    pred["thickness"][j] = out["thickness"]
                    phi_p[j] = _flotation_levelset(out["thickness"], ra.static["bed"], rho_i, rho_w)
                if "ice_levelset" in out:
                    ice_p[j] = out["ice_levelset"]
        rp = RunPrediction(ra.run, ra.value, t_yr, true, pred,
                           levelsets={n: np.asarray(f[n][ks], float) for n in ("ocean_levelset", "ice_levelset")
                                      if n in f})
        # volume / grounded area, with the initial state first
        tv, tg, pv, pg = [], [], [], []
        for j, k in enumerate([0, *ks]):
            v, g = _series(pm, f["thickness"][k], f["ocean_levelset"][k], f["ice_levelset"][k])
            tv.append(v), tg.append(g)
            if j == 0:
                pv.append(v), pg.append(g)
            elif np.all(np.isfinite(pred["thickness"][j - 1])):
                v2, g2 = _series(pm, pred["thickness"][j - 1], phi_p[j - 1], ice_p[j - 1])
                pv.append(v2), pg.append(g2)
            else:
                pv.append(math.nan), pg.append(math.nan)
        t0 = float(ra.static.get("start_time", 0.0))
        rp.series = {"time": np.concatenate([[t0], t_yr]), "volume_true": np.array(tv), "volume_pred": np.array(pv),
                     "grounded_area_true": np.array(tg), "grounded_area_pred": np.array(pg)}
        runs.append(rp)

    rows: list[dict[str, Any]] = []
    param = dataset.parameter or "parameter"
    for rp in runs:
        for r in run_metrics(rp, fast_threshold):
            rows.append({"run": rp.run, param: rp.value, **r})
    for r in run_metrics(runs, fast_threshold):
        rows.append({"run": "overall", param: "", **r})

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    files["metrics_csv"] = _write_csv(out / "metrics.csv", rows)
    ts_rows = [{"run": rp.run, param: rp.value, "time_yr": float(t), "ice_volume_true_m3": vt,
                "ice_volume_pred_m3": vp, "grounded_area_true_m2": gt, "grounded_area_pred_m2": gp}
               for rp in runs for t, vt, vp, gt, gp in zip(rp.series["time"], rp.series["volume_true"],
                                                             rp.series["volume_pred"], rp.series["grounded_area_true"],
                                                             rp.series["grounded_area_pred"])]
    files["timeseries_csv"] = _write_csv(out / "timeseries.csv", ts_rows)
    md = _markdown(rows, ckpt, dataset, split, method, fast_threshold, param)
    (out / "metrics.md").write_text(md)
    files["metrics_md"] = out / "metrics.md"
    if plots:
        files.update(_plots(out, runs, pm, plot_times, max_map_runs, param, method,
                            units=str(dataset.ds.attrs.get("parameter_units", "") or "")))
    return EvaluationResult(rows, md, files, method, runs)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if not math.isfinite(v) else f"{v:.6g}"
    return str(v)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with open(path, "w", newline="") as fh:
        if rows:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return path


def _markdown(rows: list[dict[str, Any]], ckpt: Checkpoint, dataset: Any, split: Any, method: str,
              fast: float, param: str) -> str:
    how = {"direct": "direct prediction of every output time from the initial state",
           "direct-decoded": "direct prediction of the change since the initial state (exactly the initial "
                             "state at t = 0)",
           "rollout": "autoregressive step rollout (network velocity + FE mass transport)",
           "teacher-forced": "one-step teacher-forced velocity (FE geometry of the previous output; no thickness)"}
    units = dataset.ds.attrs.get("parameter_units", "")
    lines = [f"# Evaluation of {ckpt.path.name if ckpt.path else 'checkpoint'}", "",
             f"- network: {ckpt.manifest.get('arch')} ({ckpt.mode} mode); method: {how[method]}",
             (f"- data: {dataset.path}, split {split!r}: {len(dataset.run_positions)} run(s), "
              f"{len(dataset)} output(s)"),
             f"- fast-flowing: FE speed > {fast:g} m/yr; RMSE in the variable's unit, R = Pearson correlation", ""]

    def table(sel: list[dict[str, Any]], with_run: bool) -> list[str]:
        head = (["run", f"{param} ({units})"] if with_run else []) + ["variable", "region", "n", "RMSE", "unit", "R"]
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in sel:
            cells = ([str(r["run"]), _fmt(r[param])] if with_run else []) + [
                r["variable"], r["region"], str(r["n"]), _fmt(r["rmse"]), r["unit"], _fmt(r["r"])]
            out.append("| " + " | ".join(cells) + " |")
        return out

    lines += ["## Overall", ""] + table([r for r in rows if r["run"] == "overall"], False)
    lines += ["", "## Per run", ""] + table([r for r in rows if r["run"] != "overall"], True)
    return "\n".join(lines) + "\n"


def _plots(out: Path, runs: list[RunPrediction], pm: P1Mesh, plot_times: Iterable[float] | None, max_runs: int,
           param: str, method: str, units: str = "") -> dict[str, Path]:
    """``error_map_run-XXXX.png`` (FE speed, speed and thickness errors with grounding line and ice front,
    :mod:`issm_emulator.issm.plotting`) and ``timeseries.png`` (ice volume and grounded area)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from issm_emulator.issm.plotting import Panel, format_parameter, format_time, map_figure

    files: dict[str, Path] = {}
    for rp in runs[:max_runs]:
        if plot_times is None:
            idx = sorted({0, len(rp.time) - 1})
        else:
            idx = sorted({int(np.argmin(np.abs(rp.time - t))) for t in plot_times})
        has_h = bool(np.isfinite(rp.pred["thickness"]).all())
        panels = []
        for j in idx:
            lines = {"ocean_levelset": rp.levelsets["ocean_levelset"][j] if "ocean_levelset" in rp.levelsets else None,
                     "ice_levelset": rp.levelsets["ice_levelset"][j] if "ice_levelset" in rp.levelsets else None}
            when = format_time(rp.time[j])
            sp_t = np.hypot(rp.true["vx"][j], rp.true["vy"][j])
            sp_e = np.hypot(rp.pred["vx"][j], rp.pred["vy"][j]) - sp_t
            panels.append(Panel(sp_t, "FE ice speed", "m yr^-1", title=f"FE speed, {when}", kind="log",
                                group="speed", **lines))
            panels.append(Panel(sp_e, "speed error", "m yr^-1", title=f"emulator - FE speed, {when}",
                                kind="difference", group="speed error", sign_note="> 0 (red): emulator faster",
                                **lines))
            if has_h:
                panels.append(Panel(rp.pred["thickness"][j] - rp.true["thickness"][j], "thickness error", "m",
                                    title=f"emulator - FE thickness, {when}", kind="difference",
                                    group="thickness error", sign_note="> 0 (red): emulator thicker", **lines))
        fig = map_figure(pm.x, pm.y, pm.elements, panels, ncols=3 if has_h else 2, one_based=False,
                         panel_size=(4.4, 3.9),
                         suptitle=f"run {rp.run}: {format_parameter(param, rp.value, units)} ({method})")
        path = out / f"error_map_run-{rp.run:04d}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        files[f"error_map_run-{rp.run:04d}"] = path
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), layout="constrained")
    for k, rp in enumerate(runs):
        c = f"C{k % 10}"
        s = rp.series
        axes[0].plot(s["time"], s["volume_true"] / 1e9, "-", color=c, label=format_parameter(param, rp.value, units))
        axes[0].plot(s["time"], s["volume_pred"] / 1e9, "--", color=c)
        axes[1].plot(s["time"], s["grounded_area_true"] / 1e6, "-", color=c)
        axes[1].plot(s["time"], s["grounded_area_pred"] / 1e6, "--", color=c)
    axes[0].set_ylabel("ice volume (km³)")
    axes[1].set_ylabel("grounded area (km²)")
    axes[0].set_title("ice volume", fontsize=9)
    axes[1].set_title("grounded area (t = 0: initial mask; see docs/figures.md)", fontsize=9)
    for ax in axes:
        ax.set_xlabel("time (yr)")
    axes[0].legend(fontsize=7, ncol=2, title="solid: FE, dashed: emulator", title_fontsize=7)
    fig.suptitle(f"FE truth (solid) and emulator (dashed), {method}")
    path = out / "timeseries.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    files["timeseries_png"] = path
    return files
