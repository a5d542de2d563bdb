"""Neural networks of the emulator: the equivariant EGCN and the GCN and CNN baselines.

All three share one interface::

    model = build_model({"arch": "egcn", "n_scalars": S, "n_vectors": C, "scalar_outputs": ["thickness"]})
    out = model(graph, scalars, vectors)    # graph: issm_emulator.graph.mesh_graph(...) (Data or Batch)
    out["velocity"]  # (n, 2);  out["thickness"]  # (n,)

with inputs built by :func:`issm_emulator.nn.features.build_inputs` and normalised by
:class:`issm_emulator.nn.normalizer.Normalizer`; :mod:`issm_emulator.solvers.emulator.checkpoint` saves and loads
trained models with their normalisation statistics and input manifest.

In direct mode the networks are time-decoded by default (``build_model({..., "decoder": "increment",
"time_column": j, "time_scale": T})``, :data:`DECODERS`): ``model(graph, scalars, vectors, times)`` returns
the changes since the initial state at ``times``, ``(n, K, 2)`` and ``(n, K)``, exactly zero at ``t = 0``;
``model.encode``/``model.member_codes``/``model.decode`` split that for the runtime.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from issm_emulator.nn.cnn import CNN, GridOperator, grid_operator
from issm_emulator.nn.direct import EGCNDirect
from issm_emulator.nn.egcn import EGCN, EquivariantConv
from issm_emulator.nn.features import (
    SCALAR_FEATURES,
    SCALAR_OUTPUTS,
    VECTOR_FEATURES,
    Feature,
    FeatureSpec,
    build_inputs,
    default_spec,
    nodal_gradient,
)
from issm_emulator.nn.gcn import GCN
from issm_emulator.nn.increment import CNNIncrement, GCNIncrement, TimeInputCode, TimeInputIncrement
from issm_emulator.nn.normalizer import Normalizer

#: architecture name -> class
ARCHITECTURES: dict[str, type[nn.Module]] = {"egcn": EGCN, "gcn": GCN, "cnn": CNN}
#: (architecture, decoder) -> class of the time-decoded direct-mode networks (increments since the initial
#: state; ``decodes_time = True``): the EGCN's trunk runs once per initial state, the GCN and CNN once per time
DECODERS: dict[tuple[str, str], type[nn.Module]] = {("egcn", "increment"): EGCNDirect,
                                                    ("gcn", "increment"): GCNIncrement,
                                                    ("cnn", "increment"): CNNIncrement}


def build_model(config: Mapping[str, Any]) -> nn.Module:
    """A network from its ``config`` (``model.config`` of any network here; ``'arch'`` picks the class,
    ``'decoder'`` a time-decoded direct-mode variant)."""
    cfg = dict(config)
    arch = str(cfg.pop("arch", "")).lower()
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown network architecture {arch!r}; known: {sorted(ARCHITECTURES)}")
    decoder = cfg.pop("decoder", None)
    if decoder is not None:
        if (arch, decoder) not in DECODERS:
            raise ValueError(f"network architecture {arch!r} has no {decoder!r} decoder; known: "
                             f"{sorted(DECODERS)}")
        return DECODERS[(arch, decoder)](**cfg)
    return ARCHITECTURES[arch](**cfg)


def model_from_spec(arch: str, spec: FeatureSpec, **options: Any) -> nn.Module:
    """A network of architecture ``arch`` sized for the feature specification ``spec``."""
    return build_model({"arch": arch, "n_scalars": spec.n_scalars, "n_vectors": spec.n_vectors,
                        "scalar_outputs": list(spec.scalar_outputs), **options})


__all__ = [
    "ARCHITECTURES",
    "CNN",
    "DECODERS",
    "EGCN",
    "GCN",
    "SCALAR_FEATURES",
    "SCALAR_OUTPUTS",
    "VECTOR_FEATURES",
    "CNNIncrement",
    "EGCNDirect",
    "EquivariantConv",
    "Feature",
    "FeatureSpec",
    "GCNIncrement",
    "GridOperator",
    "Normalizer",
    "TimeInputCode",
    "TimeInputIncrement",
    "build_inputs",
    "build_model",
    "default_spec",
    "grid_operator",
    "model_from_spec",
    "nodal_gradient",
]
