"""Cohort layer: the manifest data contract, the Cohort object, splits and the leakage guard.

* :func:`validate_manifest` lists every problem of a manifest CSV
  (``row R, column C: ...`` with spreadsheet row numbers, header = row 1, or
  ``patient P: ...``);
* :func:`load_cohort` / :func:`load_cases` / :func:`case_to_cohort` build a
  :class:`Cohort` (patient table + image table) or raise
  :class:`~multibone.errors.CohortValidationError`; ``require_images=False``
  loads a clinical-only cohort (:func:`needed_columns` says what a run needs);
* :mod:`multibone.cohort.sites`: the site vocabulary (``sites.yaml``) and
  :func:`location_for_site`;
* :mod:`multibone.cohort.splits`: :class:`SplitConfig`, :func:`assign_splits`,
  :func:`check_no_leakage`;
* the JSON Schemas (``data_schemas/``, shipped in the package) via
  :func:`load_schema` and :func:`field_limits`.
"""

from multibone.cohort.cohort import (
    IMAGE_COLUMNS,
    NORMAL,
    PATIENT_COLUMNS,
    Cohort,
    build_cohort,
    case_to_cohort,
    diagnoses,
    load_cases,
    load_cohort,
)
from multibone.cohort.schema import field_limits, load_schema, validate_case
from multibone.cohort.sites import SITE_LOCATION, location_for_site
from multibone.cohort.splits import SplitConfig, assign_splits, check_no_leakage, iter_folds
from multibone.cohort.validate import check_manifest, needed_columns, validate_manifest

__all__ = [
    "IMAGE_COLUMNS",
    "NORMAL",
    "PATIENT_COLUMNS",
    "SITE_LOCATION",
    "Cohort",
    "SplitConfig",
    "assign_splits",
    "build_cohort",
    "case_to_cohort",
    "check_manifest",
    "check_no_leakage",
    "diagnoses",
    "field_limits",
    "iter_folds",
    "load_cases",
    "load_cohort",
    "load_schema",
    "location_for_site",
    "needed_columns",
    "validate_case",
    "validate_manifest",
]
