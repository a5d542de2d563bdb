"""Mass transport (ice-thickness evolution) as ISSM's ``MasstransportAnalysis``: implicit Euler, P1.

The thickness ``H`` obeys ``dH/dt + div(H u) = m_s - m_b``. One implicit Euler step of length ``dt`` solves,
for every test function ``phi_i``,

    int phi_i phi_j H' + dt int [phi_i phi_j div(u) + phi_i u.grad(phi_j)] H' + stab_ij H'
        = int phi_i (H + dt (m_s - m_b))

with the velocity ``u`` interpolated (P1) in each element; the consistent mass matrix is integrated exactly,
as ISSM's quadrature does. Stabilisations (``md.masstransport.stabilization``):

* 0: none;
* 1: ISSM's artificial diffusion ``dt int grad(phi_i) . D grad(phi_j)``, ``D = diag(h/2 |u_bar|,
  h/2 |v_bar|)`` with the element-mean velocity ``(u_bar, v_bar)`` and ``h = sqrt(2 area)``;
* 2: streamline upwinding ``dt tau int (u_bar.grad(phi_i))(u_bar.grad(phi_j))``, ``tau = h / (2 |u_bar|)``;
* 5: SUPG: the test function becomes ``phi_i + tau (u_bar.grad(phi_i) + phi_i div(u))`` in every term,
  mass and right-hand side included, ``tau = h / (2 (|u_bar| + 1e-8))``.

Basal melt ``m_b`` is chosen per element from the grounded fraction ``f`` of the element
(``md.groundingline.melt_interpolation``): ``'NoMeltOnPartiallyFloating'`` floating melt if ``f < 1e-8``,
grounded melt otherwise; ``'FullMeltOnPartiallyFloating'`` floating melt if ``f < 0.99999999``;
``'SubelementMelt1'`` ``(1-f) m_float + f m_grounded`` (``m_grounded`` alone if ``f > 0.999999999``).
Only elements with ice (one vertex with ``ice_levelset < 0``) are assembled; vertices outside them keep
their thickness. ``spcthickness`` values (not NaN) are Dirichlet conditions. After the solve the thickness
is floored at ``min_thickness`` and base and surface are updated (:func:`update_geometry`).

The sparse system is solved directly (SuperLU) unless the caller passes a :class:`TransportLinearSolver`,
which a transient keeps from step to step: it reuses the LU factors of an earlier step's matrix and
refines the solution to round-off (see the class), so its thickness agrees with the direct solve's to
~1e-15 relative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from issm_emulator.errors import ModelInputError, SolverDivergedError
from issm_emulator.physics.fe import P1Mesh, ReducedSystem, reduced_system, splu_natural

STABILIZATIONS = (0, 1, 2, 5)
#: SuperLU symmetric mode (diagonal pivots preferred, threshold partial pivoting kept) for the
#: structurally symmetric, mass-dominated transport matrix
_SYMMETRIC_MODE = True
MELT_INTERPOLATIONS = ("NoMeltOnPartiallyFloating", "FullMeltOnPartiallyFloating", "SubelementMelt1")


#: iterative refinement with earlier LU factors (:class:`TransportLinearSolver`) stops when the last
#: correction is below REFINE_RTOL times the solution (max norms): ~4 eps, a direct solve's round-off
REFINE_RTOL = 1.0e-15
#: ... or when the corrections stop halving (round-off reached) below REFINE_STALL_RTOL times the solution
REFINE_STALL_RTOL = 1.0e-13
#: refinement gives up (and the matrix is factorised) after this many corrections, or earlier when its
#: convergence rate predicts more; a solve that needed more than REFINE_REFACTOR corrections makes the
#: next solve factorise
REFINE_MAXITER = 12
REFINE_REFACTOR = 6


class TransportLinearSolver:
    """Solves the mass-transport systems of successive steps of one transient, reusing LU factors.

    The matrix ``M + dt (advection + stabilisation)`` changes from step to step only through the
    velocity, so the sparse LU factors of an earlier step's matrix are a close approximation of the
    current one: iterative refinement with them (``x <- x + LU_old^{-1} (b - A x)``, from
    ``x = LU_old^{-1} b``) contracts the error by ~1e-3 per correction and reaches the round-off of a
    direct solve (:data:`REFINE_RTOL`) in a few corrections, each costing one pair of triangular solves
    and one product with ``A`` instead of a factorisation (about a third of the mass transport's time on
    Pine Island 3 km). The matrix is factorised afresh (and its factors kept) at the first solve, when
    the free-dof system changes (another :class:`~issm_emulator.physics.fe.ReducedSystem`), when
    refinement stalls above round-off or would take more than :data:`REFINE_MAXITER` corrections, and
    after a solve that needed more than :data:`REFINE_REFACTOR`. Every solution is thus either a direct
    solve or refined to a correction below ~4 eps of the solution (backward stable, as the direct solve).

    Keep one per transient (not per mesh): ensemble members on one mesh advanced in lockstep have
    different matrices, and a run's results then do not depend on what else ran in the process.
    """

    def __init__(self):
        self.lu = None
        self.system: ReducedSystem | None = None
        self.refactor = True
        self.stats = {"factorizations": 0, "refined_solves": 0, "corrections": 0}

    def _direct(self, A: sp.csc_matrix, b: np.ndarray, system: ReducedSystem | None) -> np.ndarray:
        self.lu = None
        lu = splu_natural(A, symmetric=_SYMMETRIC_MODE)  # RuntimeError when exactly singular
        self.lu, self.system, self.refactor = lu, system, False
        self.stats["factorizations"] += 1
        return lu.solve(b)

    def solve(self, A: sp.csc_matrix, b: np.ndarray, system: ReducedSystem | None = None) -> np.ndarray:
        """``A^{-1} b`` for the reduced system ``system`` (None: factorise unless ``A``'s shape matches the
        kept factors). Raises RuntimeError when ``A`` is exactly singular."""
        if (self.lu is None or self.refactor or system is not self.system
                or self.lu.shape != A.shape):
            return self._direct(A, b, system)
        x, its = _refine(A, b, self.lu.solve)
        if x is None:
            return self._direct(A, b, system)
        self.stats["refined_solves"] += 1
        self.stats["corrections"] += its
        self.refactor = its > REFINE_REFACTOR
        return x


def _max_abs(a: np.ndarray) -> float:
    return float(np.max(np.abs(a))) if a.size else 0.0


def _refine(A, b: np.ndarray, lu_solve) -> tuple[np.ndarray | None, int]:
    """Iterative refinement of ``A x = b`` with the approximate inverse ``lu_solve``; ``(x, corrections)``,
    or ``(None, k)`` when it does not reach round-off (see :class:`TransportLinearSolver`)."""
    x = lu_solve(b)
    xn = _max_abs(x)
    if not math.isfinite(xn):
        return None, 0
    if xn == 0.0 and _max_abs(b) == 0.0:
        return x, 0
    prev = math.inf
    for k in range(1, REFINE_MAXITER + 1):
        dx = lu_solve(b - A @ x)
        x += dx
        dn, xn = _max_abs(dx), _max_abs(x)
        if not (math.isfinite(dn) and math.isfinite(xn)):
            return None, k
        if dn <= REFINE_RTOL * xn:
            return x, k
        if dn > 0.5 * prev:  # no longer contracting: round-off reached, or diverging
            return (x, k) if dn <= REFINE_STALL_RTOL * xn else (None, k)
        if k >= 2 and k + math.log(REFINE_RTOL * xn / dn) / math.log(dn / prev) > REFINE_MAXITER:
            return None, k  # the rate so far will not get there in time
        prev = dn
    return None, REFINE_MAXITER


@dataclass(frozen=True)
class MasstransportResult:
    """New thickness (m) after one step, and how much ``min_thickness`` added at each vertex (m)."""

    thickness: np.ndarray
    thickness_residual: np.ndarray


def element_basal_melt(pmesh: P1Mesh, grounded_fraction: np.ndarray, groundedice_melt: np.ndarray,
                       floatingice_melt: np.ndarray,
                       melt_interpolation: str = "NoMeltOnPartiallyFloating") -> np.ndarray:
    """(ne, 3) basal melt rate at the three vertices of every element, as applied in that element.

    Parameters
    ----------
    grounded_fraction : (ne,) grounded area fraction of each element (0..1)
    groundedice_melt, floatingice_melt : (nv,) melt rates (m/s)
    """
    phi = np.asarray(grounded_fraction, float)[:, None]
    e = pmesh.elements
    gmb = np.asarray(groundedice_melt, float)[e]
    fmb = np.asarray(floatingice_melt, float)[e]
    if melt_interpolation == "NoMeltOnPartiallyFloating":
        return np.where(phi < 1e-8, fmb, gmb)
    if melt_interpolation == "FullMeltOnPartiallyFloating":
        return np.where(phi < 0.99999999, fmb, gmb)
    if melt_interpolation == "SubelementMelt1":
        return np.where(phi > 0.999999999, gmb, (1.0 - phi) * fmb + phi * gmb)
    raise ModelInputError("md.groundingline.melt_interpolation", f"one of {', '.join(MELT_INTERPOLATIONS)}",
                          repr(melt_interpolation))


def _element_matrices(pmesh: P1Mesh, vx: np.ndarray, vy: np.ndarray, dt: float,
                      stabilization: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(ne, 3, 3) element matrices, and for SUPG the (ne, 3) test-function weights of the RHS."""
    e = pmesh.elements
    area = pmesh.abs_area
    dx, dy = pmesh.dphidx, pmesh.dphidy  # (ne, 3)
    M = pmesh.mass_element  # (ne, 3, 3)
    vxe, vye = vx[e], vy[e]  # (ne, 3)
    px, py = vxe * dx, vye * dy
    # (ne,) constant for P1; column sums: (vxe * dx).sum(1) + (vye * dy).sum(1) bit for bit, faster
    div = (px[:, 0] + px[:, 1] + px[:, 2]) + (py[:, 0] + py[:, 1] + py[:, 2])
    # int phi_i u dA = (M u)_i, exact (the integrand is quadratic)
    mvx = np.einsum("eij,ej->ei", M, vxe)
    mvy = np.einsum("eij,ej->ei", M, vye)
    K = M + dt * (div[:, None, None] * M + mvx[:, :, None] * dx[:, None, :] + mvy[:, :, None] * dy[:, None, :])
    ubar, vbar = pmesh.element_mean(vx), pmesh.element_mean(vy)  # = vxe.mean(1), bit for bit
    h = pmesh.h
    if stabilization == 0:
        return K, None
    if stabilization == 1:
        kx = dt * area * h / 2.0 * np.abs(ubar)
        ky = dt * area * h / 2.0 * np.abs(vbar)
        K = K + kx[:, None, None] * dx[:, :, None] * dx[:, None, :] + ky[:, None, None] * dy[:, :, None] * dy[:, None, :]
        return K, None
    if stabilization == 2:
        tau = h / (2.0 * (np.hypot(ubar, vbar) + 1e-8))
        adv = ubar[:, None] * dx + vbar[:, None] * dy  # (ne, 3) u_bar . grad(phi_i)
        K = K + (dt * tau * area)[:, None, None] * adv[:, :, None] * adv[:, None, :]
        return K, None
    if stabilization == 5:
        tau = h / (2.0 * (np.hypot(ubar, vbar) + 1e-8))
        adv = ubar[:, None] * dx + vbar[:, None] * dy
        a3 = (area / 3.0)[:, None]
        t = tau[:, None, None]
        tdiv = (tau * div)[:, None, None]
        # mass: tau int phi_j (u_bar.grad phi_i) + tau div int phi_i phi_j
        K = K + t * (a3 * adv)[:, :, None] * np.ones((1, 1, 3)) + tdiv * M
        # advection: dt tau [ area (u.grad phi_j)(u.grad phi_i) + div area/3 (u.grad phi_j)
        #                     + div area/3 (u.grad phi_i) + div^2 M_ij ]
        K = K + dt * (t * (area[:, None, None] * adv[:, :, None] * adv[:, None, :])
                      + tdiv * (a3[:, :, None] * adv[:, None, :])
                      + tdiv * (a3[:, :, None] * adv[:, :, None]) * np.ones((1, 1, 3))
                      + (tdiv * div[:, None, None]) * M)
        # RHS weights: int f (phi_i + tau u.grad phi_i + tau phi_i div)
        return K, np.stack([tau * adv[:, i] for i in range(3)], axis=1)
    raise ModelInputError("md.masstransport.stabilization", f"one of {STABILIZATIONS}", repr(stabilization))


