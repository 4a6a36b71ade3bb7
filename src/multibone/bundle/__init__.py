"""Model bundles: save, verify and load a trained multibone model.

A bundle is a folder::

    bundle.json            format version, task, classes, feature schema, preprocessing,
                           backbones, thresholds, training summary, metrics, and the
                           SHA-256 of every other file
    backbones/<name>/fold<k>.safetensors (+ .json)   cross-fitted backbone weights
    stacker.joblib         the fitted stacker (and baselines)
    evaluation/            metrics, figures and tables of the run that made it

Loading checks every listed hash before anything is unpickled and refuses a
mismatch, a missing or an unlisted file, or a newer format version. Writing goes
to a temporary folder that is renamed into place; an existing bundle is never
replaced unless ``force=True``.
"""

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
    "load_bundle",
    "save_bundle",
    "sha256_file",
    "verify_bundle",
]
