"""What a resumed training must share with the run it continues: the resume record and its check.

``train(..., resume=True)`` continues from ``<out stem>.last.pt`` only when the record saved there
(:func:`resume_record`: the options but :data:`RESUMABLE_CHANGES`, the architecture, the features and the
training data) equals the new one; otherwise :func:`check_resume` refuses, listing the differences.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from issm_emulator.learning.dataset import DatasetError

__all__ = ["RESUMABLE_CHANGES", "check_resume", "differences", "resume_record"]

#: training options a resumed run may change: the number of epochs (to train longer) and the device
RESUMABLE_CHANGES = ("epochs", "device")


def resume_record(config: Mapping[str, Any], train_ds: Any, manifest: Mapping[str, Any], *,
                   parameters: Any, split_rule: Any, time_stride: int) -> dict[str, Any]:
    """What must be the same for ``resume`` to continue a run: the options (but
    :data:`RESUMABLE_CHANGES`), the architecture and the training data (ensemble, its creation time and
    size, the split's values, the features), as plain JSON values."""
    attrs = train_ds.ds.attrs
    path = Path(train_ds.path)
    extra = manifest.get("extra", {})
    record = {
        **{k: v for k, v in config.items() if k not in RESUMABLE_CHANGES},
        "parameters": None if parameters is None else list(parameters),
        "split_rule": None if split_rule is None else str(split_rule),
        "time_stride": time_stride,
        "features": {k: manifest.get(k) for k in ("scalar_features", "vector_features", "outputs")},
        "data": {"ensemble": str(attrs.get("ensemble", "")), "created": str(attrs.get("created", "")),
                 "runs_finished": str(attrs.get("runs_finished", "")),
                 "bytes": path.stat().st_size if path.is_file() else None,
                 "forcing_ranges": manifest.get("forcing_ranges"),
                 **{k: extra.get(k) for k in ("swept_parameter", "train_values", "validation_values",
                                              "moving_front", "mesh_vertices")}},
    }
    return json.loads(json.dumps(record, default=str, sort_keys=True))


def differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            out += differences(old.get(k, "(absent)"), new.get(k, "(absent)"), f"{prefix}{k}.")
        return out
    if old != new:
        return [f"{prefix.rstrip('.')}: {json.dumps(old, default=str)} -> {json.dumps(new, default=str)}"]
    return []


def check_resume(last_path: Path, state: Mapping[str, Any], record: Mapping[str, Any]) -> None:
    """Refuse to resume from ``last_path`` when its data, architecture or options differ from ``record``
    (the differences listed, checkpoint value -> new value)."""
    if "resume_record" not in state:  # written before the record existed: only arch and mode are known
        return
    diffs = differences(json.loads(state["resume_record"]), dict(record))
    if diffs:
        raise DatasetError(f"{last_path}: cannot resume, it was trained with other data or options "
                           f"({len(diffs)} difference(s), checkpoint -> now): " + "; ".join(diffs) +
                           "; train into another --out, or delete the .last.pt file to start over")
