"""Emulator weights: bundled checkpoints, the pooch-managed download cache, and the resolver.

Checkpoints are named ``<arch>-<mode>-<scenario>`` (file ``egcn-step-pig.pt``). They come from two places:

* **bundled**: ``.pt`` files inside this package folder (:func:`bundled_dir`). They work with no network
  and are preferred over any download of the same name. :func:`default_checkpoint` picks among them.
* **registry**: ``issm_emulator/registry/weights.txt`` (package data) lists further checkpoints as
  ``<name> sha256:<hex> <path>``; :func:`fetch` downloads ``<base URL><path>`` with pooch, checks the sha256,
  and keeps the file in the cache folder ``$ISSM_EMULATOR_WEIGHTS_DIR`` (default
  ``pooch.os_cache('issm-emulator')/weights``) at ``<cache>/<path>``. The base URL is
  ``$ISSM_EMULATOR_WEIGHTS_URL`` when set, otherwise :data:`DEFAULT_BASE_URL` (the ``weights/`` folder of
  the project's repository). A cached file with the right hash is used with no network; one failing its
  hash is refused (delete it and run ``issm-emulator fetch NAME``). A folder that already holds the files
  (a read-only mirror) can serve as the cache: nothing is written when the file is there.

:func:`resolve` turns the ``checkpoint=`` option of the emulator solvers into a file: an existing path as
it is, otherwise a bundled name, otherwise a registry name (fetched). This module imports neither torch
nor pooch at import time, so the solver registry can ask :func:`has_default` cheaply.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath

from issm_emulator._download import HashMismatch, cached_file, download, parse_registry, sha256_file
from issm_emulator.errors import DataUnavailableError, SolverError

__all__ = ["CACHE_ENV_VAR", "CorruptedWeightsError", "DEFAULT_BASE_URL", "SUFFIX", "URL_ENV_VAR",
           "UnknownWeightsError", "WeightsInfo", "WeightsNotFoundError", "available", "available_names", "base_url", "bundled_dir", "cache_dir",
           "default_checkpoint", "fetch", "fetch_all", "has_default", "list_bundled", "registry",
           "registry_file", "resolve", "verify_bundled"]

SUFFIX = ".pt"
#: Environment variable naming the cache folder of downloaded weights.
CACHE_ENV_VAR = "ISSM_EMULATOR_WEIGHTS_DIR"
#: Environment variable overriding the base URL the registry paths are appended to.
URL_ENV_VAR = "ISSM_EMULATOR_WEIGHTS_URL"
#: Default base URL: the top-level ``weights/`` folder of the project's repository (configurable through
#: ``$ISSM_EMULATOR_WEIGHTS_URL``, e.g. for a mirror or a pinned tag).
DEFAULT_BASE_URL = "https://raw.githubusercontent.com/issm-emulator/issm-emulator/main/weights/"


class WeightsNotFoundError(SolverError, FileNotFoundError):
    """A checkpoint file named by the user, or the default weights of an emulator, do not exist."""


class UnknownWeightsError(WeightsNotFoundError, KeyError):
    """A name is neither a bundled checkpoint nor a registry entry (the message lists the available ones)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class WeightsInfo:
    """One checkpoint known to :func:`available`.

    Attributes
    ----------
    name : ``<arch>-<mode>-<scenario>``
    bundled : shipped inside the package (used first, no network)
    registered : listed in the weights registry (downloadable)
    cached : in the cache folder with the registry's sha256
    corrupted : in the cache folder with another sha256 (:func:`fetch` refuses it)
    path : the local file :func:`fetch` would return without network, or None
    """

    name: str
    bundled: bool
    registered: bool
    cached: bool
    corrupted: bool
    path: Path | None

    @property
    def status(self) -> str:
        """``'bundled'``, ``'cached'``, ``'corrupted'`` or ``'remote'`` (not downloaded yet)."""
        if self.bundled:
            return "bundled"
        if self.cached:
            return "cached"
        return "corrupted" if self.corrupted else "remote"


# ------------------------------------------------------------------------------------------------ locations
def bundled_dir() -> Path:
    """The folder of the bundled weights (inside the installed package)."""
    return Path(__file__).resolve().parent


def list_bundled() -> list[str]:
    """Names (file stems) of the bundled checkpoints, sorted."""
    return sorted(p.stem for p in bundled_dir().glob(f"*{SUFFIX}") if p.is_file())


def cache_dir() -> Path:
    """The download cache: ``$ISSM_EMULATOR_WEIGHTS_DIR`` or ``pooch.os_cache('issm-emulator')/weights``."""
    env = os.environ.get(CACHE_ENV_VAR)
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("issm-emulator")) / "weights"


def base_url() -> str:
    """The base URL of the registry paths: ``$ISSM_EMULATOR_WEIGHTS_URL`` or :data:`DEFAULT_BASE_URL`
    (a trailing ``/`` is added when missing)."""
    url = os.environ.get(URL_ENV_VAR) or DEFAULT_BASE_URL
    return url if url.endswith("/") else url + "/"