def solve_thickness(pmesh: P1Mesh, *, thickness, vx, vy, dt: float, smb, groundedice_melt, floatingice_melt,
                    grounded_fraction, ice_elements=None, spcthickness=None, min_thickness: float = 1.0,
                    stabilization: int = 1,
                    melt_interpolation: str = "NoMeltOnPartiallyFloating",
                    linear_solver: TransportLinearSolver | None = None) -> MasstransportResult:
    """One implicit-Euler mass-transport step (see the module docstring).

    Parameters
    ----------
    pmesh : the mesh
    thickness : (nv,) thickness at the start of the step (m)
    vx, vy : (nv,) depth-averaged velocity (m/s)
    dt : time step (s)
    smb, groundedice_melt, floatingice_melt : (nv,) rates (m/s ice equivalent)
    grounded_fraction : (ne,) grounded fraction of each element
    ice_elements : (ne,) bool, elements that hold ice (default: all)
    spcthickness : (nv,) Dirichlet thickness, NaN = free (default: none)
    min_thickness : floor applied after the solve (m)
    stabilization : 0, 1, 2 or 5
    melt_interpolation : see :func:`element_basal_melt`
    linear_solver : a transient's :class:`TransportLinearSolver` (kept across its steps); None: a direct
        sparse solve
    """
    nv = pmesh.nv
    H = np.asarray(thickness, float)
    vx = np.asarray(vx, float)
    vy = np.asarray(vy, float)
    K_e, supg_w = _element_matrices(pmesh, vx, vy, float(dt), int(stabilization))
    mb = element_basal_melt(pmesh, grounded_fraction, groundedice_melt, floatingice_melt, melt_interpolation)
    e = pmesh.elements
    f_e = H[e] + dt * (np.asarray(smb, float)[e] - mb)  # (ne, 3) nodal values of H + dt (ms - mb)
    F_e = np.einsum("eij,ej->ei", pmesh.mass_element, f_e)
    if supg_w is not None:
        area = pmesh.abs_area
        integral_f = f_e.sum(1) * area / 3.0  # int f dA
        F_e = F_e + supg_w * integral_f[:, None]  # tau (u_bar.grad phi_i) int f
        # tau div int f phi_i
        ubar, vbar = pmesh.element_mean(vx), pmesh.element_mean(vy)
        tau = pmesh.h / (2.0 * (np.hypot(ubar, vbar) + 1e-8))
        div = (vx[e] * pmesh.dphidx).sum(1) + (vy[e] * pmesh.dphidy).sum(1)
        F_e = F_e + (tau * div)[:, None] * np.einsum("eij,ej->ei", pmesh.mass_element, f_e)
    if ice_elements is not None:
        ice = np.asarray(ice_elements, bool)
        if not ice.all():  # (with ice everywhere the mask would change nothing)
            K_e = K_e * ice[:, None, None]
            F_e = F_e * ice[:, None]
        # vertices of an ice element, kept while the ice domain is unchanged
        active = pmesh.memo("masstransport_active", (ice,),
                            lambda: np.bincount(e[ice].ravel(), minlength=nv) > 0, keep=1)
    else:
        active = np.ones(nv, dtype=bool)
    F = pmesh.assemble_vector(F_e)

    fixed = ~active
    values = np.where(fixed, H, 0.0)
    if spcthickness is not None:
        spc = np.asarray(spcthickness, float)
        has = ~np.isnan(spc)
        fixed = fixed | has
        values = np.where(has, spc, values)
    free = ~fixed
    Hn = values.copy()
    if free.any():
        # free-dof blocks assembled straight from the element matrices, in the mesh's fill-reducing order
        rs = reduced_system(pmesh, free, 1)
        Kff, Kfs = rs.assemble(K_e)
        rhs = F[rs.dofs]
        if rs.fixed.size:
            rhs = rhs - Kfs @ values[rs.fixed]
        try:
            if linear_solver is None:
                Hn[rs.dofs] = splu_natural(Kff, symmetric=_SYMMETRIC_MODE).solve(rhs)
            else:
                Hn[rs.dofs] = linear_solver.solve(Kff, rhs, rs)
        except RuntimeError as exc:  # exactly singular
            raise SolverDivergedError(f"mass transport: singular matrix ({exc})", residual=float("nan")) from exc
    if not np.all(np.isfinite(Hn)):
        raise SolverDivergedError("mass transport: NaN or inf in the new thickness", residual=float("nan"))
    residual = np.where(Hn < min_thickness, min_thickness - Hn, 0.0)
    Hn = np.maximum(Hn, min_thickness)
    return MasstransportResult(Hn, residual)


