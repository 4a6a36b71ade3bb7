"""Backbone registry: short name -> timm architecture, CAM layer, input size, tiny variant.

One entry per backbone. :func:`create_model` is the only factory: it builds a
timm model with ONE output logit (shape ``(B, 1)``), optionally loading weights
from the timm hub (``"imagenet"``) or from a local file (safetensors or a
PyTorch state dict) with key remapping.

Tiny variants are the same family with few parameters, for CPU tests and the
demo (hundreds of 64 px images per second on two CPU cores). Choices:

=============  ===============================  =====================================
short name     full timm model                  tiny variant
=============  ===============================  =====================================
e3             efficientnet_b3                  ``test_efficientnet`` (timm's test EfficientNet)
e4             efficientnet_b4                  ``test_efficientnet`` x1.25 wider (B4 is
                                                a wider B3; depth kept for speed)
vit            vit_base_patch16_224             ``test_vit`` with patch 8, depth 4
swin           swin_base_patch4_window7_224     Swin-T layout, embed 24, one block per
                                                stage, window 4
resnet50       resnet50                         ``test_resnet`` (timm's test ResNet)
inception_v3   inception_v3                     ``inception_next_atto`` -- a STAND-IN: timm
                                                has no narrow InceptionV3 (no width knob,
                                                and it needs >= 75 px); InceptionNeXt-atto
                                                is the smallest Inception-style multi-branch
                                                CNN in timm. Not the same architecture.
=============  ===============================  =====================================

CAM layers: full models hook their last feature stage (stride 32: a 7 x 7 map at
224 px; ViT/Swin: the last block's ``norm1``, as pytorch-grad-cam advises). Tiny
variants hook their stride-8 stage instead: at demo sizes (48-64 px) the last stage
is 2 x 2, too coarse to show where in the crop the evidence lies, while stride 8
gives 6 x 6 to 8 x 8 (the tiny ViT's 8 px patches give the same grid at its last block).

Grey-scale policy (recorded with every set of weights as ``grey_policy``):
radiographs are single-channel; they are replicated to 3 channels so that
ImageNet / RadImageNet weights apply unchanged (``in_chans=3``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from multibone.errors import InputError, WeightsError

log = logging.getLogger(__name__)

GREY_POLICY = "replicate_to_3_channels"

#: Host of the timm hub (Hugging Face). Used only for a quick reachability check.
HUB_HOST = ("huggingface.co", 443)


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """One registered backbone.

    Attributes
    ----------
    name: short name used in configs, outputs and column names (``e3``).
    timm_name: timm architecture of the full model.
    tiny_timm_name: timm architecture of the tiny variant (same family).
    input_size: native input size of the full model in pixels (square side).
    cam_layer: dotted module path (``model.get_submodule``) a CAM should hook, full model.
    tiny_cam_layer: same for the tiny variant.
    kind: ``cnn`` (NCHW feature maps), ``vit`` (tokens, prefix tokens first) or
        ``swin`` (NHWC feature maps).
    tiny_kwargs: extra ``timm.create_model`` keyword arguments of the tiny variant.
    tiny_input_size: default side of the tiny variant (pixels).
    min_input_size: smallest accepted side in pixels (full model).
    """

    name: str
    timm_name: str
    tiny_timm_name: str
    input_size: int
    cam_layer: str
    tiny_cam_layer: str
    kind: Literal["cnn", "vit", "swin"]
    tiny_kwargs: Mapping[str, object] = dataclasses.field(default_factory=dict)
    tiny_input_size: int = 64
    min_input_size: int = 32
    description: str = ""

    @property
    def takes_img_size(self) -> bool:
        """ViT and Swin fix their token grid at creation: they must be built at the train size."""
        return self.kind in ("vit", "swin")

    def arch(self, tiny: bool) -> str:
        return self.tiny_timm_name if tiny else self.timm_name

    def layer(self, tiny: bool) -> str:
        return self.tiny_cam_layer if tiny else self.cam_layer


BACKBONES: dict[str, BackboneSpec] = {
    s.name: s
    for s in (
        BackboneSpec(
            name="e3",
            timm_name="efficientnet_b3",
            tiny_timm_name="test_efficientnet",
            input_size=300,
            cam_layer="bn2",
            tiny_cam_layer="blocks.2",
            kind="cnn",
            description="EfficientNet-B3 (seed 004)",
        ),
        BackboneSpec(
            name="e4",
            timm_name="efficientnet_b4",
            tiny_timm_name="test_efficientnet",
            input_size=380,
            cam_layer="bn2",
            tiny_cam_layer="blocks.2",
            kind="cnn",
            tiny_kwargs={"channel_multiplier": 1.25},
            description="EfficientNet-B4 (seed 004)",
        ),
        BackboneSpec(
            name="vit",
            timm_name="vit_base_patch16_224",
            tiny_timm_name="test_vit",
            input_size=224,
            cam_layer="blocks.11.norm1",
            tiny_cam_layer="blocks.3.norm1",
            kind="vit",
            tiny_kwargs={"patch_size": 8, "depth": 4},
            min_input_size=16,
            description="ViT-B/16 (seed 004)",
        ),
        BackboneSpec(
            name="swin",
            timm_name="swin_base_patch4_window7_224",
            tiny_timm_name="swin_tiny_patch4_window7_224",
            input_size=224,
            cam_layer="layers.3.blocks.1.norm1",
            tiny_cam_layer="layers.1.blocks.0.norm1",
            kind="swin",
            tiny_kwargs={
                "embed_dim": 24,
                "depths": (1, 1, 1, 1),
                "num_heads": (1, 2, 2, 4),
                "window_size": 4,
            },
            description="Swin-B (seed 004)",
        ),
        BackboneSpec(
            name="resnet50",
            timm_name="resnet50",
            tiny_timm_name="test_resnet",
            input_size=224,
            cam_layer="layer4",
            tiny_cam_layer="layer2",
            kind="cnn",
            description="ResNet-50 (seed 001; RadImageNet weights via a local file)",
        ),
        BackboneSpec(
            name="inception_v3",
            timm_name="inception_v3",
            tiny_timm_name="inception_next_atto",
            input_size=299,
            cam_layer="Mixed_7c",
            tiny_cam_layer="stages.1",
            kind="cnn",
            min_input_size=75,
            description="Inception-V3 (seed 001); tiny variant is an InceptionNeXt stand-in",
        ),
    )
}


def get_spec(name: str) -> BackboneSpec:
    """The registered :class:`BackboneSpec` of short name ``name``.

    Raises InputError listing the valid names.
    """
    try:
        return BACKBONES[name]
    except (KeyError, TypeError):
        raise InputError(
            f"unknown backbone {name!r}; valid backbones are {', '.join(BACKBONES)}"
        ) from None


def timm_kwargs(spec: BackboneSpec, *, tiny: bool, img_size: int | None) -> dict:
    """Architecture keyword arguments for ``timm.create_model`` (besides num_classes/in_chans)."""
    kwargs: dict = dict(spec.tiny_kwargs) if tiny else {}
    if spec.takes_img_size:
        kwargs["img_size"] = int(img_size or (spec.tiny_input_size if tiny else spec.input_size))
    return kwargs


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Seed torch's global generator inside, and restore it afterwards (no global side effect)."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _hub_reachable(timeout: float = 2.0) -> bool:
    """Quick TCP check of the timm hub, so offline use fails in seconds, not after retries."""
    try:
        with socket.create_connection(HUB_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def _offline_env() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def create_model(
    name: str,
    *,
    tiny: bool = False,
    weights: str | Path = "none",
    img_size: int | None = None,
    in_chans: int = 3,
    seed: int | None = None,
) -> nn.Module:
    """Build backbone ``name`` as a timm model with one output logit.

    Parameters
    ----------
    name: registered short name (see :data:`BACKBONES`).
    tiny: build the tiny variant (CPU tests and demo).
    weights: ``"none"`` (random init), ``"imagenet"`` (timm hub; needs a network,
        or a filled hub cache with ``HF_HUB_OFFLINE=1``), or a path to a local
        ``.safetensors`` / PyTorch state-dict file (keys remapped, classifier dropped).
    img_size: square input side in pixels; ViT/Swin are built for exactly this size,
        CNNs accept it at run time. Default: the spec's input size.
    in_chans: input channels (3: grey replicated, the multibone policy).
    seed: seeds the random initialisation (torch's global generator is restored after).

    Returns
    -------
    nn.Module mapping float32 ``(B, in_chans, S, S)`` to logits ``(B, 1)``.

    Raises InputError (unknown name, too small size), WeightsError (weights
    unavailable or not fitting).
    """
    import timm

    spec = get_spec(name)
    size = int(img_size or (spec.tiny_input_size if tiny else spec.input_size))
    minimum = 16 if tiny else spec.min_input_size
    if size < minimum:
        raise InputError(f"img_size {size} is too small for backbone {name!r}; use >= {minimum} px")
    arch = spec.arch(tiny)
    kwargs = timm_kwargs(spec, tiny=tiny, img_size=size)
    kwargs.update(num_classes=1, in_chans=in_chans)
    w = str(weights)
    with _seeded(seed):
        if w == "none":
            return timm.create_model(arch, pretrained=False, **kwargs)
        if w == "imagenet":
            return _create_from_hub(spec, arch, tiny, kwargs)
        model = timm.create_model(arch, pretrained=False, **kwargs)
    load_weights_file(model, w)
    return model


def _hub_hint(arch: str) -> str:
    return (
        "download the weights elsewhere (e.g. the model's .safetensors file from the "
        f"Hugging Face page of timm/{arch}) and set imaging.weights (or "
        "imaging.weights_per_backbone) to that local file path, or use weights: none"
    )


def check_weights_source(name: str, *, tiny: bool, weights: str | Path) -> None:
    """Cheap checks of a weight source before any work: tiny + imagenet, no network
    for imagenet, local file missing. Raises WeightsError (InputError for a bad name)."""
    spec = get_spec(name)
    arch = spec.arch(tiny)
    w = str(weights)
    if w == "none":
        return
    if w == "imagenet":
        if tiny:
            raise WeightsError(
                f"backbone {spec.name!r}: the tiny variant ({arch}) has no ImageNet weights; "
                "use weights: none for tiny models"
            )
        if not _offline_env() and not _hub_reachable():
            raise WeightsError(
                f"backbone {spec.name!r}: ImageNet weights come from the timm hub "
                f"({HUB_HOST[0]}) but there is no network; {_hub_hint(arch)}. With a filled "
                "hub cache, set HF_HUB_OFFLINE=1 to use it"
            )
        return
    if not Path(w).is_file():
        raise WeightsError(
            f"{w}: weights file for backbone {spec.name!r} not found; give an existing "
            ".safetensors or .pt file, 'imagenet' or 'none'"
        )


def _create_from_hub(spec: BackboneSpec, arch: str, tiny: bool, kwargs: dict) -> nn.Module:
    import timm

    check_weights_source(spec.name, tiny=tiny, weights="imagenet")
    hint = _hub_hint(arch)
    try:
        return timm.create_model(arch, pretrained=True, **kwargs)
    except Exception as exc:  # the hub raises many types (OSError, HTTP, LocalEntryNotFound)
        raise WeightsError(
            f"backbone {spec.name!r}: could not fetch ImageNet weights for {arch} from the "
            f"timm hub ({type(exc).__name__}: {exc}); {hint}"
        ) from exc


# --------------------------------------------------------------------------- local weight files

#: Wrapper prefixes that training frameworks put in front of parameter names.
_PREFIXES = ("module.", "model.", "backbone.", "encoder.", "net.", "_orig_mod.")
#: Classifier names across timm / torchvision families; never loaded into the 1-logit head.
_CLASSIFIER_PREFIXES = ("fc.", "head.", "classifier.", "last_linear.", "head.fc.", "heads.")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file or a PyTorch state dict (``torch.load(weights_only=True)``).

    Unwraps common containers (``state_dict``, ``model``, ``model_state_dict``).
    """
    p = Path(path)
    if not p.is_file():
        raise WeightsError(
            f"{p}: weights file not found; give an existing .safetensors or .pt file"
        )
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd: object = load_file(str(p))
        else:
            sd = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(
            f"{p}: cannot read weights ({type(exc).__name__}: {exc}); expected a .safetensors "
            "file or a PyTorch state dict saved with torch.save(model.state_dict())"
        ) from exc
    for key in ("state_dict", "model_state_dict", "model", "net"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsError(f"{p}: not a state dict (a mapping of parameter names to tensors)")
    return dict(sd)


def _strip_prefixes(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for pre in _PREFIXES:
            if key.startswith(pre):
                key, changed = key[len(pre) :], True
    return key


def _sequential_to_named(key: str, children: list[str]) -> str:
    """``'4.0.conv1.weight'`` -> ``'layer1.0.conv1.weight'`` for models saved as
    ``nn.Sequential(*model.children())`` (e.g. RadImageNet ResNet50: ``backbone.0.weight``)."""
    head, _, rest = key.partition(".")
    if head.isdigit() and int(head) < len(children) and rest:
        return f"{children[int(head)]}.{rest}"
    return key


def _is_classifier(key: str) -> bool:
    return key.startswith(_CLASSIFIER_PREFIXES)


def remap_state_dict(
    sd: Mapping[str, torch.Tensor], model: nn.Module
) -> tuple[dict[str, torch.Tensor], list[str], list[str], list[str]]:
    """Fit the names of ``sd`` to ``model``.

    Tries, in turn, the names as they are, wrapper prefixes removed, and
    sequential indices mapped to the model's top-level children; keeps the
    mapping that matches most parameters. Classifier weights that don't fit the
    one-logit head are dropped.

    Returns (fitted state dict, missing model keys, unexpected file keys, dropped classifier keys).
    """
    target = model.state_dict()
    children = [n for n, _ in model.named_children()]
    candidates = [
        lambda k: k,
        _strip_prefixes,
        lambda k: _sequential_to_named(_strip_prefixes(k), children),
    ]
    best: tuple[int, dict[str, str]] | None = None
    for fn in candidates:
        names = {k: fn(k) for k in sd}
        score = sum(1 for k, n in names.items() if n in target and target[n].shape == sd[k].shape)
        if best is None or score > best[0]:
            best = (score, names)
    assert best is not None
    names = best[1]
    fitted: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    dropped: list[str] = []
    head = _classifier_keys(model)
    for k, n in names.items():
        if n in head or (_is_classifier(n) and n not in target):
            # The file's head predicts its own classes; ours is one freshly initialised logit.
            if n not in target or target[n].shape != sd[k].shape:
                dropped.append(k)
                continue
        if n in target and target[n].shape == sd[k].shape:
            fitted[n] = sd[k]
        elif n in target:
            unexpected.append(f"{k} (shape {tuple(sd[k].shape)} vs {tuple(target[n].shape)})")
        else:
            unexpected.append(k)
    missing = [k for k in target if k not in fitted and k not in head]
    return fitted, missing, unexpected, dropped


def _classifier_keys(model: nn.Module) -> set[str]:
    """State-dict keys of the model's classification head (timm's ``pretrained_cfg['classifier']``)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    heads = cfg.get("classifier") or ()
    if isinstance(heads, str):
        heads = (heads,)
    return {k for k in model.state_dict() if any(k.startswith(h + ".") for h in heads)}


def _listing(keys: list[str], n: int = 5) -> str:
    more = f", ... ({len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def load_weights_file(model: nn.Module, path: str | Path) -> dict:
    """Load local weights into ``model`` in place, remapping names (see :func:`remap_state_dict`).

    Raises WeightsError listing missing / unexpected keys (first few and counts)
    when the file does not fit the architecture. Returns a small report dict.
    """
    sd = read_state_dict(path)
    fitted, missing, unexpected, dropped = remap_state_dict(sd, model)
    # BatchNorm's counter is bookkeeping, not a weight; older checkpoints lack it.
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise WeightsError(
            f"{path}: weights do not fit {type(model).__name__}: "
            f"{len(missing)} missing key(s) [{_listing(missing)}], "
            f"{len(unexpected)} unexpected key(s) [{_listing(unexpected)}]; "
            "check that the file is for this backbone (e.g. a ResNet-50 file for resnet50)"
        )
    model.load_state_dict(fitted, strict=False)
    if dropped:
        log.info(
            "weights %s: dropped classifier keys %s (one-logit head is new)",
            Path(path).name,
            _listing(dropped),
        )
    return {"loaded": len(fitted), "dropped_classifier": dropped}


def get_cam_layer(model: nn.Module, spec: BackboneSpec | str, tiny: bool) -> nn.Module:
    """The module a CAM should hook (last feature stage) for a model built by :func:`create_model`.

    Accepts a DistributedDataParallel-wrapped model too. Raises InputError when the path is missing.
    """
    if isinstance(spec, str):
        spec = get_spec(spec)
    inner = getattr(model, "module", model)
    path = spec.layer(tiny)
    try:
        return inner.get_submodule(path)
    except AttributeError:
        raise InputError(
            f"backbone {spec.name!r}: CAM layer {path!r} not found in {type(inner).__name__}"
        ) from None
