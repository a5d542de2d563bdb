"""The main job: Pine Island for 20 years with the bundled EGCN emulator and with ``fem``, compared.

:func:`run_demo` (``issm-emulator demo``) builds ISSM's Pine Island test geometry
(:func:`issm_emulator.scenarios.pine_island.pine_island`, data shipped inside the package, so it runs
offline) with a floating-ice melt rate, solves the same transient twice in this process -- with the
finite-element reference ``fem`` and with the ``egcn`` emulator in step mode (network velocity, FE mass
transport) -- and compares them at the last output:

.. math:: \\mathrm{RMSE}_H = \\sqrt{\\tfrac1n \\sum_i (H^{egcn}_i - H^{fem}_i)^2}, \\quad
          \\mathrm{RMSE}_{\\mathbf u} = \\sqrt{\\tfrac1n \\sum_i |\\mathbf u^{egcn}_i - \\mathbf u^{fem}_i|^2},
          \\quad \\Delta V = V^{egcn} - V^{fem}

over the vertices (``n`` of them), ``V`` being ISSM's ``IceVolume`` output. The speed-up is the ratio of
the two ``issm_emulator.solve`` wall times (model building excluded).

Files written to ``out_dir``: ``pine_island_demo.nc`` (:func:`issm_emulator.to_xarray` of both runs
stacked along a ``solver`` dimension, ``['fem', 'egcn']``; only ``fem`` when no emulator ran),
``thickness.png`` and ``speed.png`` (maps at the last output: fem, EGCN, EGCN - fem, with grounding line and
ice front, drawn by :mod:`issm_emulator.issm.plotting`), ``ice_volume.png`` (ice volume and volume above
flotation against time) and ``summary.txt`` (what was printed).
"""

from __future__ import annotations

import copy
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from issm_emulator.errors import EmulatorDivergedError, OutOfDomainError

import numpy as np

__all__ = ["DemoResult", "compare_runs", "run_demo"]

ARCH = "egcn"
MODE = "step"


@dataclass
class DemoResult:
    """What :func:`run_demo` did.

    Attributes
    ----------
    out_dir : folder written
    files : name -> path of every file written
    vertices : mesh size of the model
    wall_fem_s, wall_emulator_s : solve wall times (s); ``wall_emulator_s`` is None when no emulator ran
    speedup : ``wall_fem_s / wall_emulator_s`` or None
    metrics : comparison at the last output (:func:`compare_runs`), empty when no emulator ran
    checkpoint : the emulator's checkpoint file, or None
    wall_direct_s, speedup_direct, metrics_direct : the same for the EGCN's direct mode (the bundled
        time-decoded weights), None/empty when they are not at hand
    notes : messages printed about what could not be done (no weights, divergence)
    """

    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    vertices: int = 0
    wall_fem_s: float = math.nan
    wall_emulator_s: float | None = None
    speedup: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    checkpoint: Path | None = None
    wall_direct_s: float | None = None
    speedup_direct: float | None = None
    metrics_direct: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _rmse(a: np.ndarray) -> float:
    a = np.asarray(a, float)
    a = a[np.isfinite(a)]
    return float(np.sqrt(np.mean(a * a))) if a.size else math.nan


