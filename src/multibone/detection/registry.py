"""Detector registry: one frozen spec per name, one factory (as :mod:`multibone.imaging.registry`).

Every detector finds one class, the lesion: torchvision's ``num_classes=2``
counts the background too. Models are built with ``weights=None,
weights_backbone=None`` (nothing is downloaded), then given weights from:

* ``none``: random initialisation (seed 000's scratch arm);
* a local file (safetensors or a PyTorch state dict): either a whole detector of
  this architecture, or a backbone alone (e.g. a chest-X-ray-pretrained ResNet-50:
  seed 000's transfer arm), loaded into ``backbone.body``. A file that fits
  neither is refused with its name and the keys that do not fit;
* ``coco``: torchvision's COCO weights (full-size entries), from torch hub's
  cache or the network; offline and not cached fails at once with the way out.
  The COCO class heads (91 classes) are dropped; ours are new.

=================  ==========================================  =================================
name               model                                       use
=================  ==========================================  =================================
fcos_r50           FCOS, ResNet-50-FPN (torchvision)           GPU runs (anchor-free, one stage,
                                                               like seed 000/003's YOLO)
fasterrcnn_r50     Faster R-CNN, ResNet-50-FPN (torchvision)   GPU runs (two stage)
fcos_tiny          FCOS on a 5-block 16-64 channel CNN + FPN   CPU tests and the demo (seconds)
=================  ==========================================  =================================

Radiographs are grey: images are replicated to 3 channels (``GREY_POLICY``).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock

from multibone.errors import InputError, WeightsError
from multibone.imaging.registry import seeded

GREY_POLICY = "replicate_to_3_channels"
#: Background + lesion (torchvision counts the background).
NUM_CLASSES = 2
#: Where torchvision's hub weights come from; used only for a quick reachability check.
HUB_HOST = ("download.pytorch.org", 443)


@dataclasses.dataclass(frozen=True)
class DetectorSpec:
    """One registry entry (immutable).

    Attributes
    ----------
    name: registry name used in configs and outputs (``fcos_tiny``).
    arch: ``fcos`` or ``fasterrcnn`` (torchvision detection family).
    backbone: ``resnet50_fpn`` (torchvision) or ``tiny`` (:class:`TinyBody` + FPN).
    input_size: default square side, pixels, images are resized to.
    hub_weights: torchvision enum name of COCO weights (``""``: scratch or local file only).
    family: the full-size entry this one is a variant of (itself for full entries).
    description: one line for listings.
    """

    name: str
    arch: Literal["fcos", "fasterrcnn"]
    backbone: Literal["resnet50_fpn", "tiny"]
    input_size: int
    hub_weights: str = ""
    family: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        if not self.family:
            object.__setattr__(self, "family", self.name)


_SPECS = (
    DetectorSpec(
        "fcos_r50",
        "fcos",
        "resnet50_fpn",
        640,
        hub_weights="FCOS_ResNet50_FPN_Weights.COCO_V1",
        description="FCOS ResNet-50-FPN (GPU)",
    ),
    DetectorSpec(
        "fasterrcnn_r50",
        "fasterrcnn",
        "resnet50_fpn",
        640,
        hub_weights="FasterRCNN_ResNet50_FPN_Weights.COCO_V1",
        description="Faster R-CNN ResNet-50-FPN (GPU)",
    ),
    DetectorSpec(
        "fcos_tiny",
        "fcos",
        "tiny",
        96,
        family="fcos_r50",
        description="tiny FCOS, 4-stage CNN + FPN, 32 channels (CPU tests, demo)",
    ),
)

#: Registry name -> spec.
DETECTORS: Mapping[str, DetectorSpec] = {s.name: s for s in _SPECS}


def list_detectors(pattern: str = "*") -> list[str]:
    """Registry names matching the shell-style ``pattern``, in registry order."""
    return [n for n in DETECTORS if fnmatch.fnmatchcase(n, pattern)]


def get_spec(name: str) -> DetectorSpec:
    """The spec of ``name``; InputError listing the valid names otherwise."""
    try:
        return DETECTORS[name]
    except (KeyError, TypeError):
        raise InputError(
            f"unknown detector {name!r}; valid detectors are {', '.join(DETECTORS)}"
        ) from None


# --------------------------------------------------------------------------- tiny backbone


def _block(cin: int, cout: int) -> nn.Sequential:
    # GroupNorm, not BatchNorm: detection batches are a few images.
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
        nn.GroupNorm(8, cout),
        nn.ReLU(inplace=True),
    )


class TinyBody(nn.Module):
    """Five stride-2 conv blocks (strides 2..32); ``layer2..layer4`` feed the FPN."""

    def __init__(self, widths: tuple[int, ...] = (16, 16, 32, 64, 64)) -> None:
        super().__init__()
        self.stem = _block(3, widths[0])
        self.layer1 = _block(widths[0], widths[1])
        self.layer2 = _block(widths[1], widths[2])
        self.layer3 = _block(widths[2], widths[3])
        self.layer4 = _block(widths[3], widths[4])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - FPN uses children
        for m in self.children():
            x = m(x)
        return x


class _NoExtraLevel(ExtraFPNBlock):
    """No pooled level above stride 32: at 64 px it would be 1 x 1, too small for the
    head's GroupNorm on a single image."""

    def forward(self, results, x, names):
        return results, names


