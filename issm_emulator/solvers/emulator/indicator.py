"""A physics-based error indicator for emulated velocities, and the ``fem`` fallback it drives.

Two measures of how far an emulated velocity ``u`` is from the SSA momentum balance on the step's geometry,
both from this package's own ``fem`` assembly (:func:`issm_emulator.physics.ssa.solve_ssa`):

* the **relative residual** ``r = ||K(u) u - F|| / ||F||`` (free degrees of freedom): the quantity ISSM's
  ``md.stressbalance.restol`` bounds;
* the **Picard correction** ``c = RMS |u_1 - u|``, where ``u_1`` solves ``K(u) u_1 = F``: the residual
  measured through the inverse stiffness, in velocity units. One linear solve (warm factors).

``r`` is dominated by short-wavelength velocity errors, which the stiffness amplifies, and ranks the true
error poorly on the published Pine Island weights (Spearman 0.1-0.6); ``c`` ranks it well (0.76-0.92),
see ``docs/applicability.md`` and ``benchmarks/indicator.py``. The velocity-error estimate is therefore
``e = exp(a) (c [m/yr])^b``, a power law fitted (:func:`calibrate`) on the validation runs of the
checkpoint's training ensemble and stored in it (uncalibrated: ``e = c``).

Requested outputs (``md.transient.requested_outputs``): ``EmulatorResidual`` (``r``, per step),
``EmulatorVelocityError`` (``e``, m/yr, per step), ``EmulatorVelocityCorrection`` (``|u_1 - u|`` per
vertex, m/yr). With ``fallback='fem'``, a step whose ``e`` exceeds ``fallback_tol`` (m/yr) is re-solved by
``fem``'s SSA starting from the emulated velocity (step mode); direct mode restarts ``fem`` from the last
accepted output.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from issm_emulator.errors import SolverDivergedError
from issm_emulator.physics.fe import P1Mesh
from issm_emulator.physics.ssa import solve_ssa
from issm_emulator.state import ModelState

__all__ = ["FALLBACKS", "INDICATOR_OUTPUTS", "Indicator", "calibrate", "spearman"]

#: requested-output names the emulators compute
INDICATOR_OUTPUTS = ("EmulatorResidual", "EmulatorVelocityError", "EmulatorVelocityCorrection")
FALLBACKS = (None, "fem")
#: smallest exponent of the calibration's power law: the estimate must grow with the correction
MIN_EXPONENT = 0.1


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size < 3:
        return math.nan
    return float(spearmanr(a, b).statistic)


def calibrate(corrections: Sequence[float], errors: Sequence[float], *, yts: float,
              residuals: Sequence[float] | None = None) -> dict[str, Any]:
    """Fit ``log e = a + b log c`` (least squares) to pairs of Picard correction ``c`` and true RMS velocity
    error ``e`` (both m/s); returns the JSON calibration stored in a checkpoint (``e``, ``c`` in m/yr), with
    the rank correlations of ``c`` (and of the relative ``residuals`` when given) with ``e``. The estimate
    must increase with ``c``: when the fitted exponent is below :data:`MIN_EXPONENT`, ``e = exp(a) c`` with
    ``a`` the mean log ratio (the validation data then does not rank the errors; the table in
    docs/results.md says for which checkpoints)."""
    c = np.asarray(corrections, float) * yts
    e = np.asarray(errors, float) * yts
    ok = np.isfinite(c) & np.isfinite(e) & (c > 0) & (e > 0)
    if ok.sum() < 3:
        raise ValueError("calibrate: fewer than 3 usable (correction, error) pairs")
    lc, le = np.log(c[ok]), np.log(e[ok])
    b, a = np.polyfit(lc, le, 1)
    kind = "power-law of the Picard correction"
    if not b >= MIN_EXPONENT:  # a flat or decreasing fit would rank errors backwards: scale c instead
        b, a = 1.0, float(np.mean(le - lc))
        kind = "proportional to the Picard correction (the power law fitted was not increasing)"
    pred = a + b * lc
    out = {"kind": kind, "a": float(a), "b": float(b), "unit": "m yr^-1",
           "n": int(ok.sum()), "spearman": spearman(c[ok], e[ok]),
           "log_rms": float(np.sqrt(np.mean((le - pred) ** 2))),
           "correction_range_m_per_yr": [float(c[ok].min()), float(c[ok].max())]}
    if residuals is not None:
        out["spearman_residual"] = spearman(np.asarray(residuals, float)[ok], e[ok])
    return out


class Indicator:
    """Evaluates the indicator of emulated velocities and, with a fallback, re-solves steps with ``fem``.

    Parameters
    ----------
    requested : the state's requested outputs (the indicator is computed only when one of
        :data:`INDICATOR_OUTPUTS` is requested or a fallback is on)
    calibration : the checkpoint's ``indicator`` entry (None: ``e = c``)
    fallback, tol : ``'fem'`` or None, and the estimated velocity error (m/yr) above which a step falls back
    """

    def __init__(self, requested: Sequence[str], calibration: Mapping[str, Any] | None, *,
                 fallback: str | None = None, tol: float = 0.0):
        self.requested = [n for n in INDICATOR_OUTPUTS if n in requested]
        self.calibration = dict(calibration) if calibration else None
        self.fallback = fallback
        self.tol = float(tol)
        self.fallback_steps = 0
        self.evaluated = 0

    @property
    def active(self) -> bool:
        return bool(self.requested) or self.fallback is not None

    def estimate(self, correction_myr: float) -> float:
        """The estimated RMS velocity error (m/yr) for a Picard correction (m/yr)."""
        c = self.calibration
        if not c:
            return float(correction_myr)
        return math.exp(c["a"] + c["b"] * math.log(correction_myr)) if correction_myr > 0 else 0.0

    def evaluate(self, state: ModelState, pmesh: P1Mesh, geometry: Mapping[str, np.ndarray], vx: np.ndarray,
                 vy: np.ndarray) -> dict[str, Any]:
        """The indicator of ``(vx, vy)`` on ``geometry`` (thickness, surface, base, ocean_levelset,
        ice_levelset): ``residual`` (relative), ``correction`` (per vertex, m/s), ``estimate`` (m/yr); NaN
        where the geometry admits no SSA solution (a fallback then lets ``fem`` report why)."""
        self.evaluated += 1
        one = state.replace(stressbalance=replace(state.stressbalance, maxiter=1))
        try:
            res = solve_ssa(one, vx0=vx, vy0=vy, mesh=pmesh, isnewton=0, **geometry)
        except SolverDivergedError:  # e.g. an emulated geometry with an unconstrained floating island
            nan = np.full(np.shape(vx), np.nan)
            return {"residual": math.nan, "correction": nan, "estimate": math.nan, "correction_rms": math.nan}
        corr = np.hypot(res.vx - vx, res.vy - vy)
        rms = float(np.sqrt(np.mean(corr * corr))) * state.yts
        return {"residual": float(res.residual), "correction": corr, "estimate": self.estimate(rms),
                "correction_rms": rms / state.yts}

    def outputs(self, ev: Mapping[str, Any], yts: float) -> dict[str, Any]:
        """The requested indicator outputs of one step (SI: velocities in m/s)."""
        out: dict[str, Any] = {}
        if "EmulatorResidual" in self.requested:
            out["EmulatorResidual"] = float(ev["residual"])
        if "EmulatorVelocityError" in self.requested:
            out["EmulatorVelocityError"] = float(ev["estimate"]) / yts
        if "EmulatorVelocityCorrection" in self.requested:
            out["EmulatorVelocityCorrection"] = np.asarray(ev["correction"], float)
        return out

    def exceeds(self, ev: Mapping[str, Any] | None) -> bool:
        return self.fallback is not None and ev is not None and not (float(ev["estimate"]) <= self.tol)

    def resolve(self, state: ModelState, pmesh: P1Mesh, geometry: Mapping[str, np.ndarray], vx: np.ndarray,
                vy: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, float]:
        """``fem``'s SSA from ``(vx, vy)``: ``(vx, vy, iterations, residual)``; counted as a fallback step."""
        self.fallback_steps += 1
        res = solve_ssa(state, vx0=vx, vy0=vy, mesh=pmesh, **geometry)
        return res.vx, res.vy, int(res.niter), float(res.residual)
