"""Explanations: Score-CAM / Grad-CAM for the image backbones, SHAP for the stacker.

* :mod:`multibone.explain.cam` - Score-CAM (full and fast), Grad-CAM, token
  reshapes, hooks, lesion focus.
* :mod:`multibone.explain.overlay` - heat-map overlays, colormaps, energy in
  the lesion box.
* :mod:`multibone.explain.shap_stacker` - SHAP values of the stacker and their
  plots.

The CAM names are imported plainly. The SHAP names are loaded on first use
(PEP 562), so CAM users do not pay for importing the stacking families; an
import error there surfaces when such a name is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from multibone.explain.cam import (
    DEFAULT_SELECT,
    DEFAULT_TOP_K,
    METHODS,
    SELECTIONS,
    ActivationCapture,
    CamBackbone,
    CamResult,
    NHWCToNCHW,
    TokensToGrid,
    auto_batch_size,
    capture_activations,
    explain_image,
    grad_cam,
    lesion_focus,
    reshape_for,
    resolve_layer,
    score_cam,
)

# ``overlay`` is imported after its submodule, so the name is the function, not the module.
from multibone.explain.overlay import (
    box_area_share,
    box_in_crop,
    cam_energy_in_box,
    colormap,
    overlay,
    resize_map,
    save_png,
)

if TYPE_CHECKING:  # pragma: no cover - static analysers see the plain import
    from multibone.explain.shap_stacker import (
        StackerExplanation,
        describe_contributions,
        explain_stacker,
        summary_png,
        waterfall_png,
    )

_LAZY = {
    "StackerExplanation",
    "describe_contributions",
    "explain_stacker",
    "summary_png",
    "waterfall_png",
}

__all__ = [
    "DEFAULT_SELECT",
    "DEFAULT_TOP_K",
    "METHODS",
    "SELECTIONS",
    "ActivationCapture",
    "CamBackbone",
    "CamResult",
    "NHWCToNCHW",
    "StackerExplanation",
    "TokensToGrid",
    "auto_batch_size",
    "box_area_share",
    "box_in_crop",
    "cam_energy_in_box",
    "capture_activations",
    "colormap",
    "describe_contributions",
    "explain_image",
    "explain_stacker",
    "grad_cam",
    "lesion_focus",
    "overlay",
    "reshape_for",
    "resize_map",
    "resolve_layer",
    "save_png",
    "score_cam",
    "summary_png",
    "waterfall_png",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'multibone.explain' has no attribute {name!r}")
    value = getattr(importlib.import_module("multibone.explain.shap_stacker"), name)
    globals()[name] = value  # later look-ups skip this function
    return value
