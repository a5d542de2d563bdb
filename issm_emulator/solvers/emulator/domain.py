"""The applicability domain of a trained emulator: what it was trained on, and whether a model lies inside.

A domain (:func:`domain_from_states`, a JSON-like dict stored in the checkpoint's manifest under
``'domain'``) is computed at training time from the training runs' model states:

* **glacier** (``footprint``): an occupancy raster (:data:`RASTER` x :data:`RASTER` cells over the training
  meshes' bounding box; a cell is set when its centre lies inside a training mesh), its sha256 (the
  glacier fingerprint ``footprint_sha256``) and the sha256 of every training mesh (``mesh_sha256``:
  coordinates rounded to the millimetre and connectivity);
* **resolution** (``edge_length``): the range of the training meshes' median edge length (m);
* **time step** (``time_step``, s) and, for direct mode, the longest **time span** (``time_span``, s);
* **physics options** (``physics``): flow equation, friction law, grounding-line migration, moving front,
  calving law, melt parameterisation, each as the set of values seen;
* **value ranges** (``ranges``) of every input field of the initial states (SI).

:func:`check_domain` compares a model state with a domain and returns the :class:`Violation` list.
*Hard* violations (another glacier, physics options never seen, time step, resolution or direct-mode time
span outside the trained range, and a checkpoint without a domain) make :func:`enforce` raise
:class:`~issm_emulator.errors.OutOfDomainError`; *soft* ones (input values beyond the trained range by more
than :data:`RANGE_MARGIN` of its width plus :data:`RANGE_FLOOR` of its magnitude) warn with :class:`~issm_emulator.errors.ExtrapolationWarning`.
``allow_extrapolation=True`` turns refusals into warnings. Nothing here depends on torch.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from issm_emulator.errors import ExtrapolationWarning, OutOfDomainError
from issm_emulator.graph import edges_from_triangles
from issm_emulator.state import ModelState

__all__ = ["DOMAIN_VERSION", "RANGE_MARGIN", "RASTER", "Violation", "check_domain", "describe_domain",
           "domain_from_states", "enforce", "mesh_sha256", "physics_options"]

DOMAIN_VERSION = 1
#: cells per side of the glacier's occupancy raster
RASTER = 96
#: a model is on the trained glacier when at least this fraction of its area lies on the training
#: footprint and it covers at least this fraction of the footprint (both measured on the raster)
SAME_GLACIER = 0.9
#: relative tolerance on the median edge length (resolution) and on the time step
RESOLUTION_TOLERANCE = 0.15
TIME_STEP_TOLERANCE = 0.01
#: soft margin of the value ranges, as a fraction of the trained range's width
RANGE_MARGIN = 0.1
#: and at least this fraction of the range's magnitude (a field constant in training, e.g. B, keeps a margin)
RANGE_FLOOR = 0.01


@dataclass(frozen=True)
class Violation:
    """One way a model leaves a domain: ``what`` (e.g. ``'time step'``), the model's ``value`` and the
    ``trained`` range, both as text with units; ``hard`` ones refuse, soft ones warn."""

    what: str
    value: str
    trained: str
    hard: bool

    def __str__(self) -> str:
        return f"{self.what}: model {self.value}, trained {self.trained}"


# --------------------------------------------------------------------------------------------------------
# building a domain
# --------------------------------------------------------------------------------------------------------
def mesh_sha256(x: np.ndarray, y: np.ndarray, elements: np.ndarray) -> str:
    """sha256 of a mesh: coordinates rounded to the millimetre and the (0-based) connectivity."""
    h = hashlib.sha256()
    h.update(np.round(np.asarray(x, float) * 1e3).astype(np.int64).tobytes())
    h.update(np.round(np.asarray(y, float) * 1e3).astype(np.int64).tobytes())
    h.update(np.asarray(elements, np.int64).tobytes())
    return h.hexdigest()


def median_edge_length(x: np.ndarray, y: np.ndarray, elements: np.ndarray) -> float:
    """Median length (m) of a mesh's triangle sides: the resolution the domain records (0-based elements)."""
    e = edges_from_triangles(elements, x.size)
    return float(np.median(np.hypot(x[e[0]] - x[e[1]], y[e[0]] - y[e[1]])))


