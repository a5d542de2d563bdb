"""Write one benchmark's section of a markdown report without touching the other sections.

Each benchmark owns the text between ``<!-- begin:NAME -->`` and ``<!-- end:NAME -->``; running it again
replaces only that block (and appends it when missing), so several scripts can share one document.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path


def machine_line() -> str:
    """A one-line description of the machine the numbers were measured on."""
    return (f"Machine: {platform.platform()}, Python {platform.python_version()}, "
            f"{os.cpu_count()} CPU(s).")


def write_section(path: str | os.PathLike, name: str, body: str, *, title: str | None = None) -> Path:
    """Replace (or append) the block of benchmark ``name`` in the markdown file ``path``."""
    path = Path(path)
    text = path.read_text() if path.exists() else (f"# {title}\n\n" if title else "")
    block = f"<!-- begin:{name} -->\n{body.rstrip()}\n<!-- end:{name} -->"
    pattern = re.compile(rf"<!-- begin:{re.escape(name)} -->.*?<!-- end:{re.escape(name)} -->", re.DOTALL)
    text = pattern.sub(lambda _m: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path