def registry_file():
    """The registry file (package data ``issm_emulator/registry/weights.txt``)."""
    return resources.files("issm_emulator").joinpath("registry/weights.txt")


def _check_location(name: str, location: str, source: str) -> None:
    p = PurePosixPath(location)
    if ("://" in location or "\\" in location or p.is_absolute() or ".." in p.parts
            or p.suffix != SUFFIX or p.stem != name):
        raise ValueError(f"{source}: entry {name!r} has path {location!r}; expected a relative path "
                         f"'[folder/]{name}{SUFFIX}' under the base URL")


def registry() -> dict[str, tuple[str, str]]:
    """Registry of downloadable checkpoints: name -> (``'sha256:<hex>'``, path relative to :func:`base_url`).

    Raises
    ------
    ValueError
        A malformed registry line (the message names the line).
    """
    f = registry_file()
    source = str(f)
    reg = parse_registry(f.read_text(), source)
    for name, (_, location) in reg.items():
        _check_location(name, location, source)
    return reg


class CorruptedWeightsError(DataUnavailableError):
    """A bundled checkpoint does not have the sha256 the registry lists for it."""


def verify_bundled(path: Path) -> Path:
    """``path`` (a bundled checkpoint) after checking its sha256 against the registry entry of the same name,
    when there is one (the published weights are bundled byte-identical to the registry's files).

    Raises :class:`CorruptedWeightsError` naming the file on a mismatch.
    """
    entry = registry().get(path.stem)
    if entry is not None:
        expected = entry[0].split(":", 1)[1]
        got = sha256_file(path)
        if got != expected:
            raise CorruptedWeightsError(
                f"bundled weights {path} fail their hash check (sha256 {got}, registry {expected}): the "
                "installed package is damaged; reinstall issm-emulator")
    return path


def _bare(name: str) -> str:
    text = os.fspath(name)
    return text.removesuffix(SUFFIX)


def available_names() -> list[str]:
    """Names of every bundled or registered checkpoint, sorted."""
    return sorted(set(list_bundled()) | set(registry()))


def _cached_state(path: Path, digest: str) -> tuple[bool, bool]:
    """(cached with the right hash, present with a wrong hash)."""
    if not path.is_file():
        return False, False
    ok = sha256_file(path) == digest.split(":", 1)[1]
    return ok, not ok


def available() -> list[WeightsInfo]:
    """Every bundled or registered checkpoint with where it is (cached files are hash-checked), by name."""
    reg = registry()
    bundled = set(list_bundled())
    folder = cache_dir()
    out = []
    for name in sorted(bundled | set(reg)):
        cached = corrupted = False
        path = bundled_dir() / f"{name}{SUFFIX}" if name in bundled else None
        if name in reg:
            digest, location = reg[name]
            cached, corrupted = _cached_state(folder / location, digest)
            if path is None and cached:
                path = folder / location
        out.append(WeightsInfo(name=name, bundled=name in bundled, registered=name in reg, cached=cached,
                               corrupted=corrupted, path=path))
    return out


def _unknown(name: str) -> UnknownWeightsError:
    names = ", ".join(available_names()) or "none"
    return UnknownWeightsError(f"unknown weights {name!r}; available: {names} (bundled in {bundled_dir()} "
                               f"or listed in {registry_file()})")


# ------------------------------------------------------------------------------------------------ fetching
def fetch(name: str) -> Path:
    """Local path of the checkpoint ``name``: bundled, cached, or downloaded now (sha256-verified).

    Parameters
    ----------
    name : ``<arch>-<mode>-<scenario>`` with or without ``.pt`` (:func:`available_names`)

    Raises
    ------
    UnknownWeightsError
        Neither bundled nor registered (the message lists the available names).
    DataUnavailableError
        The cached file fails its hash (refused, not replaced: delete it and run ``issm-emulator fetch
        NAME``), the download fails its hash, or the file is not cached and cannot be downloaded (offline,
        server error, cache not writable); the message names ``$ISSM_EMULATOR_WEIGHTS_DIR`` and
        ``$ISSM_EMULATOR_WEIGHTS_URL``.
    """
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"weights name: expected a string, got {type(name).__name__}")
    key = _bare(os.fspath(name))
    bundled = bundled_dir() / f"{key}{SUFFIX}"
    if key and "/" not in key and "\\" not in key and bundled.is_file():
        return verify_bundled(bundled)
    reg = registry()
    if key not in reg:
        raise _unknown(os.fspath(name))
    digest, location = reg[key]
    expected = digest.split(":", 1)[1]
    folder = cache_dir()
    path = folder / location
    refusal = (f"weights {key!r}: the cached file {{path}} fails its hash check (sha256 {{got}}, expected "
               f"{{expected}}); it is corrupted or another version. Delete it and fetch it again: "
               f"`rm {{path}}` then `issm-emulator fetch {key}` (or issm_emulator.weights.fetch({key!r})).")
    if cached_file(path, expected, refusal) is not None:
        return path
    url = base_url() + location
    try:
        return download(url, digest, path)
    except HashMismatch as exc:
        raise DataUnavailableError(
            f"weights {key!r}: the file downloaded from {url} does not have the sha256 this version of "
            f"issm-emulator expects ({expected}); it was discarded. The server holds another version: set "
            f"{URL_ENV_VAR} to a location holding the matching files, or upgrade issm-emulator. ({exc})") \
            from exc
    except Exception as exc:  # connection refused, DNS failure, HTTP 404, timeout, permission denied
        raise DataUnavailableError(
            f"weights {key!r} are not in the cache folder {folder} and could not be downloaded from {url} "
            f"({type(exc).__name__}: {exc}). Connect to the internet once and run `issm-emulator fetch "
            f"{key}`, set {CACHE_ENV_VAR} to a folder already holding {location}, or set {URL_ENV_VAR} to a "
            f"reachable mirror of the weights folder.") from exc


