"""Image tensors for the backbones: crop decoding, normalisation, augmentation.

Input contract of every function here: a crop is float32 ``(H, W)`` in [0, 1],
bone bright (what :func:`multibone.io.crop_roi` returns). Models see float32
``(N, 3, S, S)``: the crop resized to ``S x S`` (antialiased, :func:`multibone.io.resize_square`),
normalised with the fold's training-set mean/std, and replicated to 3 channels
(grey policy :data:`GREY_POLICY`).

The fast path decodes every crop ONCE into an ``(N, S, S)`` tensor (on the GPU
when training on CUDA) and applies flips to batches of that tensor with the
training run's own :class:`torch.Generator`. :class:`DecodingDataset` is the
plain path that reads the radiograph again for every item (benchmarks, and
decoding with several loader workers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from multibone.errors import InputError
from multibone.imaging.registry import GREY_POLICY
from multibone.io import CropCache, crop_roi, read_radiograph, resize_square

__all__ = [
    "GREY_POLICY",
    "DecodingDataset",
    "load_crops",
    "norm_stats",
    "normalise",
    "preprocess",
    "random_flips",
    "resize_crops",
]

Roi = tuple[float, float, float, float] | None


def norm_stats(crops: np.ndarray | torch.Tensor) -> tuple[float, float]:
    """Scalar mean and standard deviation of all pixels of the training crops.

    ``crops``: float ``(N, S, S)`` in [0, 1]. Accumulates in float64 (millions of pixels).
    The std is floored at 1e-6 so a constant image set cannot divide by zero.
    """
    t = torch.as_tensor(crops)
    if t.numel() == 0:
        raise InputError("no training images to compute the normalisation mean/std from")
    t = t.to(torch.float64)
    mean = float(t.mean())
    std = float(t.std(unbiased=False))
    return mean, max(std, 1e-6)


def _stats_tensor(values: Sequence[float] | float, like: torch.Tensor) -> torch.Tensor:
    v = torch.as_tensor(values, dtype=torch.float32, device=like.device).reshape(-1)
    if v.numel() == 1:
        v = v.expand(3)
    return v.reshape(1, 3, 1, 1)


def normalise(
    x: torch.Tensor, mean: Sequence[float] | float, std: Sequence[float] | float
) -> torch.Tensor:
    """Grey ``(N, 1, S, S)`` or ``(N, S, S)`` in [0, 1] -> ``(N, 3, S, S)`` normalised.

    ``mean``/``std``: a scalar (the multibone default, training-set statistics) or 3
    per-channel values (pretrained statistics). Grey is replicated to 3 channels.
    """
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.ndim != 4 or x.shape[1] != 1:
        raise InputError(f"expected grey images (N, 1, S, S), got shape {tuple(x.shape)}")
    x = x.to(torch.float32).expand(-1, 3, -1, -1)
    return (x - _stats_tensor(mean, x)) / _stats_tensor(std, x)


def random_flips(
    x: torch.Tensor,
    generator: torch.Generator,
    *,
    horizontal: bool = True,
    vertical: bool = True,
    p: float = 0.5,
) -> torch.Tensor:
    """Flip each image of ``x`` (``(N, C, H, W)``, any device) left-right and/or up-down,
    each with probability ``p``, drawn from ``generator`` (a CPU generator, so the
    same seed gives the same flips on CPU and GPU). Returns a new tensor."""
    n = x.shape[0]
    # Draw both masks always: the generator advances the same way whatever the settings.
    draws = torch.rand((2, n), generator=generator) < p
    out = x
    for flag, mask, dim in ((horizontal, draws[0], -1), (vertical, draws[1], -2)):
        if flag and bool(mask.any()):
            m = mask.to(x.device).view(n, *([1] * (x.ndim - 1)))
            out = torch.where(m, out.flip(dim), out)
    return out


def _check_crop(crop: object, i: int) -> np.ndarray:
    a = np.asarray(crop)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise InputError(f"image {i}: expected a grey crop of shape (H, W), got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.floating):
        raise InputError(
            f"image {i}: expected float pixels in [0, 1] (multibone.io.read_radiograph), "
            f"got dtype {a.dtype}"
        )
    if not np.isfinite(a).all():
        raise InputError(f"image {i}: pixels contain NaN or infinity")
    lo, hi = float(a.min()), float(a.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise InputError(
            f"image {i}: pixels span [{lo:.3g}, {hi:.3g}], expected [0, 1]; "
            "read images with multibone.io.read_radiograph"
        )
    return a.astype(np.float32, copy=False)


def resize_crops(crops: Sequence[np.ndarray], size: int) -> torch.Tensor:
    """Checked crops -> float32 CPU tensor ``(N, S, S)`` in [0, 1], S = ``size``.

    ``crops``: float ``(H, W)`` arrays in [0, 1], any size; resized with
    :func:`multibone.io.resize_square` unless already ``size x size``.
    """
    size = int(size)
    out = np.empty((len(crops), size, size), dtype=np.float32)
    for i, c in enumerate(crops):
        a = _check_crop(c, i)
        out[i] = a if a.shape == (size, size) else resize_square(a, size)
    return torch.from_numpy(out)


def preprocess(crops: Sequence[np.ndarray], meta: Mapping) -> torch.Tensor:
    """Crops -> model input exactly as in training (for CAMs, which take the normalised input).

    Parameters
    ----------
    crops: float32 ``(H, W)`` arrays in [0, 1], bone bright, already cut to the ROI
        (with the same ``crop_margin`` as in ``meta``), any size.
    meta: the json metadata saved with a fold model (``img_size``, ``norm_mean``,
        ``norm_std``); see :func:`multibone.imaging.folds.load_backbone_meta`.

    Returns float32 CPU tensor ``(N, 3, S, S)``, S = ``meta['img_size']``.
    """
    size = int(meta["img_size"])
    if len(crops) == 0:
        return torch.zeros((0, 3, size, size), dtype=torch.float32)
    x = resize_crops(crops, size)
    return normalise(x, meta["norm_mean"], meta["norm_std"]).contiguous()


class DecodingDataset(Dataset):
    """Reads, crops and resizes one radiograph per item: float32 ``(1, S, S)`` in [0, 1].

    The plain (slow) path: decodes the file every time it is asked for, unless
    ``cache_dir`` is given (then :class:`multibone.io.CropCache` keeps .npy crops on disk).
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        rois: Sequence[Roi],
        size: int,
        margin: float = 0.0,
        cache_dir: str | Path | None = None,
    ):
        if len(paths) != len(rois):
            raise InputError(f"{len(paths)} image paths but {len(rois)} ROIs")
        self.paths = [str(p) for p in paths]
        self.rois = list(rois)
        self.size = int(size)
        self.margin = float(margin)
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._cache = None  # built lazily: one per loader worker process

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        if self.cache_dir is not None:
            if self._cache is None:
                self._cache = CropCache(self.cache_dir)
            crop = self._cache.get(self.paths[i], self.rois[i], self.size, margin=self.margin)
        else:
            pixels = read_radiograph(self.paths[i]).pixels
            crop = resize_square(crop_roi(pixels, self.rois[i], margin=self.margin), self.size)
        return torch.from_numpy(np.ascontiguousarray(crop, dtype=np.float32)).unsqueeze(0)


def load_crops(
    paths: Sequence[str | Path],
    rois: Sequence[Roi],
    size: int,
    margin: float = 0.0,
    *,
    cache_dir: str | Path | None = None,
    num_workers: int = 0,
    progress: bool = True,
) -> torch.Tensor:
    """Decode every crop once: float32 CPU tensor ``(N, S, S)`` in [0, 1].

    ``num_workers`` > 0 decodes in loader worker processes (large cohorts).
    """
    n = len(paths)
    if n == 0:
        return torch.zeros((0, size, size), dtype=torch.float32)
    if num_workers == 0:
        cache = CropCache(Path(cache_dir) if cache_dir else None)
        arr = cache.load_many(
            [str(p) for p in paths], list(rois), size, margin=margin, progress=progress
        )
        return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    from tqdm.auto import tqdm

    ds = DecodingDataset(paths, rois, size, margin, cache_dir)
    loader = DataLoader(ds, batch_size=32, shuffle=False, num_workers=num_workers)
    out = torch.empty((n, size, size), dtype=torch.float32)
    i = 0
    for batch in tqdm(loader, desc=f"decode crops {size}px", disable=not progress, leave=False):
        out[i : i + len(batch)] = batch[:, 0]
        i += len(batch)
    return out
