"""Read a pyISSM model into a validated, read-only :class:`~issm_emulator.state.ModelState`.

:func:`read_model` accepts a ``pyissm.model.Model`` or any object with the same attribute paths (ISSM's own
Python ``model`` class, a tree of ``SimpleNamespace`` objects, ...). It

* converts ISSM's user units to SI: rates in m/yr are divided by ``md.constants.yts`` (velocities, SMB,
  melt, calving and frontal-melt rates, ``stressbalance.abstol``, ``levelset.migration_max``,
  ``mismip`` ``meltrate_factor``), times in years are multiplied by it;
* makes ``md.mesh.elements`` / ``md.mesh.segments`` 0-based;
* copies and freezes every array (``md`` is only read, never written);
* validates only what the requested solution needs and fills neutral values (zero forcings, NaN
  Dirichlet fields, ISSM's defaults) for the rest.

Every problem raises :class:`~issm_emulator.errors.ModelInputError` whose message starts with the ``md``
field path, e.g. ``md.geometry.thickness: expected 1234 values (one per vertex), got 1233``.

Class names identify the law of a section. pyISSM names are ``<section>.<class>`` (module tail and class
name, e.g. ``friction.weertman``); ISSM's own Python classes are recognised by their class name alone
(``frictionweertman``). See ``FRICTION_CLASSES``, ``BASALFORCINGS_CLASSES``, ``CALVING_CLASSES``.

Time-dependent forcings follow ISSM: ``numberofvertices + 1`` rows, last row the times (years); they become
:class:`~issm_emulator.state.Forcing` objects. Global parameters that ISSM allows as a "single time
series" (``linearbasalforcings`` ``deepwater_melting_rate`` etc., e.g. ``[[50, 100], [0, 5]]``: values row,
times row) become a plain float when constant and a ``Forcing`` with ``values`` of shape ``(1, nt)`` when
time-dependent (``global_value`` evaluates either).

Flux gates: every ``massfluxatgate`` definition of ``md.outputdefinition.definitions`` whose ``name`` is a
requested output is read into ``extras['mass_flux_gates']`` (name -> (nseg, 5) ``[x1, y1, x2, y2,
element]``, 0-based elements, ISSM's ``MeshProfileIntersection`` layout), from its ``.profile`` contour, its
``.segments`` (1-based, as ISSM) or its ``profilename`` ``.exp`` file, in that order.

Sea level (``ModelState.sealevel``): ``md.solidearth.initialsealevel`` if that field exists and is set,
otherwise ``md.initialization.sealevel``, otherwise 0. A per-vertex field must be spatially uniform (its
mean is used; a non-uniform sea level raises ``ModelInputError`` because the solvers take a scalar).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from issm_emulator.errors import ModelInputError, UnknownSolutionError
from issm_emulator.state import (
    YTS_DEFAULT,
    BasalForcings,
    Calving,
    Forcing,
    Friction,
    Geometry,
    GroundinglineSettings,
    LevelsetSettings,
    Masks,
    MasstransportSettings,
    Materials,
    Mesh,
    ModelState,
    StressbalanceSettings,
    Timestepping,
    TransientFlags,
    frozen_array,
)

__all__ = [
    "BASALFORCINGS_CLASSES",
    "CALVING_CLASSES",
    "FRICTION_CLASSES",
    "MASSFLUX_CLASSES",
    "MIGRATIONS",
    "global_value",
    "read_model",
]

TRANSIENT = "TransientSolution"
STRESSBALANCE = "StressbalanceSolution"
_SOLUTION_ALIASES = {
    "transientsolution": TRANSIENT, "transient": TRANSIENT, "tr": TRANSIENT,
    "stressbalancesolution": STRESSBALANCE, "stressbalance": STRESSBALANCE, "sb": STRESSBALANCE,
}

#: class key (pyISSM ``section.class`` or ISSM class name) -> law
FRICTION_CLASSES = {
    "friction.default": "budd", "friction": "budd",
    "friction.weertman": "weertman", "frictionweertman": "weertman",
    "friction.coulomb": "coulomb", "frictioncoulomb": "coulomb",
}
BASALFORCINGS_CLASSES = {
    "basalforcings.default": "default", "basalforcings": "default",
    "basalforcings.linear": "linear", "linearbasalforcings": "linear",
    "basalforcings.mismip": "mismip", "mismipbasalforcings": "mismip",
}
CALVING_CLASSES = {
    "calving.default": "default", "calving": "default",
    "calving.vonmises": "vonmises", "calvingvonmises": "vonmises",
    "calving.levermann": "levermann", "calvinglevermann": "levermann",
    "calving.minthickness": "minthickness", "calvingminthickness": "minthickness",
}
SMB_CLASSES = {"smb.default": "default", "SMBforcing": "default", "smbforcing": "default"}
FRONTALFORCINGS_CLASSES = {"frontalforcings.default": "default", "frontalforcings": "default"}
TIMESTEPPING_CLASSES = {"timestepping.default": "default", "timestepping": "default"}

MIGRATIONS = ("None", "AggressiveMigration", "SoftMigration", "SubelementMigration")
FRICTION_INTERPOLATIONS = ("SubelementFriction1", "SubelementFriction2", "NoFrictionOnPartiallyFloating")
MELT_INTERPOLATIONS = ("NoMeltOnPartiallyFloating", "SubelementMelt1", "SubelementMelt2",
                       "IntrusionMelt", "FullMeltOnPartiallyFloating")
#: transient switches for physics issm-emulator does not model: they must be 0 (or absent)
_UNSUPPORTED_TRANSIENT_FLAGS = ("isage", "ismmemasstransport", "isoceantransport", "isesa",
                                "isdamageevolution", "ishydrology", "isdebris", "issampling", "isslc",
                                "isoceancoupling")

_MISSING = object()


# ----------------------------------------------------------------------------------------------------------
# generic helpers
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Ctx:
    """What every section reader needs: mesh sizes and the year length."""

    nv: int
    ne: int
    yts: float


def _err(path: str, expected: str, got: str | None = None) -> ModelInputError:
    return ModelInputError(f"md.{path}", expected, got)


def _get(md: Any, path: str, default: Any = _MISSING) -> Any:
    """``md.<path>``; a missing attribute or ``None`` raises unless ``default`` is given."""
    obj = md
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            if default is not _MISSING:
                return default
            raise _err(path, "a value", "nothing (the field is missing or None)")
    return obj


def _is_unset(value: Any) -> bool:
    """pyISSM marks unset fields with a scalar NaN (or leaves them None / empty)."""
    if value is None:
        return True
    arr = np.asarray(value) if not isinstance(value, str) else None
    if arr is None or arr.dtype == object:
        return False
    return arr.size == 0 or (arr.size == 1 and arr.dtype.kind in "fc" and bool(np.isnan(arr.ravel()[0])))


def _numeric(path: str, value: Any) -> np.ndarray:
    """``value`` as a float array (a new copy), or a ModelInputError."""
    if isinstance(value, (str, bytes)):
        raise _err(path, "numbers", f"the string {value!r}")
    try:
        arr = np.array(value, dtype=float, copy=True)
    except (TypeError, ValueError):
        raise _err(path, "numbers", f"{type(value).__name__}") from None
    return arr


def _describe(arr: np.ndarray) -> str:
    if arr.ndim == 0:
        return "a scalar"
    if arr.ndim == 1 or (arr.ndim == 2 and 1 in arr.shape):
        return str(arr.size)
    return f"an array of shape {arr.shape}"


def _check_values(path: str, arr: np.ndarray, *, allow_nan: bool = False, ge: float | None = None,
                  gt: float | None = None, le: float | None = None) -> None:
    """NaN/inf and bound checks (NaN entries skip the bounds)."""
    if np.isinf(arr).any():
        raise _err(path, "finite values", "inf")
    if not allow_nan and np.isnan(arr).any():
        raise _err(path, "finite values (no NaN)", f"{int(np.isnan(arr).sum())} NaN value(s)")
    ok = arr[~np.isnan(arr)]
    for bound, bad, word in ((ge, lambda a, b: a < b, ">="), (gt, lambda a, b: a <= b, ">"),
                             (le, lambda a, b: a > b, "<=")):
        if bound is not None and ok.size and bad(ok, bound).any():
            worst = ok[bad(ok, bound)][0]
            raise _err(path, f"values {word} {bound:g}", f"{worst:g}")


#: size kinds of the table-driven readers: name -> (count attribute of _Ctx, words for the message)
_SIZES = {"vertex": ("nv", "one per vertex"), "element": ("ne", "one per element")}


def _sized(path: str, value: Any, ctx: _Ctx, kind: str, *, broadcast: bool = False,
           allow_nan: bool = False, scale: float = 1.0, ge: float | None = None, gt: float | None = None,
           le: float | None = None) -> np.ndarray:
    """A per-vertex or per-element field as a frozen 1-D float array (column vectors accepted)."""
    attr, words = _SIZES[kind]
    n = getattr(ctx, attr)
    if _is_unset(value):
        raise _err(path, f"{n} values ({words})", "an unset field (missing, None or NaN)")
    arr = _numeric(path, value)
    if arr.ndim == 0 and broadcast:
        arr = np.full(n, float(arr))
    elif arr.ndim <= 2 and arr.size == n and (arr.ndim < 2 or 1 in arr.shape):
        arr = arr.reshape(n)
    else:
        raise _err(path, f"{n} values ({words})", _describe(arr))
    _check_values(path, arr, allow_nan=allow_nan, ge=ge, gt=gt, le=le)
    return frozen_array(arr * scale)


def _scalar(path: str, value: Any, *, allow_nan: bool = False, ge: float | None = None,
            gt: float | None = None, le: float | None = None, scale: float = 1.0) -> float:
    if value is None:
        raise _err(path, "a number", "nothing (the field is missing or None)")
    arr = _numeric(path, value)
    if arr.size != 1:
        raise _err(path, "a single number", f"{arr.size} values")
    _check_values(path, arr.ravel(), allow_nan=allow_nan, ge=ge, gt=gt, le=le)
    return float(arr.ravel()[0]) * scale


def _integer(path: str, value: Any, *, ge: int | None = None,
             choices: tuple[int, ...] | None = None) -> int:
    x = _scalar(path, value)
    if x != int(x):
        raise _err(path, "an integer", f"{x:g}")
    x = int(x)
    if ge is not None and x < ge:
        raise _err(path, f"an integer >= {ge}", str(x))
    if choices is not None and x not in choices:
        raise _err(path, f"one of {', '.join(map(str, choices))}", str(x))
    return x


def _string(path: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise _err(path, "one of " + ", ".join(repr(c) for c in choices), repr(value))
    return value


def _read_table(md: Any, section: str, table: dict[str, dict[str, Any]], ctx: _Ctx) -> dict[str, np.ndarray]:
    """Read several sized fields of ``md.<section>`` as described by ``table`` (name -> _sized kwargs).

    A ``default`` entry in the kwargs is used (broadcast to the size) when the field is unset.
    """
    out = {}
    for name, spec in table.items():
        spec = dict(spec)
        default = spec.pop("default", _MISSING)
        kind = spec.pop("kind")
        path = f"{section}.{name}"
        value = _get(md, path, None)
        if _is_unset(value) and default is not _MISSING:
            n = ctx.nv if kind == "vertex" else ctx.ne
            out[name] = frozen_array(np.full(n, default, dtype=float))
            continue
        out[name] = _sized(path, value, ctx, kind, **spec)
    return out


def _class_key(obj: Any, section: str, table: dict[str, str]) -> str:
    """The law of ``md.<section>`` from its class (pyISSM ``section.class`` or ISSM class name)."""
    cls = type(obj)
    module_tail = cls.__module__.rsplit(".", 1)[-1]
    for key in (cls.__name__, f"{module_tail}.{cls.__name__}", f"{section}.{cls.__name__}"):
        if key in table:
            return table[key]
    supported = sorted({k for k in table})
    raise _err(section, "an instance of one of the supported classes: " + ", ".join(supported),
               f"{cls.__module__}.{cls.__name__}")


def _forcing(path: str, value: Any, ctx: _Ctx, *, scale: float = 1.0, allow_nan: bool = False,
             ge: float | None = None, default: float | None = None, broadcast: bool = True) -> Forcing:
    """A per-vertex field or ISSM time series (nv+1 rows, times in years in the last row) as a Forcing."""
    nv = ctx.nv
    if _is_unset(value):
        if default is None:
            raise _err(path, f"{nv} values (one per vertex) or a time series of {nv + 1} rows",
                       "an unset field (missing, None or NaN)")
        return Forcing(frozen_array(np.full(nv, default, dtype=float)))
    arr = _numeric(path, value)
    if arr.ndim == 0 and broadcast:
        arr = np.full(nv, float(arr))
    if arr.ndim == 1 and arr.size == nv + 1:
        arr = arr.reshape(nv + 1, 1)
    if arr.ndim <= 2 and arr.size == nv and (arr.ndim < 2 or 1 in arr.shape):
        values = arr.reshape(nv)
        _check_values(path, values, allow_nan=allow_nan, ge=ge)
        return Forcing(frozen_array(values * scale))
    if arr.ndim == 2 and arr.shape[0] == nv + 1:
        values, times = arr[:nv], arr[nv]
        _check_times(path, times)
        _check_values(path, values, allow_nan=allow_nan, ge=ge)
        return Forcing(frozen_array(values * scale), frozen_array(times * ctx.yts))
    raise _err(path, f"{nv} values (one per vertex) or a time series of {nv + 1} rows "
               "(times in years in the last row)", _describe(arr) if arr.ndim != 2 else
               f"an array of shape {arr.shape}")


def _check_times(path: str, times: np.ndarray) -> None:
    if not np.isfinite(times).all():
        raise _err(path, "finite times (years) in the last row of the time series", "NaN/inf")
    if times.size > 1 and not (np.diff(times) > 0).all():
        raise _err(path, "strictly increasing times (years) in the last row of the time series",
                   f"{np.array2string(times, threshold=8)}")


def _global_series(path: str, value: Any, ctx: _Ctx, *, scale: float = 1.0, ge: float | None = None,
                   le: float | None = None) -> float | Forcing:
    """A scalar, or a single time series ``[[v1, v2, ...], [t1, t2, ...]]`` (times in years)."""
    if _is_unset(value):
        raise _err(path, "a number or a 2-row time series [[values], [times]]",
                   "an unset field (missing, None or NaN)")
    arr = _numeric(path, value)
    if arr.size == 1:
        x = arr.ravel()
        _check_values(path, x, ge=ge, le=le)
        return float(x[0]) * scale
    if arr.ndim != 2 or arr.shape[0] != 2:
        raise _err(path, "a number or a time series of 2 rows (values, then times in years)",
                   f"an array of shape {arr.shape}")
    _check_times(path, arr[1])
    _check_values(path, arr[0], ge=ge, le=le)
    return Forcing(frozen_array(arr[:1] * scale), frozen_array(arr[1] * ctx.yts))


def global_value(p: float | Forcing, t: float, interp: bool = True) -> float:
    """Evaluate a global parameter read by :func:`read_model` (float or 1-row Forcing) at time ``t`` (s)."""
    if isinstance(p, Forcing):
        return float(np.ravel(p.at(t, interp))[0])
    return float(p)


# ----------------------------------------------------------------------------------------------------------
# one reader per md section
# ----------------------------------------------------------------------------------------------------------
def _read_constants(md: Any) -> tuple[float, float]:
    yts = _scalar("constants.yts", _get(md, "constants.yts", YTS_DEFAULT), gt=0)
    g = _scalar("constants.g", _get(md, "constants.g", 9.81), gt=0)
    return yts, g


def _count(md: Any, path: str, fallback: int) -> int:
    """``numberofvertices`` / ``numberofelements`` if set (> 0), else the length of the arrays."""
    value = _get(md, path, None)
    if _is_unset(value) or (np.ndim(value) == 0 and _numeric(path, value) == 0):
        return fallback
    n = _integer(path, value, ge=1)
    return n


def _read_mesh(md: Any, yts: float) -> tuple[Mesh, _Ctx]:
    mesh = _get(md, "mesh")
    if "3d" in type(mesh).__name__.lower():
        raise _err("mesh", "a 2-D triangle mesh (mesh2d)", type(mesh).__name__)
    x_raw = _numeric("mesh.x", _get(md, "mesh.x"))
    if x_raw.ndim == 0 or _is_unset(x_raw):
        raise _err("mesh.x", "vertex x coordinates (m)", "an unset field (missing, None or NaN)")
    nv = _count(md, "mesh.numberofvertices", x_raw.size)
    el = _numeric("mesh.elements", _get(md, "mesh.elements"))
    if el.ndim != 2 or el.shape[1] != 3:
        raise _err("mesh.elements", "an array of shape (numberofelements, 3) of vertex numbers",
                   f"an array of shape {el.shape}")
    ne = _count(md, "mesh.numberofelements", el.shape[0])
    ctx = _Ctx(nv=nv, ne=ne, yts=yts)
    x = _sized("mesh.x", x_raw, ctx, "vertex")
    y = _sized("mesh.y", _get(md, "mesh.y"), ctx, "vertex")
    if el.shape[0] != ne:
        raise _err("mesh.elements", f"{ne} rows (one per element, numberofelements = {ne})",
                   f"{el.shape[0]}")
    elements = _element_indices("mesh.elements", el, nv)
    _check_orientation(x, y, elements)
    used = np.zeros(nv, dtype=bool)
    used[elements.ravel()] = True
    if not used.all():
        raise _err("mesh.elements", "every vertex to belong to at least one element",
                   f"{int((~used).sum())} orphan vertex/vertices, first is vertex {int(np.argmin(used)) + 1}")
    segments = _read_segments(md, nv, ne)
    vob = _get(md, "mesh.vertexonboundary", None)
    if _is_unset(vob):
        vertexonboundary = _boundary_vertices(elements, nv)
    else:
        vertexonboundary = _sized("mesh.vertexonboundary", vob, ctx, "vertex", ge=0, le=1) != 0
    return Mesh(x=x, y=y, elements=frozen_array(elements, np.int64),
                vertexonboundary=frozen_array(vertexonboundary, bool),
                segments=None if segments is None else frozen_array(segments, np.int64)), ctx


def _element_indices(path: str, arr: np.ndarray, nv: int) -> np.ndarray:
    """1-based ISSM vertex numbers -> 0-based int64, with every check a user needs."""
    if not np.isfinite(arr).all():
        raise _err(path, "finite vertex numbers", "NaN/inf")
    if (arr != np.round(arr)).any():
        raise _err(path, "integer vertex numbers", f"{arr[arr != np.round(arr)][0]:g}")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 1:
        raise _err(path, "1-based vertex numbers (ISSM convention) between 1 and numberofvertices "
                   f"= {nv}", f"a minimum of {lo} (0-based indices?)")
    if hi > nv:
        raise _err(path, f"vertex numbers between 1 and numberofvertices = {nv}", f"a maximum of {hi}")
    return arr.astype(np.int64) - 1


def _signed_area(x: np.ndarray, y: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """0.5 * ((x2-x1)(y3-y1) - (x3-x1)(y2-y1)): positive for counter-clockwise triangles."""
    x1, x2, x3 = x[tri[:, 0]], x[tri[:, 1]], x[tri[:, 2]]
    y1, y2, y3 = y[tri[:, 0]], y[tri[:, 1]], y[tri[:, 2]]
    return 0.5 * ((x2 - x1) * (y3 - y1) - (x3 - x1) * (y2 - y1))


def _check_orientation(x: np.ndarray, y: np.ndarray, tri: np.ndarray) -> None:
    area = _signed_area(x, y, tri)
    scale = max(float(np.ptp(x)), float(np.ptp(y)), 1.0) ** 2
    tiny = np.abs(area) <= 1e-12 * scale
    if tiny.any():
        k = int(np.argmax(tiny))
        raise _err("mesh.elements", "triangles of non-zero area",
                   f"zero area for element {k + 1} (vertices {', '.join(str(v + 1) for v in tri[k])})")
    if (area < 0).any():
        k = int(np.argmax(area < 0))
        raise _err("mesh.elements", "counter-clockwise triangles (positive signed area)",
                   f"{int((area < 0).sum())} clockwise (inverted) element(s), first is element {k + 1}")


def _read_segments(md: Any, nv: int, ne: int) -> np.ndarray | None:
    seg = _get(md, "mesh.segments", None)
    if _is_unset(seg):
        return None
    arr = _numeric("mesh.segments", seg)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise _err("mesh.segments", "an array of shape (numberofsegments, 3): [vertex, vertex, element]",
                   f"an array of shape {arr.shape}")
    verts = _element_indices("mesh.segments", arr[:, :2], nv)
    owner = arr[:, 2]
    bad = ~np.isfinite(owner) | (owner != np.round(owner)) | (owner < 1) | (owner > ne)
    if bad.any():
        raise _err("mesh.segments", f"1-based element numbers between 1 and {ne} in the third column",
                   f"values from {np.nanmin(owner):g} to {np.nanmax(owner):g}")
    return np.column_stack([verts, owner.astype(np.int64) - 1])


def _boundary_vertices(tri: np.ndarray, nv: int) -> np.ndarray:
    """Vertices on edges that belong to a single triangle."""
    edges = np.sort(tri[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    uniq, counts = np.unique(edges, axis=0, return_counts=True)
    flag = np.zeros(nv, dtype=bool)
    flag[uniq[counts == 1].ravel()] = True
    return flag


_GEOMETRY_TABLE = {
    "thickness": {"kind": "vertex", "ge": 0.0},
    "surface": {"kind": "vertex"},
    "base": {"kind": "vertex"},
    "bed": {"kind": "vertex", "allow_nan": True, "default": np.nan},
}


def _read_geometry(md: Any, ctx: _Ctx) -> Geometry:
    f = _read_table(md, "geometry", _GEOMETRY_TABLE, ctx)
    mismatch = np.abs(f["thickness"] - (f["surface"] - f["base"]))
    tol = 1e-6 * max(1.0, float(np.max(np.abs(f["thickness"]))))
    if (mismatch > tol).any():
        k = int(np.argmax(mismatch))
        raise _err("geometry.thickness", "thickness == surface - base at every vertex",
                   f"a difference of {mismatch[k]:g} m at vertex {k + 1}")
    return Geometry(**f)


_MASK_TABLE = {"ocean_levelset": {"kind": "vertex"}, "ice_levelset": {"kind": "vertex"}}


def _read_masks(md: Any, ctx: _Ctx) -> Masks:
    f = _read_table(md, "mask", _MASK_TABLE, ctx)
    if not (f["ice_levelset"] < 0).any():
        raise _err("mask.ice_levelset", "ice (a negative value) at one vertex at least", "no ice anywhere")
    return Masks(**f)


def _read_velocity(md: Any, ctx: _Ctx) -> tuple[np.ndarray, np.ndarray]:
    per_yr = 1.0 / ctx.yts
    table = {"vx": {"kind": "vertex", "scale": per_yr}, "vy": {"kind": "vertex", "scale": per_yr}}
    f = _read_table(md, "initialization", table, ctx)
    return f["vx"], f["vy"]


def _read_materials(md: Any, ctx: _Ctx) -> Materials:
    rho = {name: _scalar(f"materials.{name}", _get(md, f"materials.{name}"), gt=0)
           for name in ("rho_ice", "rho_water")}
    rho["rho_freshwater"] = _scalar("materials.rho_freshwater", _get(md, "materials.rho_freshwater", 1000.0),
                                    gt=0)
    f = _read_table(md, "materials", {
        "rheology_B": {"kind": "vertex", "broadcast": True, "gt": 0.0},
        "rheology_n": {"kind": "element", "broadcast": True, "gt": 0.0},
    }, ctx)
    return Materials(**rho, **f)


_FRICTION_TABLES = {
    "budd": {"coefficient": {"kind": "vertex", "broadcast": True},
             "p": {"kind": "element", "broadcast": True}, "q": {"kind": "element", "broadcast": True}},
    "weertman": {"C": {"kind": "vertex", "broadcast": True, "ge": 0.0},
                 "m": {"kind": "element", "broadcast": True, "gt": 0.0}},
    "coulomb": {"coefficient": {"kind": "vertex", "broadcast": True},
                "coefficientcoulomb": {"kind": "vertex", "broadcast": True, "ge": 0.0},
                "p": {"kind": "element", "broadcast": True}, "q": {"kind": "element", "broadcast": True}},
}


def _read_friction(md: Any, ctx: _Ctx) -> Friction:
    law = _class_key(_get(md, "friction"), "friction", FRICTION_CLASSES)
    fields = _read_table(md, "friction", _FRICTION_TABLES[law], ctx)
    coupling = 0
    if law != "weertman":
        coupling = _integer("friction.coupling", _get(md, "friction.coupling", 0), choices=(0, 1, 2, 3, 4))
        if coupling in (3, 4):
            pressure = _get(md, "friction.effective_pressure", None)
            fields["effective_pressure"] = _sized("friction.effective_pressure", pressure, ctx, "vertex")
    limit = _scalar("friction.effective_pressure_limit", _get(md, "friction.effective_pressure_limit", 0.0),
                    ge=0)
    return Friction(law=law, fields=fields, coupling=coupling, effective_pressure_limit=limit)


def _read_stressbalance(md: Any, ctx: _Ctx) -> StressbalanceSettings:
    s = "stressbalance"
    f = _read_table(md, s, {"spcvx": {"kind": "vertex", "allow_nan": True, "scale": 1.0 / ctx.yts},
                            "spcvy": {"kind": "vertex", "allow_nan": True, "scale": 1.0 / ctx.yts}}, ctx)
    return StressbalanceSettings(
        **f,
        restol=_scalar(f"{s}.restol", _get(md, f"{s}.restol"), gt=0),
        reltol=_scalar(f"{s}.reltol", _get(md, f"{s}.reltol", np.nan), allow_nan=True, gt=0),
        abstol=_scalar(f"{s}.abstol", _get(md, f"{s}.abstol", np.nan), allow_nan=True, gt=0,
                       scale=1.0 / ctx.yts),
        maxiter=_integer(f"{s}.maxiter", _get(md, f"{s}.maxiter"), ge=1),
        isnewton=_integer(f"{s}.isnewton", _get(md, f"{s}.isnewton", 0), choices=(0, 1, 2)),
    )


def _read_timestepping(md: Any, yts: float) -> Timestepping:
    _class_key(_get(md, "timestepping"), "timestepping", TIMESTEPPING_CLASSES)
    t = "timestepping"
    start = _scalar(f"{t}.start_time", _get(md, f"{t}.start_time", 0.0))
    final = _scalar(f"{t}.final_time", _get(md, f"{t}.final_time"))
    dt = _scalar(f"{t}.time_step", _get(md, f"{t}.time_step"))
    if dt <= 0:
        raise _err(f"{t}.time_step", "a positive time step (years)", f"{dt:g}")
    if final < start:
        raise _err(f"{t}.final_time", f"a final time >= start_time = {start:g} (years)", f"{final:g}")
    interp = _integer(f"{t}.interp_forcing", _get(md, f"{t}.interp_forcing", 1), choices=(0, 1))
    return Timestepping(start_time=start * yts, final_time=final * yts, time_step=dt * yts,
                        interp_forcing=interp)


_OTHER_FLOW_EQUATIONS = ("isSIA", "isL1L2", "isMOLHO", "isHO", "isFS")


def _check_flowequation(md: Any) -> None:
    """The solvers are 2-D SSA (shelfy-stream) models: refuse a model set up for another flow equation
    rather than silently solving it as SSA. Unset flags (pyISSM's defaults) are accepted."""
    for name in _OTHER_FLOW_EQUATIONS:
        value = _get(md, f"flowequation.{name}", 0)
        try:
            on = bool(np.any(np.asarray(value, dtype=float) != 0))
        except (TypeError, ValueError):
            raise _err(f"flowequation.{name}", "0 or 1", repr(value)) from None
        if on:
            raise _err(f"flowequation.{name}", "0: issm-emulator solves the SSA equations only "
                       "(pyissm.model.param.set_flow_equation(md, SSA='all'))", str(value))


def _read_transient_flags(md: Any) -> TransientFlags:
    names = ("issmb", "ismasstransport", "isstressbalance", "isgroundingline", "ismovingfront")
    defaults = (1, 1, 1, 0, 0)
    flags = {n: _integer(f"transient.{n}", _get(md, f"transient.{n}", d), choices=(0, 1))
             for n, d in zip(names, defaults)}
    for n in _UNSUPPORTED_TRANSIENT_FLAGS:
        value = _get(md, f"transient.{n}", 0)
        if _integer(f"transient.{n}", value) != 0:
            raise _err(f"transient.{n}", "0 (this physics is not modelled by issm-emulator)", str(value))
    return TransientFlags(**flags)


def _read_scale_factor(md: Any, ctx: _Ctx) -> np.ndarray | None:
    """``md.mesh.scale_factor`` (per vertex, used by ISSM's ``*Scaled`` outputs), or None when unset."""
    value = _get(md, "mesh.scale_factor", None)
    if value is None:
        return None
    arr = np.asarray(value, dtype=float).reshape(-1)
    if arr.size == 0 or (arr.size == 1 and np.isnan(arr[0])):
        return None
    if arr.size == 1:
        arr = np.full(ctx.nv, arr[0])
    if arr.size != ctx.nv:
        raise ModelInputError("md.mesh.scale_factor", f"{ctx.nv} values (one per vertex)", f"{arr.size}")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ModelInputError("md.mesh.scale_factor", "finite positive values", "NaN, inf or <= 0")
    return frozen_array(arr)


def _read_smb(md: Any, ctx: _Ctx) -> Forcing:
    _class_key(_get(md, "smb"), "smb", SMB_CLASSES)
    return _forcing("smb.mass_balance", _get(md, "smb.mass_balance", None), ctx, scale=1.0 / ctx.yts)


def _read_basalforcings(md: Any, ctx: _Ctx) -> BasalForcings:
    kind = _class_key(_get(md, "basalforcings"), "basalforcings", BASALFORCINGS_CLASSES)
    b, per_yr = "basalforcings", 1.0 / ctx.yts

    def rate(name: str, default: float | None = None) -> Forcing:
        return _forcing(f"{b}.{name}", _get(md, f"{b}.{name}", None), ctx, scale=per_yr, default=default)

    params: dict[str, Any] = {}
    floating = None
    if kind in ("default", "linear"):
        params["perturbation_melting_rate"] = rate("perturbation_melting_rate", default=0.0)  # unset = 0
    if kind == "default":
        floating = rate("floatingice_melting_rate")
    elif kind == "linear":  # global parameters, each a number or a single time series
        spec = {"deepwater_melting_rate": {"scale": per_yr, "ge": 0.0},
                "upperwater_melting_rate": {"scale": per_yr, "ge": 0.0},
                "deepwater_elevation": {}, "upperwater_elevation": {"le": 0.0}}
        params.update({n: _global_series(f"{b}.{n}", _get(md, f"{b}.{n}"), ctx, **kw)
                       for n, kw in spec.items()})
        deep, up = params["deepwater_elevation"], params["upperwater_elevation"]
        if not isinstance(deep, Forcing) and not isinstance(up, Forcing) and deep >= up:
            raise _err(f"{b}.deepwater_elevation", f"a value below upperwater_elevation = {up:g} m",
                       f"{deep:g}")
    else:  # mismip
        spec = {"meltrate_factor": {"scale": per_yr, "ge": 0.0}, "threshold_thickness": {"ge": 0.0},
                "upperdepth_melt": {"le": 0.0}}
        params.update({n: _scalar(f"{b}.{n}", _get(md, f"{b}.{n}"), **kw) for n, kw in spec.items()})
    return BasalForcings(kind=kind, groundedice_melting_rate=rate("groundedice_melting_rate"),
                         floatingice_melting_rate=floating, params=params)


def _read_masstransport(md: Any, ctx: _Ctx) -> MasstransportSettings:
    m = "masstransport"
    return MasstransportSettings(
        spcthickness=_forcing(f"{m}.spcthickness", _get(md, f"{m}.spcthickness", None), ctx, allow_nan=True,
                              default=np.nan, broadcast=False),
        min_thickness=_scalar(f"{m}.min_thickness", _get(md, f"{m}.min_thickness", 1.0), gt=0),
        stabilization=_integer(f"{m}.stabilization", _get(md, f"{m}.stabilization", 1),
                               choices=(0, 1, 2, 3, 4, 5)),
        hydrostatic_adjustment=_string(f"{m}.hydrostatic_adjustment",
                                       _get(md, f"{m}.hydrostatic_adjustment", "Absolute"),
                                       ("Absolute", "Incremental")),
    )


def _read_groundingline(md: Any) -> GroundinglineSettings:
    g = "groundingline"
    return GroundinglineSettings(
        migration=_string(f"{g}.migration", _get(md, f"{g}.migration", "SubelementMigration"), MIGRATIONS),
        friction_interpolation=_string(f"{g}.friction_interpolation",
                                       _get(md, f"{g}.friction_interpolation", "SubelementFriction1"),
                                       FRICTION_INTERPOLATIONS),
        melt_interpolation=_string(f"{g}.melt_interpolation",
                                   _get(md, f"{g}.melt_interpolation", "NoMeltOnPartiallyFloating"),
                                   MELT_INTERPOLATIONS),
    )


def _read_levelset(md: Any, ctx: _Ctx) -> LevelsetSettings:
    s = "levelset"
    return LevelsetSettings(
        stabilization=_integer(f"{s}.stabilization", _get(md, f"{s}.stabilization", 1),
                               choices=(0, 1, 2, 5, 6)),
        reinit_frequency=_integer(f"{s}.reinit_frequency", _get(md, f"{s}.reinit_frequency", 10), ge=1),
        kill_icebergs=_integer(f"{s}.kill_icebergs", _get(md, f"{s}.kill_icebergs", 1), choices=(0, 1)),
        migration_max=_scalar(f"{s}.migration_max", _get(md, f"{s}.migration_max", 1e12), gt=0,
                              scale=1.0 / ctx.yts),
        spclevelset=_forcing(f"{s}.spclevelset", _get(md, f"{s}.spclevelset", None), ctx, allow_nan=True,
                             default=np.nan, broadcast=False),
    )


def _read_calving(md: Any, ctx: _Ctx) -> Calving:
    law = _class_key(_get(md, "calving"), "calving", CALVING_CLASSES)
    c = "calving"
    if law == "default":
        params = {"calvingrate": _forcing(f"{c}.calvingrate", _get(md, f"{c}.calvingrate", None), ctx,
                                          scale=1.0 / ctx.yts, ge=0)}
    elif law == "vonmises":
        params = _read_table(md, c, {
            "stress_threshold_groundedice": {"kind": "vertex", "broadcast": True, "gt": 0.0},
            "stress_threshold_floatingice": {"kind": "vertex", "broadcast": True, "gt": 0.0}}, ctx)
        params["min_thickness"] = _scalar(f"{c}.min_thickness", _get(md, f"{c}.min_thickness", 0.0), ge=0)
    elif law == "levermann":
        params = _read_table(md, c, {"coeff": {"kind": "vertex", "broadcast": True, "gt": 0.0}}, ctx)
    else:  # minthickness
        params = {"min_thickness": _scalar(f"{c}.min_thickness", _get(md, f"{c}.min_thickness"), gt=0)}
    return Calving(law=law, params=params)


def _read_frontal_meltingrate(md: Any, ctx: _Ctx) -> Forcing:
    _class_key(_get(md, "frontalforcings"), "frontalforcings", FRONTALFORCINGS_CLASSES)
    return _forcing("frontalforcings.meltingrate", _get(md, "frontalforcings.meltingrate", None), ctx,
                    scale=1.0 / ctx.yts, ge=0)


def _read_requested_outputs(md: Any, path: str) -> tuple[str, ...]:
    value = _get(md, path, ["default"])
    if isinstance(value, str):
        value = [value]
    try:
        items = list(value)
    except TypeError:
        raise _err(path, "a list of output names (strings)", type(value).__name__) from None
    bad = [v for v in items if not isinstance(v, str)]
    if bad:
        raise _err(path, "a list of output names (strings)", f"the item {bad[0]!r}")
    return tuple(items)


def _read_sealevel(md: Any, ctx: _Ctx) -> float:
    for path in ("solidearth.initialsealevel", "initialization.sealevel"):
        value = _get(md, path, None)
        if _is_unset(value):
            continue
        arr = _numeric(path, value)
        if arr.size == 1:
            return _scalar(path, arr)
        field = _sized(path, arr, ctx, "vertex")
        if np.ptp(field) > 1e-9 * max(1.0, float(np.max(np.abs(field)))):
            raise _err(path, "a spatially uniform sea level (issm-emulator uses a single value)",
                       f"values from {field.min():g} to {field.max():g} m")
        return float(field.mean())
    return 0.0


#: class names of ISSM's flux-gate output definition (pyISSM ``massfluxatgate.massfluxatgate``, ISSM's own
#: Python class ``massfluxatgate``)
MASSFLUX_CLASSES = ("massfluxatgate",)


def _is_massfluxatgate(obj: Any) -> bool:
    return type(obj).__name__ in MASSFLUX_CLASSES


def _gate_contours(path: str, profile: Any) -> list[dict]:
    """``.profile`` as a list of polylines: a contour dict (``x``, ``y``), a list of them (as
    :func:`~issm_emulator.issm.formats.read_exp` returns) or an (npts, 2) array of points."""
    if isinstance(profile, dict):
        items = [profile]
    elif isinstance(profile, (list, tuple)) and profile and all(isinstance(c, dict) for c in profile):
        items = list(profile)
    else:
        arr = _numeric(path, profile)
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise _err(path, "a contour dict with 'x' and 'y', a list of them, or an (npts, 2) array of "
                       "points (m)", _describe(arr) if arr.ndim != 2 else f"an array of shape {arr.shape}")
        items = [{"x": arr[:, 0], "y": arr[:, 1]}]
    out = []
    for c in items:
        if "x" not in c or "y" not in c:
            raise _err(path, "a contour with 'x' and 'y' point coordinates (m)",
                       f"a dict with keys {sorted(map(str, c))}")
        x, y = _numeric(f"{path}['x']", c["x"]).ravel(), _numeric(f"{path}['y']", c["y"]).ravel()
        if x.size != y.size or x.size < 2:
            raise _err(path, "a polyline of at least 2 points with as many x as y coordinates",
                       f"{x.size} x and {y.size} y values")
        _check_values(f"{path}['x']", x)
        _check_values(f"{path}['y']", y)
        out.append({"x": x, "y": y})
    return out


def _gate_segments(path: str, value: Any, mesh: Mesh) -> np.ndarray:
    """ISSM's ``segments`` (nseg, 5) ``[x1, y1, x2, y2, element]`` (1-based element) -> 0-based element, with
    the end points checked to lie in their element (segments computed on another mesh are caught)."""
    arr = _numeric(path, value)
    ne = mesh.numberofelements
    if arr.ndim != 2 or arr.shape[1] != 5:
        raise _err(path, "an array of shape (nseg, 5): [x1, y1, x2, y2, element] per piece",
                   f"an array of shape {arr.shape}")
    _check_values(path, arr)
    el = arr[:, 4]
    if np.any(el != np.round(el)) or np.any(el < 1) or np.any(el > ne):
        raise _err(path, f"1-based element numbers between 1 and {ne} in the fifth column",
                   f"values from {el.min():g} to {el.max():g}")
    el0 = el.astype(np.int64) - 1
    tri = mesh.elements[el0]
    ax, ay = mesh.x[tri], mesh.y[tri]
    bx, by = np.roll(ax, -1, axis=1), np.roll(ay, -1, axis=1)
    det = 2.0 * _signed_area(mesh.x, mesh.y, tri)
    for cx, cy in ((arr[:, 0], arr[:, 1]), (arr[:, 2], arr[:, 3])):
        # barycentric coordinates of the end point (opposite the edges): all >= 0 inside the element
        lam = ((bx - ax) * (cy[:, None] - ay) - (by - ay) * (cx[:, None] - ax)) / det[:, None]
        outside = lam.min(axis=1) < -1e-8
        if outside.any():
            k = int(np.argmax(outside))
            raise _err(path, "piece end points inside the element named in the fifth column (segments "
                       "computed on this mesh)", f"row {k + 1} outside element {el0[k] + 1}")
    out = arr.copy()
    out[:, 4] = el0
    return out


def _read_mass_flux_gates(md: Any, mesh: Mesh, requested: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The ``massfluxatgate`` definitions of ``md.outputdefinition.definitions`` whose name is requested.

    The gate of each comes from, in this order: ``.profile`` (contour(s) in memory, cut at element edges
    with :func:`~issm_emulator.issm.setup.mesh_profile_intersection`), ``.segments`` (ISSM's
    ``MeshProfileIntersection`` result, 1-based elements) or the ``.profilename`` ``.exp`` file. Returns
    name -> frozen (nseg, 5) ``[x1, y1, x2, y2, element]`` with 0-based elements.
    """
    from .formats import read_exp
    from .setup import mesh_profile_intersection

    defs = _get(md, "outputdefinition.definitions", None)
    if isinstance(defs, np.ndarray) and defs.dtype == object:
        defs = list(defs.ravel())
    if not isinstance(defs, (list, tuple)):
        if _is_unset(defs):
            return {}
        raise _err("outputdefinition.definitions", "a list of output definitions", type(defs).__name__)
    wanted = set(requested)
    gates: dict[str, np.ndarray] = {}
    for k, d in enumerate(defs):
        if not _is_massfluxatgate(d):
            continue
        path = f"outputdefinition.definitions[{k}]"
        name = getattr(d, "name", None)
        if not isinstance(name, str) or not name:
            raise _err(f"{path}.name", "a non-empty string (the output name to request)", repr(name))
        if name not in wanted:
            continue
        if name in gates:
            raise _err(f"{path}.name", "a name used by one flux gate only", f"a second gate named {name!r}")
        profile = getattr(d, "profile", None)
        segments = getattr(d, "segments", None)
        profilename = getattr(d, "profilename", None)
        if profile is not None and not (isinstance(profile, np.ndarray) and _is_unset(profile)):
            contours = _gate_contours(f"{path}.profile", profile)
        elif not _is_unset(segments):
            gates[name] = frozen_array(_gate_segments(f"{path}.segments", segments, mesh))
            continue
        elif isinstance(profilename, str) and profilename and os.path.isfile(profilename):
            try:
                raw = read_exp(profilename)
            except (OSError, ValueError) as exc:  # ExpFormatError is a ValueError
                raise _err(f"{path}.profilename", "a readable Argus .exp file", f"{profilename!r}: {exc}") \
                    from None
            contours = _gate_contours(f"{path}.profilename", raw) if raw else []
            if not contours:
                raise _err(f"{path}.profilename", "an .exp file with one contour at least",
                           f"{profilename!r} holds none")
        else:
            raise _err(path, "a gate: a .profile contour, a (nseg, 5) .segments array or a .profilename "
                       ".exp file that exists", f"profilename {profilename!r} (no such file) and no "
                       "profile or segments")
        el1 = np.asarray(mesh.elements) + 1
        pieces = [mesh_profile_intersection(el1, mesh.x, mesh.y, c) for c in contours]
        seg = np.vstack(pieces)
        if seg.shape[0] == 0:
            raise _err(f"{path}.profile" if profile is not None else f"{path}.profilename",
                       "a gate that crosses the mesh (coordinates in m)", "no intersection with any element")
        seg[:, 4] -= 1.0
        gates[name] = frozen_array(seg)
    return gates


# ----------------------------------------------------------------------------------------------------------
# neutral values for what a solution does not need
# ----------------------------------------------------------------------------------------------------------
def _zeros(ctx: _Ctx) -> Forcing:
    return Forcing(frozen_array(np.zeros(ctx.nv)))


def _nans(ctx: _Ctx) -> Forcing:
    return Forcing(frozen_array(np.full(ctx.nv, np.nan)))


def _neutral_basalforcings(ctx: _Ctx) -> BasalForcings:
    return BasalForcings(kind="default", groundedice_melting_rate=_zeros(ctx),
                         floatingice_melting_rate=_zeros(ctx))


def _neutral_masstransport(ctx: _Ctx) -> MasstransportSettings:
    return MasstransportSettings(spcthickness=_nans(ctx), min_thickness=1.0, stabilization=1,
                                 hydrostatic_adjustment="Absolute")


def _neutral_levelset(ctx: _Ctx) -> LevelsetSettings:
    return LevelsetSettings(stabilization=1, reinit_frequency=10, kill_icebergs=1,
                            migration_max=1e12 / ctx.yts, spclevelset=_nans(ctx))


_NEUTRAL_GROUNDINGLINE = GroundinglineSettings(migration="None", friction_interpolation="SubelementFriction1",
                                               melt_interpolation="NoMeltOnPartiallyFloating")
_NEUTRAL_FLAGS = TransientFlags(issmb=0, ismasstransport=0, isstressbalance=1, isgroundingline=0,
                                ismovingfront=0)


def _when(flag: bool, read: Callable[[], Any], neutral: Callable[[], Any]) -> Any:
    return read() if flag else neutral()


# ----------------------------------------------------------------------------------------------------------
# entry point
# ----------------------------------------------------------------------------------------------------------
def _canonical_solution(solution: str) -> str:
    key = str(solution).strip().lower()
    if key not in _SOLUTION_ALIASES:
        raise UnknownSolutionError(
            f"solution {solution!r} is not supported; choose {TRANSIENT!r} ('Transient', 'tr') or "
            f"{STRESSBALANCE!r} ('Stressbalance', 'sb')")
    return _SOLUTION_ALIASES[key]


def _add_gates(extras: dict[str, Any], md: Any, mesh: Mesh, requested: tuple[str, ...]) -> None:
    gates = _read_mass_flux_gates(md, mesh, requested)
    if gates:
        extras["mass_flux_gates"] = gates


def read_model(md: Any, solution: str = TRANSIENT) -> ModelState:
    """Validate ``md`` for ``solution`` and return it as a read-only :class:`ModelState` in SI units.

    Parameters
    ----------
    md
        A ``pyissm.model.Model`` or any object with the same attribute paths. It is only read.
    solution
        ``'TransientSolution'`` or ``'StressbalanceSolution'`` (case-insensitive; ``'tr'``, ``'sb'``,
        ``'Transient'``, ``'Stressbalance'`` accepted). Only the sections this solution uses are
        validated; the others get neutral values (zero forcings, NaN Dirichlet fields, ISSM defaults).

    Returns
    -------
    ModelState
        Velocities and rates in m/s (``v_SI = v_md / yts``), times in s (``t_SI = t_md * yts``),
        0-based triangles, frozen arrays.

    Raises
    ------
    ModelInputError
        A field is missing, has the wrong size or values, or names an unsupported class; the message
        starts with the ``md`` field path.
    UnknownSolutionError
        ``solution`` is neither a transient nor a stress-balance solution.
    """
    solution = _canonical_solution(solution)
    _check_flowequation(md)
    yts, g = _read_constants(md)
    mesh, ctx = _read_mesh(md, yts)
    vx, vy = _read_velocity(md, ctx)
    common: dict[str, Any] = {
        "mesh": mesh, "geometry": _read_geometry(md, ctx), "masks": _read_masks(md, ctx), "vx": vx, "vy": vy,
        "materials": _read_materials(md, ctx), "friction": _read_friction(md, ctx),
        "stressbalance": _read_stressbalance(md, ctx), "g": g, "yts": yts,
        "sealevel": _read_sealevel(md, ctx),
    }
    extras: dict[str, Any] = {"solution": solution}
    scale = _read_scale_factor(md, ctx)
    if scale is not None:
        extras["scale_factor"] = scale
    if solution == STRESSBALANCE:
        requested = _read_requested_outputs(md, "stressbalance.requested_outputs")
        _add_gates(extras, md, mesh, requested)
        return ModelState(
            **common, smb=_zeros(ctx), basalforcings=_neutral_basalforcings(ctx),
            calving=Calving("default", {"calvingrate": _zeros(ctx)}), frontal_meltingrate=_zeros(ctx),
            masstransport=_neutral_masstransport(ctx), levelset=_neutral_levelset(ctx),
            groundingline=_NEUTRAL_GROUNDINGLINE,
            timestepping=Timestepping(start_time=0.0, final_time=0.0, time_step=yts, interp_forcing=1),
            transient=_NEUTRAL_FLAGS,
            requested_outputs=requested, output_frequency=1, extras=extras)

    flags = _read_transient_flags(md)
    moving = bool(flags.ismovingfront)
    requested = _read_requested_outputs(md, "transient.requested_outputs")
    _add_gates(extras, md, mesh, requested)
    return ModelState(
        **common,
        # ISSM's mass transport reads md.smb.mass_balance even when issmb == 0 (the SMB core only
        # recomputes it), so the SMB is needed whenever thickness evolves.
        smb=_when(bool(flags.issmb or flags.ismasstransport), lambda: _read_smb(md, ctx),
                  lambda: _zeros(ctx)),
        basalforcings=_when(bool(flags.ismasstransport), lambda: _read_basalforcings(md, ctx),
                            lambda: _neutral_basalforcings(ctx)),
        calving=_when(moving, lambda: _read_calving(md, ctx),
                      lambda: Calving("default", {"calvingrate": _zeros(ctx)})),
        frontal_meltingrate=_when(moving, lambda: _read_frontal_meltingrate(md, ctx), lambda: _zeros(ctx)),
        masstransport=_when(bool(flags.ismasstransport), lambda: _read_masstransport(md, ctx),
                            lambda: _neutral_masstransport(ctx)),
        levelset=_when(moving, lambda: _read_levelset(md, ctx), lambda: _neutral_levelset(ctx)),
        groundingline=_read_groundingline(md),
        timestepping=_read_timestepping(md, yts),
        transient=flags,
        requested_outputs=requested,
        output_frequency=_integer("settings.output_frequency", _get(md, "settings.output_frequency", 1),
                                  ge=1),
        extras=extras,
    )
