"""Imaging layer: backbone registry, training loop, cross-fitted scoring, aggregation.

Modules, in import order (each imports only those above it):

* :mod:`~multibone.imaging.registry`: :data:`BACKBONES`, :func:`list_backbones`,
  :func:`get_spec`, :func:`create_backbone` (one-logit timm models; weights none /
  imagenet / local file), :func:`get_cam_layer`;
* :mod:`~multibone.imaging.aggregate`: image logits -> patient logit (:func:`aggregate`),
  :func:`sigmoid`;
* :mod:`~multibone.imaging.config`: :class:`ImagingConfig`, the ``imaging:`` section;
* :mod:`~multibone.imaging.data`: crop decoding, :func:`preprocess`, normalisation, flips;
* :mod:`~multibone.imaging.inference`: :func:`predict_logits`, the one inference path;
* :mod:`~multibone.imaging.folds`: fold model files (:func:`load_fold`, ...);
* :mod:`~multibone.imaging.train`: the training loop of one fold model;
* :mod:`~multibone.imaging.crossfit`: :func:`train_images`, step 1 of the two-step CV;
* :mod:`~multibone.imaging.arms`: pretraining arms (``imaging.arms``), the same recipe
  from other initial weights, :func:`~multibone.imaging.arms.train_arms`;
* :mod:`~multibone.imaging.scorer`: :class:`ImageScorer`, scoring new images.
* :mod:`~multibone.imaging.onnx_runtime`: :class:`OnnxScorer` (ONNX Runtime, no torch);
  :mod:`~multibone.imaging.onnx_export`: :func:`export_onnx`, checked against torch;
  :mod:`~multibone.imaging.engine`: :func:`make_scorer`, which of the two scores a bundle.

Names are imported on first use: ``import multibone.imaging`` alone loads nothing heavy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# ``aggregate`` is both a submodule and a function: import it now (numpy only) so the
# package attribute is the function, whichever submodule is imported first.
from multibone.imaging.aggregate import AGGREGATIONS, aggregate, sigmoid

# Public name -> submodule. Imported on first use (PEP 562), so importing one
# submodule (e.g. the torch-free onnx_runtime used by predict) does not pull torch,
# the training loop and the cross-fitting code in with it.
_LAZY = {
    "ImagingConfig": "config",
    "train_images": "crossfit",
    "GREY_POLICY": "data", "preprocess": "data",
    "load_backbone_meta": "folds", "load_backbone_models": "folds", "load_fold": "folds",
    "predict_logits": "inference",
    "BACKBONES": "registry", "BackboneSpec": "registry", "check_weights_source": "registry",
    "create_backbone": "registry", "get_cam_layer": "registry", "get_spec": "registry",
    "list_backbones": "registry", "load_weights_file": "registry",
    "ImageScorer": "scorer",
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from multibone.imaging.config import ImagingConfig
    from multibone.imaging.crossfit import train_images
    from multibone.imaging.data import GREY_POLICY, preprocess
    from multibone.imaging.folds import load_backbone_meta, load_backbone_models, load_fold
    from multibone.imaging.inference import predict_logits
    from multibone.imaging.registry import (
        BACKBONES,
        BackboneSpec,
        check_weights_source,
        create_backbone,
        get_cam_layer,
        get_spec,
        list_backbones,
        load_weights_file,
    )
    from multibone.imaging.scorer import ImageScorer


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'multibone.imaging' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"multibone.imaging.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "AGGREGATIONS",
    "BACKBONES",
    "GREY_POLICY",
    "BackboneSpec",
    "ImageScorer",
    "ImagingConfig",
    "aggregate",
    "check_weights_source",
    "create_backbone",
    "get_cam_layer",
    "get_spec",
    "list_backbones",
    "load_backbone_meta",
    "load_backbone_models",
    "load_fold",
    "load_weights_file",
    "predict_logits",
    "preprocess",
    "sigmoid",
    "train_images",
]
