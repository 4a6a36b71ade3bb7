"""The ``detection:`` section of a run config (:class:`DetectionConfig`).

Defaults are seed 000's recipe at full size (10 warm-restart cycles, EMA of the
weights) with seed 003's merge (NMS of the fold models, flip test-time
augmentation) replaced by weighted boxes fusion; ``configs/detection_demo.yaml``
holds the CPU-seconds variant. Read with ``multibone._config.from_dict``
(unknown keys rejected).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Literal

from multibone.detection.boxes import CONF_TYPES, MERGE_METHODS
from multibone.detection.registry import DETECTORS
from multibone.errors import ConfigError

FLIPS: tuple[str, ...] = ("horizontal", "vertical")
TTA: tuple[str, ...] = ("hflip",)


@dataclasses.dataclass
class DetectionConfig:
    """Settings of the lesion detector: training recipe, cross-fitting and merge.

    Attributes
    ----------
    detector: registry name (:data:`multibone.detection.registry.DETECTORS`).
    weights: ``none`` (scratch), ``coco`` (torchvision hub) or a local file: a whole
        detector, or a backbone alone (seed 000's chest-X-ray-pretrained transfer arm).
    img_size: square side, pixels, every image is resized to (boxes scaled along).
    cycles: warm-restart cycles (seed 000: 10): at each cycle start the optimizer and
        its learning-rate schedule are new, the weights kept.
    epochs_per_cycle: epochs in one cycle; the learning rate follows a cosine from
        ``lr`` to ``lr * lr_min_factor`` within each cycle.
    batch_size: images per optimiser step.
    optimizer: ``sgd`` (momentum ``momentum``) or ``adamw``.
    lr, momentum, weight_decay: optimiser settings.
    lr_min_factor: learning rate at a cycle's end, as a fraction of ``lr``.
    ema_decay: decay of timm's ``ModelEmaV3`` (with its warm-up); the EMA weights are
        the ones saved and used for inference.
    flips, flip_prob: random flips (boxes flipped along), each with this probability.
    scale: random zoom in ``[1 - scale, 1 + scale]``; translate: random shift up to this
        fraction of the side (boxes moved along; boxes pushed off the image are clipped).
    score_thresh: boxes scoring below this are dropped at inference (keep it low: the
        image score is the best box confidence, and the ROC needs the low ones).
    box_thresh: a box scoring at least this is a detection: it counts in the
        localisation rate and false positives, and ``multibone detect`` shows it.
    max_boxes: at most this many boxes per image are kept (best first).
    merge: ``wbf`` (weighted boxes fusion) or ``nms``: how the K fold models' boxes
        (and test-time augmentations) are merged for held-out images.
    merge_iou: IoU above which boxes are fused / suppressed in the merge.
    conf_type: WBF score rule (ensemble-boxes ``conf_type``).
    tta: test-time augmentations besides the plain image (``hflip``), undone before the merge.
    tta_scales: extra input scales for test-time augmentation (e.g. ``[0.83, 1.17]``).
    seed: seeds initialisation, shuffling and augmentation.
    device: ``auto`` (CUDA if present), ``cpu``, ``cuda`` or ``cuda:N``.
    num_threads: CPU threads torch may use (0 = torch's default).
    classifier_boxes: in a whole run, the lesion boxes the tumour-vs-infection backbones
        are trained and evaluated on: ``reference`` (the manifest's, default) or
        ``detector`` (each image's best detected box scoring >= ``box_thresh``, cross-fitted
        on development images, merged on held-out ones; whole image when none), as
        ``multibone predict`` without ``--roi`` would see them.
    """

    detector: str = "fcos_r50"
    weights: str = "none"
    img_size: int = 640
    cycles: int = 10
    epochs_per_cycle: int = 30
    batch_size: int = 16
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.01
    momentum: float = 0.937
    weight_decay: float = 5e-4
    lr_min_factor: float = 0.01
    ema_decay: float = 0.9999
    flips: list[str] = dataclasses.field(default_factory=lambda: ["horizontal"])
    flip_prob: float = 0.5
    scale: float = 0.5
    translate: float = 0.1
    score_thresh: float = 0.01
    box_thresh: float = 0.25
    max_boxes: int = 10
    merge: Literal["wbf", "nms"] = "wbf"
    merge_iou: float = 0.55
    conf_type: str = "avg"
    tta: list[str] = dataclasses.field(default_factory=lambda: ["hflip"])
    tta_scales: list[float] = dataclasses.field(default_factory=list)
    seed: int = 0
    device: str = "auto"
    num_threads: int = 0
    classifier_boxes: Literal["reference", "detector"] = "reference"

    def __post_init__(self) -> None:
        w = "detection"
        if self.classifier_boxes not in ("reference", "detector"):
            raise ConfigError(
                f"{w}.classifier_boxes: {self.classifier_boxes!r} is not one of reference, detector"
            )
        if self.detector not in DETECTORS:
            raise ConfigError(
                f"{w}.detector: unknown detector {self.detector!r}; valid detectors are "
                f"{', '.join(DETECTORS)}"
            )
        for k in ("img_size", "cycles", "epochs_per_cycle", "batch_size", "max_boxes"):
            if getattr(self, k) < 1:
                raise ConfigError(f"{w}.{k}: must be >= 1, got {getattr(self, k)}")
        if self.img_size < 64:
            raise ConfigError(f"{w}.img_size: {self.img_size} px is too small; use >= 64")
        if self.optimizer not in ("sgd", "adamw"):
            raise ConfigError(f"{w}.optimizer: {self.optimizer!r} is not one of sgd, adamw")
        if self.lr <= 0:
            raise ConfigError(f"{w}.lr: must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ConfigError(f"{w}.weight_decay: must be >= 0, got {self.weight_decay}")
        for k in ("momentum", "flip_prob", "lr_min_factor", "score_thresh", "box_thresh"):
            if not 0.0 <= getattr(self, k) <= 1.0:
                raise ConfigError(f"{w}.{k}: must be in [0, 1], got {getattr(self, k)}")
        if not 0.0 < self.ema_decay < 1.0:
            raise ConfigError(f"{w}.ema_decay: must be in (0, 1), got {self.ema_decay}")
        if not 0.0 <= self.scale < 1.0:
            raise ConfigError(f"{w}.scale: must be in [0, 1), got {self.scale}")
        if not 0.0 <= self.translate <= 0.5:
            raise ConfigError(f"{w}.translate: must be in [0, 0.5], got {self.translate}")
        if not 0.0 < self.merge_iou <= 1.0:
            raise ConfigError(f"{w}.merge_iou: must be in (0, 1], got {self.merge_iou}")
        if self.merge not in MERGE_METHODS:
            raise ConfigError(f"{w}.merge: {self.merge!r} is not one of wbf, nms")
        if self.conf_type not in CONF_TYPES:
            raise ConfigError(f"{w}.conf_type: {self.conf_type!r} is not one of {CONF_TYPES}")
        bad = [f for f in self.flips if f not in FLIPS]
        if bad:
            raise ConfigError(f"{w}.flips: {bad[0]!r} is not one of {', '.join(FLIPS)}")
        bad = [t for t in self.tta if t not in TTA]
        if bad:
            raise ConfigError(f"{w}.tta: {bad[0]!r} is not one of {', '.join(TTA)}")
        if any(not 0.25 <= s <= 4.0 for s in self.tta_scales):
            raise ConfigError(f"{w}.tta_scales: each scale must be in [0.25, 4]")
        if self.num_threads < 0:
            raise ConfigError(f"{w}.num_threads: must be >= 0 (0 = torch's default)")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ConfigError(f"{w}.device: {self.device!r} is not one of auto, cpu, cuda, cuda:N")

    @property
    def epochs(self) -> int:
        """All epochs of a run: ``cycles * epochs_per_cycle``."""
        return self.cycles * self.epochs_per_cycle
