"""Helpers shared by the pooch-managed file caches (:mod:`issm_emulator.data`, :mod:`issm_emulator.weights`).

A registry file lists one file per line, ``<name> sha256:<hex> <location>``; ``#`` starts a comment line.
Downloads go through :func:`pooch.retrieve`, which writes to a temporary file and keeps it only when its
sha256 matches, so a failed or corrupted download never leaves a file in the cache.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from ._files import apply_user_mode

__all__ = ["HashMismatch", "download", "parse_registry", "sha256_file"]

_HEX64 = re.compile(r"^sha256:[0-9a-f]{64}$")
#: Seconds without an answer after which a download is abandoned (pooch/requests ``timeout``).
TIMEOUT_S = 60


class HashMismatch(ValueError):
    """A downloaded file does not have the sha256 its registry entry promises."""


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cached_file(path: Path, expected: str, refusal: str) -> Path | None:
    """``path`` when it exists with sha256 ``expected`` (hex), None when it does not exist.

    A file that exists but fails its hash is refused, never silently replaced: ``DataUnavailableError``
    whose message is ``refusal`` formatted with ``{path}``, ``{got}`` and ``{expected}``.
    """
    if not path.is_file():
        return None
    got = sha256_file(path)
    if got != expected:
        from .errors import DataUnavailableError

        raise DataUnavailableError(refusal.format(path=path, got=got, expected=expected))
    return path


def parse_registry(text: str, source: str = "registry") -> dict[str, tuple[str, str]]:
    """``{name: ('sha256:<hex>', location)}`` from the text of a registry file.

    Raises
    ------
    ValueError
        A line without exactly three fields, a digest that is not ``sha256:`` and 64 lowercase hex digits,
        or a name listed twice (the message names ``source`` and the line number).
    """
    out: dict[str, tuple[str, str]] = {}
    for num, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 3:
            raise ValueError(f"{source}, line {num}: expected '<name> sha256:<hex> <location>', got {raw!r}")
        name, digest, location = fields
        if not _HEX64.match(digest):
            raise ValueError(f"{source}, line {num}: digest {digest!r} of {name!r} is not 'sha256:' followed "
                             f"by 64 lowercase hex digits")
        if name in out:
            raise ValueError(f"{source}, line {num}: {name!r} is listed twice")
        out[name] = (digest, location)
    return out


def download(url: str, digest: str, dest: Path) -> Path:
    """Download ``url`` to ``dest`` (folders created), keeping it only if its sha256 is ``digest``.

    Raises
    ------
    HashMismatch
        The downloaded bytes have another sha256 (nothing is written).
    Exception
        Whatever the transfer raised (connection refused, HTTP error, timeout, permission denied...).
    """
    import pooch

    downloader = None
    if url.startswith(("http://", "https://")):
        downloader = pooch.HTTPDownloader(progressbar=False, timeout=TIMEOUT_S)
    try:
        got = pooch.retrieve(url, known_hash=digest, fname=dest.name, path=dest.parent, downloader=downloader,
                             progressbar=False)
    except ValueError as exc:
        if "hash" in str(exc).lower():
            raise HashMismatch(str(exc)) from exc
        raise
    apply_user_mode(got)  # pooch's temporary file is 0600: the user's normal permissions instead
    return Path(got)
