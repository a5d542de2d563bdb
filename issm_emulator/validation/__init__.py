"""Validation against ISSM's own nightly tests: rebuilt test cases and their archived results."""

from .cases import (
                    CASES,
                    archive_fields,
                    build_case,
                    mass_flux_gates,
                    max_relative_error,
                    mesh_profile_intersection,
                    relative_l2,
                    variants,
)

__all__ = ["CASES", "archive_fields", "build_case", "mass_flux_gates", "max_relative_error",
           "mesh_profile_intersection", "relative_l2", "variants"]
