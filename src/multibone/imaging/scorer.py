"""Scoring new images with trained fold models (predict, explain, dashboard).

A weights folder holds ``<backbone>/fold<k>.safetensors`` and ``fold<k>.json``
per backbone (written by :func:`multibone.imaging.train_images`). The json
states everything needed to rebuild the model and its input: timm
architecture and kwargs, image size, channel policy, normalisation, crop margin
and aggregation rule. Models are rebuilt from the json, not from the registry,
so a folder stays loadable if registry defaults change.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from multibone.errors import BundleError, InputError, WeightsError
from multibone.imaging.crossfit import META_FORMAT, aggregate, sigmoid
from multibone.imaging.data import preprocess

__all__ = [
    "ImageScorer",
    "load_backbone_meta",
    "load_backbone_models",
    "load_fold",
    "preprocess",
]

_FOLD_FILE = re.compile(r"fold(\d+)\.json$")


def _fold_numbers(weights_dir: Path, backbone: str) -> list[int]:
    folder = weights_dir / backbone
    if not folder.is_dir():
        present = (
            sorted(p.name for p in weights_dir.iterdir() if p.is_dir())
            if weights_dir.is_dir()
            else []
        )
        raise BundleError(
            f"{folder}: no weights for backbone {backbone!r}; backbones present: "
            f"{', '.join(present) or '(none)'}"
        )
    ks = sorted(int(m.group(1)) for p in folder.iterdir() if (m := _FOLD_FILE.match(p.name)))
    if not ks:
        raise BundleError(f"{folder}: no fold<k>.json / fold<k>.safetensors files")
    return ks


def _read_meta(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: unreadable model metadata ({exc})") from exc
    if meta.get("format") != META_FORMAT:
        raise BundleError(f"{path}: unknown metadata format {meta.get('format')!r}")
    return meta


def load_fold(weights_dir: str | Path, backbone: str, fold: int) -> tuple[nn.Module, dict]:
    """Rebuild one fold model (eval mode, CPU, float32) and its metadata dict."""
    import timm
    from safetensors.torch import load_file

    weights_dir = Path(weights_dir)
    meta = _read_meta(weights_dir / backbone / f"fold{fold}.json")
    file = weights_dir / backbone / f"fold{fold}.safetensors"
    if not file.is_file():
        raise BundleError(f"{file}: weights file missing")
    kwargs = dict(meta.get("timm_kwargs") or {})
    for key, value in list(kwargs.items()):
        if isinstance(value, list):  # json turned tuples (depths, heads) into lists
            kwargs[key] = tuple(value)
    model = timm.create_model(
        meta["arch"],
        pretrained=False,
        num_classes=int(meta.get("num_classes", 1)),
        in_chans=int(meta.get("in_chans", 3)),
        **kwargs,
    )
    try:
        state = load_file(str(file))
        model.load_state_dict(state, strict=True)
    except Exception as exc:
        raise WeightsError(f"{file}: does not fit {meta['arch']} ({exc})") from exc
    model.eval()
    model.multibone_meta = meta  # so explain/CAM code gets the matching preprocessing
    return model, meta


def load_backbone_meta(weights_dir: str | Path, backbone: str) -> list[dict]:
    """Metadata dicts of the fold models of ``backbone``, ordered by fold."""
    weights_dir = Path(weights_dir)
    return [
        _read_meta(weights_dir / backbone / f"fold{k}.json")
        for k in _fold_numbers(weights_dir, backbone)
    ]


def load_backbone_models(weights_dir: str | Path, backbone: str) -> list[nn.Module]:
    """Fold models of ``backbone`` (eval mode, CPU), ordered by fold.

    Each model carries its metadata as ``model.multibone_meta``; build its input
    with ``preprocess(crops, model.multibone_meta)``. The CAM layer path is
    ``meta['cam_layer']`` (``model.get_submodule(meta['cam_layer'])``).
    """
    weights_dir = Path(weights_dir)
    return [load_fold(weights_dir, backbone, k)[0] for k in _fold_numbers(weights_dir, backbone)]


class ImageScorer:
    """Mean-of-fold-models logits for already-cropped radiographs.

    Build with :meth:`from_dir`. ``score(crops)`` takes float32 ``(H, W)`` crops
    in [0, 1] (bone bright, cut with ``crop_margin`` around the lesion box, any
    size) and returns ``{backbone: float32 (N,) logits}`` (mean over the fold
    models). Torch's global state is left as it was; inference only.
    """

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
            b: [load_fold(weights_dir, b, k) for k in _fold_numbers(weights_dir, b)]
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
        for b, folds in self._models.items():
            total = np.zeros(len(pixels_list), dtype=np.float64)
            for model, meta in folds:
                x = preprocess(pixels_list, meta)
                parts = [
                    model(x[s : s + self.batch_size].to(self.device)).float().reshape(-1).cpu()
                    for s in range(0, x.shape[0], self.batch_size)
                ]
                if parts:
                    total += torch.cat(parts).double().numpy()
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
