"""Backbone registry, in the manner of timm's: one frozen spec per name, one factory.

Every registry entry is a name (``e3``, ``e3_tiny``, ...) with its timm
architecture, CAM layer, default input size and creation kwargs.
:func:`create_backbone` is the only factory: it builds a timm model with ONE
output logit (shape ``(B, 1)``), optionally loading weights from the timm hub
(``"imagenet"``) or from a local file (safetensors or a PyTorch state dict)
with key remapping. :func:`list_backbones` lists names matching a pattern
(``"*_tiny"``), as ``timm.list_models`` does.

``<name>_tiny`` entries are the same family with few parameters, trained from
scratch, for CPU tests and the demo (hundreds of 64 px images per second on two
CPU cores):

=============  ===============================  =====================================
full entry     timm model                       ``_tiny`` entry
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

Run outputs name a backbone by its registry name exactly as the config gives it
(``e3_tiny``): the columns of ``image_scores.csv`` / ``patient_scores.csv`` /
``predictions.csv``, the ``weights/<name>/`` folders, the bundle's backbone list
and the dashboard labels. Seeds are derived from :attr:`BackboneSpec.family`
(``e3`` for both ``e3`` and ``e3_tiny``), so naming a variant changes no number.

CAM layers: full models hook their last feature stage (stride 32: a 7 x 7 map at
224 px; ViT/Swin: the last block's ``norm1``, as pytorch-grad-cam advises). Tiny
entries hook their stride-8 stage instead: at demo sizes (48-64 px) the last stage
is 2 x 2, too coarse to show where in the crop the evidence lies, while stride 8
gives 6 x 6 to 8 x 8 (the tiny ViT's 8 px patches give the same grid at its last block).

Grey-scale policy (recorded with every set of weights as ``grey_policy``):
radiographs are single-channel; they are replicated to 3 channels so that
ImageNet / RadImageNet weights apply unchanged (``in_chans=3``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import logging
import os
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
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
    """One registry entry (immutable).

    Attributes
    ----------
    name: registry name used in configs, outputs and column names (``e3``, ``e3_tiny``).
    timm_name: timm architecture passed to ``timm.create_model``.
    input_size: default square input side in pixels.
    cam_layer: dotted module path (``model.get_submodule``) a CAM should hook.
    kind: ``cnn`` (NCHW feature maps), ``vit`` (tokens, prefix tokens first) or
        ``swin`` (NHWC feature maps).
    kwargs: extra ``timm.create_model`` keyword arguments (read-only mapping).
    min_input_size: smallest accepted side in pixels.
    hub_weights: ImageNet weights exist on the timm hub for this entry
        (``False``: scratch-only, ``weights: none``).
    family: the full-size entry this one is a variant of (itself for full entries).
        Training seeds are derived from it, so ``e3`` and ``e3_tiny`` draw alike.
    description: one line for listings.
    """

    name: str
    timm_name: str
    input_size: int
    cam_layer: str
    kind: Literal["cnn", "vit", "swin"]
    kwargs: Mapping[str, object] = dataclasses.field(default_factory=dict)
    min_input_size: int = 32
    hub_weights: bool = True
    family: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "kwargs", MappingProxyType(dict(self.kwargs)))
        if not self.family:
            object.__setattr__(self, "family", self.name)

    @property
    def takes_img_size(self) -> bool:
        """ViT and Swin fix their token grid at creation: they must be built at the train size."""
        return self.kind in ("vit", "swin")


def _tiny(
    family: str, timm_name: str, cam_layer: str, kind: str, description: str, **kwargs: object
) -> BackboneSpec:
    """The scratch-only ``<family>_tiny`` entry (64 px default, 16 px minimum)."""
    return BackboneSpec(
        name=f"{family}_tiny",
        timm_name=timm_name,
        input_size=64,
        cam_layer=cam_layer,
        kind=kind,  # type: ignore[arg-type]
        kwargs=kwargs,
        min_input_size=16,
        hub_weights=False,
        family=family,
        description=description,
    )


_SPECS = (
    BackboneSpec(
        name="e3",
        timm_name="efficientnet_b3",
        input_size=300,
        cam_layer="bn2",
        kind="cnn",
        description="EfficientNet-B3 (seed 004)",
    ),
    _tiny("e3", "test_efficientnet", "blocks.2", "cnn", "tiny EfficientNet (CPU tests, demo)"),
    BackboneSpec(
        name="e4",
        timm_name="efficientnet_b4",
        input_size=380,
        cam_layer="bn2",
        kind="cnn",
        description="EfficientNet-B4 (seed 004)",
    ),
    _tiny(
        "e4",
        "test_efficientnet",
        "blocks.2",
        "cnn",
        "tiny EfficientNet x1.25 wider (CPU tests, demo)",
        channel_multiplier=1.25,
    ),
    BackboneSpec(
        name="vit",
        timm_name="vit_base_patch16_224",
        input_size=224,
        cam_layer="blocks.11.norm1",
        kind="vit",
        min_input_size=16,
        description="ViT-B/16 (seed 004)",
    ),
    _tiny(
        "vit",
        "test_vit",
        "blocks.3.norm1",
        "vit",
        "tiny ViT, patch 8, depth 4 (CPU tests, demo)",
        patch_size=8,
        depth=4,
    ),
    BackboneSpec(
        name="swin",
        timm_name="swin_base_patch4_window7_224",
        input_size=224,
        cam_layer="layers.3.blocks.1.norm1",
        kind="swin",
        description="Swin-B (seed 004)",
    ),
    _tiny(
        "swin",
        "swin_tiny_patch4_window7_224",
        "layers.1.blocks.0.norm1",
        "swin",
        "tiny Swin, embed 24, one block per stage (CPU tests, demo)",
        embed_dim=24,
        depths=(1, 1, 1, 1),
        num_heads=(1, 2, 2, 4),
        window_size=4,
    ),
    BackboneSpec(
        name="resnet50",
        timm_name="resnet50",
        input_size=224,
        cam_layer="layer4",
        kind="cnn",
        description="ResNet-50 (seed 001; RadImageNet weights via a local file)",
    ),
    _tiny("resnet50", "test_resnet", "layer2", "cnn", "tiny ResNet (CPU tests)"),
    BackboneSpec(
        name="inception_v3",
        timm_name="inception_v3",
        input_size=299,
        cam_layer="Mixed_7c",
        kind="cnn",
        min_input_size=75,
        description="Inception-V3 (seed 001)",
    ),
    _tiny(
        "inception_v3",
        "inception_next_atto",
        "stages.1",
        "cnn",
        "InceptionNeXt-atto, a STAND-IN: not the Inception-V3 architecture (CPU tests)",
    ),
)

#: Registry name -> spec (read-only).
BACKBONES: Mapping[str, BackboneSpec] = MappingProxyType({s.name: s for s in _SPECS})


def list_backbones(pattern: str = "*") -> list[str]:
    """Registry names matching the shell-style ``pattern`` (``"*_tiny"``), in registry order."""
    return [n for n in BACKBONES if fnmatch.fnmatchcase(n, pattern)]


def get_spec(name: str) -> BackboneSpec:
    """The :class:`BackboneSpec` of registry name ``name``.

    Raises InputError listing the valid names.
    """
    try:
        return BACKBONES[name]
    except (KeyError, TypeError):
        raise InputError(
            f"unknown backbone {name!r}; valid backbones are {', '.join(BACKBONES)}"
        ) from None


def timm_kwargs(spec: BackboneSpec, *, img_size: int | None) -> dict:
    """Architecture keyword arguments for ``timm.create_model`` (besides num_classes/in_chans)."""
    kwargs: dict = dict(spec.kwargs)
    if spec.takes_img_size:
        kwargs["img_size"] = int(img_size or spec.input_size)
    return kwargs


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
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


def create_backbone(
    name: str,
    *,
    weights: str | Path = "none",
    img_size: int | None = None,
    in_chans: int = 3,
    seed: int | None = None,
) -> nn.Module:
    """Build registry entry ``name`` as a timm model with one output logit.

    Parameters
    ----------
    name: registry name (see :data:`BACKBONES`, :func:`list_backbones`).
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
    size = int(img_size or spec.input_size)
    if size < spec.min_input_size:
        raise InputError(
            f"img_size {size} is too small for backbone {name!r}; use >= {spec.min_input_size} px"
        )
    kwargs = timm_kwargs(spec, img_size=size)
    kwargs.update(num_classes=1, in_chans=in_chans)
    w = str(weights)
    with seeded(seed):
        if w == "none":
            return timm.create_model(spec.timm_name, pretrained=False, **kwargs)
        if w == "imagenet":
            return _create_from_hub(spec, kwargs)
        model = timm.create_model(spec.timm_name, pretrained=False, **kwargs)
    load_weights_file(model, w)
    return model


