"""Shelfy-stream approximation (SSA) stress balance on linear triangles, as ISSM solves it.

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
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from weakref import WeakKeyDictionary

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from issm_emulator.errors import ModelInputError, SolverDivergedError
from issm_emulator.physics import masks
from issm_emulator.physics.fe import GAUSS2_POINTS, GAUSS2_WEIGHTS, P1Mesh
from issm_emulator.physics.friction import alpha2_at_points
from issm_emulator.state import ModelState

__all__ = [
    "SSAResult",
    "deviatoric_stress",
    "effective_viscosity",
    "solve_ssa",
    "ssa_load_vector",
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
class _Pattern:
    """Fixed sparsity of the (2nv, 2nv) SSA matrix with blocked dofs [u_0..u_nv-1, v_0..v_nv-1] and the
    map from the (ne, 6, 6) element matrices (local dofs [u_i, u_j, u_k, v_i, v_j, v_k]) to CSR data."""

    def __init__(self, mesh: P1Mesh):
        nv = mesh.nv
        e = mesh.elements
        gdof = np.concatenate([e, e + nv], axis=1)  # (ne, 6)
        rows = np.repeat(gdof[:, :, None], 6, axis=2).ravel()
        cols = np.repeat(gdof[:, None, :], 6, axis=1).ravel()
        n = 2 * nv
        key = rows.astype(np.int64) * n + cols
        ukey, inv = np.unique(key, return_inverse=True)
        self.inv = inv.ravel()
        self.nnz = ukey.size
        urow = ukey // n
        self.indices = (ukey % n).astype(np.int32)
        self.indptr = np.concatenate([[0], np.cumsum(np.bincount(urow, minlength=n))]).astype(np.int32)
        self.n = n

    def matrix(self, ke: np.ndarray) -> sp.csr_matrix:
        data = np.bincount(self.inv, weights=ke.ravel(), minlength=self.nnz)
        return sp.csr_matrix((data, self.indices.copy(), self.indptr.copy()), shape=(self.n, self.n))


_PATTERNS: WeakKeyDictionary[P1Mesh, _Pattern] = WeakKeyDictionary()


def _pattern(mesh: P1Mesh) -> _Pattern:
    pat = _PATTERNS.get(mesh)
    if pat is None:
        pat = _Pattern(mesh)
        _PATTERNS[mesh] = pat
    return pat


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
def _linear_solve(A: sp.csc_matrix, rhs: np.ndarray) -> np.ndarray:
    """Sparse direct solve; the SSA matrices are symmetric, so SuperLU runs in symmetric mode with a
    minimum-degree ordering of A^T + A (about twice as fast as the default COLAMD here)."""
    try:
        lu = spla.splu(A, permc_spec="MMD_AT_PLUS_A", options={"SymmetricMode": True})
    except RuntimeError as exc:  # exactly singular
        raise SolverDivergedError(f"SSA: singular stiffness matrix ({exc}); is every ice region held by "
                                  "Dirichlet conditions, friction or a front?") from exc
    return lu.solve(rhs)


def _as_vertex_field(a, nv: int, name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=float)
    if arr.shape != (nv,):
        raise ModelInputError(name, f"{nv} values (one per vertex)", f"shape {arr.shape}")
    return arr


def solve_ssa(state: ModelState, *, thickness, surface, base, ocean_levelset, ice_levelset, vx0, vy0,
              mesh: P1Mesh | None = None, isnewton: int | None = None, strict: bool = False) -> SSAResult:
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
    ys_full = np.where(np.isnan(spc), 0.0, spc)
    ys_full[~np.concatenate([active, active])] = 0.0
    free = np.flatnonzero(~fixed)
    fix = np.flatnonzero(fixed)
    ys = ys_full[fix]

    # ---- constant pieces ---------------------------------------------------------------------------------
    pat = _pattern(mesh)
    area = np.abs(mesh.area)
    dx, dy = mesh.dphidx, mesh.dphidy
    Hg = mesh.at_points(H, GAUSS2_POINTS)
    Bg = mesh.at_points(B, GAUSS2_POINTS)
    BH = area * ((Hg * Bg) @ GAUSS2_WEIGHTS)  # int B H dA
    Hint = area * (Hg @ GAUSS2_WEIGHTS)  # int H dA
    BH[~ice] = 0.0
    Hint[~ice] = 0.0
    F = ssa_load_vector(state, mesh, thickness=H, surface=s, base=b, ice_levelset=il)
    felem, fbary, fw = _friction_setup(state, mesh, ol, ice)
    fel = mesh.elements[felem]

    def assemble(u: np.ndarray, newton: bool) -> tuple[sp.csr_matrix, sp.csr_matrix | None]:
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
        ke = _viscous_blocks(dx, dy, Fe)
        jac = None
        if felem.size:
            a = alpha2_at_points(state.friction, nv=nv, ne=ne, elem=felem, elements=fel, bary=fbary,
                                 thickness=H, base=b, vx=vx, vy=vy, rho_ice=mat.rho_ice,
                                 rho_water=mat.rho_water, g=g, sealevel=float(state.sealevel))
            wa = a.alpha2 * fw  # (nf, ng)
            mf = np.einsum("eg,egi,egj->eij", wa, fbary, fbary)
            ke[felem, :3, :3] += mf
            ke[felem, 3:, 3:] += mf
        if newton:
            kj = ke.copy()
            # viscous: -(n-1)/n * F/q * c_a c_b, c = G . d(eps)/d(dof), G = [2exx+eyy, 2eyy+exx, 2exy]
            G0, G1, G2 = 2 * exx + eyy, 2 * eyy + exx, 2 * exy
            cu = G0[:, None] * dx + 0.5 * G2[:, None] * dy
            cv = G1[:, None] * dy + 0.5 * G2[:, None] * dx
            c = np.concatenate([cu, cv], axis=1)  # (ne, 6)
            with np.errstate(divide="ignore", invalid="ignore"):
                fac = np.where(zero | (nexp == 1.0), 0.0, -(nexp - 1.0) / nexp * Fe / q)
            kj += fac[:, None, None] * c[:, :, None] * c[:, None, :]
            if felem.size:
                ug = np.einsum("ek,egk->eg", vx[fel], fbary)
                vg = np.einsum("ek,egk->eg", vy[fel], fbary)
                sp2 = ug * ug + vg * vg
                with np.errstate(divide="ignore", invalid="ignore"):
                    d = np.where(sp2 > 0.0, wa * a.dlog / sp2, 0.0)
                for (r0, c0), comp in (((0, 0), ug * ug), ((0, 3), ug * vg), ((3, 0), ug * vg), ((3, 3), vg * vg)):
                    kj[felem, r0:r0 + 3, c0:c0 + 3] += np.einsum("eg,egi,egj->eij", d * comp, fbary, fbary)
            jac = pat.matrix(kj)
        return pat.matrix(ke), jac

    def split(K: sp.csr_matrix):
        Kf = K[free]
        return Kf[:, free].tocsc(), Kf[:, fix]

    u = np.concatenate([u0, v0])
    u[~np.isfinite(u)] = 0.0
    uf_old = u[free].copy()
    Ff_raw = F[free]
    count = 0
    converged = False
    res = float("nan")
    use_newton = isnewton == 1
    if free.size == 0:
        u = ys_full.copy()
        return SSAResult(u[:nv].copy(), u[nv:].copy(), 0, 0.0, True)

    K, J = assemble(u, use_newton)
    while True:
        Kff, Kfs = split(K)
        pf = Ff_raw - Kfs @ ys
        nF = float(np.linalg.norm(pf)) + 1.0e-14
        res = float(np.linalg.norm(Kff @ uf_old - pf)) / nF
        if not np.isfinite(res):
            raise SolverDivergedError(f"SSA: residual is {res} at iteration {count + 1}", residual=res)
        if use_newton:
            Jff = J[free][:, free].tocsc()
            delta = _linear_solve(Jff, pf - Kff @ uf_old)
            lam, r0 = 1.0, res
            for _ in range(6):
                uf = uf_old + lam * delta
                u_try = u.copy()
                u_try[free] = uf
                u_try[fix] = ys
                K_try, J_try = assemble(u_try, True)
                Kff_t, Kfs_t = split(K_try)
                r_try = float(np.linalg.norm(Kff_t @ uf - (Ff_raw - Kfs_t @ ys))) / nF
                if np.isfinite(r_try) and r_try <= r0:
                    break
                lam *= 0.5
            K_next, J_next = K_try, J_try
        else:
            uf = _linear_solve(Kff, pf)
            K_next = J_next = None
        if not np.all(np.isfinite(uf)):
            raise SolverDivergedError(f"SSA: non-finite velocity at iteration {count + 1}", residual=res)
        du = uf - uf_old
        ok = res < restol
        if not math.isnan(reltol) and not (np.linalg.norm(du) / (np.linalg.norm(uf_old) + 1.0e-14) < reltol):
            ok = False
        if not math.isnan(abstol) and not (np.max(np.abs(du)) < abstol):
            ok = False
        u[free] = uf
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
            K, J = K_next, J_next
        else:
            K, J = assemble(u, use_newton)

    if not converged and strict:
        raise SolverDivergedError(
            f"SSA: no convergence after {maxiter} iterations (md.stressbalance.maxiter); last relative "
            f"residual {res:.3e} (md.stressbalance.restol {restol})", residual=res)
    return SSAResult(u[:nv].copy(), u[nv:].copy(), count, res, converged)