def compare_runs(fem: Any, emu: Any) -> dict[str, float]:
    """Errors of the emulator run ``emu`` against the ``fem`` run at the last common output.

    Parameters
    ----------
    fem, emu : xarray.Dataset
        :func:`issm_emulator.to_xarray` of the two runs (``Vx``, ``Vy`` in m/yr, ``Thickness`` in m,
        ``IceVolume`` in m^3).

    Returns
    -------
    dict
        ``time_yr``; ``thickness_rmse_m``; ``velocity_rmse_myr`` (vector, as in the module doc);
        ``speed_rmse_myr``; ``ice_volume_fem_m3``, ``ice_volume_emulator_m3``, ``ice_volume_diff_m3`` and
        ``ice_volume_diff_pct`` (relative to fem) at that time; ``ice_volume_max_abs_diff_pct`` over all
        common outputs.
    """
    common = np.intersect1d(np.round(fem["time"].values, 9), np.round(emu["time"].values, 9))
    if common.size == 0:
        raise ValueError("the fem and emulator runs have no output time in common")
    f = fem.sel(time=common, method="nearest")
    e = emu.sel(time=common, method="nearest")
    fl, el = f.isel(time=-1), e.isel(time=-1)
    dvx = el["Vx"].values - fl["Vx"].values
    dvy = el["Vy"].values - fl["Vy"].values
    out = {
        "time_yr": float(common[-1]),
        "thickness_rmse_m": _rmse(el["Thickness"].values - fl["Thickness"].values),
        "velocity_rmse_myr": float(np.sqrt(_rmse(dvx) ** 2 + _rmse(dvy) ** 2)),
        "speed_rmse_myr": _rmse(np.hypot(el["Vx"].values, el["Vy"].values)
                                - np.hypot(fl["Vx"].values, fl["Vy"].values)),
    }
    if "IceVolume" in f and "IceVolume" in e:
        vf, ve = f["IceVolume"].values.astype(float), e["IceVolume"].values.astype(float)
        out.update(ice_volume_fem_m3=float(vf[-1]), ice_volume_emulator_m3=float(ve[-1]),
                   ice_volume_diff_m3=float(ve[-1] - vf[-1]),
                   ice_volume_diff_pct=float(100.0 * (ve[-1] - vf[-1]) / vf[-1]),
                   ice_volume_max_abs_diff_pct=float(np.nanmax(np.abs(100.0 * (ve - vf) / vf))))
    return out


def _find_checkpoint(checkpoint: Any) -> tuple[Any, str | None]:
    """``(checkpoint file or loaded Checkpoint, None)``, or ``(None, why not)`` when no weights are at hand.

    ``checkpoint=None`` takes the bundled default EGCN step weights, else an ``egcn-step-*`` checkpoint
    already in the download cache (no network either way).
    """
    from issm_emulator import weights

    if checkpoint is not None:
        if isinstance(checkpoint, (str, os.PathLike)):
            return weights.resolve(checkpoint), None
        return checkpoint, None
    try:
        return weights.default_checkpoint(ARCH, MODE), None
    except weights.WeightsNotFoundError as err:
        why = str(err)
    try:
        cached = [w for w in weights.available() if w.name.startswith(f"{ARCH}-{MODE}-") and w.status == "cached"]
    except Exception:  # noqa: BLE001 - a broken registry must not stop the fem half of the demo
        cached = []
    if cached:
        return cached[0].path, None
    try:
        remote = [n for n in weights.registry() if n.startswith(f"{ARCH}-{MODE}-")]
    except Exception:  # noqa: BLE001
        remote = []
    name = remote[0] if remote else f"{ARCH}-{MODE}-pig"
    how = (f"get them with `issm-emulator fetch {name}` (one download, then offline) and run "
           f"`issm-emulator demo --checkpoint {name}`, or pass --checkpoint PATH to a checkpoint you trained")
    return None, f"No EGCN weights available ({why}). To compare with the emulator, {how}. Running fem only."


def _direct_part(res: DemoResult, md: Any, ds_fem: Any, device: Any, say: Callable[[str], None]) -> None:
    """The EGCN's direct mode on ``md`` (an unsolved copy of the demo's model), when its default (bundled)
    weights are at hand."""
    from issm_emulator import to_xarray, weights

    try:
        ckpt = weights.default_checkpoint(ARCH, "direct")
    except weights.WeightsNotFoundError:
        return
    try:
        res.wall_direct_s = _quiet_solve(md, solver=ARCH, mode="direct", checkpoint=ckpt, device=device)
    except OutOfDomainError as err:
        res.notes.append(f"EGCN direct mode not run: {err}")
        say(f"EGCN direct mode not run: {err}")
        return
    res.speedup_direct = res.wall_fem_s / res.wall_direct_s
    m = res.metrics_direct = compare_runs(ds_fem, to_xarray(md))
    say(f"egcn direct mode wall time {res.wall_direct_s:8.2f} s (one graph pass, a time decoder per output): "
        f"speed-up over fem x{res.speedup_direct:.1f}; at t = {m['time_yr']:g} yr thickness RMSE "
        f"{m['thickness_rmse_m']:.2f} m, speed RMSE {m['speed_rmse_myr']:.1f} m/yr")