def _hub_hint(arch: str) -> str:
    return (
        "download the weights elsewhere (e.g. the model's .safetensors file from the "
        f"Hugging Face page of timm/{arch}) and set imaging.weights (or "
        "imaging.weights_per_backbone) to that local file path, or use weights: none"
    )


def check_weights_source(name: str, *, weights: str | Path) -> None:
    """Cheap checks of a weight source before any work: imagenet for a scratch-only entry,
    no network for imagenet, local file missing. Raises WeightsError (InputError for a bad name)."""
    spec = get_spec(name)
    arch = spec.timm_name
    w = str(weights)
    if w == "none":
        return
    if w == "imagenet":
        if not spec.hub_weights:
            raise WeightsError(
                f"backbone {spec.name!r}: this scratch-only entry ({arch}) has no ImageNet "
                f"weights; use weights: none, or the full entry {spec.family!r}"
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


def _create_from_hub(spec: BackboneSpec, kwargs: dict) -> nn.Module:
    import timm

    check_weights_source(spec.name, weights="imagenet")
    arch = spec.timm_name
    try:
        return timm.create_model(arch, pretrained=True, **kwargs)
    except Exception as exc:  # the hub raises many types (OSError, HTTP, LocalEntryNotFound)
        raise WeightsError(
            f"backbone {spec.name!r}: could not fetch ImageNet weights for {arch} from the "
            f"timm hub ({type(exc).__name__}: {exc}); {_hub_hint(arch)}"
        ) from exc


def hub_weights_cached(spec: BackboneSpec) -> bool:
    """Whether the hub weights of ``spec`` are already on this machine (no network used).

    Looks in the Hugging Face hub cache (``timm/<arch>.<tag>``) and in torch hub's
    checkpoint folder (older timm weights come by URL). False for scratch-only entries.
    """
    if not spec.hub_weights:
        return False
    import timm
    from huggingface_hub import try_to_load_from_cache

    try:
        cfg = timm.models.get_pretrained_cfg(spec.timm_name)
    except Exception:  # an architecture without a pretrained config has no hub weights
        return False
    if cfg is None:
        return False
    if cfg.hf_hub_id:
        for filename in ("model.safetensors", "pytorch_model.bin"):
            if isinstance(try_to_load_from_cache(cfg.hf_hub_id, filename), str):
                return True
    if cfg.url:
        checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
        return (checkpoints / cfg.url.rsplit("/", 1)[-1]).is_file()
    return False


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


def get_cam_layer(model: nn.Module, spec: BackboneSpec | str) -> nn.Module:
    """The module a CAM should hook (a feature stage) of a model built by :func:`create_backbone`.

    Accepts a DistributedDataParallel-wrapped model too. Raises InputError when the path is missing.
    """
    if isinstance(spec, str):
        spec = get_spec(spec)
    inner = getattr(model, "module", model)
    path = spec.cam_layer
    try:
        return inner.get_submodule(path)
    except AttributeError:
        raise InputError(
            f"backbone {spec.name!r}: CAM layer {path!r} not found in {type(inner).__name__}"
        ) from None
