"""Fold model files: ``weights/<backbone>/fold<k>.safetensors`` + ``fold<k>.json``.

Written by :func:`multibone.imaging.train_images`, read back here for scoring,
CAMs and the bundle. The json states everything needed to rebuild the model and
its input: timm architecture and kwargs, image size, channel policy,
normalisation, crop margin and aggregation rule. Models are rebuilt from the
json, not from the registry, so a folder stays loadable if registry entries change.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from torch import nn

from multibone.errors import BundleError, WeightsError

__all__ = [
    "META_FORMAT",
    "fold_numbers",
    "load_backbone_meta",
    "load_backbone_models",
    "load_fold",
    "read_meta",
]

#: Version of the ``fold<k>.json`` layout.
META_FORMAT = 1

_FOLD_FILE = re.compile(r"fold(\d+)\.json$")


def fold_numbers(weights_dir: Path, backbone: str) -> list[int]:
    """Sorted fold numbers k of ``weights_dir/<backbone>/fold<k>.json``; BundleError if none."""
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


def read_meta(path: Path) -> dict:
    """One ``fold<k>.json`` as a dict; BundleError when unreadable or of another format."""
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
    meta = read_meta(weights_dir / backbone / f"fold{fold}.json")
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
        read_meta(weights_dir / backbone / f"fold{k}.json")
        for k in fold_numbers(weights_dir, backbone)
    ]


def load_backbone_models(weights_dir: str | Path, backbone: str) -> list[nn.Module]:
    """Fold models of ``backbone`` (eval mode, CPU), ordered by fold.

    Each model carries its metadata as ``model.multibone_meta``; build its input
    with ``preprocess(crops, model.multibone_meta)``. The CAM layer path is
    ``meta['cam_layer']`` (``model.get_submodule(meta['cam_layer'])``).
    """
    weights_dir = Path(weights_dir)
    return [load_fold(weights_dir, backbone, k)[0] for k in fold_numbers(weights_dir, backbone)]
