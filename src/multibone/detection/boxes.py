"""Box utilities: IoU, checks, transforms that move boxes with the image, and the
merge of several models' (or test-time augmentations') boxes.

Conventions: boxes are float ``(N, 4)`` ``x0, y0, x1, y1`` in pixels of the image
they belong to, ``x1``/``y1`` exclusive edges (the manifest's ``roi_x1``/``roi_y1``
are exactly these), so a box of an image ``W`` wide flips to ``W - x1, ., W - x0, .``.
Scores are float ``(N,)`` in [0, 1]. No box is an array of shape ``(0, 4)``.

The merge takes one ``(boxes, scores)`` pair per source (a fold model, or a fold
model under one augmentation already undone) and returns one set: weighted boxes
fusion (``ensemble-boxes``, MIT; boxes averaged by confidence) or NMS
(``torchvision.ops.nms``; seed 003 merged its five fold models this way).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from multibone.errors import InputError

MergeMethod = Literal["wbf", "nms"]
MERGE_METHODS: tuple[str, ...] = ("wbf", "nms")
#: ensemble-boxes' score averaging modes accepted here.
CONF_TYPES: tuple[str, ...] = ("avg", "max", "box_and_model_avg", "absent_model_aware_avg")


def as_boxes(boxes: object) -> torch.Tensor:
    """``boxes`` as float32 ``(N, 4)`` (an empty input becomes ``(0, 4)``)."""
    t = torch.as_tensor(np.asarray(boxes, dtype=np.float32)).reshape(-1, 4)
    return t.float()


def box_iou(a: object, b: object) -> np.ndarray:
    """Pairwise IoU, float64 ``(N, M)``, of ``(N, 4)`` and ``(M, 4)`` xyxy boxes."""
    from torchvision.ops import box_iou as _iou

    return _iou(as_boxes(a).double(), as_boxes(b).double()).numpy()


def check_box(box: Sequence[float], width: int, height: int, where: str) -> None:
    """Raise InputError (naming ``where``) unless ``box`` has area and lies inside the image."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise InputError(f"{where}: box {x0, y0, x1, y1} has a missing or infinite coordinate")
    if x1 <= x0 or y1 <= y0:
        raise InputError(
            f"{where}: box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) has zero area; x1 must exceed x0 "
            "and y1 exceed y0 (x1, y1 are exclusive edges)"
        )
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
        raise InputError(
            f"{where}: box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) lies outside the image "
            f"({width} wide x {height} high)"
        )


# --------------------------------------------------------------------------- geometry


def hflip_boxes(boxes: object, width: float) -> torch.Tensor:
    """Boxes of an image flipped left-right (``W`` wide). Its own inverse."""
    b = as_boxes(boxes).clone()
    b[:, [0, 2]] = width - b[:, [2, 0]]
    return b


def vflip_boxes(boxes: object, height: float) -> torch.Tensor:
    """Boxes of an image flipped top-bottom (``H`` high). Its own inverse."""
    b = as_boxes(boxes).clone()
    b[:, [1, 3]] = height - b[:, [3, 1]]
    return b


def scale_boxes(boxes: object, sx: float, sy: float) -> torch.Tensor:
    """Boxes of an image resized by ``sx`` horizontally and ``sy`` vertically."""
    return as_boxes(boxes) * torch.tensor([sx, sy, sx, sy], dtype=torch.float32)


