"""Is a case image unlike the images a backbone was trained on? (out-of-distribution check)

A backbone scores any picture it is given, a chest film or a photograph as
readily as a bone lesion crop like those it learnt from. To say when a score
should not be trusted, each backbone keeps a summary of its **training
embeddings**: the pooled features (the layer before the classifier,
``forward_head(..., pre_logits=True)`` of timm) of its fold-0 model on every
development crop, summarised by their mean and a Ledoit-Wolf shrunk
covariance (scikit-learn's :class:`~sklearn.covariance.LedoitWolf`: the
features outnumber or rival the crops, so the plain covariance would be
singular). A crop's **Mahalanobis distance** to that mean is compared with the
development crops' own 99th percentile; beyond it, the crop is "unlike the
training images" for that backbone.

Distances are taken **out of sample**: the development crops' own distances
to a mean and covariance fitted on them are too small (with more feature
dimensions than crops, much too small: a threshold from them flagged 25 % of
the demo's external images), so each crop's reference distance comes from a
summary fitted without its patient (patient-grouped 5-fold). Per backbone,
``scale`` is the 99th percentile of those distances; a crop's statistic is the
**maximum over backbones** of distance / scale, and the crop is flagged when
the statistic exceeds its own out-of-sample development 99th percentile
(about 1 % of development crops by construction; one backbone that finds the
crop strange is enough, without the false alarms of four backbones adding up).

Stored in a bundle as ``ood/<backbone>.npz`` (mean, precision matrix, scale)
and ``ood/ood.json`` (threshold and what the numbers are). Cost: one forward
pass of one fold model per development crop when the bundle is written, and
per case image when it is scored; a few Ledoit-Wolf fits.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from multibone.errors import BundleError, InputError

if TYPE_CHECKING:  # torch is imported where it is used: a bundle's summary loads without it
    from torch import nn

#: Percentile of the development distances beyond which a crop is flagged.
QUANTILE = 0.99
UNLIKE = "unlike the training images"


def embed(model: nn.Module, crops: Sequence[np.ndarray], meta: Mapping, *,
          batch_size: int = 128) -> np.ndarray:
    """Pooled pre-classifier features ``(N, D)`` (float64) of grey crops, as the model sees them."""
    import torch

    from multibone.imaging.data import normalise, resize_crops

    with torch.no_grad():
        return _embed(model, crops, meta, batch_size, normalise, resize_crops)


def _embed(model, crops, meta, batch_size, normalise, resize_crops) -> np.ndarray:
    size = int(meta["img_size"])
    x = resize_crops(crops, size)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    try:
        for s in range(0, x.shape[0], batch_size):
            xb = normalise(x[s : s + batch_size].to(device), meta["norm_mean"], meta["norm_std"])
            feats = model.forward_head(model.forward_features(xb), pre_logits=True)
            out.append(feats.float().reshape(feats.shape[0], -1).cpu().numpy())
    finally:
        model.train(was_training)
    if not out:
        return np.zeros((0, 0))
    return np.concatenate(out).astype(np.float64)


@dataclass
class EmbeddingSummary:
    """One backbone's development embeddings: mean, precision (inverse shrunk
    covariance) and ``scale``, the development 99th percentile of the
    out-of-sample Mahalanobis distance."""

    backbone: str
    mean: np.ndarray
    precision: np.ndarray
    scale: float
    n_crops: int

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each row of ``features`` ``(N, D)`` to the mean."""
        d = np.asarray(features, dtype=np.float64) - self.mean
        return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", d, self.precision, d), 0.0))


def _fit(backbone: str, features: np.ndarray) -> EmbeddingSummary:
    from sklearn.covariance import LedoitWolf

    lw = LedoitWolf().fit(features)
    return EmbeddingSummary(backbone, lw.location_, lw.precision_, float("nan"), len(features))