def _tiny_fcos(min_size: int, max_size: int) -> nn.Module:
    from torchvision.models.detection import FCOS
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.models.detection.fcos import FCOSHead

    body = TinyBody()
    backbone = BackboneWithFPN(
        body,
        return_layers={"layer2": "0", "layer3": "1", "layer4": "2"},
        in_channels_list=[32, 64, 64],
        out_channels=32,
        extra_blocks=_NoExtraLevel(),
    )  # strides 8, 16, 32
    # FCOS uses each level's anchor size as its stride (size ranges, centre sampling).
    anchors = AnchorGenerator(sizes=((8,), (16,), (32,)), aspect_ratios=((1.0,),) * 3)
    return FCOS(
        backbone,
        num_classes=NUM_CLASSES,
        min_size=min_size,
        max_size=max_size,
        anchor_generator=anchors,
        head=FCOSHead(32, 1, NUM_CLASSES, num_convs=2),
    )


# --------------------------------------------------------------------------- factory


def _build(spec: DetectorSpec, min_size: int, max_size: int) -> nn.Module:
    if spec.backbone == "tiny":
        return _tiny_fcos(min_size, max_size)
    from torchvision.models import detection

    fn = {"fcos": detection.fcos_resnet50_fpn, "fasterrcnn": detection.fasterrcnn_resnet50_fpn}
    return fn[spec.arch](
        weights=None,
        weights_backbone=None,
        num_classes=NUM_CLASSES,
        min_size=min_size,
        max_size=max_size,
    )


def create_detector(
    name: str,
    *,
    weights: str | Path = "none",
    img_size: int | None = None,
    seed: int | None = None,
) -> nn.Module:
    """Build detector ``name`` (background + lesion).

    Parameters
    ----------
    name: registry name (see :data:`DETECTORS`).
    weights: ``"none"``, ``"coco"`` (torch hub; full-size entries) or a local file path.
    img_size: square side, pixels, the model resizes its inputs to (``min_size`` =
        ``max_size``); default the spec's input size.
    seed: seeds the random initialisation (torch's global generator is restored after).

    Returns
    -------
    A torchvision detection model: in train mode ``model(images, targets)`` returns a
    dict of losses, in eval mode ``model(images)`` a list of ``{boxes (K, 4) xyxy
    pixels, labels (K,), scores (K,)}``; ``images`` are float ``(3, H, W)`` in [0, 1].

    Raises InputError (unknown name, size), WeightsError (weights unavailable or not fitting).
    """
    spec = get_spec(name)
    size = int(img_size or spec.input_size)
    if size < 64:
        raise InputError(f"detector {name!r}: img_size {size} px is too small; use >= 64")
    w = str(weights)
    check_weights_source(name, weights=w)
    with seeded(seed):
        model = _build(spec, size, size)
    if w == "coco":
        _load_coco(model, spec)
    elif w != "none":
        load_detector_weights(model, w)
    return model