def resize_with_boxes(
    image: torch.Tensor, boxes: object, size: int | tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize ``image`` (``(C, H, W)``) to ``size`` (square side or ``(H, W)``), boxes along.

    Uses ``torchvision.transforms.v2`` with ``tv_tensors.BoundingBoxes`` (bilinear,
    antialiased). Returns (image ``(C, h, w)``, boxes ``(N, 4)`` in the new pixels).
    """
    from torchvision import tv_tensors
    from torchvision.transforms.v2 import functional as TF

    h, w = image.shape[-2:]
    hw = (size, size) if isinstance(size, int) else tuple(size)
    bb = tv_tensors.BoundingBoxes(as_boxes(boxes), format="XYXY", canvas_size=(h, w))
    img, bb = TF.resize(tv_tensors.Image(image), list(hw), antialias=True), TF.resize(bb, list(hw))
    return img.as_subclass(torch.Tensor), bb.as_subclass(torch.Tensor)


def train_transform(
    *,
    flips: Sequence[str] = ("horizontal",),
    flip_prob: float = 0.5,
    scale: float = 0.0,
    translate: float = 0.0,
):
    """The training augmentation: flips and an affine scale/translate that move the boxes.

    Call it as ``out = t({"image": tv_tensors.Image, "boxes": tv_tensors.BoundingBoxes,
    "labels": (N,) int64})``; boxes pushed off the image are clipped, and those left
    without area dropped with their labels. Draws from torch's global generator
    (seed it per epoch for reproducible runs).
    """
    from torchvision.transforms import v2

    steps: list = []
    if "horizontal" in flips:
        steps.append(v2.RandomHorizontalFlip(flip_prob))
    if "vertical" in flips:
        steps.append(v2.RandomVerticalFlip(flip_prob))
    if scale > 0 or translate > 0:
        steps.append(
            v2.RandomAffine(
                degrees=0.0,
                translate=(translate, translate) if translate > 0 else None,
                scale=(1.0 - scale, 1.0 + scale) if scale > 0 else None,
            )
        )
    steps += [v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes(min_size=1.0)]
    return v2.Compose(steps)


# --------------------------------------------------------------------------- merge


def to_normalised(boxes: object, width: float, height: float) -> np.ndarray:
    """Pixel boxes -> xyxy in [0, 1] (clipped) for ensemble-boxes, float64 ``(N, 4)``."""
    b = as_boxes(boxes).double().numpy() / np.array([width, height, width, height])
    return np.clip(b, 0.0, 1.0)


def from_normalised(boxes: object, width: float, height: float) -> np.ndarray:
    """xyxy in [0, 1] -> pixel boxes, float64 ``(N, 4)``."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return b * np.array([width, height, width, height])


def _checked_sources(
    sources: Sequence[tuple[object, object]], width: float, height: float
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Normalised, clipped, area-positive boxes with finite scores in [0, 1], per source.

    ensemble-boxes calls ``exit()`` on some malformed input; nothing malformed reaches it.
    """
    if not sources:
        raise InputError("merge_boxes: no sources to merge (need at least one model's boxes)")
    if not (width > 0 and height > 0):
        raise InputError(f"merge_boxes: image size {width} x {height} must be positive")
    out = []
    for i, (boxes, scores) in enumerate(sources):
        b = to_normalised(boxes, width, height)
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(s) != len(b):
            raise InputError(f"merge_boxes: source {i} has {len(b)} boxes but {len(s)} scores")
        if not np.all(np.isfinite(b)) or not np.all(np.isfinite(s)):
            raise InputError(f"merge_boxes: source {i} has a non-finite box or score")
        if np.any((s < 0) | (s > 1)):
            raise InputError(f"merge_boxes: source {i} has a score outside [0, 1]")
        keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
        out.append((b[keep], s[keep]))
    return out


def merge_boxes(
    sources: Sequence[tuple[object, object]],
    width: float,
    height: float,
    *,
    method: MergeMethod = "wbf",
    iou_thr: float = 0.55,
    skip_box_thr: float = 0.0,
    conf_type: str = "avg",
) -> tuple[np.ndarray, np.ndarray]:
    """Merge the boxes of several sources on one image ``width`` x ``height`` pixels.

    Parameters
    ----------
    sources: one ``(boxes (N_i, 4) pixels, scores (N_i,))`` per model / augmentation.
    method: ``wbf`` (weighted boxes fusion, ``ensemble_boxes.weighted_boxes_fusion``)
        or ``nms`` (``torchvision.ops.nms`` over all sources' boxes together).
    iou_thr: boxes overlapping more than this are fused (WBF) or suppressed (NMS).
    skip_box_thr: boxes scoring below this are ignored.
    conf_type: WBF's score rule (``avg``: a box found by few sources scores lower).

    Returns
    -------
    (boxes float64 ``(K, 4)`` pixels, scores float64 ``(K,)``), best score first.
    """
    if method not in MERGE_METHODS:
        raise InputError(f"merge method {method!r}: use one of {', '.join(MERGE_METHODS)}")
    if conf_type not in CONF_TYPES:
        raise InputError(f"WBF conf_type {conf_type!r}: use one of {', '.join(CONF_TYPES)}")
    if not 0.0 < iou_thr <= 1.0:
        raise InputError(f"merge iou_thr {iou_thr}: must be in (0, 1]")
    checked = _checked_sources(sources, width, height)
    checked = [(b[s >= skip_box_thr], s[s >= skip_box_thr]) for b, s in checked]
    if sum(len(s) for _, s in checked) == 0:
        return np.zeros((0, 4)), np.zeros(0)
    if method == "nms":
        from torchvision.ops import nms

        b = torch.from_numpy(np.concatenate([b for b, _ in checked]))
        s = torch.from_numpy(np.concatenate([s for _, s in checked]))
        keep = nms(b, s, iou_thr).numpy()  # sorted by decreasing score
        return from_normalised(b.numpy()[keep], width, height), s.numpy()[keep]
    from ensemble_boxes import weighted_boxes_fusion

    boxes, scores, _ = weighted_boxes_fusion(
        [b.tolist() for b, _ in checked],
        [s.tolist() for _, s in checked],
        [[0] * len(s) for _, s in checked],
        iou_thr=iou_thr,
        skip_box_thr=skip_box_thr,
        conf_type=conf_type,
    )
    order = np.argsort(-np.asarray(scores), kind="stable")
    return from_normalised(np.asarray(boxes)[order], width, height), np.asarray(scores)[order]
