"""The input and output features shared by every emulator network (EGCN, GCN, CNN).

A :class:`FeatureSpec` lists, in order, the **scalar** inputs (invariant under rotations: thickness, bed,
masks, forcing parameters, time...), the **2-vector** inputs (velocity, surface/bed/thickness gradients;
they rotate with the coordinates) and the outputs (velocity always, plus invariant scalars such as
thickness). :func:`build_inputs` turns arrays given by physical name, in SI units, into the tensors the
networks take: ``scalars`` ``(nv, S)`` and ``vectors`` ``(nv, C_v, 2)``.

Nodal gradients are area-weighted averages of the constant P1 gradients of the surrounding elements,

.. math:: \\nabla f(v) = \\frac{\\sum_{e \\ni v} A_e \\nabla f|_e}{\\sum_{e \\ni v} A_e},

which is exact for linear fields and rotates with the mesh.

Features are of three kinds: ``'field'`` (a per-vertex array), ``'parameter'`` (a forcing parameter, a
number or a per-vertex array; its training range is recorded in checkpoints and checked at inference) and
``'graph'`` (taken from the mesh graph, e.g. boundary flags).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from issm_emulator.errors import ModelInputError
from issm_emulator.physics.fe import P1Mesh


@dataclass(frozen=True)
class Feature:
    """One named physical quantity: SI unit, ISSM field it comes from, and kind."""

    name: str
    unit: str
    md_field: str
    kind: str = "field"  #: 'field', 'parameter' or 'graph'
    description: str = ""


#: Scalar (rotation-invariant) features the networks understand, by name.
SCALAR_FEATURES: dict[str, Feature] = {f.name: f for f in [
    Feature("thickness", "m", "md.geometry.thickness", description="ice thickness H"),
    Feature("bed", "m", "md.geometry.bed", description="bed elevation"),
    Feature("surface", "m", "md.geometry.surface", description="ice surface elevation"),
    Feature("base", "m", "md.geometry.base", description="ice base elevation"),
    Feature("ocean_levelset", "m", "md.mask.ocean_levelset", description="> 0 grounded, < 0 floating"),
    Feature("ice_levelset", "m", "md.mask.ice_levelset", description="< 0 ice, > 0 no ice, 0 front"),
    Feature("friction_coefficient", "SI (friction law)", "md.friction.coefficient",
            description="basal friction coefficient (Budd C, Weertman C)"),
    Feature("rheology_B", "Pa s^(1/n)", "md.materials.rheology_B", description="ice hardness B"),
    Feature("smb", "m/s", "md.smb.mass_balance", description="surface mass balance (ice equivalent)"),
    Feature("dirichlet_mask", "1", "md.stressbalance.spcvx",
            description="1 where the velocity is prescribed, 0 elsewhere"),
    Feature("melt_rate", "m/s", "md.basalforcings.floatingice_melting_rate", kind="parameter",
            description="basal melt rate of floating ice"),
    Feature("calving_threshold", "Pa", "md.calving.stress_threshold_floatingice", kind="parameter",
            description="von Mises calving stress threshold"),
    Feature("time", "s", "md.timestepping.final_time", kind="parameter",
            description="time since the initial state (direct mode)"),
    Feature("is_boundary", "1", "md.mesh.vertexonboundary", kind="graph",
            description="1 on the mesh boundary"),
    Feature("is_front", "1", "md.mask.ice_levelset", kind="graph", description="1 on the ice front"),
]}

#: 2-vector (rotation-equivariant) features, by name.
VECTOR_FEATURES: dict[str, Feature] = {f.name: f for f in [
    Feature("velocity", "m/s", "md.initialization.vx/vy", description="ice velocity (vx, vy)"),
    Feature("surface_gradient", "1", "md.geometry.surface", description="nodal gradient of the surface"),
    Feature("bed_gradient", "1", "md.geometry.bed", description="nodal gradient of the bed"),
    Feature("thickness_gradient", "1", "md.geometry.thickness", description="nodal gradient of H"),
    Feature("velocity_dirichlet", "m/s", "md.stressbalance.spcvx/spcvy",
            description="prescribed velocity where it is prescribed, 0 elsewhere"),
]}

#: Scalar outputs a network may be configured to predict besides the velocity.
SCALAR_OUTPUTS: dict[str, Feature] = {n: SCALAR_FEATURES[n] for n in
                                      ("thickness", "surface", "base", "ice_levelset")}

#: vector feature -> scalar field it is the gradient of
_GRADIENT_OF = {"surface_gradient": "surface", "bed_gradient": "bed", "thickness_gradient": "thickness"}


@dataclass(frozen=True)
class FeatureSpec:
    """Ordered input and output features of a network.

    Attributes
    ----------
    scalars : names from :data:`SCALAR_FEATURES`, in column order of the ``scalars`` tensor
    vectors : names from :data:`VECTOR_FEATURES`, in channel order of the ``vectors`` tensor
    scalar_outputs : names from :data:`SCALAR_OUTPUTS` predicted besides ``'velocity'``
    """

    scalars: tuple[str, ...]
    vectors: tuple[str, ...]
    scalar_outputs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "scalars", tuple(self.scalars))
        object.__setattr__(self, "vectors", tuple(self.vectors))
        object.__setattr__(self, "scalar_outputs", tuple(self.scalar_outputs))
        for names, table, what in ((self.scalars, SCALAR_FEATURES, "scalar feature"),
                                   (self.vectors, VECTOR_FEATURES, "vector feature"),
                                   (self.scalar_outputs, SCALAR_OUTPUTS, "scalar output")):
            unknown = [n for n in names if n not in table]
            if unknown:
                raise ValueError(f"unknown {what}(s) {unknown}; known: {sorted(table)}")
            if len(set(names)) != len(names):
                raise ValueError(f"duplicate {what} names in {list(names)}")
        if not self.vectors:
            raise ValueError("a FeatureSpec needs at least one vector feature (e.g. 'velocity')")

    @property
    def n_scalars(self) -> int:
        return len(self.scalars)

    @property
    def n_vectors(self) -> int:
        return len(self.vectors)

    @property
    def parameters(self) -> tuple[str, ...]:
        """The forcing parameters among the scalar inputs (their ranges go into checkpoints)."""
        return tuple(n for n in self.scalars if SCALAR_FEATURES[n].kind == "parameter")

    def units(self) -> dict[str, str]:
        """SI unit of every input and output feature, by name."""
        out = {n: SCALAR_FEATURES[n].unit for n in self.scalars}
        out.update({n: VECTOR_FEATURES[n].unit for n in self.vectors})
        out.update({n: SCALAR_OUTPUTS[n].unit for n in self.scalar_outputs})
        out["velocity"] = VECTOR_FEATURES["velocity"].unit
        return out

    def to_dict(self) -> dict[str, list[str]]:
        return {"scalars": list(self.scalars), "vectors": list(self.vectors),
                "scalar_outputs": list(self.scalar_outputs)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Iterable[str]]) -> FeatureSpec:
        return cls(tuple(d["scalars"]), tuple(d["vectors"]), tuple(d.get("scalar_outputs", ())))


def default_spec(mode: str = "step", parameters: Iterable[str] = ("melt_rate",),
                 moving_front: bool = False, previous_velocity: bool = False) -> FeatureSpec:
    """The feature set used by the built-in emulators.

    ``mode='direct'`` (the seed's method) predicts velocity and thickness (and the ice level set when the
    front moves) at time ``t`` from the initial state, the forcing ``parameters`` and ``time``;
    ``mode='step'`` predicts the velocity from the current geometry, masks and forcing only: the stress
    balance is diagnostic (the velocity is a function of the geometry), and leaving the previous velocity out
    of the inputs keeps the network's own errors from feeding back into its next prediction along a rollout
    (with it, a network learns "next velocity = previous velocity + a small change" and drifts, and it
    cannot handle the first step, where the previous velocity is an observation rather than a solution).

    ``previous_velocity=True`` (step mode) adds the velocity at the start of the step as the first vector
    input: the network then corrects a warm start, as ``fem``'s Picard iterations start from the previous
    step's velocity, and a much smaller network can do that than one that must solve the stress balance
    from the geometry alone. It is trained against the drift described above with a perturbed input
    velocity (``velocity_noise`` of :class:`~issm_emulator.learning.dataset.StepDataset`), so that it learns
    to move a wrong velocity towards the stress balance of the geometry instead of copying it.
    """
    if mode not in ("direct", "step"):
        raise ValueError(f"mode must be 'direct' or 'step', got {mode!r}")
    if previous_velocity and mode != "step":
        raise ValueError("previous_velocity is a step-mode option (direct mode always has the initial velocity)")
    scalars = ["thickness", "bed", "surface", "base", "ocean_levelset", "ice_levelset",
               "friction_coefficient", "rheology_B", "smb", "dirichlet_mask", "is_boundary", "is_front"]
    scalars += [p for p in parameters if p not in scalars]
    vectors = ["surface_gradient", "bed_gradient", "velocity_dirichlet"]
    if mode == "direct" or previous_velocity:  # the initial velocity (direct) or the step's start (step)
        vectors.insert(0, "velocity")
    outputs: tuple[str, ...] = ()
    if mode == "direct":
        scalars.append("time")
        outputs = ("thickness", "ice_levelset") if moving_front else ("thickness",)
    return FeatureSpec(tuple(scalars), tuple(vectors), outputs)


def _as_p1mesh(mesh: Any) -> P1Mesh:
    if isinstance(mesh, P1Mesh):
        return mesh
    if isinstance(mesh, tuple) and len(mesh) == 3:
        x, y, elements = mesh
        return P1Mesh(np.asarray(x, float), np.asarray(y, float), np.asarray(elements, np.int64))
    inner = getattr(mesh, "mesh", None)  # a ModelState
    if inner is not None and hasattr(inner, "elements"):
        return P1Mesh.from_mesh(inner)
    if hasattr(mesh, "elements"):
        return P1Mesh.from_mesh(mesh)
    raise TypeError("mesh must be a P1Mesh, a state.Mesh, a ModelState or a tuple (x, y, elements)")


def nodal_gradient(mesh: Any, f: np.ndarray) -> np.ndarray:
    """(nv, 2) nodal gradient of the P1 field ``f``: area-weighted mean of the element gradients
    (:attr:`~issm_emulator.physics.fe.P1Mesh.nodal_gradient_operator`, built once per mesh)."""
    pm = _as_p1mesh(mesh)
    f = np.asarray(f, float)
    if f.shape != (pm.nv,):
        raise ValueError(f"field for the gradient must have shape ({pm.nv},), got {f.shape}")
    return (pm.nodal_gradient_operator @ f).reshape(2, pm.nv).T


def _scalar_column(name: str, value: Any, nv: int) -> np.ndarray:
    feat = SCALAR_FEATURES[name]
    arr = np.asarray(value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value, float)
    if arr.ndim == 0:
        if feat.kind != "parameter":
            raise ModelInputError(feat.md_field, f"a per-vertex array of shape ({nv},) for feature "
                                  f"{name!r}", "a single number")
        return np.full(nv, float(arr))
    arr = arr.reshape(-1) if arr.shape in ((nv, 1), (1, nv)) else arr
    if arr.shape != (nv,):
        raise ModelInputError(feat.md_field, f"shape ({nv},) for feature {name!r}", f"shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ModelInputError(feat.md_field, f"finite values for feature {name!r}", "NaN or inf")
    return arr


def _vector_column(name: str, value: Any, nv: int) -> np.ndarray:
    feat = VECTOR_FEATURES[name]
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, (tuple, list)) and len(value) == 2:
        arr = np.stack([np.asarray(value[0], float).reshape(-1), np.asarray(value[1], float).reshape(-1)], 1)
    else:
        arr = np.asarray(value, float)
    if arr.shape != (nv, 2):
        raise ModelInputError(feat.md_field, f"shape ({nv}, 2) or a pair of ({nv},) arrays for vector "
                              f"feature {name!r}", f"shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ModelInputError(feat.md_field, f"finite values for vector feature {name!r}", "NaN or inf")
    return arr


def build_inputs(spec: FeatureSpec, mesh: Any, *, dtype: torch.dtype = torch.float32,
                 device: Any = None, graph: Any = None, **arrays: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Input tensors of a network from arrays given by physical name (SI units).

    Parameters
    ----------
    spec : the network's :class:`FeatureSpec`
    mesh : :class:`~issm_emulator.physics.fe.P1Mesh`, :class:`~issm_emulator.state.Mesh`, a ModelState or
        ``(x, y, elements)`` (0-based); used for the vertex count and the nodal gradients
    **arrays : every feature of ``spec`` by name: scalars as ``(nv,)`` arrays (forcing parameters may be
        numbers), vectors as ``(nv, 2)`` arrays or ``(vx, vy)`` pairs. ``*_gradient`` vectors that are not
        given are computed from the scalar field of the same stem (``surface_gradient`` from ``surface``).
    graph : optional mesh graph (:func:`issm_emulator.graph.mesh_graph`); ``'graph'`` features that are not
        given (``is_boundary``, ``is_front``) are taken from its attributes of the same name

    Returns
    -------
    scalars : ``(nv, S)`` tensor, columns in ``spec.scalars`` order
    vectors : ``(nv, C_v, 2)`` tensor, channels in ``spec.vectors`` order
    """
    pm = _as_p1mesh(mesh)
    nv = pm.nv
    known = set(SCALAR_FEATURES) | set(VECTOR_FEATURES)
    unknown = sorted(set(arrays) - known)
    if unknown:
        raise TypeError(f"build_inputs got unknown feature name(s) {unknown}; known: {sorted(known)}")
    for name in spec.scalars:
        if SCALAR_FEATURES[name].kind == "graph" and arrays.get(name) is None and graph is not None:
            arrays[name] = getattr(graph, name, None)
    cols = []
    for name in spec.scalars:
        if name not in arrays or arrays[name] is None:
            feat = SCALAR_FEATURES[name]
            raise ModelInputError(feat.md_field, f"feature {name!r} ({feat.description}, {feat.unit}) "
                                  "required by the network", "nothing")
        cols.append(_scalar_column(name, arrays[name], nv))
    vecs = []
    for name in spec.vectors:
        value = arrays.get(name)
        if value is None and name in _GRADIENT_OF:
            stem = _GRADIENT_OF[name]
            if arrays.get(stem) is None:
                feat = SCALAR_FEATURES[stem]
                raise ModelInputError(feat.md_field, f"{stem!r} (to compute {name!r}) or {name!r} itself",
                                      "neither")
            value = nodal_gradient(pm, _scalar_column(stem, arrays[stem], nv))
        if value is None:
            feat = VECTOR_FEATURES[name]
            raise ModelInputError(feat.md_field, f"vector feature {name!r} ({feat.description}, "
                                  f"{feat.unit}) required by the network", "nothing")
        vecs.append(_vector_column(name, value, nv))
    scal = np.stack(cols, axis=1) if cols else np.zeros((nv, 0))
    vec = np.stack(vecs, axis=1)
    return (torch.as_tensor(scal, dtype=dtype, device=device),
            torch.as_tensor(vec, dtype=dtype, device=device))