def update_geometry(thickness, *, base, surface, ocean_levelset, rho_ice: float, rho_water: float,
                    sealevel=0.0, bed=None, isgroundingline: bool = False,
                    hydrostatic_adjustment: str = "Absolute",
                    old_thickness=None) -> tuple[np.ndarray, np.ndarray]:
    """Base and surface after a mass-transport step (ISSM's ``InputUpdateFromSolution``).

    Grounded vertices (``ocean_levelset > 0``): ``b = bed`` (if ``isgroundingline``) or unchanged, and
    ``s = b + H``. Floating vertices, ``'Absolute'``: ``b = z_sl - di H``, ``s = z_sl + (1 - di) H``;
    ``'Incremental'``: ``b = b_old - di dH + z_sl``, ``s = s_old + (1 - di) dH + z_sl`` with ``dH`` the change
    of thickness, as ISSM writes it. Returns ``(base, surface)``.
    """
    H = np.asarray(thickness, float)
    b_old = np.asarray(base, float)
    s_old = np.asarray(surface, float)
    sl = np.broadcast_to(np.asarray(sealevel, float), H.shape)
    di = rho_ice / rho_water
    grounded = np.asarray(ocean_levelset, float) > 0.0
    if isgroundingline:
        if bed is None or np.any(np.isnan(np.asarray(bed, float)[grounded])):
            raise ModelInputError("md.geometry.bed", "a finite bed elevation at grounded vertices when "
                                  "md.transient.isgroundingline is 1", "NaN values")
        gb = np.asarray(bed, float)
    else:
        gb = b_old
    if hydrostatic_adjustment == "Absolute":
        fb = sl - di * H
        fs = (1.0 - di) * H + sl
    elif hydrostatic_adjustment == "Incremental":
        if old_thickness is None:
            raise ValueError("update_geometry: 'Incremental' needs old_thickness")
        dH = H - np.asarray(old_thickness, float)
        fb = b_old - di * dH + sl
        fs = s_old + (1.0 - di) * dH + sl
    else:
        raise ModelInputError("md.masstransport.hydrostatic_adjustment", "'Absolute' or 'Incremental'",
                              repr(hydrostatic_adjustment))
    new_b = np.where(grounded, gb, fb)
    new_s = np.where(grounded, gb + H, fs)
    return new_b, new_s