def _inside_mesh(px: np.ndarray, py: np.ndarray, x: np.ndarray, y: np.ndarray,
                 elements: np.ndarray) -> np.ndarray:
    """Which points lie inside some triangle of the mesh (matplotlib's trapezoid-map search; a brute-force
    barycentric test where the triangulation is not valid for it)."""
    try:
        from matplotlib.tri import Triangulation

        return Triangulation(x, y, elements).get_trifinder()(px, py) >= 0
    except (RuntimeError, ValueError):
        pass
    out = np.zeros(px.size, bool)
    xa, ya = x[elements[:, 0]], y[elements[:, 0]]
    d1x, d1y = x[elements[:, 1]] - xa, y[elements[:, 1]] - ya
    d2x, d2y = x[elements[:, 2]] - xa, y[elements[:, 2]] - ya
    det = d1x * d2y - d1y * d2x
    for s in range(0, px.size, 256):
        qx, qy = px[s:s + 256, None] - xa, py[s:s + 256, None] - ya
        with np.errstate(divide="ignore", invalid="ignore"):
            u = (qx * d2y - qy * d2x) / det
            v = (d1x * qy - d1y * qx) / det
        out[s:s + 256] = np.any((u >= -1e-12) & (v >= -1e-12) & (u + v <= 1 + 1e-12), axis=1)
    return out


def _cell_centres(bbox: Sequence[float], n: int) -> tuple[np.ndarray, np.ndarray]:
    x0, x1, y0, y1 = bbox
    cx = x0 + (np.arange(n) + 0.5) * (x1 - x0) / n
    cy = y0 + (np.arange(n) + 0.5) * (y1 - y0) / n
    gx, gy = np.meshgrid(cx, cy)  # row = y index, column = x index
    return gx.ravel(), gy.ravel()


def _pack(mask: np.ndarray) -> str:
    return np.packbits(mask.astype(np.uint8)).tobytes().hex()


def _unpack(text: str, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bytes.fromhex(text), np.uint8))[: n * n].astype(bool)


def physics_options(state: ModelState) -> dict[str, Any]:
    """The physics options of a state that a network's training fixes (JSON values)."""
    moving = bool(state.transient.ismovingfront)
    return {
        "flow_equation": str(state.extras.get("flow_equation", "SSA")),
        "friction_law": state.friction.law,
        "groundingline_migration": state.groundingline.migration if state.transient.isgroundingline else "None",
        "moving_front": moving,
        "calving_law": state.calving.law if moving else "none",
        "melt_parameterisation": state.basalforcings.kind,
    }


def _input_fields(state: ModelState) -> dict[str, np.ndarray]:
    """The input fields whose values a domain records (SI): initial geometry, velocity, materials, friction,
    surface mass balance (every time stamp)."""
    from issm_emulator.solvers.emulator.inputs import friction_coefficient

    g = state.geometry
    ice = np.asarray(state.masks.ice_levelset, float) < 0
    out = {"thickness": np.asarray(g.thickness, float)[ice] if ice.any() else np.asarray(g.thickness, float),
           "bed": np.asarray(g.bed, float), "surface": np.asarray(g.surface, float),
           "speed": np.hypot(state.vx, state.vy), "rheology_B": np.asarray(state.materials.rheology_B, float),
           "smb": np.asarray(state.smb.values, float)}
    fc = friction_coefficient(state)
    if fc is not None:
        out["friction_coefficient"] = fc
    return {k: v[np.isfinite(v)] for k, v in out.items()}


_UNITS = {"thickness": "m", "bed": "m", "surface": "m", "speed": "m/s", "rheology_B": "Pa s^(1/n)",
          "smb": "m/s", "friction_coefficient": "SI"}


def domain_from_states(states: Sequence[ModelState], *, mode: str) -> dict[str, Any]:
    """The applicability domain of a network trained (in ``mode``) on runs with these initial states."""
    if not states:
        raise ValueError("domain_from_states: no training states")
    meshes: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for st in states:
        x, y, e = (np.asarray(st.mesh.x, float), np.asarray(st.mesh.y, float),
                   np.asarray(st.mesh.elements, np.int64))
        meshes.setdefault(mesh_sha256(x, y, e), (x, y, e))
    xs = np.concatenate([m[0] for m in meshes.values()])
    ys = np.concatenate([m[1] for m in meshes.values()])
    bbox = [float(xs.min()), float(xs.max()), float(ys.min()), float(ys.max())]
    px, py = _cell_centres(bbox, RASTER)
    occupied = np.zeros(px.size, bool)
    for x, y, e in meshes.values():
        occupied |= _inside_mesh(px, py, x, y, e)
    edges = [median_edge_length(*m) for m in meshes.values()]
    dts = [float(st.timestepping.time_step) for st in states]
    spans = [float(st.timestepping.final_time - st.timestepping.start_time) for st in states]
    physics: dict[str, list] = {}
    for st in states:
        for k, v in physics_options(st).items():
            if v not in physics.setdefault(k, []):
                physics[k].append(v)
    ranges: dict[str, list[float]] = {}
    for st in states:
        for k, v in _input_fields(st).items():
            if v.size:
                lo, hi = ranges.get(k, [math.inf, -math.inf])
                ranges[k] = [min(lo, float(v.min())), max(hi, float(v.max()))]
    footprint = _pack(occupied)
    return {
        "version": DOMAIN_VERSION, "mode": mode,
        "footprint": {"bbox": bbox, "n": RASTER, "cells": footprint},
        "footprint_sha256": hashlib.sha256(f"{bbox}{footprint}".encode()).hexdigest(),
        "mesh_sha256": sorted(meshes), "mesh_vertices": sorted({m[0].size for m in meshes.values()}),
        "edge_length": [min(edges), max(edges)],
        "time_step": [min(dts), max(dts)], "time_span": [min(spans), max(spans)],
        "physics": physics, "ranges": ranges,
    }