def fetch_all() -> dict[str, Path]:
    """:func:`fetch` every bundled and registered checkpoint; ``{name: path}``.

    Every name is attempted; if any fails, :class:`~issm_emulator.errors.DataUnavailableError` is raised
    afterwards listing each failure (the others stay in the cache).
    """
    out: dict[str, Path] = {}
    failed: list[str] = []
    for name in available_names():
        try:
            out[name] = fetch(name)
        except DataUnavailableError as exc:
            failed.append(f"- {exc}")
    if failed:
        raise DataUnavailableError(f"{len(failed)} of {len(out) + len(failed)} weights files could not be "
                                   f"fetched:\n" + "\n".join(failed))
    return out


# ------------------------------------------------------------------------------------------------ resolver
def _train_hint(arch: str = "egcn", mode: str = "step", target: str | None = None) -> str:
    out = target or f"{bundled_dir() / f'{arch}-{mode}-<scenario>{SUFFIX}'}"
    return (f"train one with `issm-emulator train --data DIR --model {arch} --mode {mode} --out {out}` "
            f"and pass checkpoint='path/to/checkpoint{SUFFIX}' (or put it at {out} to make it the default)")


def resolve(name_or_path: str | os.PathLike) -> Path:
    """The checkpoint file that ``name_or_path`` designates.

    Parameters
    ----------
    name_or_path : a path to a checkpoint file, or the name of a bundled or registered checkpoint (with or
        without ``.pt``; see :func:`available_names`). A registered name that is not cached is downloaded
        (:func:`fetch`).

    Raises
    ------
    WeightsNotFoundError
        Neither a file nor a known checkpoint of that name exists (:class:`UnknownWeightsError` for a bare
        name; the message lists the available names).
    DataUnavailableError
        A registered checkpoint could not be fetched (see :func:`fetch`).
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"checkpoint: expected a path or the name of a bundled checkpoint, got "
                        f"{type(name_or_path).__name__}")
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    bare = bool(text) and os.sep not in text and (os.altsep is None or os.altsep not in text)
    if bare:
        for cand in (bundled_dir() / text, bundled_dir() / f"{text}{SUFFIX}"):
            if cand.is_file():
                return verify_bundled(cand)
        if _bare(text) in registry():
            return fetch(text)
    names = ", ".join(available_names()) or "none"
    cls = UnknownWeightsError if bare else WeightsNotFoundError
    raise cls(f"checkpoint {text!r}: no such file, and no bundled or downloadable checkpoint of that name "
              f"(available: {names}); {_train_hint()}")


def _candidates(arch: str, mode: str) -> list[Path]:
    return sorted(p for p in bundled_dir().glob(f"{arch}-{mode}-*{SUFFIX}") if p.is_file())


def has_default(arch: str, mode: str = "step") -> bool:
    """Whether exactly one bundled checkpoint ``<arch>-<mode>-<scenario>.pt`` exists."""
    return len(_candidates(arch, mode)) == 1


def default_checkpoint(arch: str, mode: str = "step") -> Path:
    """The bundled checkpoint ``<arch>-<mode>-<scenario>.pt`` of an emulator.

    Only bundled files count (a default must work offline); downloadable ones are chosen explicitly with
    ``checkpoint='<name>'``.

    Raises
    ------
    WeightsNotFoundError
        None is bundled (the message names the file expected and how to train one), or several are and
        the choice would be ambiguous (the message lists them; pass ``checkpoint=`` to choose).
    """
    found = _candidates(arch, mode)
    if len(found) == 1:
        return verify_bundled(found[0])
    expected = bundled_dir() / f"{arch}-{mode}-<scenario>{SUFFIX}"
    if not found:
        downloadable = sorted(n for n in registry() if n.startswith(f"{arch}-{mode}-"))
        extra = (f"; downloadable instead: {', '.join(downloadable)} (pass checkpoint='<name>')"
                 if downloadable else "")
        raise WeightsNotFoundError(f"solver {arch!r} ({mode} mode) has no default weights: the file {expected} "
                                   f"is missing; {_train_hint(arch, mode)}{extra}")
    names = ", ".join(p.stem for p in found)
    raise WeightsNotFoundError(f"solver {arch!r} ({mode} mode): several bundled checkpoints match {expected} "
                               f"({names}); choose one with checkpoint='<name>'")