def _quiet_solve(md: Any, **kw: Any) -> float:
    import contextlib
    import io

    from issm_emulator import solve
    from issm_emulator.errors import ExtrapolationWarning

    t0 = time.perf_counter()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore", UserWarning)  # pyISSM's notes about its missing ISSM executables
        warnings.simplefilter("default", ExtrapolationWarning)  # but say when the emulator extrapolates
        solve(md, "Transient", **kw)
    return time.perf_counter() - t0


def _stack(datasets: dict[str, Any]) -> Any:
    """One dataset: the time-dependent variables stacked along a new ``solver`` dimension, the mesh
    (``x``, ``y``, ``elements``) once."""
    import xarray as xr

    names = list(datasets)
    first = datasets[names[0]]
    timed = [v for v in first.data_vars if "time" in first[v].dims
             and all(v in d.data_vars for d in datasets.values())]
    static = first[[v for v in first.data_vars if "time" not in first[v].dims]]
    parts = [datasets[n][timed] for n in names]
    ds = xr.concat(parts, dim=xr.DataArray(names, dims="solver", name="solver"), data_vars="all",
                   coords="minimal", compat="override", join="exact", combine_attrs="drop_conflicts")
    return xr.merge([ds, static], combine_attrs="override")


def _levelsets(ds: Any, t: float) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The ocean and ice level sets of a run at time ``t`` (None when the run did not output them)."""
    d = ds.sel(time=t, method="nearest")
    return tuple(np.asarray(d[n].values, float) if n in d else None  # type: ignore[return-value]
                 for n in ("MaskOceanLevelset", "MaskIceLevelset"))


def _maps(out: Path, ds_fem: Any, ds_emu: Any | None, title: str) -> dict[str, Path]:
    """``thickness.png`` and ``speed.png`` (fem, EGCN, EGCN - fem at the last output, with grounding line and
    ice front) and ``ice_volume.png`` (ice volume and volume above flotation against time)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from issm_emulator.issm.plotting import Panel, format_time, map_figure

    x, y, elements = ds_fem["x"].values, ds_fem["y"].values, ds_fem["elements"].values
    f = ds_fem.isel(time=-1)
    t_end = float(f["time"])
    e = ds_emu.sel(time=t_end, method="nearest") if ds_emu is not None else None
    gl_f, front_f = _levelsets(ds_fem, t_end)
    gl_e, front_e = _levelsets(ds_emu, t_end) if ds_emu is not None else (None, None)
    files: dict[str, Path] = {}
    fields = {
        "thickness": ("ice thickness", "m", lambda d: d["Thickness"].values, "sequential", "thicker"),
        "speed": ("ice speed", "m yr^-1", lambda d: np.hypot(d["Vx"].values, d["Vy"].values), "log", "faster"),
    }
    for name, (label, units, get, kind, more) in fields.items():
        vf = get(f)
        panels = [Panel(vf, label, units, title="fem (finite elements)", kind=kind, group="abs", ocean_levelset=gl_f,
                        ice_levelset=front_f)]
        if e is not None:
            ve = get(e)
            panels.append(Panel(ve, label, units, title="EGCN emulator", kind=kind, group="abs",
                                ocean_levelset=gl_e if gl_e is not None else gl_f,
                                ice_levelset=front_e if front_e is not None else front_f))
            panels.append(Panel(ve - vf, f"{label} difference", units, title="EGCN - fem", kind="difference",
                                sign_note=f"> 0 (red): EGCN {more} than fem", ocean_levelset=gl_f,
                                other_ocean_levelset=gl_e, other_label="EGCN grounding line",
                                ice_levelset=front_f))
        fig = map_figure(x, y, elements, panels, suptitle=f"{title}, {format_time(t_end)}")
        path = out / f"{name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        files[name] = path
    if "IceVolume" in ds_fem:
        series = [("IceVolume", "ice volume")]
        if "IceVolumeAboveFloatation" in ds_fem:
            series.append(("IceVolumeAboveFloatation", "volume above flotation"))
        fig, axes = plt.subplots(1, len(series), figsize=(5.2 * len(series), 3.9), squeeze=False,
                                 layout="constrained")
        for ax, (var, label) in zip(axes[0], series):
            ax.plot(ds_fem["time"].values, ds_fem[var].values / 1e9, "-", label="fem")
            if ds_emu is not None and var in ds_emu:
                ax.plot(ds_emu["time"].values, ds_emu[var].values / 1e9, "--", label="EGCN")
            ax.set_xlabel("time (yr)")
            ax.set_ylabel(f"{label} (km³)")
            ax.set_title(label, fontsize=9)
            ax.legend(fontsize=8)
        fig.suptitle(title, fontsize=10)
        path = out / "ice_volume.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        files["ice_volume"] = path
    return files


