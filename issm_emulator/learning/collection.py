"""Several ensembles of one glacier, on different meshes, as one training set.

One job: :class:`EnsembleCollection` concatenates the datasets of several ensembles (e.g. Pine Island on
its 2, 3 and 5 km meshes) so that one network learns an operator that does not depend on the mesh. Every
sample keeps its own mesh graph; the parts must share the features (the first part's
:class:`~issm_emulator.nn.features.FeatureSpec` is imposed on the others) and the swept parameter. The
checkpoint then records every training mesh and the range of their resolutions in its applicability
domain (:func:`issm_emulator.learning.applicability.training_domain`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from torch.utils.data import ConcatDataset

from issm_emulator.learning.dataset import DatasetError, EnsembleDataset

__all__ = ["EnsembleCollection", "is_collection", "mesh_vertices", "parts", "run_values", "set_time_phase"]


class EnsembleCollection(ConcatDataset):
    """The samples of several :class:`~issm_emulator.learning.dataset.EnsembleDataset` (one split each).

    Attributes mirror a single dataset where training needs them: ``spec``, ``parameter``, ``moving_front``,
    ``yts``, ``path`` and ``ds`` (of the first part), ``forcing_ranges()`` (over all parts).
    """

    def __init__(self, datasets: Sequence[EnsembleDataset]):
        if not datasets:
            raise DatasetError("an ensemble collection needs at least one ensemble")
        first = datasets[0]
        for d in datasets[1:]:
            if tuple(d.spec.scalars) != tuple(first.spec.scalars) or tuple(d.spec.vectors) != tuple(first.spec.vectors):
                raise DatasetError(f"{d.path}: its features differ from {first.path}'s")
            if d.parameter != first.parameter:
                raise DatasetError(f"{d.path} sweeps {d.parameter!r}, {first.path} sweeps {first.parameter!r}: "
                                   "one network needs one swept parameter")
        super().__init__(list(datasets))
        self.parts = list(datasets)
        self.spec = first.spec
        self.parameter = first.parameter
        self.moving_front = any(d.moving_front for d in datasets)
        self.yts = first.yts
        self.path = first.path
        self.ds = first.ds

    def forcing_ranges(self) -> dict[str, tuple[float, float]]:
        out: dict[str, tuple[float, float]] = {}
        for d in self.parts:
            for k, (lo, hi) in d.forcing_ranges().items():
                a, b = out.get(k, (lo, hi))
                out[k] = (min(a, lo), max(b, hi))
        return out

    def set_time_phase(self, phase: int) -> None:
        """:meth:`~issm_emulator.learning.dataset.EnsembleDataset.set_time_phase` of every part."""
        for d in self.parts:
            d.set_time_phase(phase)
        self.cumulative_sizes = self.cumsum(self.datasets)

    def __repr__(self) -> str:
        return f"EnsembleCollection({', '.join(str(d.path) for d in self.parts)}; {len(self)} samples)"


def is_collection(data: Any) -> bool:
    """Whether ``data`` names several ensembles (a list or tuple of folders/files)."""
    return isinstance(data, (list, tuple)) and not isinstance(data, (str, os.PathLike))


def parts(dataset: Any) -> list[EnsembleDataset]:
    """The single-ensemble datasets of ``dataset`` (itself when it is one)."""
    return list(dataset.parts) if isinstance(dataset, EnsembleCollection) else [dataset]


def set_time_phase(dataset: Any, phase: int) -> bool:
    """Shift the kept outputs of a dataset or collection to ``phase`` (see
    :meth:`~issm_emulator.learning.dataset.EnsembleDataset.set_time_phase`); whether its length changed."""
    before = len(dataset)
    dataset.set_time_phase(phase)
    return len(dataset) != before


def run_values(dataset: Any) -> list[Any]:
    """The swept parameter's value of every run of a dataset (or collection)."""
    return [d.run_value(p) for d in parts(dataset) for p in d.run_positions]


def mesh_vertices(dataset: Any) -> Any:
    """The training mesh's vertex count (a list of them for a collection of several meshes)."""
    sizes = [int(d.mesh.nv) for d in parts(dataset)]
    return sizes[0] if len(sizes) == 1 else sizes
