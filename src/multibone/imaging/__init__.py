"""Imaging layer: backbone registry, training loop, cross-fitted scoring, aggregation.

* :mod:`~multibone.imaging.registry`: :data:`BACKBONES`, :func:`get_spec`,
  :func:`create_model` (one-logit timm models; weights none / imagenet / local file),
  :func:`get_cam_layer`;
* :class:`ImagingConfig`: the ``imaging:`` section of a run config;
* :func:`train_images`: step 1 of the two-step CV (cross-fitted patient scores);
* :class:`ImageScorer`, :func:`load_backbone_models`, :func:`preprocess`: scoring
  and CAM input for new images.
"""

from multibone.imaging.config import AGGREGATIONS, ImagingConfig
from multibone.imaging.crossfit import aggregate, sigmoid, train_images
from multibone.imaging.data import GREY_POLICY, preprocess
from multibone.imaging.registry import (
    BACKBONES,
    BackboneSpec,
    check_weights_source,
    create_model,
    get_cam_layer,
    get_spec,
    load_weights_file,
)
from multibone.imaging.scorer import (
    ImageScorer,
    load_backbone_meta,
    load_backbone_models,
    load_fold,
)

__all__ = [
    "AGGREGATIONS",
    "BACKBONES",
    "GREY_POLICY",
    "BackboneSpec",
    "ImageScorer",
    "ImagingConfig",
    "aggregate",
    "check_weights_source",
    "create_model",
    "get_cam_layer",
    "get_spec",
    "load_backbone_meta",
    "load_backbone_models",
    "load_fold",
    "load_weights_file",
    "preprocess",
    "sigmoid",
    "train_images",
]
