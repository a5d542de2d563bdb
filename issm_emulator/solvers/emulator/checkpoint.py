"""Saving and loading trained emulators.

A checkpoint (one ``torch.save`` file, readable with ``weights_only=True``) holds

* ``model_config``: the network's ``config`` (architecture and sizes), enough to rebuild it;
* ``state_dict``: the weights (on the CPU);
* ``input_normalizer`` / ``output_normalizer``: :meth:`Normalizer.to_dict` of the input features and of
  the outputs (``'velocity'`` and the scalar outputs);
* ``manifest``: what the network expects (:func:`make_manifest`): feature names in order and their SI
  units, outputs, the training range of every forcing parameter, the mode (``'direct'`` or ``'step'``),
  the architecture and the package version;
* ``extra``: free-form training information (epochs, losses, data set...);
* ``content_sha256``: sha256 of everything above (:func:`content_sha256`), checked on every load: a
  corrupted or edited file is refused with :class:`CheckpointCorruptedError` naming it.

The manifest also carries the applicability ``domain`` (:mod:`issm_emulator.solvers.emulator.domain`) and
the error indicator's ``indicator`` calibration when training recorded them.

:func:`check_manifest` compares a manifest with what a caller can supply and refuses a mismatch with
:class:`CheckpointMismatchError`; a forcing value outside its training range gives an
:class:`~issm_emulator.errors.ExtrapolationWarning` naming the parameter and the range.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from issm_emulator._files import apply_user_mode
from issm_emulator._version import __version__
from issm_emulator.errors import ExtrapolationWarning, IssmEmulatorError
from issm_emulator.nn.features import SCALAR_FEATURES, SCALAR_OUTPUTS, VECTOR_FEATURES, FeatureSpec
from issm_emulator.nn.normalizer import Normalizer
from issm_emulator.state import YTS_DEFAULT

FORMAT = "issm-emulator-checkpoint"
FORMAT_VERSION = 1
MODES = ("direct", "step")


class CheckpointMismatchError(IssmEmulatorError, ValueError):
    """A checkpoint does not fit the model, data or mode it is applied to (or is not a checkpoint)."""


class CheckpointCorruptedError(CheckpointMismatchError):
    """A checkpoint file's content does not match its recorded hash (or carries none)."""


_HASHED = ("format", "format_version", "model_config", "input_normalizer", "output_normalizer", "manifest",
           "extra")