# --------------------------------------------------------------------------------------------------------
# checking a model against a domain
# --------------------------------------------------------------------------------------------------------
def _glacier_overlap(domain: Mapping[str, Any], x: np.ndarray, y: np.ndarray,
                     elements: np.ndarray) -> tuple[float, float]:
    """(fraction of the model's area on the footprint, fraction of the footprint the model covers)."""
    fp = domain["footprint"]
    n = int(fp["n"])
    x0, x1, y0, y1 = (float(v) for v in fp["bbox"])
    occupied = _unpack(fp["cells"], n)
    px, py = _cell_centres((x0, x1, y0, y1), n)
    cover = _inside_mesh(px[occupied], py[occupied], x, y, elements)
    covered = float(cover.mean()) if cover.size else 0.0
    # the model's element centroids, area-weighted, looked up on the footprint dilated by one cell
    grid = occupied.reshape(n, n)
    dil = grid.copy()
    dil[1:] |= grid[:-1]
    dil[:-1] |= grid[1:]
    dil[:, 1:] |= grid[:, :-1]
    dil[:, :-1] |= grid[:, 1:]
    cx, cy = x[elements].mean(axis=1), y[elements].mean(axis=1)
    area = 0.5 * np.abs((x[elements[:, 1]] - x[elements[:, 0]]) * (y[elements[:, 2]] - y[elements[:, 0]])
                        - (x[elements[:, 2]] - x[elements[:, 0]]) * (y[elements[:, 1]] - y[elements[:, 0]]))
    ix = np.floor((cx - x0) / max(x1 - x0, 1e-300) * n).astype(np.int64)
    iy = np.floor((cy - y0) / max(y1 - y0, 1e-300) * n).astype(np.int64)
    inside = (ix >= 0) & (ix < n) & (iy >= 0) & (iy < n)
    on = np.zeros(cx.size, bool)
    on[inside] = dil[iy[inside], ix[inside]]
    total = float(area.sum())
    return (float(area[on].sum()) / total if total > 0 else 0.0), covered


def _fmt_range(lo: float, hi: float, unit: str, scale: float = 1.0) -> str:
    a, b = lo / scale, hi / scale
    return f"{a:.4g} {unit}" if a == b else f"[{a:.4g}, {b:.4g}] {unit}"


