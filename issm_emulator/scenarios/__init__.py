"""Ready-to-solve pyISSM models of standard set-ups.

- :func:`square_shelf`, :func:`square_sheet_shelf`: ISSM's square test domains (no download needed).
- :func:`pine_island`: Pine Island Glacier from ISSM's ``Pig.arch`` (sub-shelf melt sweeps).
- :func:`north79`: 79N Glacier (Nioghalvfjerdsbrae) from ``79North.arch`` with von Mises calving.
- :func:`mismip_plus`, :func:`mismip_plus_spinup`: the MISMIP+ experiments (Asay-Davis et al., 2016).
"""

from .mismip_plus import (
    EXPERIMENTS,
    mismip_plus,
    mismip_plus_bed,
    mismip_plus_spinup,
    weertman_issm_parameters,
)
from .north79 import north79
from .pine_island import pine_island
from .square import parameterize_square, square_sheet_shelf, square_shelf

__all__ = [
    "EXPERIMENTS", "mismip_plus", "mismip_plus_bed", "mismip_plus_spinup", "north79", "parameterize_square",
    "pine_island", "square_sheet_shelf", "square_shelf", "weertman_issm_parameters",
]
