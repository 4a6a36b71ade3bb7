"""Fitted scikit-learn objects on disk without pickle: ``.skops`` files and an allow-list.

A pickle (``joblib``) runs whatever code its bytes name while it loads, so a
model file that anyone could have touched is a way to run code on the machine
that opens it. multibone therefore writes its fitted objects (the stacker, the
baselines, and any later scikit-learn part of a bundle) with `skops
<https://skops.readthedocs.io>`_: a zip of a JSON description and ``.npy``
arrays, from which objects are rebuilt type by type. Before anything is
rebuilt, :func:`load_model` lists the types the file names that skops does not
trust by default (``skops.io.get_untrusted_types``) and compares them with
:data:`TRUSTED_TYPES`, the types multibone itself saves; a file naming any
other type is refused (:class:`~multibone.errors.UnsafeModelError`) without
being loaded.

LightGBM and XGBoost models need no pickle either: their boosters' state is the
library's own model text (LightGBM) or UBJSON buffer (XGBoost), which skops
stores as a string / bytes and the library parses back.

Adding a new kind of object to a bundle: save it with :func:`dump_model` under a
``.skops`` name, run ``skops.io.get_untrusted_types(file=...)`` on the result,
and add the names it lists (classes you wrote or library internals you have
read) to :data:`TRUSTED_TYPES`; never a function or a type with side effects.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from multibone._atomic import atomic_path
from multibone.errors import UnsafeModelError

#: The suffix of a model file; files with :data:`PICKLE_SUFFIXES` are never loaded by default.
SUFFIX = ".skops"


def _skops_io():
    """``skops.io``, imported without dragging torch in.

    Importing skops.io runs scikit-learn's ``all_estimators()``, which walks every
    sklearn package, ``sklearn.externals.array_api_compat.torch`` included: 1.5 s and
    all of torch at each ``multibone predict`` start, for nothing (issue #15). While
    skops is imported, ``import torch`` is made to fail (the walk skips packages that
    fail to import) unless torch is already loaded; torch still imports normally later.
    """
    import sys

    if "skops.io" in sys.modules or "torch" in sys.modules:
        import skops.io

        return skops.io
    sys.modules["torch"] = None  # type: ignore[assignment]
    try:
        import skops.io
    finally:
        if sys.modules.get("torch", 0) is None:
            del sys.modules["torch"]
    return skops.io
PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")

#: Types beyond skops' defaults that multibone's own model files hold (fully qualified
#: names as skops reports them). Every entry is a data-holding class: an estimator of
#: multibone or scikit-learn, an internal of a fitted scikit-learn model, a numpy dtype,
#: or a LightGBM / XGBoost booster (restored from its own model format).
TRUSTED_TYPES: frozenset[str] = frozenset(
    {
        # multibone's estimators
        "multibone.stacking.model.Stacker",
        "multibone.stacking.model.ScoreBaseline",
        "multibone.stacking.selection.TunedStacker",
        # internals of fitted scikit-learn models
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.tree._tree.Tree",
        "numpy.dtype",
        "collections.OrderedDict",
        # gradient boosting libraries (the booster state is their own model format)
        "lightgbm.basic.Booster",
        "lightgbm.sklearn.LGBMClassifier",
        "xgboost.core.Booster",
        "xgboost.sklearn.XGBClassifier",
    }
)


def dump_model(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` to ``path`` (a ``.skops`` file) atomically, zip-deflated."""
    sio = _skops_io()

    path = Path(path)
    if path.suffix != SUFFIX:
        raise ValueError(
            f"{path}: model files are written as {SUFFIX}, not {path.suffix or 'no suffix'}"
        )
    with atomic_path(path, suffix=SUFFIX) as tmp:
        sio.dump(obj, tmp, compression=zipfile.ZIP_DEFLATED)
    return path


def _named_types(path: Path) -> list[str]:
    """Types ``path`` names that skops does not trust by default (reads only its JSON)."""
    sio = _skops_io()

    try:
        return list(sio.get_untrusted_types(file=path))
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError, OSError) as exc:
        raise UnsafeModelError(
            f"{path}: not a readable {SUFFIX} model file ({type(exc).__name__}: {exc}); "
            "it is damaged or of another format (a pickle?), so it is not loaded"
        ) from exc


def untrusted_types(path: str | Path, extra_trusted: Iterable[str] = ()) -> list[str]:
    """Types named in ``path`` that neither skops nor :data:`TRUSTED_TYPES` trusts (sorted).

    Reads only the file's JSON description; builds nothing.
    """
    return sorted(set(_named_types(Path(path))) - TRUSTED_TYPES - set(extra_trusted))


def load_model(path: str | Path, *, extra_trusted: Iterable[str] = ()) -> Any:
    """Rebuild the object saved in ``path`` if it names only trusted types.

    Raises :class:`~multibone.errors.UnsafeModelError` naming the file and the
    types when it names any other (nothing is built then), or when the file is not
    a skops file at all (e.g. a pickle renamed ``.skops``).
    """
    sio = _skops_io()

    path = Path(path)
    if path.suffix in PICKLE_SUFFIXES:
        raise UnsafeModelError(
            f"{path}: a pickle file; loading it would run any code it names, so multibone "
            "does not load it (re-create it with this version of multibone)"
        )
    named = _named_types(path)
    bad = sorted(set(named) - TRUSTED_TYPES - set(extra_trusted))
    if bad:
        raise UnsafeModelError(
            f"{path}: names types multibone never saves ({', '.join(bad)}); refusing to load it, "
            "since building them could run code. If you wrote this file yourself with new "
            "classes, add their names to multibone.io.modelfile.TRUSTED_TYPES"
        )
    try:
        return sio.load(path, trusted=named)
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise UnsafeModelError(f"{path}: cannot be rebuilt ({type(exc).__name__}: {exc})") from exc


def load_pickle(path: str | Path) -> Any:
    """Unpickle ``path`` with joblib: ONLY for files the user has said they trust.

    Used for bundles of format 2 and earlier when the user passes ``--trust-pickle``.
    """
    import joblib

    return joblib.load(Path(path))


__all__ = [
    "PICKLE_SUFFIXES",
    "SUFFIX",
    "TRUSTED_TYPES",
    "dump_model",
    "load_model",
    "load_pickle",
    "untrusted_types",
]
