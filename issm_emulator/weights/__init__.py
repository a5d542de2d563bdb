"""Bundled emulator weights and the resolver that finds checkpoints by name or path.

Bundled checkpoints live in this folder as ``<arch>-<mode>-<scenario>.pt`` (``egcn-step-pig-melt.pt``),
written by ``issm-emulator train``. :func:`resolve` turns a ``checkpoint=`` option into a file:

* an existing file path is used as it is;
* a bare name (``'egcn-step-pig-melt'`` or ``'egcn-step-pig-melt.pt'``) is looked up here.

:func:`default_checkpoint` picks the bundled file of an architecture and mode. This module imports neither
torch nor the networks, so the solver registry can ask :func:`has_default` cheaply.
"""

from __future__ import annotations

import os
from pathlib import Path

from issm_emulator.errors import SolverError

__all__ = ["SUFFIX", "WeightsNotFoundError", "bundled_dir", "default_checkpoint", "has_default", "list_bundled",
           "resolve"]

SUFFIX = ".pt"


class WeightsNotFoundError(SolverError, FileNotFoundError):
    """A checkpoint file named by the user, or the default weights of an emulator, do not exist."""


def bundled_dir() -> Path:
    """The folder of the bundled weights (inside the installed package)."""
    return Path(__file__).resolve().parent


def list_bundled() -> list[str]:
    """Names (file stems) of the bundled checkpoints, sorted."""
    return sorted(p.stem for p in bundled_dir().glob(f"*{SUFFIX}") if p.is_file())


def _train_hint(arch: str = "egcn", mode: str = "step", target: str | None = None) -> str:
    out = target or f"{bundled_dir() / f'{arch}-{mode}-<scenario>{SUFFIX}'}"
    return (f"train one with `issm-emulator train --data DIR --model {arch} --mode {mode} --out {out}` "
            f"and pass checkpoint='path/to/checkpoint{SUFFIX}' (or put it at {out} to make it the default)")


def resolve(name_or_path: str | os.PathLike) -> Path:
    """The checkpoint file that ``name_or_path`` designates.

    Parameters
    ----------
    name_or_path : a path to a checkpoint file, or the name of a bundled checkpoint (with or without
        ``.pt``; see :func:`list_bundled`)

    Raises
    ------
    WeightsNotFoundError
        Neither a file nor a bundled checkpoint of that name exists.
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"checkpoint: expected a path or the name of a bundled checkpoint, got "
                        f"{type(name_or_path).__name__}")
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    bare = os.sep not in text and (os.altsep is None or os.altsep not in text)
    if bare and text:
        for cand in (bundled_dir() / text, bundled_dir() / f"{text}{SUFFIX}"):
            if cand.is_file():
                return cand
    bundled = ", ".join(list_bundled()) or "none"
    raise WeightsNotFoundError(f"checkpoint {text!r}: no such file, and no bundled checkpoint of that name "
                               f"(bundled: {bundled}); {_train_hint()}")


def _candidates(arch: str, mode: str) -> list[Path]:
    return sorted(p for p in bundled_dir().glob(f"{arch}-{mode}-*{SUFFIX}") if p.is_file())


def has_default(arch: str, mode: str = "step") -> bool:
    """Whether exactly one bundled checkpoint ``<arch>-<mode>-<scenario>.pt`` exists."""
    return len(_candidates(arch, mode)) == 1


def default_checkpoint(arch: str, mode: str = "step") -> Path:
    """The bundled checkpoint ``<arch>-<mode>-<scenario>.pt`` of an emulator.

    Raises
    ------
    WeightsNotFoundError
        None is bundled (the message names the file expected and how to train one), or several are and
        the choice would be ambiguous (the message lists them; pass ``checkpoint=`` to choose).
    """
    found = _candidates(arch, mode)
    if len(found) == 1:
        return found[0]
    expected = bundled_dir() / f"{arch}-{mode}-<scenario>{SUFFIX}"
    if not found:
        raise WeightsNotFoundError(f"solver {arch!r} ({mode} mode) has no default weights: the file {expected} "
                                   f"is missing; {_train_hint(arch, mode)}")
    names = ", ".join(p.stem for p in found)
    raise WeightsNotFoundError(f"solver {arch!r} ({mode} mode): several bundled checkpoints match {expected} "
                               f"({names}); choose one with checkpoint='<name>'")