def content_sha256(payload: Mapping[str, Any]) -> str:
    """sha256 of a checkpoint payload: its tensors (name, dtype, shape, bytes, in name order) and the JSON
    of its configuration, normalisers, manifest and extra (sorted keys). Independent of pickling details."""
    import hashlib
    import json

    h = hashlib.sha256()
    for name in sorted(payload["state_dict"]):
        t = payload["state_dict"][name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    h.update(json.dumps({k: _plain(payload.get(k)) for k in _HASHED}, sort_keys=True, allow_nan=True).encode())
    return h.hexdigest()


def _plain(obj: Any) -> Any:
    """``obj`` with numpy/torch scalars and arrays turned into Python numbers and lists."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _plain(obj.detach().cpu().tolist())
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def value_range(values: Iterable[Any]) -> tuple[float, float]:
    """``(min, max)`` over numbers and arrays (e.g. one forcing value per training run)."""
    lo, hi = math.inf, -math.inf
    for v in values:
        a = np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v, float)
        if a.size:
            lo, hi = min(lo, float(np.nanmin(a))), max(hi, float(np.nanmax(a)))
    if lo > hi:
        raise ValueError("value_range: no values")
    return lo, hi


def make_manifest(spec: FeatureSpec, mode: str, forcing_ranges: Mapping[str, Any], *,
                  arch: str | None = None, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The input manifest of a network trained on ``spec`` in ``mode``.

    Parameters
    ----------
    spec : the network's features
    mode : ``'direct'`` or ``'step'``
    forcing_ranges : ``{parameter: (min, max)}`` in SI units for every forcing parameter of ``spec``
        (``spec.parameters``), e.g. from :func:`value_range` over the training runs
    arch : architecture name (``'egcn'``, ``'gcn'``, ``'cnn'``)
    extra : further JSON-like entries (e.g. the data set name)
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    missing = [p for p in spec.parameters if p not in forcing_ranges]
    if missing:
        raise ValueError(f"make_manifest: no training range given for forcing parameter(s) {missing}")
    unknown = [p for p in forcing_ranges if p not in spec.parameters]
    if unknown:
        raise ValueError(f"make_manifest: {unknown} are not forcing parameters of the feature spec "
                         f"({list(spec.parameters)})")
    ranges = {}
    for name, rng in forcing_ranges.items():
        lo, hi = (float(v) for v in rng)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise ValueError(f"make_manifest: bad range {rng!r} for {name!r}")
        ranges[name] = [lo, hi]
    manifest = {
        "package": "issm-emulator",
        "package_version": __version__,
        "format_version": FORMAT_VERSION,
        "mode": mode,
        "arch": arch,
        "scalar_features": list(spec.scalars),
        "vector_features": list(spec.vectors),
        "outputs": ["velocity", *spec.scalar_outputs],
        "units": spec.units(),
        "forcing_ranges": ranges,
    }
    if extra:
        manifest["extra"] = _plain(dict(extra))
    return manifest


def manifest_spec(manifest: Mapping[str, Any]) -> FeatureSpec:
    """The :class:`FeatureSpec` a manifest describes."""
    try:
        return FeatureSpec(tuple(manifest["scalar_features"]), tuple(manifest["vector_features"]),
                           tuple(o for o in manifest["outputs"] if o != "velocity"))
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointMismatchError(f"the checkpoint manifest does not describe known features: {err}") \
            from err


def _units_note(value: float, unit: str) -> str:
    if unit == "m/s":
        return f"{value:.6g} m/s ({value * YTS_DEFAULT:.6g} m/yr)"
    if unit == "s":
        return f"{value:.6g} s ({value / YTS_DEFAULT:.6g} yr)"
    return f"{value:.6g} {unit}"


def _feature_unit(name: str) -> tuple[str, str]:
    feat = SCALAR_FEATURES.get(name) or VECTOR_FEATURES.get(name) or SCALAR_OUTPUTS.get(name)
    return (feat.unit, feat.md_field) if feat is not None else ("?", "?")


def check_manifest(manifest: Mapping[str, Any], features: FeatureSpec | Iterable[str],
                   forcing: Mapping[str, Any] | None = None, *, mode: str | None = None,
                   arch: str | None = None) -> None:
    """Check that a checkpoint can be applied; refuse a mismatch, warn about extrapolation.

    Parameters
    ----------
    manifest : the checkpoint's manifest
    features : the caller's :class:`FeatureSpec` (must equal the manifest's: same features, same order,
        same outputs) or the names of the features the caller can supply (must include all the
        manifest's inputs)
    forcing : ``{parameter: value or array}`` in SI units; every forcing parameter of the manifest must be
        present; values outside the training range warn. Names the manifest does not know are ignored.
    mode, arch : when given, must equal the manifest's

    Raises
    ------
    CheckpointMismatchError
        on any mismatch (message lists what differs, with units and ISSM fields)

    Warns
    -----
    ExtrapolationWarning
        for every forcing parameter outside its training range
    """
    fv = manifest.get("format_version")
    if not isinstance(fv, int) or fv > FORMAT_VERSION:
        raise CheckpointMismatchError(f"checkpoint manifest format version {fv!r} is not supported by "
                                      f"issm-emulator {__version__} (supports <= {FORMAT_VERSION})")
    if mode is not None and manifest.get("mode") != mode:
        raise CheckpointMismatchError(f"the checkpoint was trained for mode {manifest.get('mode')!r}, "
                                      f"but mode {mode!r} was requested")
    if arch is not None and manifest.get("arch") not in (None, arch):
        raise CheckpointMismatchError(f"the checkpoint holds a {manifest.get('arch')!r} network, but "
                                      f"{arch!r} was requested")
    spec = manifest_spec(manifest)
    units = manifest.get("units", {})
    bad_units = [f"{n}: checkpoint {u!r}, package {_feature_unit(n)[0]!r}" for n, u in units.items()
                 if n != "velocity" and u != _feature_unit(n)[0]]
    if bad_units:
        raise CheckpointMismatchError("the checkpoint's feature units differ from this package's: "
                                      + "; ".join(bad_units))
    if isinstance(features, FeatureSpec):
        diffs = []
        for what, ours, theirs in (("scalar inputs", features.scalars, spec.scalars),
                                   ("vector inputs", features.vectors, spec.vectors),
                                   ("scalar outputs", features.scalar_outputs, spec.scalar_outputs)):
            if tuple(ours) != tuple(theirs):
                diffs.append(f"{what}: checkpoint {list(theirs)}, model {list(ours)}")
        if diffs:
            raise CheckpointMismatchError("the checkpoint does not match the model's features: "
                                          + "; ".join(diffs))
    else:
        available = set(features)
        missing = [n for n in (*spec.scalars, *spec.vectors) if n not in available]
        if missing:
            detail = ", ".join(f"{n} [{_feature_unit(n)[0]}] from {_feature_unit(n)[1]}" for n in missing)
            raise CheckpointMismatchError(f"the checkpoint needs input feature(s) that are not available: "
                                          f"{detail}")
    if forcing is None:
        return
    ranges: Mapping[str, Any] = manifest.get("forcing_ranges", {})
    missing = [p for p in ranges if p not in forcing or forcing[p] is None]
    if missing:
        detail = ", ".join(f"{p} ({_feature_unit(p)[1]})" for p in missing)
        raise CheckpointMismatchError(f"the checkpoint needs forcing parameter(s) {detail}, not given")
    for name, (lo, hi) in ranges.items():
        v = forcing[name]
        vmin, vmax = value_range([v])
        tol = 1e-9 * max(abs(lo), abs(hi), hi - lo)
        if vmin < lo - tol or vmax > hi + tol:
            unit, md_field = _feature_unit(name)
            shown = _units_note(vmin, unit) if vmin == vmax else \
                f"[{_units_note(vmin, unit)}, {_units_note(vmax, unit)}]"
            warnings.warn(ExtrapolationWarning(
                f"forcing parameter {name!r} ({md_field}) = {shown} lies outside the training range "
                f"[{_units_note(lo, unit)}, {_units_note(hi, unit)}]; the emulator extrapolates"),
                stacklevel=2)


@dataclass
class Checkpoint:
    """A loaded checkpoint: the rebuilt network (eval mode) and everything stored with it."""

    model: nn.Module
    config: dict[str, Any]
    manifest: dict[str, Any]
    input_normalizer: Normalizer
    output_normalizer: Normalizer
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    content_sha256: str = ""

    @property
    def spec(self) -> FeatureSpec:
        return manifest_spec(self.manifest)

    @property
    def mode(self) -> str:
        return str(self.manifest["mode"])

    @property
    def domain(self) -> dict[str, Any] | None:
        """The applicability domain recorded at training time (None for older checkpoints)."""
        return self.manifest.get("domain")

    @property
    def processing_mesh(self) -> dict[str, Any] | None:
        """The mesh the network runs on for every model (``x``, ``y``, 0-based ``elements``, and the ``back``
        rule of its outputs, P1 where absent; :mod:`.processing_mesh`); None: it runs on each model's own mesh."""
        return self.manifest.get("processing_mesh")

    @property
    def indicator(self) -> dict[str, Any] | None:
        """The error indicator's calibration (None when not calibrated)."""
        return self.manifest.get("indicator")

    def check(self, features: FeatureSpec | Iterable[str], forcing: Mapping[str, Any] | None = None, *,
              mode: str | None = None, arch: str | None = None) -> None:
        """:func:`check_manifest` on this checkpoint's manifest."""
        check_manifest(self.manifest, features, forcing, mode=mode, arch=arch)


def _validate(config: Mapping[str, Any], manifest: Mapping[str, Any], inp: Mapping[str, Any],
              out: Mapping[str, Any]) -> None:
    spec = manifest_spec(manifest)
    problems = []
    if config.get("n_scalars") != spec.n_scalars or config.get("n_vectors") != spec.n_vectors:
        problems.append(f"network takes {config.get('n_scalars')} scalars / {config.get('n_vectors')} "
                        f"vectors, manifest lists {spec.n_scalars} / {spec.n_vectors}")
    if tuple(config.get("scalar_outputs", ())) != spec.scalar_outputs:
        problems.append(f"network outputs {list(config.get('scalar_outputs', ()))}, manifest "
                        f"{list(spec.scalar_outputs)}")
    if manifest.get("arch") not in (None, config.get("arch")):
        problems.append(f"network is {config.get('arch')!r}, manifest says {manifest.get('arch')!r}")
    if tuple(inp["scalar_names"]) != spec.scalars or tuple(inp["vector_names"]) != spec.vectors:
        problems.append("input normaliser channels differ from the manifest's features")
    if tuple(out["scalar_names"]) != spec.scalar_outputs or tuple(out["vector_names"]) != ("velocity",):
        problems.append("output normaliser channels differ from the manifest's outputs")
    if manifest.get("mode") not in MODES:
        problems.append(f"mode {manifest.get('mode')!r} is not one of {MODES}")
    if problems:
        raise CheckpointMismatchError("inconsistent checkpoint: " + "; ".join(problems))


def save_checkpoint(path: str | os.PathLike, model: nn.Module, manifest: Mapping[str, Any],
                    input_normalizer: Normalizer, output_normalizer: Normalizer,
                    extra: Mapping[str, Any] | None = None) -> Path:
    """Write a checkpoint atomically (temporary file in the same folder, then rename).

    ``model`` must have a ``config`` (any network of :mod:`issm_emulator.nn`); for DDP-wrapped models
    pass ``model.module``. Returns the path written.
    """
    path = Path(path)
    config = _plain(dict(model.config))
    manifest = _plain(dict(manifest))
    if manifest.get("arch") is None:
        manifest["arch"] = config.get("arch")
    inp, out = input_normalizer.to_dict(), output_normalizer.to_dict()
    _validate(config, manifest, inp, out)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_config": config,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "input_normalizer": inp,
        "output_normalizer": out,
        "manifest": manifest,
        "extra": _plain(dict(extra or {})),
    }
    payload["content_sha256"] = content_sha256(payload)
    atomic_torch_save(payload, path)
    return path


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically: a temporary file in the same folder, fsync, rename; on any
    failure the previous file (if any) is left intact and no temporary file remains."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        apply_user_mode(fd)  # mkstemp makes 0600: the user's normal permissions (0o666 & ~umask)
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> Checkpoint:
    """Load a checkpoint written by :func:`save_checkpoint`; the network is rebuilt, moved to
    ``map_location`` (a device) and put in eval mode.

    Raises :class:`FileNotFoundError` for a missing file and :class:`CheckpointMismatchError` for a file
    that is not a compatible, self-consistent checkpoint.
    """
    from issm_emulator.nn import build_model

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # pickle errors, truncated files, foreign formats
        raise CheckpointMismatchError(f"{path} is not a readable issm-emulator checkpoint: {err}") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointMismatchError(f"{path} is not an issm-emulator checkpoint (no {FORMAT!r} marker)")
    if int(payload.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointMismatchError(f"{path} has checkpoint format {payload.get('format_version')}, this "
                                      f"issm-emulator {__version__} reads up to {FORMAT_VERSION}")
    try:
        digest = content_sha256(payload)
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as err:
        raise CheckpointCorruptedError(f"{path}: the checkpoint is incomplete or damaged ({err})") from err
    recorded = payload.get("content_sha256")
    if recorded is None:
        raise CheckpointCorruptedError(f"{path}: the checkpoint carries no content hash (written by an older "
                                       "issm-emulator); re-save it with `issm-emulator domain` or retrain it")
    if recorded != digest:
        raise CheckpointCorruptedError(f"{path}: the checkpoint's content does not match its recorded hash "
                                       f"(sha256 {digest[:16]}..., recorded {str(recorded)[:16]}...): the file is "
                                       "corrupted or was edited; fetch or train it again")
    config, manifest = dict(payload["model_config"]), dict(payload["manifest"])
    _validate(config, manifest, payload["input_normalizer"], payload["output_normalizer"])
    state_dtype = next((v.dtype for v in payload["state_dict"].values() if v.is_floating_point()), None)
    try:
        model = build_model(config)
        if state_dtype is not None:
            model = model.to(state_dtype)  # before loading, so float64 weights stay float64
        model.load_state_dict(payload["state_dict"], strict=True)
    except (RuntimeError, TypeError, ValueError) as err:
        raise CheckpointMismatchError(f"{path}: the stored weights do not fit the stored network "
                                      f"configuration: {err}") from err
    if map_location is not None and not callable(map_location) and not isinstance(map_location, dict):
        model = model.to(map_location)
    model.eval()
    return Checkpoint(model=model, config=config, manifest=manifest,
                      input_normalizer=Normalizer.from_dict(payload["input_normalizer"]),
                      output_normalizer=Normalizer.from_dict(payload["output_normalizer"]),
                      extra=dict(payload.get("extra", {})), path=path, content_sha256=digest)


def update_manifest(path: str | os.PathLike, updates: Mapping[str, Any], *, out: str | os.PathLike | None = None,
                    allow_unsealed: bool = False) -> Path:
    """Rewrite a checkpoint with manifest entries added or replaced (e.g. ``domain``, ``indicator``) and its
    content hash recomputed; written atomically to ``out`` (default in place).

    The file must pass its hash check first; ``allow_unsealed`` also accepts a file written before hashes
    were recorded (it is sealed on the way). Returns the path written.
    """
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - pickle errors, truncated files, foreign formats
        raise CheckpointMismatchError(f"{path} is not a readable issm-emulator checkpoint: {err}") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointMismatchError(f"{path} is not an issm-emulator checkpoint (no {FORMAT!r} marker)")
    recorded = payload.get("content_sha256")
    if not (recorded is None and allow_unsealed) and recorded != content_sha256(payload):
        raise CheckpointCorruptedError(f"{path}: the checkpoint's content does not match its recorded hash; "
                                       "refusing to rewrite it")
    payload["manifest"] = {**dict(payload["manifest"]), **_plain(dict(updates))}
    payload["content_sha256"] = content_sha256(payload)
    return atomic_torch_save(payload, Path(out) if out is not None else path)
