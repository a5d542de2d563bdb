"""Readers and writers for ISSM's file formats: ``.arch`` archives and ``.exp`` (Argus) outlines.

``.arch`` (ISSM ``archwrite``/``archread``): a flat sequence of big-endian record pairs, a name record
``[int32 8+len][int32 1][int32 len][ascii name]`` followed by a data record, either a scalar
``[int32 12][int32 2][float64]`` or a matrix ``[int32 12+8rc][int32 3][int32 r][int32 c][r*c float64]``
stored column-major (MATLAB order).

``.exp``: one or more contours, each ``## Name:<name>`` / ``## Icon:0`` / ``# Points Count Value`` /
``<n> <value>`` / ``# X pos Y pos`` followed by ``n`` coordinate lines. A contour is closed when its last
point equals its first.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from ..errors import IssmEmulatorError

__all__ = ["ArchiveFormatError", "ExpFormatError", "read_arch", "read_exp", "write_arch", "write_exp"]

_STRING, _SCALAR, _MATRIX = 1, 2, 3


class ArchiveFormatError(IssmEmulatorError, ValueError):
    """A ``.arch`` file is truncated or holds a record type ISSM does not write."""


class ExpFormatError(IssmEmulatorError, ValueError):
    """A ``.exp`` file does not follow the Argus layout."""


def read_arch(path: str | os.PathLike) -> dict[str, float | np.ndarray]:
    """Read every record of an ISSM ``.arch`` file.

    Parameters
    ----------
    path : path-like
        The archive.

    Returns
    -------
    dict
        Record name -> ``float`` (type-2 scalar records) or a 2-D ``float64`` array of shape
        ``(rows, cols)`` (type-3 matrix records; ISSM stores vectors as ``(n, 1)`` columns and
        connectivity ``index`` arrays as 1-based floats). Order of the file is kept.
    """
    data = Path(path).read_bytes()
    out: dict[str, float | np.ndarray] = {}
    pos, n = 0, len(data)

    def take(nbytes: int, what: str) -> bytes:
        nonlocal pos
        if pos + nbytes > n:
            raise ArchiveFormatError(f"{path}: truncated while reading {what} at byte {pos}")
        chunk = data[pos:pos + nbytes]
        pos += nbytes
        return chunk

    while pos < n:
        _, kind, length = struct.unpack(">iii", take(12, "a name record header"))
        if kind != _STRING or length < 0:
            raise ArchiveFormatError(f"{path}: expected a name record (type 1) at byte {pos - 12}, got type {kind}")
        name = take(length, "a record name").decode("ascii")
        _, code = struct.unpack(">ii", take(8, f"the data header of {name!r}"))
        if code == _SCALAR:
            out[name] = struct.unpack(">d", take(8, f"scalar {name!r}"))[0]
        elif code == _MATRIX:
            rows, cols = struct.unpack(">ii", take(8, f"the shape of {name!r}"))
            if rows < 0 or cols < 0:
                raise ArchiveFormatError(f"{path}: record {name!r} has negative shape {rows}x{cols}")
            buf = take(8 * rows * cols, f"matrix {name!r}")
            out[name] = np.frombuffer(buf, ">f8").reshape(cols, rows).T.astype(np.float64)
        else:
            raise ArchiveFormatError(f"{path}: record {name!r} has unknown data type {code} (expected 2 or 3)")
    return out


def write_arch(path: str | os.PathLike, records: Mapping[str, float | np.ndarray]) -> None:
    """Write records as ISSM's ``archwrite`` does (round-trips with :func:`read_arch`).

    Python/numpy scalars (and 0-d arrays) become type-2 scalar records; 1-D arrays are written as
    ``(n, 1)`` columns, 2-D arrays as they are (column-major on disk).
    """
    chunks: list[bytes] = []
    for name, value in records.items():
        bname = str(name).encode("ascii")
        chunks.append(struct.pack(">iii", 8 + len(bname), _STRING, len(bname)) + bname)
        arr = np.asarray(value, dtype=np.float64)
        if arr.ndim == 0:
            chunks.append(struct.pack(">iid", 12, _SCALAR, float(arr)))
            continue
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2:
            raise ValueError(f"write_arch: record {name!r} must be a scalar, 1-D or 2-D array, got ndim={arr.ndim}")
        rows, cols = arr.shape
        chunks.append(struct.pack(">iiii", 12 + 8 * rows * cols, _MATRIX, rows, cols))
        chunks.append(np.asarray(arr.T, dtype=">f8").tobytes())
    Path(path).write_bytes(b"".join(chunks))


def read_exp(path: str | os.PathLike) -> list[dict]:
    """Read an Argus ``.exp`` outline file.

    Returns
    -------
    list of dict
        One dict per contour: ``name`` (str), ``x``, ``y`` (float64 arrays, all points as stored, the
        closing point included), ``closed`` (bool: last point equals first) and ``density`` (the
        ``Value`` column of the header).
    """
    lines = Path(path).read_text().splitlines()
    contours: list[dict] = []
    i, n = 0, len(lines)
    name = ""
    while i < n:
        line = lines[i].strip()
        i += 1
        if not line:
            continue
        if line.startswith("## Name:"):
            name = line[len("## Name:"):].strip()
            continue
        if line.startswith("#"):
            if line.lstrip("#").split()[:1] == ["Points"]:
                # next non-empty line: <count> <value>
                while i < n and not lines[i].strip():
                    i += 1
                if i >= n:
                    raise ExpFormatError(f"{path}: missing point count after line {i}")
                tokens = lines[i].split()
                i += 1
                try:
                    count = int(float(tokens[0]))
                    density = float(tokens[1]) if len(tokens) > 1 else 1.0
                except (ValueError, IndexError) as exc:
                    raise ExpFormatError(f"{path}: bad 'count value' line {i}: {lines[i - 1]!r}") from exc
                # skip the '# X pos Y pos' header
                while i < n and (not lines[i].strip() or lines[i].lstrip().startswith("#")):
                    i += 1
                coords = []
                for _ in range(count):
                    if i >= n:
                        raise ExpFormatError(f"{path}: contour {name!r} announces {count} points, file ends early")
                    tok = lines[i].split()
                    i += 1
                    try:
                        coords.append((float(tok[0]), float(tok[1])))
                    except (ValueError, IndexError) as exc:
                        raise ExpFormatError(f"{path}: bad coordinate line {i}: {lines[i - 1]!r}") from exc
                xy = np.array(coords, dtype=np.float64).reshape(-1, 2)
                closed = bool(count > 1 and xy[0, 0] == xy[-1, 0] and xy[0, 1] == xy[-1, 1])
                contours.append({"name": name, "x": xy[:, 0].copy(), "y": xy[:, 1].copy(),
                                 "closed": closed, "density": density})
                name = ""
            continue
        raise ExpFormatError(f"{path}: unexpected line {i}: {line!r}")
    return contours


def write_exp(path: str | os.PathLike, contours: Iterable[Mapping] | Mapping, fmt: str = "%.10f") -> None:
    """Write contours in Argus ``.exp`` format.

    Parameters
    ----------
    path : path-like
    contours : dict or list of dict
        Each with ``x``, ``y`` and optionally ``name`` (default ``'contour'``), ``density`` (1.0) and
        ``closed``: when True and the last point differs from the first, the first point is appended.
    fmt : str
        printf format of each coordinate (ISSM's ``roundmesh`` uses ``'%10.10f'``).
    """
    if isinstance(contours, Mapping):
        contours = [contours]
    parts: list[str] = []
    for c in contours:
        x = np.asarray(c["x"], dtype=np.float64).ravel()
        y = np.asarray(c["y"], dtype=np.float64).ravel()
        if x.shape != y.shape:
            raise ValueError(f"write_exp: x and y of contour {c.get('name', '')!r} differ in length")
        if c.get("closed", False) and x.size and (x[0] != x[-1] or y[0] != y[-1]):
            x, y = np.append(x, x[0]), np.append(y, y[0])
        parts.append(f"## Name:{c.get('name', 'contour')}\n## Icon:0\n# Points Count  Value\n"
                     f"{x.size} {float(c.get('density', 1.0)):f}\n# X pos Y pos\n")
        parts.append("".join(f"{fmt % a} {fmt % b}\n" for a, b in zip(x, y)))
        parts.append("\n")
    Path(path).write_text("".join(parts))
