"""Shelfy-stream approximation (SSA) stress balance on linear triangles, as ISSM solves it.

One job: the SSA momentum balance, its assembly and its nonlinear solve (and the residual of a given
velocity, which the emulators' error indicator uses).

Weak form (x-equation; the y-equation is symmetric), summed over the elements that hold ice::

    int mu H [4 u_x phi_x + u_y phi_y + 2 v_y phi_x + v_x phi_y] dA + int alpha2 u phi dA
        = -int rho_i g H s_x phi dA + int_front p n_x phi ds

with Glen's law mu = B / (2 eps_e^((n-1)/n)), eps_e^2 = exx^2 + eyy^2 + exy^2 + exx eyy,
exy = (u_y + v_x)/2 (mu = 1e14/2 Pa s where eps_e == 0), B interpolated at the quadrature points,
and the front pressure p = rho_i g H^2/2 + rho_w g [min(0, s - z_sl)^2 - min(0, b - z_sl)^2]/2 on the edge
joining the two ice-free vertices of every element that has exactly one ice vertex. Viscous, friction and
driving-stress terms use ISSM's 3-point (degree-2) rule, the front load 3-point Gauss-Legendre.

The nonlinearity is solved by Picard iteration with ISSM's stopping rule (``solutionsequence_nonlinear``
and ``convergence``): at iteration k, K(u_{k-1}) u_k = F; stop when

    ||K(u_{k-1}) u_{k-1} - F||_f / (||F||_f + 1e-14) < restol
    and (reltol NaN or ||u_k - u_{k-1}||_f / (||u_{k-1}||_f + 1e-14) < reltol)
    and (abstol NaN or max|u_k - u_{k-1}|_f < abstol)

over the free degrees of freedom (F reduced by the Dirichlet values), or after ``maxiter`` iterations.
Newton's method (``isnewton`` 1, or 2 = Picard until restol is met, then Newton) uses the exact Jacobian of
the viscous and friction terms with a backtracking line search and the same stopping rule.

Linear algebra: the free-dof blocks are filled directly from the element matrices
(:class:`~issm_emulator.physics.fe.ReducedSystem`, cached per mesh and free-dof set); each Picard system is
solved by conjugate gradients preconditioned with the sparse LU factors of an earlier Picard matrix, to a
relative residual of 1e-13 (:class:`_PicardLinearSolver`), i.e. to round-off of a direct solve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from issm_emulator.errors import ModelInputError, SolverDivergedError
from issm_emulator.physics import masks
from issm_emulator.physics.fe import (
    GAUSS2_POINTS,
    GAUSS2_WEIGHTS,
    P1Mesh,
    ReducedSystem,
    reduced_system,
    splu_natural,
)
from issm_emulator.physics.friction import alpha2_at_points
from issm_emulator.state import ModelState

__all__ = [
    "SSAResult",
    "deviatoric_stress",
    "effective_viscosity",
    "solve_ssa",
    "ssa_load_vector",
    "ssa_residual",
    "strain_rates",
]

#: viscosity ISSM uses where the effective strain rate is exactly zero (Pa s)
MU_ZERO_STRAIN = 1.0e14 / 2.0
#: 3-point Gauss-Legendre rule on [0, 1] (position along the edge, weight)
_GL3_S = np.array([0.5 - 0.5 * math.sqrt(0.6), 0.5, 0.5 + 0.5 * math.sqrt(0.6)])
_GL3_W = np.array([5.0, 8.0, 5.0]) / 18.0
#: isnewton = 2 switches from Picard to Newton once the relative residual is below this times restol
_PICARD_TO_NEWTON = 10.0
_FRICTION_STYLES = ("SubelementFriction1", "SubelementFriction2", "NoFrictionOnPartiallyFloating")


@dataclass
class SSAResult:
    """Outcome of :func:`solve_ssa`: velocities (m/s, per vertex), iterations done, the last relative
    residual ||K(u_{k-1})u_{k-1} - F|| / ||F|| (free dofs) and whether the stopping rule was met."""

    vx: np.ndarray
    vy: np.ndarray
    niter: int
    residual: float
    converged: bool
    vertex_residual: np.ndarray | None = None


# --------------------------------------------------------------------------------------------------------
# kinematics
# --------------------------------------------------------------------------------------------------------
def strain_rates(mesh: P1Mesh, vx: np.ndarray, vy: np.ndarray) -> dict[str, np.ndarray]:
    """Per-element (constant for P1) strain rates (1/s).

    Returns ``exx``, ``eyy``, ``exy`` = (u_y + v_x)/2 and the effective strain rate
    ``eeff`` = sqrt(exx^2 + eyy^2 + exy^2 + exx eyy), each of shape (ne,). Nodal values as ISSM writes
    them are ``mesh.nodal_average(...)`` of these.
    """
    ue = np.asarray(vx, dtype=float)[mesh.elements]
    ve = np.asarray(vy, dtype=float)[mesh.elements]
    dx, dy = mesh.dphidx, mesh.dphidy
    exx = np.einsum("ek,ek->e", dx, ue)
    eyy = np.einsum("ek,ek->e", dy, ve)
    exy = 0.5 * (np.einsum("ek,ek->e", dy, ue) + np.einsum("ek,ek->e", dx, ve))
    eeff = np.sqrt(exx * exx + eyy * eyy + exy * exy + exx * eyy)
    return {"exx": exx, "eyy": eyy, "exy": exy, "eeff": eeff}


def _n_per_element(n: np.ndarray | float, ne: int) -> np.ndarray:
    n = np.asarray(n, dtype=float)
    if n.ndim == 0 or n.size == 1:
        return np.full(ne, float(n.ravel()[0]))
    if n.shape != (ne,):
        raise ModelInputError("md.materials.rheology_n", f"{ne} values (one per element)", f"shape {n.shape}")
    return n


def _viscosity_from_eeff(B: np.ndarray, eeff: np.ndarray, n: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = np.where(n == 1.0, 0.5 * B, B / (2.0 * eeff ** ((n - 1.0) / n)))
    return np.where((eeff == 0.0) & (n != 1.0), MU_ZERO_STRAIN, mu)


def effective_viscosity(mesh: P1Mesh, vx: np.ndarray, vy: np.ndarray, B: np.ndarray,
                        n: np.ndarray | float) -> np.ndarray:
    """(ne,) Glen viscosity mu = B / (2 eps_e^((n-1)/n)) (Pa s) with B the element mean of the nodal B."""
    eeff = strain_rates(mesh, vx, vy)["eeff"]
    return _viscosity_from_eeff(mesh.element_mean(B), eeff, _n_per_element(n, mesh.ne))


def deviatoric_stress(mesh: P1Mesh, vx: np.ndarray, vy: np.ndarray, B: np.ndarray, n: np.ndarray | float,
                      *, nodal: bool = False) -> dict[str, np.ndarray]:
    """Deviatoric stresses tau_ij = 2 mu eps_ij (Pa): ``xx``, ``yy``, ``xy`` and ``effective``
    (sqrt(txx^2 + tyy^2 + txy^2 + txx tyy)).

    Per element (B = element mean of the nodal B) by default. With ``nodal=True`` returns ISSM's nodal
    output: each element evaluates tau at its vertices with the vertex B (strain rate constant), and a
    vertex takes the arithmetic mean over the elements around it.
    """
    e = strain_rates(mesh, vx, vy)
    nn = _n_per_element(n, mesh.ne)
    if not nodal:
        mu = _viscosity_from_eeff(mesh.element_mean(B), e["eeff"], nn)
        txx, tyy, txy = 2 * mu * e["exx"], 2 * mu * e["eyy"], 2 * mu * e["exy"]
    else:
        Bv = np.asarray(B, dtype=float)[mesh.elements]  # (ne, 3)
        mu = _viscosity_from_eeff(Bv, e["eeff"][:, None], nn[:, None])  # (ne, 3)
        cnt = np.bincount(mesh.elements.ravel(), minlength=mesh.nv).astype(float)

        def avg(t: np.ndarray) -> np.ndarray:
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.bincount(mesh.elements.ravel(), weights=t.ravel(), minlength=mesh.nv) / cnt

        txx = avg(2 * mu * e["exx"][:, None])
        tyy = avg(2 * mu * e["eyy"][:, None])
        txy = avg(2 * mu * e["exy"][:, None])
    eff = np.sqrt(txx * txx + tyy * tyy + txy * txy + txx * tyy)
    return {"xx": txx, "yy": tyy, "xy": txy, "effective": eff}


# --------------------------------------------------------------------------------------------------------
# assembly helpers
# --------------------------------------------------------------------------------------------------------
def _viscous_blocks(dx: np.ndarray, dy: np.ndarray, F: np.ndarray) -> np.ndarray:
    """(ne, 6, 6) ISSM SSA viscous element matrices with factor F = int mu H dA (per element)."""
    xx = dx[:, :, None] * dx[:, None, :]
    yy = dy[:, :, None] * dy[:, None, :]
    xy = dx[:, :, None] * dy[:, None, :]  # dx_i dy_j
    ke = np.empty((dx.shape[0], 6, 6))
    Fc = F[:, None, None]
    ke[:, :3, :3] = Fc * (4.0 * xx + yy)
    ke[:, :3, 3:] = Fc * (2.0 * xy + xy.transpose(0, 2, 1))
    ke[:, 3:, :3] = Fc * (2.0 * xy.transpose(0, 2, 1) + xy)
    ke[:, 3:, 3:] = Fc * (xx + 4.0 * yy)
    return ke


def _viscous_gather(mesh: P1Mesh, rs: ReducedSystem) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Gather matrices V with ``K_ff.data = V_ff @ F`` (and K_fs) for the viscous element matrices
    ``F_e Kgeom_e`` (:func:`_viscous_blocks` with F = 1 is constant per mesh), built once per system."""
    V = rs.cache.get("ssa_viscous")
    if V is None:
        kg = _viscous_blocks(mesh.dphidx, mesh.dphidy, np.ones(mesh.ne)).ravel()
        ent = np.arange(kg.size)
        V = rs.gather(ent, ent // 36, mesh.ne, weights=kg)
        rs.cache["ssa_viscous"] = V
    return V


def _front_load(mesh: P1Mesh, elements_ice_ls: np.ndarray, thickness: np.ndarray, base: np.ndarray,
                rho_ice: float, rho_water: float, g: float, sealevel: float) -> np.ndarray:
    """(2 nv,) ice-front load: int_edge p n phi ds on the front edge of every front element."""
    nv = mesh.nv
    out = np.zeros(2 * nv)
    elem, loc, _ = masks.front_edges(mesh.elements, elements_ice_ls)
    if elem.size == 0:
        return out
    va = mesh.elements[elem, loc[:, 0]]
    vb = mesh.elements[elem, loc[:, 1]]
    xa, ya, xb, yb = mesh.x[va], mesh.y[va], mesh.x[vb], mesh.y[vb]
    length = np.hypot(xb - xa, yb - ya)
    # outward normal of the edge a -> b, oriented away from the element's ice vertex
    nx, ny = (yb - ya) / length, (xa - xb) / length
    sign = np.sign(mesh.area[elem])  # clockwise elements flip the counter-clockwise convention
    nx, ny = nx * sign, ny * sign
    s = _GL3_S[None, :]
    Hg = thickness[va][:, None] * (1 - s) + thickness[vb][:, None] * s
    bg = base[va][:, None] * (1 - s) + base[vb][:, None] * s
    surf_uw = np.minimum(0.0, Hg + bg - sealevel)
    base_uw = np.minimum(0.0, bg - sealevel)
    p = 0.5 * g * rho_water * (surf_uw ** 2 - base_uw ** 2) + 0.5 * g * rho_ice * Hg ** 2
    w = _GL3_W[None, :] * length[:, None]
    fa = np.sum(p * w * (1 - s), axis=1)
    fb = np.sum(p * w * s, axis=1)
    np.add.at(out, va, fa * nx)
    np.add.at(out, vb, fb * nx)
    np.add.at(out, va + nv, fa * ny)
    np.add.at(out, vb + nv, fb * ny)
    return out


def ssa_load_vector(state: ModelState, mesh: P1Mesh, *, thickness: np.ndarray, surface: np.ndarray,
                    base: np.ndarray, ice_levelset: np.ndarray) -> np.ndarray:
    """(2 nv,) right-hand side F (blocked [x; y]): driving stress -rho_i g H grad(s) plus the ice-front
    load, over the elements that hold ice."""
    mat = state.materials
    g = float(state.g)
    ice = masks.ice_elements(mesh.elements, ice_levelset)
    sx, sy = mesh.gradient(surface)
    area = np.abs(mesh.area)
    Hg = mesh.at_points(thickness, GAUSS2_POINTS)  # (ne, 3)
    # int H phi_i dA with the degree-2 rule
    hphi = area[:, None] * np.einsum("g,eg,gi->ei", GAUSS2_WEIGHTS, Hg, GAUSS2_POINTS)
    hphi[~ice] = 0.0
    coef = -mat.rho_ice * g
    F = np.concatenate([mesh.assemble_vector(coef * sx[:, None] * hphi),
                        mesh.assemble_vector(coef * sy[:, None] * hphi)])
    F += _front_load(mesh, ice_levelset, np.asarray(thickness, float), np.asarray(base, float),
                     mat.rho_ice, mat.rho_water, g, float(state.sealevel))
    return F


def _friction_setup(state: ModelState, mesh: P1Mesh, ocean_levelset: np.ndarray, ice: np.ndarray):
    """Elements with basal friction and their quadrature (barycentric points, area weights)."""
    gl = state.groundingline
    migration = masks.check_migration(gl.migration)
    style = gl.friction_interpolation
    if style not in _FRICTION_STYLES:
        raise ModelInputError("md.groundingline.friction_interpolation", f"one of {', '.join(_FRICTION_STYLES)}",
                              repr(style))
    fl = masks.floating_elements(mesh.elements, ocean_levelset, migration)
    elem = np.flatnonzero(ice & ~fl)
    el = mesh.elements[elem]
    area = np.abs(mesh.area[elem])
    if style == "SubelementFriction2":
        bary, w = masks.subelement_gauss(el, ocean_levelset, GAUSS2_POINTS, GAUSS2_WEIGHTS)
        olg = np.einsum("ek,egk->eg", np.asarray(ocean_levelset, float)[el], bary)
        w = np.where(olg < 0.0, 0.0, w)
    else:
        phi = masks.grounded_portion(el, ocean_levelset)
        if style == "NoFrictionOnPartiallyFloating":
            phi = np.where(phi < 0.99999999, 0.0, 1.0)
        bary = np.broadcast_to(GAUSS2_POINTS[None], (elem.size, 3, 3))
        w = GAUSS2_WEIGHTS[None, :] * phi[:, None]
    keep = np.any(w > 0.0, axis=1)
    return elem[keep], np.ascontiguousarray(bary[keep]), w[keep] * area[keep, None]


# --------------------------------------------------------------------------------------------------------
# the solver
# --------------------------------------------------------------------------------------------------------
def _factorize(A: sp.csc_matrix):
    try:
        return splu_natural(A, symmetric=True)
    except RuntimeError as exc:  # exactly singular
        raise SolverDivergedError(f"SSA: singular stiffness matrix ({exc}); is every ice region held by "
                                  "Dirichlet conditions, friction or a front?") from exc


def _linear_solve(A: sp.csc_matrix, rhs: np.ndarray) -> np.ndarray:
    """Sparse direct solve of a reduced SSA system (:class:`~issm_emulator.physics.fe.ReducedSystem`
    order: vertices in minimum-degree order, u and v of a vertex adjacent). The matrices are symmetric,
    so SuperLU runs in symmetric mode and keeps that precomputed order (``NATURAL``)."""
    return _factorize(A).solve(rhs)


#: relative residual ||b - A x|| / ||b|| at which the preconditioned CG of :class:`_PicardLinearSolver`
#: stops: round-off level, so its solutions agree with a direct solve to ~1e-14
PCG_RTOL = 1.0e-13
#: PCG gives up (and the matrix is factorised) after this many iterations or when its convergence rate
#: predicts more; a solve that needed more than PCG_REFACTOR iterations makes the next solve factorise
PCG_MAXITER = 20
PCG_REFACTOR = 10


class _PicardLinearSolver:
    """Solves the symmetric positive definite Picard systems K(u_{k-1}) u_k = F of one reduced system.

    Successive Picard matrices (and those of successive time steps) differ only through the viscosity and
    friction coefficients, so the sparse LU factors of an earlier matrix are an almost exact
    preconditioner for the current one: conjugate gradients preconditioned with them, started from the
    previous iterate, reach the round-off-level tolerance :data:`PCG_RTOL` in about ten iterations, each
    costing one pair of triangular solves instead of a factorisation. The matrix is factorised afresh
    (and its factors kept) at the first solve, when PCG stalls, and after a solve that needed more than
    :data:`PCG_REFACTOR` iterations.
    """

    def __init__(self):
        self.lu = None
        self.refactor = True
        self.stats = {"factorizations": 0, "pcg_solves": 0, "pcg_iterations": 0}

    def _direct(self, A: sp.csc_matrix, b: np.ndarray) -> np.ndarray:
        self.lu = _factorize(A)
        self.refactor = False
        self.stats["factorizations"] += 1
        return self.lu.solve(b)

    def solve(self, A: sp.csc_matrix, b: np.ndarray, x0: np.ndarray) -> np.ndarray:
        if self.lu is None or self.refactor:
            return self._direct(A, b)
        x, its = _pcg(A, b, x0, self.lu.solve)
        if x is None:
            return self._direct(A, b)
        self.stats["pcg_solves"] += 1
        self.stats["pcg_iterations"] += its
        self.refactor = its > PCG_REFACTOR
        return x


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """Dot product of two vectors without BLAS: on this shared 2-core machine a threaded BLAS ddot can
    stall for milliseconds waiting for a descheduled thread, which dominated PCG's cost."""
    return float(np.einsum("i,i->", a, b))


def _norm(a: np.ndarray) -> float:
    """Euclidean norm of a vector (see :func:`_dot`)."""
    return math.sqrt(_dot(a, a))


def _pcg(A, b: np.ndarray, x0: np.ndarray, precond) -> tuple[np.ndarray | None, int]:
    """Preconditioned conjugate gradients to ||b - A x|| <= PCG_RTOL ||b||; (None, k) when it does not get
    there within PCG_MAXITER iterations (judged from the rate after 4 iterations) or breaks down."""
    nb = _norm(b)
    if nb == 0.0:
        return np.zeros_like(b), 0
    goal = PCG_RTOL * nb
    x = np.array(x0, dtype=float, copy=True)
    r = b - A @ x
    r0 = rn = _norm(r)
    z = precond(r)
    p = z.copy()
    rz = _dot(r, z)
    k = 0
    while rn > goal:
        if k >= PCG_MAXITER or not (rz > 0.0 and np.isfinite(rz)):
            return None, k
        if k == 4 and rn > 0.0 and math.log(goal / r0) / math.log(rn / r0) * 4 > PCG_MAXITER:
            return None, k  # the rate so far will not reach the goal in time
        Ap = A @ p
        pAp = _dot(p, Ap)
        if not (pAp > 0.0 and np.isfinite(pAp)):
            return None, k
        alpha = rz / pAp
        x += alpha * p
        r -= alpha * Ap
        rn = _norm(r)
        z = precond(r)
        rz_new = _dot(r, z)
        p *= rz_new / rz
        p += z
        rz = rz_new
        k += 1
    return x, k


def _as_vertex_field(a, nv: int, name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=float)
    if arr.shape != (nv,):
        raise ModelInputError(name, f"{nv} values (one per vertex)", f"shape {arr.shape}")
    return arr


def solve_ssa(state: ModelState, *, thickness, surface, base, ocean_levelset, ice_levelset, vx0, vy0,
              mesh: P1Mesh | None = None, isnewton: int | None = None, strict: bool = False,
              residual_only: bool = False) -> SSAResult:
    """Solve the SSA stress balance for the given geometry, starting from (vx0, vy0).

    Parameters
    ----------
    state : ModelState
        Materials (B per vertex, n per element), friction, sea level, g, ``stressbalance`` (spcvx/spcvy in
        m/s with NaN = free, restol, reltol, abstol (m/s, NaN = unused), maxiter, isnewton) and
        ``groundingline`` (migration, friction_interpolation) are taken from here.
    thickness, surface, base, ocean_levelset, ice_levelset : (nv,) arrays
        Current geometry (m) and masks.
    vx0, vy0 : (nv,) initial guess (m/s); ISSM's Picard path starts from it, Dirichlet vertices included.
    mesh : P1Mesh, optional
        Reuse a precomputed mesh (built from ``state.mesh`` otherwise).
    isnewton : int, optional
        0 Picard (ISSM's path), 1 Newton, 2 Picard until restol is met then Newton; default
        ``state.stressbalance.isnewton``.
    strict : bool
        Raise :class:`SolverDivergedError` when ``maxiter`` is reached without convergence.
    residual_only : bool
        Solve nothing: return (vx0, vy0) with the relative residual of the momentum balance there,
        ||K(u0) u0 - F|| / ||F|| over the free dofs, and ``vertex_residual``: |K(u0) u0 - F| per vertex
        (x and y combined, 0 at fixed vertices) over the RMS free-dof load (:func:`ssa_residual`).

    Returns
    -------
    SSAResult
        Vertices of elements without ice get velocity 0.

    Raises
    ------
    SolverDivergedError
        NaN/inf in the solution or the residual (always), or no convergence in ``maxiter`` iterations
        when ``strict``.
    """
    mesh = P1Mesh.from_mesh(state.mesh) if mesh is None else mesh
    nv, ne = mesh.nv, mesh.ne
    H = _as_vertex_field(thickness, nv, "md.geometry.thickness")
    s = _as_vertex_field(surface, nv, "md.geometry.surface")
    b = _as_vertex_field(base, nv, "md.geometry.base")
    ol = _as_vertex_field(ocean_levelset, nv, "md.mask.ocean_levelset")
    il = _as_vertex_field(ice_levelset, nv, "md.mask.ice_levelset")
    u0 = _as_vertex_field(vx0, nv, "md.initialization.vx")
    v0 = _as_vertex_field(vy0, nv, "md.initialization.vy")
    sb = state.stressbalance
    mat = state.materials
    B = _as_vertex_field(mat.rheology_B, nv, "md.materials.rheology_B")
    nexp = _n_per_element(mat.rheology_n, ne)
    isnewton = int(sb.isnewton if isnewton is None else isnewton)
    if isnewton not in (0, 1, 2):
        raise ModelInputError("md.stressbalance.isnewton", "0 (Picard), 1 (Newton) or 2 (Picard then Newton)",
                              str(isnewton))
    maxiter = int(sb.maxiter)
    if maxiter < 1:
        raise ModelInputError("md.stressbalance.maxiter", "a positive integer", str(sb.maxiter))
    restol, reltol, abstol = float(sb.restol), float(sb.reltol), float(sb.abstol)
    g = float(state.g)

    # ---- what is active ---------------------------------------------------------------------------------
    ice = masks.ice_elements(mesh.elements, il)
    active = np.zeros(nv, dtype=bool)
    active[mesh.elements[ice].ravel()] = True
    spc = np.concatenate([_as_vertex_field(sb.spcvx, nv, "md.stressbalance.spcvx"),
                          _as_vertex_field(sb.spcvy, nv, "md.stressbalance.spcvy")])
    fixed = ~np.isnan(spc) | ~np.concatenate([active, active])
    # inactive nodes (no ice element) are fixed: 0, or their Dirichlet value where they have one (ISSM's
    # SpcNodesx re-applies the constraints after SetActiveNodesLSMx deactivated the nodes, so its Vx, Vy
    # and Vel hold the constrained value there); they belong to no assembled element, so this changes the
    # output only
    ys_full = np.where(np.isnan(spc), 0.0, spc)
    free = np.flatnonzero(~fixed)
    fix = np.flatnonzero(fixed)
    ys = ys_full[fix]

    u = np.concatenate([u0, v0])
    u[~np.isfinite(u)] = 0.0
    if free.size == 0:
        u = ys_full.copy()
        return SSAResult(u[:nv].copy(), u[nv:].copy(), 0, 0.0, True, np.zeros(nv) if residual_only else None)

    # ---- constant pieces ---------------------------------------------------------------------------------
    rs = reduced_system(mesh, ~fixed, 2)
    dofs = rs.dofs  # free dofs in the factorisation order; fix == rs.fixed
    V_ff, V_fs = _viscous_gather(mesh, rs)
    picard_solver = rs.cache.setdefault("ssa_picard_solver", _PicardLinearSolver())
    dx, dy = mesh.dphidx, mesh.dphidy
    Hg = mesh.at_points(H, GAUSS2_POINTS)
    Bg = mesh.at_points(B, GAUSS2_POINTS)
    area = np.abs(mesh.area)
    BH = area * ((Hg * Bg) @ GAUSS2_WEIGHTS)  # int B H dA
    Hint = area * (Hg @ GAUSS2_WEIGHTS)  # int H dA
    BH[~ice] = 0.0
    Hint[~ice] = 0.0
    F = ssa_load_vector(state, mesh, thickness=H, surface=s, base=b, ice_levelset=il)
    felem, fbary, fw = _friction_setup(state, mesh, ol, ice)
    fel = mesh.elements[felem]
    if felem.size:
        # flattened (ne, 6, 6) entries of the two diagonal 3x3 blocks of the friction elements
        loc = np.arange(3)
        blk = np.stack([(loc[:, None] + o) * 6 + (loc[None, :] + o) for o in (0, 3)])  # (2, 3, 3)
        fent = (felem[:, None, None, None] * 36 + blk[None]).ravel()
        W_ff, W_fs = rs.gather(fent, np.arange(fent.size), fent.size)

    def element_state(u: np.ndarray):
        vx, vy = u[:nv], u[nv:]
        ue, ve = vx[mesh.elements], vy[mesh.elements]
        exx = np.einsum("ek,ek->e", dx, ue)
        eyy = np.einsum("ek,ek->e", dy, ve)
        exy = 0.5 * (np.einsum("ek,ek->e", dy, ue) + np.einsum("ek,ek->e", dx, ve))
        q = exx * exx + eyy * eyy + exy * exy + exx * eyy
        eeff = np.sqrt(q)
        zero = eeff == 0.0
        with np.errstate(divide="ignore", invalid="ignore"):
            Fe = np.where(nexp == 1.0, 0.5 * BH,
                          np.where(zero, MU_ZERO_STRAIN * Hint, 0.5 * BH / eeff ** ((nexp - 1.0) / nexp)))
        a = wa = mf = None
        if felem.size:
            a = alpha2_at_points(state.friction, nv=nv, ne=ne, elem=felem, elements=fel, bary=fbary,
                                 thickness=H, base=b, vx=vx, vy=vy, rho_ice=mat.rho_ice,
                                 rho_water=mat.rho_water, g=g, sealevel=float(state.sealevel))
            wa = a.alpha2 * fw  # (nf, ng)
            mf = np.einsum("eg,egi,egj->eij", wa, fbary, fbary)
        return vx, vy, exx, eyy, exy, q, zero, Fe, a, wa, mf

    def assemble(u: np.ndarray, newton: bool):
        """(K_ff, K_fs) of the Picard matrix K(u) and, for Newton, the Jacobian's free block J_ff."""
        vx, vy, exx, eyy, exy, q, zero, Fe, a, wa, mf = element_state(u)
        d_ff = V_ff @ Fe
        d_fs = V_fs @ Fe
        if felem.size:
            fz = np.broadcast_to(mf[:, None], (felem.size, 2, 3, 3)).ravel()
            d_ff += W_ff @ fz
            d_fs += W_fs @ fz
        K = (rs.matrix_ff(d_ff), rs.matrix_fs(d_fs))
        if not newton:
            return K, None
        # Jacobian = Picard matrix + derivative of the viscosity and of alpha2 w.r.t. the velocity
        # viscous: -(n-1)/n * F/q * c_a c_b, c = G . d(eps)/d(dof), G = [2exx+eyy, 2eyy+exx, 2exy]
        G0, G1, G2 = 2 * exx + eyy, 2 * eyy + exx, 2 * exy
        cu = G0[:, None] * dx + 0.5 * G2[:, None] * dy
        cv = G1[:, None] * dy + 0.5 * G2[:, None] * dx
        c = np.concatenate([cu, cv], axis=1)  # (ne, 6)
        with np.errstate(divide="ignore", invalid="ignore"):
            fac = np.where(zero | (nexp == 1.0), 0.0, -(nexp - 1.0) / nexp * Fe / q)
        kj = fac[:, None, None] * c[:, :, None] * c[:, None, :]
        if felem.size:
            ug = np.einsum("ek,egk->eg", vx[fel], fbary)
            vg = np.einsum("ek,egk->eg", vy[fel], fbary)
            sp2 = ug * ug + vg * vg
            with np.errstate(divide="ignore", invalid="ignore"):
                d = np.where(sp2 > 0.0, wa * a.dlog / sp2, 0.0)
            for (r0, c0), comp in (((0, 0), ug * ug), ((0, 3), ug * vg), ((3, 0), ug * vg), ((3, 3), vg * vg)):
                kj[felem, r0:r0 + 3, c0:c0 + 3] += np.einsum("eg,egi,egj->eij", d * comp, fbary, fbary)
        J_ff = rs.matrix_ff(d_ff + rs.G_ff @ kj.ravel())
        return K, J_ff

    uf_old = u[dofs].copy()
    Ff_raw = F[dofs]
    count = 0
    converged = False
    res = float("nan")
    use_newton = isnewton == 1

    (Kff, Kfs), J = assemble(u, use_newton)
    while True:
        pf = Ff_raw - Kfs @ ys
        nF = _norm(pf) + 1.0e-14
        res = _norm(Kff @ uf_old - pf) / nF
        if not np.isfinite(res):
            raise SolverDivergedError(f"SSA: residual is {res} at iteration {count + 1}", residual=res)
        if residual_only:
            full = np.zeros(2 * nv)
            full[dofs] = Kff @ uf_old - pf
            scale = nF / math.sqrt(max(dofs.size, 1))
            return SSAResult(u[:nv].copy(), u[nv:].copy(), 0, res, res < restol,
                             np.hypot(full[:nv], full[nv:]) / scale)
        if use_newton:
            delta = _linear_solve(J, pf - Kff @ uf_old)
            lam, r0 = 1.0, res
            for _ in range(6):
                uf = uf_old + lam * delta
                u_try = u.copy()
                u_try[dofs] = uf
                u_try[fix] = ys
                (Kff_t, Kfs_t), J_try = assemble(u_try, True)
                r_try = _norm(Kff_t @ uf - (Ff_raw - Kfs_t @ ys)) / nF
                if np.isfinite(r_try) and r_try <= r0:
                    break
                lam *= 0.5
            K_next, J_next = (Kff_t, Kfs_t), J_try
        else:
            uf = picard_solver.solve(Kff, pf, uf_old)
            K_next = J_next = None
        if not np.all(np.isfinite(uf)):
            raise SolverDivergedError(f"SSA: non-finite velocity at iteration {count + 1}", residual=res)
        du = uf - uf_old
        ok = res < restol
        if not math.isnan(reltol) and not (_norm(du) / (_norm(uf_old) + 1.0e-14) < reltol):
            ok = False
        if not math.isnan(abstol) and not (np.max(np.abs(du)) < abstol):
            ok = False
        u[dofs] = uf
        u[fix] = ys
        count += 1
        if ok:
            converged = True
            break
        if count >= maxiter:
            break
        if isnewton == 2 and not use_newton and res < _PICARD_TO_NEWTON * max(restol, 0.01):
            use_newton = True  # Picard is close enough: finish with Newton
        uf_old = uf.copy()
        if K_next is not None:
            (Kff, Kfs), J = K_next, J_next
        else:
            (Kff, Kfs), J = assemble(u, use_newton)

    if not converged and strict:
        raise SolverDivergedError(
            f"SSA: no convergence after {maxiter} iterations (md.stressbalance.maxiter); last relative "
            f"residual {res:.3e} (md.stressbalance.restol {restol})", residual=res)
    return SSAResult(u[:nv].copy(), u[nv:].copy(), count, res, converged)


def ssa_residual(state: ModelState, *, thickness, surface, base, ocean_levelset, ice_levelset, vx, vy,
                 mesh: P1Mesh | None = None) -> tuple[float, np.ndarray]:
    """How far a velocity is from satisfying the SSA momentum balance on a geometry.

    Returns ``(relative, per_vertex)``: ||K(u) u - F|| / ||F|| over the free degrees of freedom (the
    quantity ISSM's ``restol`` bounds, Dirichlet values taken from ``state``) and the per-vertex residual
    magnitude in units of the RMS free-dof load. One assembly, no linear solve.
    """
    r = solve_ssa(state, thickness=thickness, surface=surface, base=base, ocean_levelset=ocean_levelset,
                  ice_levelset=ice_levelset, vx0=vx, vy0=vy, mesh=mesh, isnewton=0, residual_only=True)
    return float(r.residual), np.asarray(r.vertex_residual)