def check_domain(domain: Mapping[str, Any] | None, state: ModelState, *, mode: str | None = None,
                 times: Iterable[float] | None = None) -> list[Violation]:
    """Every way ``state`` leaves ``domain`` (empty when it lies inside).

    ``mode`` defaults to the domain's; ``times`` (s, model time) are the output times of a direct-mode
    solve, checked against the trained time span. A missing domain is one hard violation.
    """
    if not domain:
        return [Violation("applicability domain", "any model", "nothing recorded: the checkpoint was trained "
                          "before domains were recorded; retrain it or run `issm-emulator domain` on it", True)]
    if int(domain.get("version", 0)) > DOMAIN_VERSION:
        return [Violation("applicability domain", f"format {domain.get('version')}",
                          f"this issm-emulator reads up to {DOMAIN_VERSION}", True)]
    out: list[Violation] = []
    yts = float(state.yts)
    x, y = np.asarray(state.mesh.x, float), np.asarray(state.mesh.y, float)
    e = np.asarray(state.mesh.elements, np.int64)
    same_mesh = mesh_sha256(x, y, e) in set(domain.get("mesh_sha256", ()))
    if not same_mesh:
        on, covered = _glacier_overlap(domain, x, y, e)
        if on < SAME_GLACIER or covered < SAME_GLACIER:
            out.append(Violation("glacier (mesh outline)",
                                 f"{100 * on:.0f} % of the model's area on the trained footprint, covering "
                                 f"{100 * covered:.0f} % of it",
                                 f"the footprint {domain.get('footprint_sha256', '?')[:12]} (>= "
                                 f"{100 * SAME_GLACIER:.0f} % both ways)", True))
        lo, hi = domain["edge_length"]
        h = median_edge_length(x, y, e)
        if not lo * (1 - RESOLUTION_TOLERANCE) <= h <= hi * (1 + RESOLUTION_TOLERANCE):
            out.append(Violation("mesh resolution (median edge length)", f"{h / 1e3:.3g} km",
                                 _fmt_range(lo, hi, "km", 1e3) + f" (+-{100 * RESOLUTION_TOLERANCE:.0f} %)", True))
    lo, hi = domain["time_step"]
    dt = float(state.timestepping.time_step)
    if not lo * (1 - TIME_STEP_TOLERANCE) <= dt <= hi * (1 + TIME_STEP_TOLERANCE):
        out.append(Violation("time step (md.timestepping.time_step)", f"{dt / yts:.4g} yr",
                             _fmt_range(lo, hi, "yr", yts), True))
    if (mode or domain.get("mode")) == "direct" and times is not None:
        t = np.asarray(list(times), float)
        span = float(t.max() - state.timestepping.start_time) if t.size else 0.0
        top = float(domain["time_span"][1])
        if span > top * (1 + 1e-9) + 1e-6:
            out.append(Violation("time span of a direct-mode solve", f"{span / yts:.4g} yr",
                                 f"up to {top / yts:.4g} yr", True))
    trained = domain.get("physics", {})
    for k, v in physics_options(state).items():
        seen = trained.get(k)
        if seen is not None and v not in seen:
            out.append(Violation(f"physics option {k}", repr(v), " or ".join(map(repr, seen)), True))
    for k, v in _input_fields(state).items():
        rng = domain.get("ranges", {}).get(k)
        if rng is None or not v.size:
            continue
        lo, hi = rng
        pad = RANGE_MARGIN * (hi - lo) + RANGE_FLOOR * max(abs(lo), abs(hi))
        vmin, vmax = float(v.min()), float(v.max())
        if vmin < lo - pad or vmax > hi + pad:
            unit = _UNITS.get(k, "SI")
            out.append(Violation(f"input {k}", _fmt_range(vmin, vmax, unit),
                                 _fmt_range(lo, hi, unit) + f" (+-{100 * RANGE_MARGIN:.0f} %)", False))
    return out


def enforce(violations: Sequence[Violation], *, allow_extrapolation: bool = False, who: str = "emulator") -> None:
    """Refuse hard violations (:class:`~issm_emulator.errors.OutOfDomainError`, all of them in one message)
    unless ``allow_extrapolation``; warn :class:`~issm_emulator.errors.ExtrapolationWarning` for the rest."""
    hard = [v for v in violations if v.hard]
    soft = [v for v in violations if not v.hard]
    if hard and not allow_extrapolation:
        lines = "; ".join(str(v) for v in hard)
        raise OutOfDomainError(f"{who}: the model lies outside the checkpoint's applicability domain: {lines}. "
                               "Solve it with solver='fem', train an emulator for it (docs/own-model.md), or "
                               "pass allow_extrapolation=True to run anyway", tuple(hard))
    for v in (hard if allow_extrapolation else []) + soft:
        warnings.warn(ExtrapolationWarning(f"{who}: {v}; the emulator extrapolates"), stacklevel=3)


def describe_domain(domain: Mapping[str, Any] | None, yts: float = 365.0 * 24 * 3600) -> str:
    """One line for listings: glacier fingerprint, resolution, time step, physics."""
    if not domain:
        return "no domain recorded"
    lo, hi = domain["edge_length"]
    dlo, dhi = domain["time_step"]
    ph = domain.get("physics", {})
    front = "moving front" if True in ph.get("moving_front", []) else "fixed front"
    return (f"glacier {domain.get('footprint_sha256', '?')[:12]}, edges {_fmt_range(lo, hi, 'km', 1e3)}, "
            f"dt {_fmt_range(dlo, dhi, 'yr', yts)}, up to {domain['time_span'][1] / yts:.4g} yr, "
            f"friction {'/'.join(map(str, ph.get('friction_law', [])))}, {front}, melt "
            f"{'/'.join(map(str, ph.get('melt_parameterisation', [])))}")
