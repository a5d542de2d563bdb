"""Read what ``md`` asks the solution to output: requested output names and flux gates.

Flux gates: every ``massfluxatgate`` definition of ``md.outputdefinition.definitions`` whose ``name`` is a
requested output is read into name -> (nseg, 5) ``[x1, y1, x2, y2, element]`` (0-based elements, ISSM's
``MeshProfileIntersection`` layout), from its ``.profile`` contour, its ``.segments`` (1-based, as ISSM) or
its ``profilename`` ``.exp`` file, in that order.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from issm_emulator.state import Mesh, frozen_array

from .fields import check_values, describe, err, get, is_unset, numeric
from .read_mesh import signed_area

__all__ = ["MASSFLUX_CLASSES", "read_mass_flux_gates", "read_requested_outputs"]


def read_requested_outputs(md: Any, path: str) -> tuple[str, ...]:
    value = get(md, path, ["default"])
    if isinstance(value, str):
        value = [value]
    try:
        items = list(value)
    except TypeError:
        raise err(path, "a list of output names (strings)", type(value).__name__) from None
    bad = [v for v in items if not isinstance(v, str)]
    if bad:
        raise err(path, "a list of output names (strings)", f"the item {bad[0]!r}")
    return tuple(items)


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
        arr = numeric(path, profile)
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise err(path, "a contour dict with 'x' and 'y', a list of them, or an (npts, 2) array of "
                      "points (m)", describe(arr) if arr.ndim != 2 else f"an array of shape {arr.shape}")
        items = [{"x": arr[:, 0], "y": arr[:, 1]}]
    out = []
    for c in items:
        if "x" not in c or "y" not in c:
            raise err(path, "a contour with 'x' and 'y' point coordinates (m)",
                      f"a dict with keys {sorted(map(str, c))}")
        x, y = numeric(f"{path}['x']", c["x"]).ravel(), numeric(f"{path}['y']", c["y"]).ravel()
        if x.size != y.size or x.size < 2:
            raise err(path, "a polyline of at least 2 points with as many x as y coordinates",
                      f"{x.size} x and {y.size} y values")
        check_values(f"{path}['x']", x)
        check_values(f"{path}['y']", y)
        out.append({"x": x, "y": y})
    return out


def _gate_segments(path: str, value: Any, mesh: Mesh) -> np.ndarray:
    """ISSM's ``segments`` (nseg, 5) ``[x1, y1, x2, y2, element]`` (1-based element) -> 0-based element, with
    the end points checked to lie in their element (segments computed on another mesh are caught)."""
    arr = numeric(path, value)
    ne = mesh.numberofelements
    if arr.ndim != 2 or arr.shape[1] != 5:
        raise err(path, "an array of shape (nseg, 5): [x1, y1, x2, y2, element] per piece",
                  f"an array of shape {arr.shape}")
    check_values(path, arr)
    el = arr[:, 4]
    if np.any(el != np.round(el)) or np.any(el < 1) or np.any(el > ne):
        raise err(path, f"1-based element numbers between 1 and {ne} in the fifth column",
                  f"values from {el.min():g} to {el.max():g}")
    el0 = el.astype(np.int64) - 1
    tri = mesh.elements[el0]
    ax, ay = mesh.x[tri], mesh.y[tri]
    bx, by = np.roll(ax, -1, axis=1), np.roll(ay, -1, axis=1)
    det = 2.0 * signed_area(mesh.x, mesh.y, tri)
    for cx, cy in ((arr[:, 0], arr[:, 1]), (arr[:, 2], arr[:, 3])):
        # barycentric coordinates of the end point (opposite the edges): all >= 0 inside the element
        lam = ((bx - ax) * (cy[:, None] - ay) - (by - ay) * (cx[:, None] - ax)) / det[:, None]
        outside = lam.min(axis=1) < -1e-8
        if outside.any():
            k = int(np.argmax(outside))
            raise err(path, "piece end points inside the element named in the fifth column (segments "
                      "computed on this mesh)", f"row {k + 1} outside element {el0[k] + 1}")
    out = arr.copy()
    out[:, 4] = el0
    return out


def read_mass_flux_gates(md: Any, mesh: Mesh, requested: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The ``massfluxatgate`` definitions of ``md.outputdefinition.definitions`` whose name is requested.

    The gate of each comes from, in this order: ``.profile`` (contour(s) in memory, cut at element edges
    with :func:`~issm_emulator.issm.setup.mesh_profile_intersection`), ``.segments`` (ISSM's
    ``MeshProfileIntersection`` result, 1-based elements) or the ``.profilename`` ``.exp`` file. Returns
    name -> frozen (nseg, 5) ``[x1, y1, x2, y2, element]`` with 0-based elements.
    """
    from .formats import read_exp
    from .interpolation import mesh_profile_intersection

    defs = get(md, "outputdefinition.definitions", None)
    if isinstance(defs, np.ndarray) and defs.dtype == object:
        defs = list(defs.ravel())
    if not isinstance(defs, (list, tuple)):
        if is_unset(defs):
            return {}
        raise err("outputdefinition.definitions", "a list of output definitions", type(defs).__name__)
    wanted = set(requested)
    gates: dict[str, np.ndarray] = {}
    for k, d in enumerate(defs):
        if not _is_massfluxatgate(d):
            continue
        path = f"outputdefinition.definitions[{k}]"
        name = getattr(d, "name", None)
        if not isinstance(name, str) or not name:
            raise err(f"{path}.name", "a non-empty string (the output name to request)", repr(name))
        if name not in wanted:
            continue
        if name in gates:
            raise err(f"{path}.name", "a name used by one flux gate only", f"a second gate named {name!r}")
        profile = getattr(d, "profile", None)
        segments = getattr(d, "segments", None)
        profilename = getattr(d, "profilename", None)
        if profile is not None and not (isinstance(profile, np.ndarray) and is_unset(profile)):
            contours = _gate_contours(f"{path}.profile", profile)
        elif not is_unset(segments):
            gates[name] = frozen_array(_gate_segments(f"{path}.segments", segments, mesh))
            continue
        elif isinstance(profilename, str) and profilename and os.path.isfile(profilename):
            try:
                raw = read_exp(profilename)
            except (OSError, ValueError) as exc:  # ExpFormatError is a ValueError
                raise err(f"{path}.profilename", "a readable Argus .exp file", f"{profilename!r}: {exc}") \
                    from None
            contours = _gate_contours(f"{path}.profilename", raw) if raw else []
            if not contours:
                raise err(f"{path}.profilename", "an .exp file with one contour at least",
                          f"{profilename!r} holds none")
        else:
            raise err(path, "a gate: a .profile contour, a (nseg, 5) .segments array or a .profilename "
                      ".exp file that exists", f"profilename {profilename!r} (no such file) and no "
                      "profile or segments")
        el1 = np.asarray(mesh.elements) + 1
        pieces = [mesh_profile_intersection(el1, mesh.x, mesh.y, c) for c in contours]
        seg = np.vstack(pieces)
        if seg.shape[0] == 0:
            raise err(f"{path}.profile" if profile is not None else f"{path}.profilename",
                      "a gate that crosses the mesh (coordinates in m)", "no intersection with any element")
        seg[:, 4] -= 1.0
        gates[name] = frozen_array(seg)
    return gates