def _hub_reachable(timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection(HUB_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def _hub_file(spec: DetectorSpec) -> Path:
    from torchvision.models import get_weight

    url = get_weight(spec.hub_weights).url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def check_weights_source(name: str, *, weights: str | Path) -> None:
    """Cheap checks before any work: ``coco`` for an entry without it, no network and no
    cached file for ``coco``, a missing local file. Raises WeightsError."""
    spec = get_spec(name)
    w = str(weights)
    if w == "none":
        return
    if w == "coco":
        if not spec.hub_weights:
            raise WeightsError(
                f"detector {name!r} has no COCO weights (scratch-only entry); use weights: "
                f"none or a local file, or the full entry {spec.family!r}"
            )
        if not _hub_file(spec).is_file() and not _hub_reachable():
            raise WeightsError(
                f"detector {name!r}: COCO weights come from {HUB_HOST[0]} but there is no "
                f"network and no cached copy at {_hub_file(spec)}; download that file "
                "elsewhere and put it there, or give detection.weights as a local file path"
            )
        return
    if not Path(w).is_file():
        raise WeightsError(
            f"{w}: weights file for detector {name!r} not found; give an existing "
            ".safetensors or .pt file, 'coco' or 'none'"
        )


def _load_coco(model: nn.Module, spec: DetectorSpec) -> None:
    from torchvision.models import get_weight

    try:
        sd = get_weight(spec.hub_weights).get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # network errors come in many types
        raise WeightsError(
            f"detector {spec.name!r}: could not fetch COCO weights ({type(exc).__name__}: {exc})"
        ) from exc
    target = model.state_dict()
    # The COCO class heads predict 91 classes; ours are background + lesion.
    fitted = {k: v for k, v in sd.items() if k in target and target[k].shape == v.shape}
    model.load_state_dict(fitted, strict=False)


def _listing(keys: list[str], n: int = 4) -> str:
    more = f", ... ({len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def _fit(sd: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> tuple[list, list]:
    """(missing target keys, unexpected / misshapen file keys)."""
    missing = [k for k in target if k not in sd and not k.endswith("num_batches_tracked")]
    bad = [
        k if k not in target else f"{k} {tuple(sd[k].shape)} vs {tuple(target[k].shape)}"
        for k in sd
        if k not in target or target[k].shape != sd[k].shape
    ]
    return missing, bad


def load_detector_weights(model: nn.Module, path: str | Path) -> str:
    """Load a local file into ``model`` in place: a whole detector, or a backbone alone.

    Returns ``"detector"`` or ``"backbone"`` (what the file held). Raises WeightsError
    naming the file and the first keys that do not fit.
    """
    from multibone.imaging.registry import read_state_dict

    sd = read_state_dict(path)
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    target = model.state_dict()
    missing, bad = _fit(sd, target)
    if not missing and not bad:
        model.load_state_dict(sd, strict=False)
        return "detector"
    body = model.backbone.body
    body_sd = {k: v for k, v in sd.items() if not k.startswith("fc.")}  # a classifier's head
    b_missing, b_bad = _fit(body_sd, body.state_dict())
    if not b_missing and not b_bad:
        body.load_state_dict(body_sd, strict=False)
        return "backbone"
    raise WeightsError(
        f"{path}: weights do not fit detector {type(model).__name__}: as a whole detector "
        f"{len(missing)} missing key(s) [{_listing(missing)}], {len(bad)} unexpected or "
        f"misshapen [{_listing(bad)}]; as its backbone {len(b_missing)} missing, "
        f"{len(b_bad)} unexpected. Check the file is for this registry entry"
    )
