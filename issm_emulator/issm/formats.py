"""Readers and writers for ISSM's file formats: ``.arch`` archives and ``.exp`` (Argus) outlines.

Parsing is pyISSM's (``pyissm.tools.exp.exp_read`` / ``exp_write``, ``pyissm.tools.archive``; pure Python,
no compiled ISSM needed): the functions here adapt it to plain dicts of numpy arrays and to
:class:`ExpFormatError` / :class:`ArchiveFormatError`. :func:`write_arch` is ours: pyISSM has no archive
writer.

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
    """Read every record of an ISSM ``.arch`` file (with pyISSM's record reader).

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

    Raises
    ------
    ArchiveFormatError
        The file is truncated or holds a record ISSM does not write.
    """
    # pyISSM's public arch_read(filename, fieldname) rescans the file for one named field; _read_field, the
    # reader behind it, returns the records in order (None where a record is cut short)
    from pyissm.tools.archive import _read_field

    size = os.path.getsize(path)
    out: dict[str, float | np.ndarray] = {}
    with open(path, "rb") as fid:
        while (pos := fid.tell()) < size:
            try:
                record = _read_field(fid)
            except TypeError as exc:  # pyISSM: "Unsupported data type: <code>"
                code = str(exc).rsplit(" ", 1)[-1]
                raise ArchiveFormatError(f"{path}: the record at byte {pos} has unknown data type {code} "
                                         "(expected 2 or 3)") from None
            except ValueError as exc:  # not a name record, or a matrix cut short by the end of the file
                if fid.tell() < size:
                    raise ArchiveFormatError(f"{path}: no ISSM archive record at byte {pos} ({exc})") \
                        from None
                record = None
            if record is None:
                raise ArchiveFormatError(f"{path}: truncated while reading the record at byte {pos}")
            out[record["field_name"]] = record["data"]
    return out


def write_arch(path: str | os.PathLike, records: Mapping[str, float | np.ndarray]) -> None:
    """Write records as ISSM's ``archwrite`` does (round-trips with :func:`read_arch`).

    Python/numpy scalars (and 0-d arrays) become type-2 scalar records; 1-D arrays are written as
    ``(n, 1)`` columns, 2-D arrays as they are (column-major on disk).
    """
    # ours: pyISSM (pyissm.tools.archive) reads archives but has no writer
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
    """Read an Argus ``.exp`` outline file (with pyISSM's ``exp_read``).

    Returns
    -------
    list of dict
        One dict per contour: ``name`` (str), ``x``, ``y`` (float64 arrays, all points as stored, the
        closing point included), ``closed`` (bool: last point equals first) and ``density`` (the
        ``Value`` column of the header).

    Raises
    ------
    FileNotFoundError
        No such file.
    ExpFormatError
        The file does not follow the Argus layout (lines that are not part of it are skipped).
    """
    from pyissm.tools.exp import exp_read

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{os.fspath(path)!r}: no such .exp file")
    try:
        contours = exp_read(os.fspath(path))
    except StopIteration:  # pyISSM reads a contour's count and points with next(file)
        raise _file_ends_early(path) from None
    except (ValueError, IndexError, KeyError, TypeError) as exc:
        raise ExpFormatError(f"{path}: not an Argus .exp file ({type(exc).__name__}: {exc})") from None
    return [{"name": c["name"], "x": np.asarray(c["x"], dtype=np.float64),
             "y": np.asarray(c["y"], dtype=np.float64), "closed": bool(c.get("closed", False)),
             "density": float(c.get("density", 1.0))} for c in contours]


def _file_ends_early(path: str | os.PathLike) -> ExpFormatError:
    """The error for an ``.exp`` file whose last contour is cut short, naming the contour and its count."""
    lines = [line.strip() for line in Path(path).read_text().splitlines()]
    name, count = "", None
    for i, line in enumerate(lines):
        if line.startswith("## Name:"):
            name = line[len("## Name:"):].strip()
        elif line.startswith("# Points Count"):
            count = lines[i + 1].split()[0] if i + 1 < len(lines) and lines[i + 1] else None
    if count is None:
        return ExpFormatError(f"{path}: contour {name!r} has no point count after its '# Points Count' line")
    return ExpFormatError(f"{path}: contour {name!r} announces {count} points, file ends early")


def write_exp(path: str | os.PathLike, contours: Iterable[Mapping] | Mapping) -> None:
    """Write contours in Argus ``.exp`` format (with pyISSM's ``exp_write``, ISSM's ``expwrite`` layout).

    Parameters
    ----------
    path : path-like
    contours : dict or list of dict
        Each with ``x``, ``y`` and optionally ``name`` (default ``'contour'``), ``density`` (written as
        given when an ``int``, else as 1, as ISSM's ``expwrite``) and ``closed``: when True and the last
        point differs from the first, the first point is appended. Coordinates are written ``'%10.10f'``.
    """
    from pyissm.tools.exp import exp_write

    if isinstance(contours, Mapping):
        contours = [contours]
    out = []
    for c in contours:
        x = np.asarray(c["x"], dtype=np.float64).ravel()
        y = np.asarray(c["y"], dtype=np.float64).ravel()
        if x.shape != y.shape:
            raise ValueError(f"write_exp: x and y of contour {c.get('name', '')!r} differ in length")
        if c.get("closed", False) and x.size and (x[0] != x[-1] or y[0] != y[-1]):
            x, y = np.append(x, x[0]), np.append(y, y[0])
        out.append({"name": c.get("name", "contour"), "x": x, "y": y,
                    **({"density": c["density"]} if "density" in c else {})})
    exp_write(out, os.fspath(path))
