"""Boxes for one image from one or several detectors, with test-time augmentation.

Every (model, augmentation) pair is one source: the image is resized (and
flipped), the model's boxes are mapped back to the original pixels (flip undone,
scale undone), and the sources are merged by :func:`.boxes.merge_boxes`. With a
single source nothing is merged: its boxes are returned, best first.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from multibone.detection.boxes import hflip_boxes, merge_boxes, resize_with_boxes, scale_boxes
from multibone.detection.config import DetectionConfig


@contextlib.contextmanager
def _input_size(model: nn.Module, size: int) -> Iterator[None]:
    """Let the model's own resize keep ``size`` (else it would undo a TTA scale)."""
    t = model.transform
    old = (t.min_size, t.max_size)
    t.min_size, t.max_size = (size,), size
    try:
        yield
    finally:
        t.min_size, t.max_size = old


def _views(config: DetectionConfig) -> list[tuple[float, bool]]:
    """(scale, hflip) of every augmentation, the plain image first."""
    scales = [1.0, *config.tta_scales]
    flips = [False, True] if "hflip" in config.tta else [False]
    return [(s, f) for s in scales for f in flips]


@torch.no_grad()
def detect(
    models: Sequence[nn.Module],
    pixels: np.ndarray | torch.Tensor,
    config: DetectionConfig,
    *,
    device: torch.device | str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Lesion boxes on one grey image.

    Parameters
    ----------
    models: detectors in eval mode (see :func:`.registry.create_detector`).
    pixels: float ``(H, W)`` grey image in [0, 1] (as :func:`multibone.io.read_radiograph`).
    config: ``img_size``, ``score_thresh``, ``max_boxes``, ``tta``, ``tta_scales``,
        ``merge``, ``merge_iou`` and ``conf_type`` are used.

    Returns
    -------
    (boxes float64 ``(K, 4)`` xyxy in the original pixels, scores float64 ``(K,)``),
    best score first; ``(0, 4)`` / ``(0,)`` when nothing passes ``score_thresh``.
    """
    img = torch.as_tensor(np.asarray(pixels, dtype=np.float32))[None]
    h, w = img.shape[-2:]
    sources = []
    for scale, flip in _views(config):
        side = max(64, round(config.img_size * scale))
        x, _ = resize_with_boxes(img, np.zeros((0, 4)), side)
        x = x.clamp(0.0, 1.0).expand(3, side, side)
        if flip:
            x = x.flip(-1)
        for model in models:
            model.score_thresh = config.score_thresh  # FCOS / RetinaNet
            if hasattr(model, "roi_heads"):
                model.roi_heads.score_thresh = config.score_thresh  # Faster R-CNN
            with _input_size(model, side):
                out = model([x.to(device)])[0]
            b = out["boxes"].float().cpu()
            if flip:
                b = hflip_boxes(b, side)
            b = scale_boxes(b, w / side, h / side)
            sources.append((b.numpy(), out["scores"].float().cpu().numpy()))
    if len(sources) == 1:
        b, s = sources[0]
        order = np.argsort(-s, kind="stable")
        b, s = b[order].astype(np.float64), s[order].astype(np.float64)
    else:
        b, s = merge_boxes(
            sources,
            float(w),
            float(h),
            method=config.merge,
            iou_thr=config.merge_iou,
            skip_box_thr=config.score_thresh,
            conf_type=config.conf_type,
        )
    return b[: config.max_boxes], s[: config.max_boxes]
