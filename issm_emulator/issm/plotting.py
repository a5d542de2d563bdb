"""Map figures of ISSM fields on the triangular mesh, shared by the demo and the evaluation.

One job: draw fields of one mesh as map panels a glaciologist can put on a slide. Every panel has a colour
bar labelled with the quantity and its unit, the grounding line (zero of the ocean level set, black) and
the ice front (zero of the ice level set, and the mesh boundary where the ice reaches it, magenta) drawn
on it, x and y in km with few enough ticks not to overlap, and a title; a difference panel says its sign
convention in the colour-bar label (``EGCN - fem (m): > 0 where EGCN is thicker``).

:func:`map_figure` draws a row (or grid) of :class:`Panel`; :func:`format_time` and
:func:`format_parameter` give the rounded times and parameter values of the titles
(``"melt 20 m/yr, t = 1.0 yr"``). :mod:`issm_emulator.demo` and :mod:`issm_emulator.learning.evaluate`
draw their maps only through this module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["FRONT_COLOR", "GROUNDING_LINE_COLOR", "Panel", "format_parameter", "format_time", "front_segments",
           "map_figure", "unit_text"]

GROUNDING_LINE_COLOR = "black"
FRONT_COLOR = "magenta"

#: short names of swept parameters in titles
_PARAMETER_WORDS = {"melt_rate": "melt", "floatingice_melting_rate": "melt", "stress_threshold": "calving threshold",
                    "smb": "SMB", "friction": "friction", "resolution": "resolution"}


def unit_text(units: str | None) -> str:
    """A CF/UDUNITS unit string for humans: ``'m yr^-1'`` -> ``'m/yr'``, ``'m^3'`` -> ``'m³'``."""
    if not units:
        return ""
    text = str(units).strip()
    text = text.replace(" yr^-1", "/yr").replace(" yr-1", "/yr").replace(" s^-1", "/s").replace(" a^-1", "/yr")
    return text.replace("^3", "³").replace("^2", "²")


def format_time(t: float) -> str:
    """``'t = 1.0 yr'``: one decimal when that is exact to a thousandth of a year, else two."""
    t = float(t)
    digits = 1 if abs(round(t, 1) - t) < 1e-3 else 2
    return f"t = {t:.{digits}f} yr"


def format_parameter(name: str | None, value: Any, units: str | None = None) -> str:
    """``'melt 20 m/yr'`` for ``('melt_rate', 20.0, 'm yr^-1')``; the name itself when it has no short word."""
    word = _PARAMETER_WORDS.get(str(name or ""), str(name or "parameter").replace("_", " "))
    try:
        number = float(value)
    except (TypeError, ValueError):
        return f"{word} {value}"
    if number != 0 and (abs(number) >= 1e5 or abs(number) < 1e-2):
        text = f"{number:.3g}"
    else:
        text = f"{number:.4g}"
    unit = unit_text(units)
    return f"{word} {text} {unit}".strip()


@dataclass
class Panel:
    """One map: ``values`` per vertex, the quantity (``label``) and its ``units`` for the colour bar, a
    ``title``. ``kind``: ``'sequential'`` (viridis), ``'log'`` (log colour scale, values below 1 shown as
    1) or ``'difference'`` (symmetric red-blue; ``sign_note`` says what > 0 means). Panels with the same
    ``group`` share their colour limits. ``ocean_levelset`` / ``ice_levelset`` (per vertex) draw the
    grounding line and the ice front; ``other_ocean_levelset`` draws a second grounding line dashed (the
    other run of a difference)."""

    values: np.ndarray
    label: str
    units: str
    title: str = ""
    kind: str = "sequential"
    group: str | None = None
    sign_note: str = ""
    ocean_levelset: np.ndarray | None = None
    ice_levelset: np.ndarray | None = None
    other_ocean_levelset: np.ndarray | None = None
    other_label: str = "grounding line (other run)"


def _boundary_edges(elements0: np.ndarray) -> np.ndarray:
    edges = np.sort(np.concatenate([elements0[:, [0, 1]], elements0[:, [1, 2]], elements0[:, [2, 0]]]), axis=1)
    uniq, counts = np.unique(edges, axis=0, return_counts=True)
    return uniq[counts == 1]


def front_segments(x: np.ndarray, y: np.ndarray, elements0: np.ndarray, ice_levelset: np.ndarray) -> list[np.ndarray]:
    """The ice front where it lies on the mesh boundary: boundary edges whose two vertices have
    ``ice_levelset >= 0`` (ISSM's ``SetMarineIceSheetBC`` puts a fixed front there). Each item is a
    ``(2, 2)`` array of the edge's end points, in the units of ``x``, ``y``."""
    phi = np.asarray(ice_levelset, float)
    edges = _boundary_edges(np.asarray(elements0))
    on_front = (phi[edges[:, 0]] >= 0) & (phi[edges[:, 1]] >= 0)
    return [np.array([[x[a], y[a]], [x[b], y[b]]]) for a, b in edges[on_front]]


def _limits(panels: Sequence[Panel]) -> dict[int, tuple[float, float]]:
    groups: dict[str, list[int]] = {}
    for k, p in enumerate(panels):
        groups.setdefault(p.group or f"#{k}", []).append(k)
    out = {}
    for members in groups.values():
        vals = np.concatenate([np.asarray(panels[k].values, float).ravel() for k in members])
        vals = vals[np.isfinite(vals)]
        kind = panels[members[0]].kind
        if vals.size == 0:
            lo, hi = 0.0, 1.0
        elif kind == "difference":
            lim = float(np.max(np.abs(vals))) or 1.0
            lo, hi = -lim, lim
        elif kind == "log":
            lo, hi = max(float(vals.min()), 1.0), max(float(vals.max()), 10.0)
        else:
            lo, hi = float(vals.min()), float(vals.max())
            if hi <= lo:
                hi = lo + 1.0
        for k in members:
            out[k] = (lo, hi)
    return out


def _draw_lines(ax: Any, tri: Any, x_km: np.ndarray, y_km: np.ndarray, elements0: np.ndarray,
                p: Panel) -> set[str]:
    """Draw the grounding line(s) and the ice front of ``p``; returns which were drawn."""
    from matplotlib.collections import LineCollection

    drawn: set[str] = set()

    def zero_contour(key: str, field: np.ndarray | None, **kw: Any) -> None:
        if field is None:
            return
        f = np.asarray(field, float)
        if np.nanmin(f) < 0 < np.nanmax(f):
            ax.tricontour(tri, f, levels=[0.0], **kw)
            drawn.add(key)

    zero_contour("gl", p.ocean_levelset, colors=GROUNDING_LINE_COLOR, linewidths=0.9)
    zero_contour("other", p.other_ocean_levelset, colors=GROUNDING_LINE_COLOR, linewidths=0.9,
                 linestyles="dashed")
    if p.ice_levelset is not None:
        zero_contour("front", p.ice_levelset, colors=FRONT_COLOR, linewidths=1.2)
        segs = front_segments(x_km, y_km, elements0, p.ice_levelset)
        if segs:
            ax.add_collection(LineCollection(segs, colors=FRONT_COLOR, linewidths=1.6, zorder=3))
            drawn.add("front")
    return drawn


def map_figure(x: np.ndarray, y: np.ndarray, elements: np.ndarray, panels: Sequence[Panel], *,
               suptitle: str = "", ncols: int | None = None, one_based: bool = True,
               panel_size: tuple[float, float] = (4.8, 4.4)) -> Any:
    """A figure of map ``panels`` on the mesh (``x``, ``y`` in m; ``elements`` 1-based as ISSM unless
    ``one_based=False``). Returns the :class:`matplotlib.figure.Figure` (the caller saves and closes it)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator
    from matplotlib.tri import Triangulation

    el0 = np.asarray(elements, dtype=np.int64) - (1 if one_based else 0)
    x_km, y_km = np.asarray(x, float) / 1e3, np.asarray(y, float) / 1e3
    tri = Triangulation(x_km, y_km, el0)
    n = len(panels)
    ncols = ncols or n
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size[0] * ncols, panel_size[1] * nrows + 0.5),
                             squeeze=False, layout="constrained")
    limits = _limits(panels)
    drawn: set[str] = set()
    for k, p in enumerate(panels):
        ax = axes[k // ncols, k % ncols]
        lo, hi = limits[k]
        vals = np.asarray(p.values, float)
        if p.kind == "log":
            pc = ax.tripcolor(tri, np.maximum(vals, lo), cmap="viridis", shading="gouraud",
                              norm=LogNorm(vmin=lo, vmax=hi))
        elif p.kind == "difference":
            pc = ax.tripcolor(tri, vals, cmap="RdBu_r", vmin=lo, vmax=hi, shading="gouraud")
        else:
            pc = ax.tripcolor(tri, vals, cmap="viridis", vmin=lo, vmax=hi, shading="gouraud")
        label = f"{p.label} ({unit_text(p.units)})" if p.units else p.label
        if p.sign_note:
            label += f"\n{p.sign_note}"
        cb = fig.colorbar(pc, ax=ax, shrink=0.85)
        cb.set_label(label, fontsize=8)
        cb.ax.tick_params(labelsize=7)
        drawn |= _draw_lines(ax, tri, x_km, y_km, el0, p)
        ax.set_title(p.title, fontsize=9)
        ax.set_aspect("equal")
        ax.set_xlabel("x (km)", fontsize=8)
        ax.set_ylabel("y (km)", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.yaxis.set_major_locator(MaxNLocator(5))
        ax.tick_params(labelsize=7)
    for k in range(n, nrows * ncols):
        axes[k // ncols, k % ncols].set_visible(False)
    handles = []
    if "gl" in drawn:
        handles.append(Line2D([], [], color=GROUNDING_LINE_COLOR, lw=0.9, label="grounding line"))
    for label in dict.fromkeys(p.other_label for p in panels if p.other_ocean_levelset is not None and "other" in drawn):
        handles.append(Line2D([], [], color=GROUNDING_LINE_COLOR, lw=0.9, ls="--", label=label))
    if "front" in drawn:
        handles.append(Line2D([], [], color=FRONT_COLOR, lw=1.4, label="ice front"))
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8, frameon=False)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    return fig