def run_demo(out_dir: str | os.PathLike = "demo_out", years: float = 20.0, resolution: float = 3e3,
             checkpoint: Any = None, *, melt_rate: float = 30.0, time_step: float = 1.0 / 12.0,
             output_every: float = 1.0, device: Any = "cpu", maps: bool = True,
             echo: Callable[[str], None] = print) -> DemoResult:
    """Run Pine Island with ``fem`` and with the EGCN emulator, print the comparison and write ``out_dir``.

    Parameters
    ----------
    out_dir : folder for the NetCDF, the maps and ``summary.txt`` (created)
    years : simulated years
    resolution : mesh resolution (m) of :func:`~issm_emulator.scenarios.pine_island.pine_island`
        (3 km, the resolution of the bundled weights' training ensemble, gives 1814 vertices)
    checkpoint : EGCN step-mode checkpoint (path, bundled or cached name, or loaded Checkpoint); default
        the bundled weights. Without any, a message says how to get them and only ``fem`` runs.
    melt_rate : floating-ice melt rate (m/yr)
    time_step : time step (yr), default one month
    output_every : years between outputs (rounded to whole time steps; the first and last steps are
        always written)
    device : torch device of the emulator (``'cpu'``; ``None``: CUDA when available)
    maps : write the PNG figures
    echo : where the summary lines go

    Returns
    -------
    DemoResult
    """
    from issm_emulator import to_xarray
    from issm_emulator.scenarios.pine_island import pine_island

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    res = DemoResult(out_dir=out)
    lines: list[str] = []

    def say(text: str) -> None:
        lines.append(text)
        echo(text)

    freq = max(1, round(float(output_every) / float(time_step)))
    t0 = time.perf_counter()
    md = pine_island(resolution, melt_rate, years=years, time_step=time_step, output_frequency=freq)
    # the level sets too, for the grounding line and ice front on the maps
    md.transient.requested_outputs = [*map(str, np.atleast_1d(md.transient.requested_outputs)),
                                      "MaskOceanLevelset", "MaskIceLevelset"]
    build_s = time.perf_counter() - t0
    res.vertices = int(md.mesh.numberofvertices)
    say(f"Pine Island Glacier (ISSM's Pig test geometry), {resolution / 1e3:g} km mesh: {res.vertices} vertices, "
        f"{md.mesh.numberofelements} elements; floating-ice melt {melt_rate:g} m/yr; {years:g} years, "
        f"time step {time_step * 12:g} month(s); model built in {build_s:.1f} s")

    ckpt, why_not = _find_checkpoint(checkpoint)
    md_emu = copy.deepcopy(md) if ckpt is not None else None
    md_direct = copy.deepcopy(md) if ckpt is not None and checkpoint is None else None

    res.wall_fem_s = _quiet_solve(md, solver="fem")
    say(f"fem  wall time {res.wall_fem_s:8.2f} s  (finite elements: SSA, mass transport, grounding line)")
    ds_fem = to_xarray(md)
    datasets = {"fem": ds_fem}
    ds_emu = None

    if ckpt is None:
        res.notes.append(why_not or "")
        say(why_not or "")
    else:
        if device is not None:
            import torch  # noqa: F401 - imported before timing, as an application that has loaded it

        try:
            res.wall_emulator_s = _quiet_solve(md_emu, solver=ARCH, mode=MODE, checkpoint=ckpt, device=device)
        except EmulatorDivergedError as err:
            note = (f"The EGCN emulator diverged ({err}); its checkpoint {ckpt} is not fit for this model. "
                    "Only the fem results are written.")
            res.notes.append(note)
            say(note)
        except OutOfDomainError as err:
            note = f"The EGCN emulator was not run: {err}. Only the fem results are written."
            res.notes.append(note)
            say(note)
        else:
            res.checkpoint = Path(ckpt) if isinstance(ckpt, (str, os.PathLike)) else getattr(ckpt, "path", None)
            ds_emu = to_xarray(md_emu)
            datasets["egcn"] = ds_emu
            res.speedup = res.wall_fem_s / res.wall_emulator_s
            res.metrics = compare_runs(ds_fem, ds_emu)
            m = res.metrics
            say(f"egcn wall time {res.wall_emulator_s:8.2f} s  (EGCN velocity + FE mass transport, "
                f"{device or 'auto'})")
            say(f"speed-up of egcn over fem: x{res.speedup:.1f}"
                + (" (egcn is slower than fem on this model and machine)" if res.speedup < 1.0 else ""))
            say(f"checkpoint: {res.checkpoint if res.checkpoint is not None else 'in-memory checkpoint'}")
            say(f"EGCN against fem at t = {m['time_yr']:g} yr: thickness RMSE {m['thickness_rmse_m']:.2f} m, "
                f"velocity RMSE {m['velocity_rmse_myr']:.1f} m/yr (speed {m['speed_rmse_myr']:.1f} m/yr)")
            if "ice_volume_diff_pct" in m:
                say(f"ice volume: fem {m['ice_volume_fem_m3'] / 1e9:.2f} km^3, EGCN "
                    f"{m['ice_volume_emulator_m3'] / 1e9:.2f} km^3, difference {m['ice_volume_diff_m3'] / 1e9:+.3f} "
                    f"km^3 ({m['ice_volume_diff_pct']:+.3f} %; largest over the run "
                    f"{m['ice_volume_max_abs_diff_pct']:.3f} %)")

    if md_direct is not None:  # the bundled weights: also show direct mode
        _direct_part(res, md_direct, ds_fem, device, say)

    ds = _stack(datasets)
    ds.attrs.update(title="issm-emulator demo: Pine Island Glacier, fem and EGCN", melt_rate_m_per_yr=melt_rate,
                    resolution_m=float(resolution), years=float(years),
                    wall_time_fem_s=res.wall_fem_s,
                    wall_time_egcn_s=res.wall_emulator_s if res.wall_emulator_s is not None else math.nan)
    nc = out / "pine_island_demo.nc"
    ds.to_netcdf(nc)
    res.files["netcdf"] = nc
    if maps:
        from issm_emulator.issm.plotting import format_parameter

        res.files.update(_maps(out, ds_fem, ds_emu, "Pine Island, " + format_parameter("melt_rate", melt_rate,
                                                                                      "m yr^-1")))
    say("wrote " + ", ".join(str(p) for p in res.files.values()))
    summary = out / "summary.txt"
    summary.write_text("\n".join(lines) + "\n")
    res.files["summary"] = summary
    return res
