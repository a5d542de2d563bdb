"""Every emulator checkpoint this installation can use, and the choice of one for a model.

Three sources, searched by :func:`catalog` (no network):

* **registered**: checkpoints a user installed with :func:`register` (``issm-emulator register CKPT``) in
  the user checkpoint folder, ``$ISSM_EMULATOR_CHECKPOINTS_DIR`` or the platform's user data folder
  (``platformdirs.user_data_dir('issm-emulator')/checkpoints``);
* **bundled**: shipped inside the package (:mod:`issm_emulator.weights`);
* **downloaded**: registry checkpoints already in the download cache with the registry's sha256.

:func:`select` checks a model state against each entry's applicability domain
(:mod:`~issm_emulator.solvers.emulator.domain`) and picks, among those with no hard violation, the one
trained on this very mesh first, then registered before bundled before downloaded, then direct mode
before step mode (direct mode is the more accurate and the faster one on the published weights, see
``docs/results.md``), then by name. The domains are read once per file (cached by path, size and mtime).
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from issm_emulator.errors import IssmEmulatorError
from issm_emulator.solvers.emulator.domain import Violation, check_domain, mesh_sha256
from issm_emulator.state import ModelState

__all__ = ["CHECKPOINTS_ENV_VAR", "Entry", "catalog", "register", "select", "user_dir"]

#: environment variable naming the user checkpoint folder
CHECKPOINTS_ENV_VAR = "ISSM_EMULATOR_CHECKPOINTS_DIR"
SOURCES = ("registered", "bundled", "downloaded")
_SUFFIX = ".pt"


@dataclass
class Entry:
    """One checkpoint of the catalog: ``name`` (file stem), ``source``, ``path``, the network's ``arch`` and
    ``mode``, its ``domain`` and ``indicator`` calibration (None when not recorded), its ``content_sha256``,
    the ``forcing_ranges`` of its manifest (SI),
    and ``error`` when the file could not be read (such entries are never selected)."""

    name: str
    source: str
    path: Path
    arch: str = ""
    mode: str = ""
    domain: dict[str, Any] | None = None
    indicator: dict[str, Any] | None = None
    content_sha256: str = ""
    forcing_ranges: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    violations: list[Violation] = field(default_factory=list)


def user_dir() -> Path:
    """The user checkpoint folder (``$ISSM_EMULATOR_CHECKPOINTS_DIR`` or the platform's user data folder)."""
    env = os.environ.get(CHECKPOINTS_ENV_VAR)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("issm-emulator")) / "checkpoints"


_cache: dict[tuple[str, int, int], Entry] = {}
_lock = threading.Lock()


def _read(path: Path, source: str) -> Entry:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _lock:
        hit = _cache.get(key)
    if hit is None:
        from issm_emulator.solvers.emulator.checkpoint import load_checkpoint

        try:
            if source == "bundled":
                from issm_emulator.weights import verify_bundled

                verify_bundled(path)
            ck = load_checkpoint(path)
            hit = Entry(path.stem, source, path, arch=str(ck.manifest.get("arch") or ck.config.get("arch")),
                        mode=ck.mode, domain=ck.domain, indicator=ck.indicator, content_sha256=ck.content_sha256,
                        forcing_ranges=dict(ck.manifest.get("forcing_ranges") or {}))
        except (IssmEmulatorError, OSError, ValueError) as exc:
            hit = Entry(path.stem, source, path, error=f"{type(exc).__name__}: {exc}")
        with _lock:
            _cache[key] = hit
    return Entry(**{**hit.__dict__, "source": source, "violations": []})


def catalog(*, sources: Sequence[str] = SOURCES) -> list[Entry]:
    """Every checkpoint of the given sources (registered, bundled, cached downloads), read without network."""
    from issm_emulator import weights

    out: list[Entry] = []
    if "registered" in sources:
        folder = user_dir()
        if folder.is_dir():
            out += [_read(p, "registered") for p in sorted(folder.glob(f"*{_SUFFIX}")) if p.is_file()]
    if "bundled" in sources:
        out += [_read(weights.bundled_dir() / f"{n}{_SUFFIX}", "bundled") for n in weights.list_bundled()]
    if "downloaded" in sources:
        for info in weights.available():
            if not info.bundled and info.cached and info.path is not None:
                out.append(_read(info.path, "downloaded"))
    return out


def select(state: ModelState, *, solution: str = "TransientSolution", archs: Sequence[str] = ("egcn", "gcn", "cnn"),
           mode: str | None = None, entries: Sequence[Entry] | None = None) -> tuple[Entry | None, list[Entry]]:
    """The checkpoint to emulate ``state`` with, and every candidate with its violations.

    Returns ``(chosen or None, candidates)``; a candidate applies when it was read, is of one of ``archs``
    (and ``mode`` when given) and has no hard violation. ``StressbalanceSolution`` needs a step-mode network.
    """
    from issm_emulator.solvers.transient import transient_schedule

    entries = list(catalog() if entries is None else entries)
    x, y, e = state.mesh.x, state.mesh.y, state.mesh.elements
    here = mesh_sha256(x, y, e)
    stress = solution == "StressbalanceSolution"
    times = None
    usable = []
    for ent in entries:
        if ent.error or ent.arch not in archs or (mode is not None and ent.mode != mode) \
                or (stress and ent.mode != "step"):
            continue
        if ent.mode == "direct" and times is None:
            times = [s.time for s in transient_schedule(state) if s.output]
        v = check_domain(ent.domain, state, mode=ent.mode, times=times if ent.mode == "direct" else None)
        if stress:
            v = [x for x in v if not x.what.startswith("time")]
        ent.violations = v
        usable.append(ent)

    def rank(ent: Entry) -> tuple:
        same = here in set((ent.domain or {}).get("mesh_sha256", ()))
        return (not same, SOURCES.index(ent.source), 0 if ent.mode == "direct" else 1,
                list(archs).index(ent.arch), ent.name)

    ok = sorted((ent for ent in usable if not any(v.hard for v in ent.violations)), key=rank)
    return (ok[0] if ok else None), usable


def register(path: str | os.PathLike, *, name: str | None = None, overwrite: bool = False) -> Path:
    """Install a trained checkpoint into the user checkpoint folder (:func:`user_dir`), so that the default
    ``solve`` can pick it. The file must load (its content hash holds) and record an applicability domain.

    Returns the installed path. Raises :class:`FileExistsError` when a different file of that name is
    installed (``overwrite=True`` replaces it).
    """
    from issm_emulator.solvers.emulator.checkpoint import CheckpointMismatchError, load_checkpoint

    src = Path(path)
    ck = load_checkpoint(src)
    if not ck.domain:
        raise CheckpointMismatchError(f"{src}: the checkpoint records no applicability domain; compute it with "
                                      "`issm-emulator domain CKPT --data ENSEMBLE` before registering it")
    stem = name or src.stem
    if not stem or "/" in stem or "\\" in stem or stem.startswith("."):
        raise ValueError(f"register: name {stem!r} is not a plain file name")
    folder = user_dir()
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / f"{stem}{_SUFFIX}"
    if dest.exists() and not overwrite:
        if dest.read_bytes() == src.read_bytes():
            return dest
        raise FileExistsError(f"{dest} already holds another checkpoint named {stem!r}; pass --overwrite (or "
                              "overwrite=True) to replace it, or choose another --name")
    tmp = folder / f".{stem}.{os.getpid()}.tmp"
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest
