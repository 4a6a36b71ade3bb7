"""What a bundle says about itself (``bundle.json``): built here, checked against a schema.

In the manner of MONAI's ``metadata.json``, the metadata states the task, the
classes, the exact input and feature encoding, the preprocessing, the operating
points, what it was trained on, and the versions of the libraries that made it.
It is validated against ``bundle.schema.json`` (``data_schemas/``, shipped as
package data beside the cohort schemas) when a bundle is saved and when it is
loaded.

Fitted parts of a bundle are ``*.skops`` files (the stacker and the baselines;
format 2 and earlier: ``*.joblib`` pickles). They are only promised to load under
the versions that wrote them, so loading under another major.minor version of a
library listed in ``pickled_with`` warns (:class:`BundleVersionWarning`), naming the library and both versions.
"""

from __future__ import annotations

import functools
import json
import platform
import re
import warnings
from importlib import metadata as importlib_metadata
from importlib import resources
from typing import Any

from multibone import __version__
from multibone.errors import BundleError

SCHEMA = "bundle.schema.json"

#: Recorded in every bundle: interpreter, multibone and the libraries a model depends on.
#: Keys are distribution names (as ``pip`` spells them).
RECORDED_LIBRARIES = (
    "numpy",
    "torch",
    "timm",
    "scikit-learn",
    "lightgbm",
    "xgboost",
    "joblib",
    "skops",
)

#: Families whose fitted estimators pickle objects of a library beyond scikit-learn.
_FAMILY_LIBRARY = {"lightgbm": "lightgbm", "xgboost": "xgboost"}

TASK = "primary bone tumour vs bone infection from radiographs + clinical data"

#: How each input feature of the stacker is encoded (the predict path's contract).
FEATURE_ENCODING = {
    "backbone": "patient-level probability (sigmoid of the aggregated mean-of-folds logit)",
    "age": "years",
    "sex_male": "1 male, 0 female",
    "location_axial": "1 axial, 0 appendicular",
    "crp_mg_l": "CRP in mg/L; NaN when only normal/abnormal was recorded, or missing",
    "crp_abnormal": "1 abnormal (> 10 mg/L), 0 normal, NaN missing",
    "esr_mm_h": "ESR in mm/h; NaN when only normal/abnormal was recorded, or missing",
    "esr_abnormal": "1 abnormal (> 20 mm/h), 0 normal, NaN missing",
}

INPUT = {
    "images": "DICOM, PNG or JPEG radiographs; grey-scale float32 in [0, 1], bone bright",
    "roi": "lesion box x0,y0,x1,y1 in original pixels (x1/y1 exclusive); whole image if absent",
}


class BundleVersionWarning(UserWarning):
    """A bundle pickled under another major.minor version of a library is being loaded."""


def library_versions() -> dict[str, str | None]:
    """Versions now installed: ``python``, ``multibone`` and :data:`RECORDED_LIBRARIES`.

    Read from package metadata (nothing is imported); ``None`` for a library
    that is not installed.
    """
    out: dict[str, str | None] = {"python": platform.python_version(), "multibone": __version__}
    for dist in RECORDED_LIBRARIES:
        try:
            out[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            out[dist] = None
    return out


def pickling_libraries(family: str) -> list[str]:
    """Libraries whose objects the ``*.skops`` files of a ``family`` stacker hold."""
    libs = ["skops", "numpy", "scikit-learn"]
    if family in _FAMILY_LIBRARY:
        libs.append(_FAMILY_LIBRARY[family])
    return libs


def build_metadata(
    *,
    positive_class: str,
    features: list[str],
    backbones: list[str],
    clinical: list[str],
    family: str,
    calibration: str,
    thresholds: dict,
    preprocessing: dict,
    training_data: dict,
    metrics: dict,
    config: dict,
    dropped_features: dict | None = None,
) -> dict[str, Any]:
    """The metadata of a bundle (everything but ``format_version``, ``multibone_version``
    and ``files``, which :func:`~multibone.bundle.save_bundle` adds).

    ``thresholds``: operating point name -> ``{"threshold", "sensitivity",
    "specificity", ...}`` chosen on development data. ``preprocessing``: the
    backbones' image settings (``img_size`` px, ``crop_margin`` fraction, ...).
    ``training_data``: ``synthetic``, ``n_patients``, ``n_images``, ``centres``,
    ``by_split``. ``metrics``: set -> model -> ``{"auc", "ci_low", "ci_high"}``.
    ``config``: the resolved run config as a dict. ``dropped_features``:
    clinical feature -> why it was dropped before fitting (never observed or
    constant on development data); listed as ``feature_schema.dropped``.
    """
    negative = "tumor" if positive_class == "infection" else "infection"
    return {
        "task": TASK,
        "positive_class": positive_class,
        "negative_class": negative,
        "created_by": f"multibone {__version__}",
        "feature_schema": {
            "features": list(features),
            "backbones": list(backbones),
            "clinical": list(clinical),
            "dropped": dict(dropped_features or {}),
            "encoding": dict(FEATURE_ENCODING),
        },
        "input": dict(INPUT),
        "preprocessing": dict(preprocessing),
        "backbones": list(backbones),
        "stacker": {"family": family, "calibration": calibration},
        "thresholds": thresholds,
        "thresholds_chosen_on": "development out-of-fold predictions",
        "training_data": training_data,
        "metrics": metrics,
        "config": config,
        "versions": library_versions(),
        "pickled_with": pickling_libraries(family),
    }


def headline_metrics(evaluation_metrics: dict) -> dict:
    """AUC (with CI) of every model on every set, from the evaluation's ``metrics.json``.

    Returns ``{set: {model: {"auc", "ci_low", "ci_high"}}}`` (the DeLong result).
    """
    out: dict = {}
    for set_name, set_data in (evaluation_metrics.get("sets") or {}).items():
        models = set_data.get("models", {}) if isinstance(set_data, dict) else {}
        for model, m in models.items():
            auc = (m or {}).get("auc") if isinstance(m, dict) else None
            auc = auc.get("auc") if isinstance(auc, dict) else None  # the DeLong result
            if isinstance(auc, dict) and auc.get("auc") is not None:
                out.setdefault(set_name, {})[model] = {
                    k: auc.get(k) for k in ("auc", "ci_low", "ci_high") if k in auc
                }
    return out


@functools.cache
def _validator():
    from jsonschema import Draft202012Validator

    text = resources.files("multibone.cohort").joinpath("schemas", SCHEMA).read_text("utf-8")
    schema = json.loads(text)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def validate_metadata(meta: dict, where: str) -> None:
    """Raise :class:`BundleError` naming the first key of ``meta`` that breaks the schema.

    ``meta`` is the whole ``bundle.json`` content, as JSON types.
    """
    errors = sorted(_validator().iter_errors(meta), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        key = ".".join(str(p) for p in e.absolute_path) or "(top level)"
        raise BundleError(f"{where}: {key}: {e.message} (bundle.schema.json)")


def _major_minor(version: str) -> tuple[str, ...]:
    m = re.match(r"(\d+)\.(\d+)", version)
    return m.groups() if m else (version,)


def version_mismatches(meta: dict) -> list[tuple[str, str, str | None]]:
    """``(library, recorded, installed)`` for every library in ``pickled_with`` whose
    installed major.minor differs from the one the bundle recorded (or is missing)."""
    recorded = meta.get("versions") or {}
    now = library_versions()
    out = []
    for lib in meta.get("pickled_with") or []:
        then = recorded.get(lib)
        if then is None:
            continue
        installed = now.get(lib)
        if installed is None or _major_minor(installed) != _major_minor(then):
            out.append((lib, then, installed))
    return out


def warn_on_version_mismatch(meta: dict, where: str) -> None:
    """Warn once per library pickled under another major.minor version than installed."""
    for lib, then, installed in version_mismatches(meta):
        warnings.warn(
            f"{where}: pickled with {lib} {then}, but {lib} "
            f"{installed if installed else '(not installed)'} is installed; its objects may "
            f"fail to load or predict differently: install {lib}=={then} or rebuild the bundle",
            BundleVersionWarning,
            stacklevel=3,
        )
