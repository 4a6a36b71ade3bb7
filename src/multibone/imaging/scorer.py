"""Scoring new images with trained fold models (predict, explain, dashboard).

:class:`ImageScorer` holds every fold model of each backbone (read with
:mod:`multibone.imaging.folds`) and scores crops through the one inference path,
:func:`multibone.imaging.inference.predict_logits`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from multibone.errors import BundleError, InputError
from multibone.imaging.aggregate import aggregate, sigmoid
from multibone.imaging.data import preprocess, resize_crops
from multibone.imaging.folds import (
    fold_numbers,
    load_backbone_meta,
    load_backbone_models,
    load_fold,
)
from multibone.imaging.inference import predict_logits

__all__ = [
    "ImageScorer",
    "load_backbone_meta",
    "load_backbone_models",
    "load_fold",
    "preprocess",
]


class ImageScorer:
    """Mean-of-fold-models logits for already-cropped radiographs.

    Build with :meth:`from_dir`. ``score(crops)`` takes float32 ``(H, W)`` crops
    in [0, 1] (bone bright, cut with ``crop_margin`` around the lesion box, any
    size) and returns ``{backbone: float32 (N,) logits}`` (mean over the fold
    models). Torch's global state is left as it was; inference only.
    """

    engine = "torch"

    def __init__(
        self,
        models: dict[str, list[tuple[nn.Module, dict]]],
        *,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
    ):
        if not models:
            raise InputError("ImageScorer needs at least one backbone")
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self._models = {
            b: [(m.to(self.device).eval(), meta) for m, meta in fm] for b, fm in models.items()
        }

    @classmethod
    def from_dir(
        cls,
        weights_dir: str | Path,
        backbones: Sequence[str] | None = None,
        *,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
    ) -> ImageScorer:
        """Load every fold model of ``backbones`` (default: all folders) under ``weights_dir``."""
        weights_dir = Path(weights_dir)
        if not weights_dir.is_dir():
            raise BundleError(f"{weights_dir}: weights folder not found")
        if backbones is None:
            backbones = sorted(p.name for p in weights_dir.iterdir() if p.is_dir())
        models = {
            b: [load_fold(weights_dir, b, k) for k in fold_numbers(weights_dir, b)]
            for b in backbones
        }
        return cls(models, device=device, batch_size=batch_size)

    @property
    def backbones(self) -> list[str]:
        return list(self._models)

    def folds(self, backbone: str) -> list[tuple[nn.Module, dict]]:
        """``[(model, meta), ...]`` of ``backbone``, ordered by fold (eval mode).

        For CAMs: ``preprocess([crop], meta)`` is the model's input and
        ``meta['cam_layer']`` the layer to hook.
        """
        try:
            return list(self._models[backbone])
        except KeyError:
            raise InputError(
                f"backbone {backbone!r} not loaded; loaded: {', '.join(self._models)}"
            ) from None

    def meta(self, backbone: str) -> dict:
        """Metadata of the first fold model of ``backbone`` (size, margin, aggregation...)."""
        return self.folds(backbone)[0][1]

    @property
    def crop_margin(self) -> float:
        """Margin (fraction of the box) the crops must be cut with, as in training."""
        return float(self.meta(self.backbones[0])["crop_margin"])

    @property
    def aggregation(self) -> str:
        return str(self.meta(self.backbones[0])["aggregation"])

    @torch.inference_mode()
    def score(self, pixels_list: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """``{backbone: float32 (N,) logits}``, the mean over the backbone's fold models."""
        out: dict[str, np.ndarray] = {}
        resized: dict[int, torch.Tensor] = {}  # crops resized once per model input size
        for b, folds in self._models.items():
            total = np.zeros(len(pixels_list), dtype=np.float64)
            for model, meta in folds:
                size = int(meta["img_size"])
                if size not in resized:
                    resized[size] = resize_crops(pixels_list, size)
                total += predict_logits(
                    model,
                    resized[size],
                    meta["norm_mean"],
                    meta["norm_std"],
                    device=self.device,
                    batch_size=self.batch_size,
                )
            out[b] = (total / len(folds)).astype(np.float32)
        return out

    def score_patient(
        self, pixels_list: Sequence[np.ndarray], rule: str | None = None
    ) -> dict[str, float]:
        """One patient's images -> ``{backbone: probability in [0, 1]}`` (aggregated as in training)."""
        if len(pixels_list) == 0:
            raise InputError("score_patient: give at least one image of the patient")
        logits = self.score(pixels_list)
        rule = rule or self.aggregation
        return {b: float(sigmoid(aggregate(v, rule))) for b, v in logits.items()}
