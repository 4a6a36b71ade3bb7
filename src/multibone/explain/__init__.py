"""Explanations: Score-CAM / Grad-CAM for the image backbones, SHAP for the stacker."""

from multibone.explain.cam import (
    DEFAULT_FILL,
    DEFAULT_SELECT,
    DEFAULT_TOP_K,
    METHODS,
    SELECTIONS,
    CamBackbone,
    CamResult,
    NHWCToNCHW,
    TokensToGrid,
    capture_activations,
    explain_image,
    grad_cam,
    lesion_focus,
    reshape_for,
    resolve_layer,
    score_cam,
)
from multibone.explain.overlay import (
    box_area_share,
    box_in_crop,
    cam_energy_in_box,
    colormap,
    overlay,
    resize_map,
    save_png,
)

try:  # the stacking helper's module lands separately; made a plain import once it exists
    from multibone.explain.shap_stacker import (
        StackerExplanation,
        describe_contributions,
        explain_stacker,
        summary_png,
        waterfall_png,
    )
except ImportError:  # pragma: no cover
    pass

__all__ = [
    "DEFAULT_FILL",
    "DEFAULT_SELECT",
    "DEFAULT_TOP_K",
    "METHODS",
    "SELECTIONS",
    "CamBackbone",
    "CamResult",
    "NHWCToNCHW",
    "StackerExplanation",
    "TokensToGrid",
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
