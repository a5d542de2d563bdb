"""ISSM's public test data (outlines, input archives, nightly-test output archives) through pooch.

Files come from ISSM's GitHub repository pinned to one commit and are verified against the sha256 in
``issm_emulator/registry/issm-data.txt``. The cache folder is ``$ISSM_EMULATOR_DATA_DIR`` when set,
otherwise ``pooch.os_cache('issm-emulator')/issm-data``; it uses the layout ``Pig.arch``,
``exp/Square.exp``, ``archives/Archive101.arch``, ... so a folder holding those files (for instance a
read-only copy of the data) can be used directly: nothing is written when every requested file is
there with the right hash.

A few files ship inside the package (``issm_emulator/bundled/issm``: the Pine Island geometry and outlines,
for the offline demo and the default weights' scenario); :func:`fetch` uses them, hash-verified, when the
cache folder does not hold them.
"""

from __future__ import annotations

import os
from functools import lru_cache
from importlib import resources
from pathlib import Path

from ._download import cached_file
from ._files import apply_user_mode
from ._download import sha256_file as _sha256
from .errors import DataUnavailableError

__all__ = [
    "BASE_URL",
    "COMMIT",
    "ENV_VAR",
    "available",
    "cache_dir",
    "fetch",
    "fetch_archive",
    "fetch_exp",
    "registry",
]

ENV_VAR = "ISSM_EMULATOR_DATA_DIR"
COMMIT = "3c7936391795bf45dc4c2e0a55f372be55909b0e"
_DEFAULT_BASE_URL = f"https://raw.githubusercontent.com/ISSMteam/ISSM/{COMMIT}/"
#: Where files are downloaded from; each registry URL is this plus the file's repository path.
BASE_URL = _DEFAULT_BASE_URL


@lru_cache(maxsize=1)
def registry() -> dict[str, tuple[str, str]]:
    """Registry: cache name -> (``'sha256:<hex>'``, repository path)."""
    text = resources.files("issm_emulator").joinpath("registry/issm-data.txt").read_text()
    out: dict[str, tuple[str, str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, digest, url = line.split()
        if not url.startswith(_DEFAULT_BASE_URL):
            raise RuntimeError(f"registry entry {name!r}: URL {url!r} is not under {_DEFAULT_BASE_URL}")
        out[name] = (digest, url[len(_DEFAULT_BASE_URL):])
    return out


def available() -> list[str]:
    """Names accepted by :func:`fetch`, sorted."""
    return sorted(registry())


def cache_dir() -> Path:
    """The cache folder: ``$ISSM_EMULATOR_DATA_DIR`` or ``pooch.os_cache('issm-emulator')/issm-data``."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("issm-emulator")) / "issm-data"


def bundled_path(key: str) -> Path | None:
    """The copy of registry file ``key`` shipped inside the package, or None."""
    path = Path(str(resources.files("issm_emulator").joinpath("bundled/issm"))) / key
    return path if path.is_file() else None


def _resolve_name(name: str) -> str:
    reg = registry()
    key = str(name).replace("\\", "/")
    if key in reg:
        return key
    # convenience: bare names of outlines and archives
    for prefix in ("exp/", "archives/"):
        if prefix + key in reg:
            return prefix + key
    raise KeyError(f"unknown ISSM data file {name!r}; available: {', '.join(available())}")


def fetch(name: str) -> Path:
    """Local path of an ISSM data file, downloaded (and sha256-verified) on first use.

    Parameters
    ----------
    name : str
        A registry name (:func:`available`), e.g. ``'Pig.arch'``, ``'exp/Square.exp'``,
        ``'archives/Archive101.arch'`` (``'Square.exp'`` and ``'Archive101.arch'`` are accepted too).

    Raises
    ------
    KeyError
        Unknown name (the message lists the available ones).
    DataUnavailableError
        The cached file fails its hash (it is refused, not silently replaced), or the file is not cached
        and cannot be downloaded (offline, or the cache folder is not writable).
    """
    key = _resolve_name(name)
    digest, repo_path = registry()[key]
    expected = digest.split(":", 1)[1]
    folder = cache_dir()
    path = folder / key
    refusal = ("{path} is corrupted or not the expected version (sha256 {got}, expected {expected}). "
               f"Delete it and call issm_emulator.data.fetch({key!r}) again to re-download it, or point "
               f"{ENV_VAR} at a folder holding the right file.")
    if cached_file(path, expected, refusal) is not None:
        return path
    shipped = bundled_path(key)
    if shipped is not None and _sha256(shipped) == expected:
        return shipped

    import pooch

    url = BASE_URL + repo_path
    try:
        fetched = pooch.retrieve(url, known_hash=digest, fname=Path(key).name, path=path.parent,
                                 progressbar=False)
    except Exception as exc:  # network errors, permission errors, hash mismatch of the download
        raise DataUnavailableError(
            f"ISSM data file {key!r} is not in the cache folder {folder} and could not be downloaded from "
            f"{url} ({type(exc).__name__}: {exc}). Connect to the internet once, or set the environment "
            f"variable {ENV_VAR} to a folder that already holds it (layout: Pig.arch, exp/Square.exp, "
            f"archives/Archive101.arch, ...).") from exc
    apply_user_mode(fetched)  # pooch's temporary file is 0600: the user's normal permissions instead
    return Path(fetched)


def fetch_archive(test_number: int) -> Path:
    """Path of ISSM's output archive ``ArchiveN.arch`` of nightly test ``test_number``."""
    return fetch(f"archives/Archive{int(test_number)}.arch")


def fetch_exp(name: str) -> Path:
    """Path of an outline ``exp/<name>`` (``'.exp'`` appended when missing)."""
    name = str(name)
    if not name.endswith(".exp"):
        name += ".exp"
    if not name.startswith("exp/"):
        name = "exp/" + name
    return fetch(name)
