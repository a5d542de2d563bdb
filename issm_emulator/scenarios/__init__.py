"""Ready-to-solve pyISSM models of standard set-ups.

:func:`square_shelf` and :func:`square_sheet_shelf` are ISSM's square test domains
(:mod:`issm_emulator.scenarios.square`).
"""

from .square import parameterize_square, square_sheet_shelf, square_shelf

__all__ = ["parameterize_square", "square_sheet_shelf", "square_shelf"]