class OODModel:
    """Per-backbone summaries and the combined rule (see the module docstring).

    A crop's statistic is ``max over backbones of distance / scale``; it is
    "unlike the training images" above ``threshold``, the development 99th
    percentile of that statistic (out of sample), so about 1 % of development
    crops are flagged by construction.
    """

    def __init__(self, summaries: Mapping[str, EmbeddingSummary], threshold: float,
                 info: dict | None = None):
        self.summaries = dict(summaries)
        self.threshold = float(threshold)
        self.info = dict(info or {})

    @classmethod
    def fit(cls, features: Mapping[str, np.ndarray], groups: Sequence, *,
            n_splits: int = 5, quantile: float = QUANTILE) -> OODModel:
        """Fit on development embeddings ``{backbone: (N, D)}`` of the same N crops;
        ``groups``: the patient of each crop (out-of-sample distances come from
        patient-grouped K-fold, so no patient judges its own crops)."""
        from sklearn.model_selection import GroupKFold

        groups = np.asarray(groups)
        n = len(groups)
        if n < 3 * n_splits or len(np.unique(groups)) < n_splits:
            raise InputError(
                f"out-of-distribution summary: need at least {3 * n_splits} development crops of "
                f"{n_splits} patients, got {n} crops of {len(np.unique(groups))}"
            )
        folds = list(GroupKFold(n_splits).split(np.zeros(n), groups=groups))
        summaries, oos_ratio = {}, []
        for b, feats in features.items():
            feats = np.asarray(feats, dtype=np.float64)
            oos = np.empty(n)
            for tr, te in folds:
                oos[te] = _fit(b, feats[tr]).distance(feats[te])
            s = _fit(b, feats)
            s.scale = float(np.quantile(oos, quantile))
            summaries[b] = s
            oos_ratio.append(oos / s.scale)
        stat = np.max(np.array(oos_ratio), axis=0)
        threshold = float(np.quantile(stat, quantile))
        info = {
            "what": ("Mahalanobis distance of a crop's pooled features (fold-0 model of each "
                     "backbone) to the development crops' mean, Ledoit-Wolf covariance"),
            "rule": (f"statistic = max over backbones of distance / (development {quantile:.0%} "
                     f"percentile of out-of-sample distances); {UNLIKE} when above threshold "
                     f"(the development {quantile:.0%} percentile of the statistic)"),
            "quantile": quantile,
            "threshold": threshold,
            "n_crops": n,
            "out_of_sample": f"patient-grouped {n_splits}-fold",
            "dev_flag_rate": float(np.mean(stat > threshold)),
            "backbones": {b: {"scale": s.scale, "dim": int(s.mean.shape[0])}
                          for b, s in summaries.items()},
        }
        return cls(summaries, threshold, info)

    def check(self, features: Mapping[str, np.ndarray]) -> list[dict]:
        """Per crop: ``{"unlike_training": bool, "score": statistic / threshold (> 1 is
        flagged), "by_backbone": {b: distance / scale}}``."""
        ratios = {b: s.distance(features[b]) / s.scale for b, s in self.summaries.items()
                  if b in features}
        if not ratios:
            return []
        n = len(next(iter(ratios.values())))
        out = []
        for i in range(n):
            by = {b: round(float(r[i]), 4) for b, r in ratios.items()}
            score = max(by.values()) / self.threshold
            out.append({"unlike_training": bool(score > 1.0), "score": round(score, 4),
                        "by_backbone": by})
        return out

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for b, s in self.summaries.items():
            np.savez(folder / f"{b}.npz", mean=s.mean, precision=s.precision,
                     scale=np.float64(s.scale), n_crops=np.int64(s.n_crops))
        (folder / "ood.json").write_text(json.dumps(self.info, indent=2), encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> OODModel | None:
        """The model saved by :meth:`save`; None when ``folder`` has none (an older bundle)."""
        folder = Path(folder)
        if not (folder / "ood.json").is_file():
            return None
        try:
            info = json.loads((folder / "ood.json").read_text(encoding="utf-8"))
            summaries = {}
            for b in info["backbones"]:
                with np.load(folder / f"{b}.npz") as z:
                    summaries[b] = EmbeddingSummary(b, z["mean"], z["precision"],
                                                    float(z["scale"]), int(z["n_crops"]))
            return cls(summaries, float(info["threshold"]), info)
        except (OSError, ValueError, KeyError) as exc:
            raise BundleError(f"{folder}: unreadable out-of-distribution summary ({exc})") from exc


def embed_all(models: Mapping[str, tuple[nn.Module, dict]], crops: Sequence[np.ndarray]
              ) -> dict[str, np.ndarray]:
    """``{backbone: (N, D)}`` embeddings of ``crops`` by each backbone's ``(model, meta)``."""
    return {b: embed(m, crops, meta) for b, (m, meta) in models.items()}


def crops_of(images, margin: float) -> list[np.ndarray]:
    """Lesion crops (``crop_margin`` as in training) of an image table with
    ``image_path`` and ``roi_x0..roi_y1`` columns (NaN box: the whole image)."""
    import pandas as pd

    from multibone.io import crop_roi, read_radiograph

    out = []
    for r in images.itertuples():
        roi = None if pd.isna(r.roi_x0) else (int(r.roi_x0), int(r.roi_y0), int(r.roi_x1),
                                              int(r.roi_y1))
        out.append(crop_roi(read_radiograph(r.image_path).pixels, roi, margin=margin))
    return out


def fit_from_weights(weights_dir: str | Path, backbones: Sequence[str], images,
                     out_dir: str | Path) -> OODModel:
    """Fit and save (into ``out_dir``) the summaries of ``backbones`` (fold-0 model of
    each, from ``weights_dir``) on the development ``images`` (a cohort image table:
    ``patient_id``, ``image_path``, the box columns)."""
    from multibone.imaging.folds import load_fold

    models = {b: load_fold(weights_dir, b, 0) for b in backbones}
    margin = float(next(iter(models.values()))[1].get("crop_margin", 0.0))
    crops = crops_of(images, margin)
    model = OODModel.fit(embed_all(models, crops), images["patient_id"].astype(str).to_numpy())
    model.save(out_dir)
    return model


__all__ = ["QUANTILE", "UNLIKE", "EmbeddingSummary", "OODModel", "crops_of", "embed", "embed_all",
           "fit_from_weights"]
