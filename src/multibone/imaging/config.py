"""The ``imaging:`` section of a run config (:class:`ImagingConfig`).

Every field has a default: ``ImagingConfig()`` is the seed-004 (DeepTIRP)
recipe at full size. ``configs/demo.yaml`` holds the CPU-minutes variant.
"""

from __future__ import annotations

import dataclasses
import re
from typing import ClassVar, Literal

from multibone.errors import ConfigError
from multibone.imaging.registry import BACKBONES

FLIPS: tuple[str, ...] = ("horizontal", "vertical")
NORMALIZATIONS: tuple[str, ...] = ("dataset", "pretrained")


@dataclasses.dataclass
class ImagingConfig:
    """Settings of step 1: training and cross-fitted scoring of the image backbones.

    Attributes
    ----------
    backbones: registry names from :data:`multibone.imaging.registry.BACKBONES`
        (paper: e3, e4, vit, swin; CPU tests and demo: e3_tiny, e4_tiny, vit_tiny,
        swin_tiny); an empty list means no imaging stage (clinical only). Outputs
        name each backbone exactly as given here.
    img_size: square side, pixels, that each ROI crop is resized to (paper: 224).
    epochs: training epochs per fold model (paper: 100).
    batch_size: images per optimiser step, summed over all GPUs under torchrun (paper: 128).
    lr, momentum, weight_decay: SGD settings (paper: 0.1, 0.9, 1e-4).
    lr_step, lr_gamma: learning rate multiplied by ``lr_gamma`` every ``lr_step`` epochs
        (paper: x0.1 every 30 epochs).
    flips: random flips used as augmentation, each with probability ``flip_prob``
        (paper: horizontal and vertical, 0.5).
    val_fraction: share of the training folds' patients (patient-grouped, label
        stratified) held out as the inner validation set that picks the best epoch
        (paper's 7:1 train:validation -> 0.125). 0 = keep the last epoch.
    aggregation: image logits -> patient logit: ``mean_logit`` (default), ``max``,
        or ``all_positive`` (positive only when every view is: the minimum logit, seed 003).
    weights: ``none`` | ``imagenet`` | path to a local weights file, for every backbone.
    weights_per_backbone: per-backbone override of ``weights`` (e.g. RadImageNet for resnet50).
    arms: pretraining comparison arms, ``{name: weights}`` (``none``, ``imagenet`` or a local
        file, for every backbone): each arm re-trains the same recipe (folds, epochs,
        seeds...) with only the initial weights changed, into ``imaging/arms/<name>``; the
        run's own weights are the arm ``main``. See :mod:`multibone.imaging.arms`.
    normalization: ``dataset`` (training-set mean/std of the fold, scalar; the paper)
        or ``pretrained`` (the weights' ImageNet mean/std per channel).
    num_workers: loader processes used to decode crops (0 = in the main process).
    seed: seeds folds' inner validation split, initialisation, shuffling and augmentation.
    crop_margin: fraction of the ROI box size added on every side of the crop.
    device: ``auto`` (CUDA if present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.
    amp: bf16 autocast: ``auto`` (on CUDA only), ``on``, ``off``.
    channels_last: ``auto`` (on CUDA only), ``on``, ``off``.
    deterministic: deterministic algorithms (exact resume); off lets cuDNN pick faster kernels.
    eval_batch_size: images per forward pass when scoring.
    cache_dir: folder for an on-disk crop cache ("" = in memory only).
    num_threads: CPU threads torch may use while training (0 = torch's default, all
        cores). On a busy shared CPU, 1 avoids OpenMP threads spinning against each other.
    """

    backbones: list[str] = dataclasses.field(default_factory=lambda: ["e3", "e4", "vit", "swin"])
    img_size: int = 224
    epochs: int = 100
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_step: int = 30
    lr_gamma: float = 0.1
    flips: list[str] = dataclasses.field(default_factory=lambda: ["horizontal", "vertical"])
    flip_prob: float = 0.5
    val_fraction: float = 0.125
    aggregation: Literal["mean_logit", "max", "all_positive"] = "mean_logit"
    weights: str = "none"
    weights_per_backbone: dict[str, str] = dataclasses.field(default_factory=dict)
    arms: dict[str, str] = dataclasses.field(default_factory=dict)
    normalization: Literal["dataset", "pretrained"] = "dataset"
    num_workers: int = 4
    seed: int = 0
    crop_margin: float = 0.1
    device: str = "auto"
    amp: Literal["auto", "on", "off"] = "auto"
    channels_last: Literal["auto", "on", "off"] = "auto"
    deterministic: bool = True
    eval_batch_size: int = 256
    cache_dir: str = ""
    num_threads: int = 0

    #: Keys of older configs, with what to write instead (read by ``_config.from_dict``).
    REMOVED_KEYS: ClassVar[dict[str, str]] = {
        "tiny": "name the tiny registry entries in imaging.backbones instead, e.g. "
        "[e3_tiny, e4_tiny, vit_tiny, swin_tiny] (see `multibone backbones`)",
    }

    def __post_init__(self) -> None:
        where = "imaging"
        bad = [b for b in self.backbones if b not in BACKBONES]
        if bad:
            raise ConfigError(
                f"{where}.backbones: unknown backbone {', '.join(map(repr, bad))}; "
                f"valid backbones are {', '.join(BACKBONES)}"
            )
        if len(set(self.backbones)) != len(self.backbones):
            raise ConfigError(f"{where}.backbones: a backbone is listed twice")
        bad = [b for b in self.weights_per_backbone if b not in BACKBONES]
        if bad:
            raise ConfigError(
                f"{where}.weights_per_backbone: unknown backbone {', '.join(map(repr, bad))}; "
                f"valid backbones are {', '.join(BACKBONES)}"
            )
        for name, w in self.arms.items():
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", str(name)) or name == "main":
                raise ConfigError(
                    f"{where}.arms: arm name {name!r} must be letters, digits, _ or - "
                    "(and not 'main', the name of the run's own weights)"
                )
            if not isinstance(w, str) or not w.strip():
                raise ConfigError(
                    f"{where}.arms.{name}: give the arm's weights: none, imagenet or a file path"
                )
        positive = {
            "img_size": self.img_size,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr_step": self.lr_step,
            "eval_batch_size": self.eval_batch_size,
        }
        for k, v in positive.items():
            if v < 1:
                raise ConfigError(f"{where}.{k}: must be >= 1, got {v}")
        if self.img_size < 16:
            raise ConfigError(f"{where}.img_size: {self.img_size} px is too small; use >= 16")
        if self.batch_size < 2:
            raise ConfigError(f"{where}.batch_size: must be >= 2 (BatchNorm needs 2 images)")
        if self.lr <= 0:
            raise ConfigError(f"{where}.lr: must be > 0, got {self.lr}")
        for k in ("momentum", "flip_prob"):
            v = getattr(self, k)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"{where}.{k}: must be in [0, 1], got {v}")
        if not 0.0 < self.lr_gamma <= 1.0:
            raise ConfigError(f"{where}.lr_gamma: must be in (0, 1], got {self.lr_gamma}")
        if self.weight_decay < 0:
            raise ConfigError(f"{where}.weight_decay: must be >= 0, got {self.weight_decay}")
        if not 0.0 <= self.val_fraction < 0.5:
            raise ConfigError(f"{where}.val_fraction: must be in [0, 0.5), got {self.val_fraction}")
        bad = [f for f in self.flips if f not in FLIPS]
        if bad:
            raise ConfigError(f"{where}.flips: {bad[0]!r} is not one of {', '.join(FLIPS)}")
        if self.num_workers < 0:
            raise ConfigError(f"{where}.num_workers: must be >= 0")
        if self.num_threads < 0:
            raise ConfigError(f"{where}.num_threads: must be >= 0 (0 = torch's default)")
        if not 0.0 <= self.crop_margin <= 2.0:
            raise ConfigError(f"{where}.crop_margin: must be in [0, 2], got {self.crop_margin}")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ConfigError(
                f"{where}.device: {self.device!r} is not one of auto, cpu, cuda, cuda:N"
            )

    def weights_for(self, backbone: str) -> str:
        """Weight source of ``backbone``: its override, else :attr:`weights`."""
        return self.weights_per_backbone.get(backbone, self.weights)
