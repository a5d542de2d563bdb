"""The one progress bar of the package (tqdm), shared by ``solve(progress=True)``, ``generate``, ``train``
and ``evaluate``, and the package's logger names.

Library code reports through :mod:`logging` (``logging.getLogger("issm_emulator.<module>")``) and draws
progress only when asked (``progress=True``); the command line (:mod:`issm_emulator.cli`) installs the
handlers. Nothing here prints.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["NoBar", "get_logger", "progress_bar"]


class NoBar:
    """Stands in for a bar when progress is off: ``update``, ``set_postfix_str`` and ``close`` do nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, show: bool, desc: str, unit: str = "step", initial: int = 0) -> Any:
    """A tqdm bar over ``total`` items when ``show``, else a :class:`NoBar`.

    ``initial`` counts items already done (a resumed ensemble or training). The bar writes to stderr, so
    it never mixes with results printed on stdout.
    """
    if not show:
        return NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, initial=initial, dynamic_ncols=True)


def get_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` for a module name under ``issm_emulator`` (use ``__name__``)."""
    return logging.getLogger(name if name.startswith("issm_emulator") else f"issm_emulator.{name}")
