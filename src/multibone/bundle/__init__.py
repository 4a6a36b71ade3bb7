"""Model bundles: save, verify and load a trained multibone model.

A bundle is a folder::

    bundle.json            format version, task, classes, feature schema, preprocessing,
                           backbones, thresholds, training summary, metrics, library
                           versions, and the SHA-256 of every other file; built by
                           :func:`build_metadata`, checked against ``bundle.schema.json``
    backbones/<name>/fold<k>.safetensors (+ .json)   cross-fitted backbone weights
    stacker.skops, baselines.skops   the fitted stacker and baselines (skops, no pickle)
    evaluation/            metrics, figures and tables of the run that made it

Loading checks every listed hash before anything is loaded and refuses a
mismatch, a missing or an unlisted file, metadata that breaks the schema, or a
newer format version; it warns when a library that saved part of the bundle is
installed in another major.minor version. A bundle holds no pickle: fitted objects
are ``.skops`` files rebuilt only from the types multibone saves
(:mod:`multibone.io.modelfile`); a bundle of format 2 (``stacker.joblib``) is
refused unless opened with ``trust_pickle=True`` (CLI ``--trust-pickle``). Writing goes
to a temporary folder that is renamed into place; an existing bundle is never
replaced unless ``force=True``.
"""

from multibone.bundle.metadata import (
    BundleVersionWarning,
    build_metadata,
    headline_metrics,
    library_versions,
    validate_metadata,
)
from multibone.bundle.store import (
    BUNDLE_FORMAT_VERSION,
    Bundle,
    load_bundle,
    save_bundle,
    sha256_file,
    verify_bundle,
)

__all__ = [
    "BUNDLE_FORMAT_VERSION",
    "Bundle",
    "BundleVersionWarning",
    "build_metadata",
    "headline_metrics",
    "library_versions",
    "validate_metadata",
    "load_bundle",
    "save_bundle",
    "sha256_file",
    "verify_bundle",
]
