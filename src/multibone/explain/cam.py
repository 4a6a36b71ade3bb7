"""Class activation maps for multibone's image backbones: Score-CAM and Grad-CAM.

What this module owns
---------------------
* :func:`score_cam` - Score-CAM as the ``grad-cam`` package computes it (the
  test oracle), written here with batched masked forward passes under
  ``torch.inference_mode`` and an optional pre-selection of the ``top_k``
  channels with the largest mean activation ("fast" Score-CAM).
* :func:`grad_cam` - Grad-CAM (channel weight = spatial mean of the gradient).
* :func:`explain_image` - one call for the CLI / dashboard returning a
  :class:`CamResult` (map, method, seconds, channels used, a note).
* :func:`reshape_for` - token/NHWC -> NCHW rearrangement derived from a timm
  model (ViT: ``num_prefix_tokens`` + ``patch_embed.grid_size``; Swin: NHWC),
  never a hard-coded 14x14 grid.
* :func:`capture_activations` - the forward hook as a context manager; the
  hook is removed on exit, also after an exception.
* :func:`lesion_focus` - share of CAM energy inside the lesion box, per
  backbone and method, over a cohort's boxed crops.

The target (binary head)
------------------------
multibone backbones have one output logit; ``logit > 0`` means the cohort's
*positive class* (``infection`` by default). ``target="positive"`` explains
that logit as it is. To explain the other class (e.g. "tumour" when the
positive class is infection), pass ``target="negative"``: the logit is
negated, which for Score-CAM changes the softmax over channel scores and for
Grad-CAM flips the gradient sign. Both methods use the same convention.

Exact definition (matches ``pytorch_grad_cam`` 1.5.x, used as test oracle)
--------------------------------------------------------------------------
Let ``A`` (K, h, w) be the target layer's activations for input ``x``
(1, C, H, W). Score-CAM upsamples each channel to (H, W) (bilinear,
``align_corners=True`` as ``torch.nn.UpsamplingBilinear2d``), normalises it to
``M_k = (U_k - min U_k) / (max U_k - min U_k + 1e-8)``, scores ``s_k =
logit(x * M_k)``, and weighs ``w = softmax(s)`` over channels. The map is
``relu(sum_k w_k A_k)``, min-max scaled, resized to (H, W) (bilinear,
half-pixel centres as ``cv2.resize``) and scaled again to [0, 1]. One
deliberate difference: a channel whose map is constant carries no spatial
information (its mask is all zero) and gets weight 0 and no forward pass
(``grad-cam`` scores the all-zero image for each such channel instead; the
maps agree up to the usual normalisation whenever those channels are zero, as
after a ReLU). Fast Score-CAM takes the softmax over the selected channels
only; unselected channels get weight 0.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from multibone.errors import InputError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import pandas as pd

__all__ = [
    "DEFAULT_FILL",
    "DEFAULT_SELECT",
    "DEFAULT_TOP_K",
    "METHODS",
    "SELECTIONS",
    "ActivationCapture",
    "CamBackbone",
    "CamResult",
    "NHWCToNCHW",
    "TokensToGrid",
    "capture_activations",
    "explain_image",
    "grad_cam",
    "lesion_focus",
    "reshape_for",
    "resolve_layer",
    "score_cam",
]

#: Channels kept by fast Score-CAM when ``top_k`` is not given (see
#: benchmarks/RESULTS_cam.md for the time/fidelity trade-off behind it).
DEFAULT_TOP_K = 64
#: Method names accepted by :func:`explain_image` and :func:`lesion_focus`.
METHODS = ("scorecam", "gradcam")
#: Channel pre-selection rules of fast Score-CAM: "mean" / "max" activation (free),
#: "gradient" (first-order estimate of each channel's masked score, one backward pass),
#: "contribution" (that estimate's softmax weight x the channel's positive activation).
SELECTIONS = ("mean", "max", "gradient", "contribution")
DEFAULT_SELECT = "mean"
#: Fast Score-CAM: give unscored channels a calibrated first-order score estimate
#: (True) instead of weight 0 (False).
DEFAULT_FILL = False
Target = Literal["positive", "negative"]
Reshape = Callable[[torch.Tensor], torch.Tensor]
#: (x0, y0, x1, y1) in pixels of the map, x1 / y1 exclusive.
Box = tuple[float, float, float, float]

# grad-cam's epsilons, kept so the full maps agree with the oracle.
_MASK_EPS = 1e-8
_SCALE_EPS = 1e-7


@dataclass(frozen=True)
class CamResult:
    """One class activation map.

    Attributes:
        map: float32 (H, W) in [0, 1], the input's height and width; all zero
            when the map is uninformative (see ``note``).
        method: ``"scorecam"`` or ``"gradcam"``.
        seconds: wall-clock time of the computation (s).
        n_channels_used: channels that received a forward pass (Score-CAM)
            or a gradient weight (Grad-CAM).
        note: empty, or a plain-language remark for the reader (fast
            selection used, constant map, 1x1 feature map, ...).
        n_channels: channels of the target layer.
        grid: (h, w) of the feature map before upsampling.
        logit: the model's raw output logit for the input (before the
            ``target`` sign), i.e. log-odds of the positive class.
        target: ``"positive"`` or ``"negative"`` (logit negated).
    """

    map: np.ndarray
    method: str
    seconds: float
    n_channels_used: int
    note: str = ""
    n_channels: int = 0
    grid: tuple[int, int] = (0, 0)
    logit: float = float("nan")
    target: str = "positive"
    extras: dict = field(default_factory=dict, compare=False, repr=False)


# --------------------------------------------------------------------------- layers


def resolve_layer(model: nn.Module, layer: nn.Module | str) -> nn.Module:
    """Return the module named by a dotted path (``"blocks.6"``, ``"layers.-1"``) or ``layer`` itself.

    A path element that is an integer indexes a container (negative values
    allowed). Raises InputError naming the model class, the path and the
    model's top-level children when the layer cannot be found.
    """
    if isinstance(layer, nn.Module):
        if not any(m is layer for m in model.modules()):
            raise InputError(
                f"CAM layer {type(layer).__name__} is not a submodule of model "
                f"{type(model).__name__}; pass a layer of this model or its dotted path"
            )
        return layer
    if not isinstance(layer, str) or not layer.strip():
        raise InputError(
            f"CAM layer must be a module of model {type(model).__name__} or a dotted path "
            f"such as 'blocks.6'; got {layer!r}"
        )
    module: nn.Module = model
    walked: list[str] = []
    for part in layer.strip().split("."):
        nxt = None
        if part.lstrip("-").isdigit() and isinstance(module, nn.Sequential | nn.ModuleList):
            idx = int(part)
            if -len(module) <= idx < len(module):
                nxt = module[idx]
        if nxt is None:
            nxt = module._modules.get(part)
        if nxt is None:
            children = ", ".join(list(module._modules)[:20]) or "none"
            where = ".".join(walked) or "the model"
            raise InputError(
                f"CAM layer '{layer}' not found in model {type(model).__name__}: "
                f"'{part}' is not a child of {where} (children: {children}); "
                "fix the backbone's cam_layer in the registry or pass an existing layer path"
            )
        module = nxt
        walked.append(part)
    return module


class ActivationCapture:
    """Holds the output of one module during a forward pass (see :func:`capture_activations`)."""

    def __init__(self) -> None:
        self.output: torch.Tensor | None = None
        self.calls = 0

    def _hook(self, module: nn.Module, inputs: tuple, output: object) -> None:
        if isinstance(output, tuple | list):  # some blocks return (x, extra)
            output = output[0]
        if not isinstance(output, torch.Tensor):
            raise InputError(
                f"CAM layer {type(module).__name__} returns {type(output).__name__}, not a "
                "tensor; choose a layer whose output is a feature map or token tensor"
            )
        self.output = output
        self.calls += 1


@contextlib.contextmanager
def capture_activations(layer: nn.Module) -> Iterator[ActivationCapture]:
    """Register a forward hook on ``layer`` that keeps its latest output; remove it on exit.

    The output is kept as produced (attached to the autograd graph when grad is
    enabled), so Grad-CAM can differentiate with respect to it. The hook is
    removed even when the body raises, so no hook survives a CAM call.
    """
    cap = ActivationCapture()
    handle = layer.register_forward_hook(cap._hook)
    try:
        yield cap
    finally:
        handle.remove()


# --------------------------------------------------------------------------- reshapes


class TokensToGrid:
    """(B, N, C) tokens -> (B, C, h, w): drop ``prefix`` tokens, fold the rest onto the grid.

    The grid is ``grid`` when its size matches the token count (timm ViT's
    ``patch_embed.grid_size``); otherwise a square grid when the count is a
    square; otherwise InputError. 4-D input is returned unchanged.
    """

    def __init__(self, prefix: int, grid: tuple[int, int] | None = None):
        self.prefix = int(prefix)
        self.grid = tuple(int(g) for g in grid) if grid else None

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        if t.ndim == 4:
            return t
        if t.ndim != 3:
            raise InputError(
                f"token reshape expects (batch, tokens, channels); got shape {tuple(t.shape)}"
            )
        b, n, c = t.shape
        n_spatial = n - self.prefix
        if self.grid is not None and self.grid[0] * self.grid[1] == n_spatial:
            h, w = self.grid
        else:
            side = math.isqrt(max(n_spatial, 0))
            if n_spatial <= 0 or side * side != n_spatial:
                raise InputError(
                    f"cannot fold {n} tokens ({self.prefix} prefix) onto a grid "
                    f"(model grid {self.grid}); is the CAM layer inside the transformer blocks "
                    "and the input the size the model was created for?"
                )
            h = w = side
        return t[:, self.prefix :, :].reshape(b, h, w, c).permute(0, 3, 1, 2)

    def __repr__(self) -> str:
        return f"TokensToGrid(prefix={self.prefix}, grid={self.grid})"


class NHWCToNCHW:
    """(B, H, W, C) -> (B, C, H, W), for timm's Swin (its stages run channels-last)."""

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        if t.ndim == 3:  # (B, L, C) tokens without prefix
            return TokensToGrid(0)(t)
        if t.ndim != 4:
            raise InputError(f"NHWC reshape expects (B, H, W, C); got shape {tuple(t.shape)}")
        return t.permute(0, 3, 1, 2)

    def __repr__(self) -> str:
        return "NHWCToNCHW()"


def reshape_for(model: nn.Module) -> Reshape | None:
    """The activation rearrangement a timm model needs for CAMs, derived from the model.

    * channels-last models (``model.output_fmt == "NHWC"``, timm Swin) ->
      :class:`NHWCToNCHW`;
    * token models (``num_prefix_tokens`` attribute, timm ViT/DeiT/...) ->
      :class:`TokensToGrid` with the model's prefix count and
      ``patch_embed.grid_size``;
    * anything else (CNNs) -> ``None`` (activations are already NCHW).
    """
    fmt = str(getattr(model, "output_fmt", "") or "")
    if fmt.upper().endswith("NHWC"):
        return NHWCToNCHW()
    if hasattr(model, "num_prefix_tokens"):
        pe = getattr(model, "patch_embed", None)
        grid = getattr(pe, "grid_size", None) if pe is not None else None
        return TokensToGrid(int(model.num_prefix_tokens or 0), tuple(grid) if grid else None)
    return None


# --------------------------------------------------------------------------- helpers


def _check_input(x: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise InputError(f"CAM input must be a torch.Tensor (1, C, H, W); got {type(x).__name__}")
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[0] != 1:
        raise InputError(
            f"CAM input must have shape (1, C, H, W) (one image); got {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise InputError(f"CAM input must be a float tensor; got dtype {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise InputError("CAM input contains NaN or infinite values")
    return x


def _sign(target: str) -> float:
    if target == "positive":
        return 1.0
    if target == "negative":
        return -1.0
    raise InputError(
        f"target must be 'positive' (explain the logit) or 'negative' (explain the other "
        f"class, logit negated); got {target!r}"
    )


def _logit(out: object, model: nn.Module) -> torch.Tensor:
    """(B,) positive-class logit from a model output of shape (B,) or (B, 1)."""
    if isinstance(out, tuple | list):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise InputError(
            f"model {type(model).__name__} returned {type(out).__name__}, not a tensor"
        )
    if out.ndim == 2 and out.shape[1] == 1:
        return out[:, 0]
    if out.ndim == 1:
        return out
    raise InputError(
        f"model {type(model).__name__} returns output of shape {tuple(out.shape)}; multibone "
        "CAMs explain a binary head with one logit (num_classes=1)"
    )


def _to_nchw(act: torch.Tensor, reshape: Reshape | None, model: nn.Module, layer_name: str):
    if reshape is not None:
        act = reshape(act)
    if act.ndim != 4:
        hint = (
            "pass reshape=reshape_for(model) for a transformer"
            if act.ndim == 3
            else "choose a convolutional or transformer-block layer"
        )
        raise InputError(
            f"CAM layer {layer_name} of model {type(model).__name__} gives activations of shape "
            f"{tuple(act.shape)}; expected (1, channels, h, w): {hint}"
        )
    return act


def _layer_name(model: nn.Module, layer: nn.Module) -> str:
    for name, mod in model.named_modules():
        if mod is layer:
            return f"'{name}'"
    return type(layer).__name__


def _scale(cam: torch.Tensor) -> torch.Tensor:
    """grad-cam's scale_cam_image: subtract the min, divide by (max + 1e-7)."""
    cam = cam - cam.min()
    return cam / (cam.max() + _SCALE_EPS)


def _finish(cam_low: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """relu -> scale -> bilinear resize (half-pixel centres) -> relu -> scale, float32 (H, W)."""
    cam = torch.clamp(cam_low.to(torch.float32), min=0)
    cam = _scale(cam)
    cam = F.interpolate(cam[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    cam = _scale(torch.clamp(cam, min=0))
    return cam.cpu().numpy().astype(np.float32, copy=False)


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for the call (BatchNorm/dropout frozen), the caller's mode restored after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _prepare(model, x, target_layer, reshape, target):
    x = _check_input(x)
    layer = resolve_layer(model, target_layer)
    if reshape is None:
        reshape = reshape_for(model)
    sign = _sign(target)
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = x.device
    return x.to(device), layer, reshape, sign


def _notes(grid: tuple[int, int], constant: bool) -> list[str]:
    notes = []
    if grid[0] * grid[1] <= 1:
        notes.append(
            f"the feature map is {grid[0]}x{grid[1]} at this input size, so the map is "
            "uninformative (no spatial detail); use a larger crop"
        )
    elif constant:
        notes.append("the map is constant: no region stands out for this target")
    return notes


# --------------------------------------------------------------------------- Score-CAM


def _masks(low: torch.Tensor, idx: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Score-CAM masks of channels ``idx``: upsampled (align_corners=True), min-max to [0, 1].

    Returns (b, 1, H, W) float32.
    """
    up = F.interpolate(low[idx][:, None], size=size, mode="bilinear", align_corners=True)
    mn = up.amin(dim=(2, 3), keepdim=True)
    mx = up.amax(dim=(2, 3), keepdim=True)
    return (up - mn) / (mx - mn + _MASK_EPS)


def _input_saliency(model: nn.Module, x: torch.Tensor, sign: float) -> torch.Tensor:
    """(H, W) sum over input channels of x * d(sign * logit)/dx (gradient x input)."""
    xg = x.detach().clone().requires_grad_(True)
    with torch.inference_mode(False), torch.enable_grad():
        out = _logit(model(xg), model)
        (g,) = torch.autograd.grad(sign * out.sum(), xg)
    return (g.detach() * x)[0].sum(0)


def _estimate_scores(
    low: torch.Tensor,
    candidates: torch.Tensor,
    size: tuple[int, int],
    saliency: torch.Tensor,
    chunk: int,
) -> torch.Tensor:
    """First-order (Taylor) estimate of each candidate channel's masked score, up to a constant.

    logit(x * M_k) ~ logit(x) - <g * x, 1 - M_k> = const + <g * x, M_k>, with
    g = d logit / dx: one backward pass instead of one forward pass per channel.
    """
    est = torch.empty(len(candidates), dtype=torch.float64)
    for start in range(0, len(candidates), chunk):
        idx = candidates[start : start + chunk]
        m = _masks(low, idx, size)[:, 0]
        est[start : start + len(idx)] = (m * saliency).sum(dim=(1, 2)).double()
    return est


def _rank_channels(
    select: str, low: torch.Tensor, candidates: torch.Tensor, est: torch.Tensor | None
) -> torch.Tensor:
    """Order of ``candidates`` (most important first) for fast Score-CAM."""
    flat = low[candidates].reshape(len(candidates), -1)
    if select == "mean":
        key = flat.mean(1).double()
    elif select == "max":
        key = flat.amax(1).double()
    elif select == "gradient":
        key = est
    else:  # "contribution": estimated softmax weight x positive activation mass
        key = torch.log_softmax(est, 0) + torch.log(flat.clamp(min=0).mean(1).double() + 1e-12)
    return torch.argsort(key, descending=True, stable=True)


def _fill_scores(scored: torch.Tensor, est_scored: torch.Tensor, est_all: torch.Tensor):
    """Scores of every candidate: least-squares line ``score ~ a * estimate + b`` fitted on
    the exactly scored channels, applied to the rest (``a`` kept >= 0)."""
    if len(scored) >= 2 and float(est_scored.std()) > 0:
        design = torch.stack([est_scored, torch.ones_like(est_scored)], 1)
        coef = torch.linalg.lstsq(design, scored[:, None]).solution[:, 0]
        a, b = max(float(coef[0]), 0.0), float(coef[1])
        if a == 0.0:
            b = float(scored.mean())
    else:
        a, b = 0.0, float(scored.mean()) if len(scored) else 0.0
    return a * est_all + b


def _score_cam(
    model: nn.Module,
    x: torch.Tensor,
    target_layer: nn.Module | str,
    *,
    reshape: Reshape | None = None,
    batch_size: int = 64,
    top_k: int | None = None,
    select: str = DEFAULT_SELECT,
    fill: bool = DEFAULT_FILL,
    target: Target = "positive",
    progress: bool = False,
) -> CamResult:
    t0 = time.perf_counter()
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer; got {batch_size!r}")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        raise InputError(f"top_k must be a positive integer or None (all channels); got {top_k!r}")
    if select not in SELECTIONS:
        raise InputError(f"select must be one of {', '.join(SELECTIONS)}; got {select!r}")
    x, layer, reshape, sign = _prepare(model, x, target_layer, reshape, target)
    size = (int(x.shape[-2]), int(x.shape[-1]))
    with _eval_mode(model):
        with torch.inference_mode():
            with capture_activations(layer) as cap:
                out = model(x)
            logit = float(_logit(out, model)[0])
            if cap.output is None:
                raise InputError(
                    f"CAM layer {_layer_name(model, layer)} of model {type(model).__name__} "
                    "was not called in the forward pass; choose a layer on the path to the output"
                )
            act = _to_nchw(cap.output, reshape, model, _layer_name(model, layer))
            low = act[0].to(torch.float32)  # (K, h, w)
            cap.output = None
            n_ch, h, w = low.shape
            flat = low.reshape(n_ch, -1)
            # A constant channel has an all-zero mask (nothing to localise): weight 0, no pass.
            candidates = torch.nonzero((flat.amax(1) - flat.amin(1)) > 0).flatten()
        fast = top_k is not None and top_k < len(candidates)
        need_est = fast and (fill or select in ("gradient", "contribution"))
        saliency = _input_saliency(model, x, sign) if need_est else None
        with torch.inference_mode():
            est = None
            if need_est:
                est = _estimate_scores(low, candidates, size, saliency, max(batch_size, 256))
            if fast:
                order = _rank_channels(select, low, candidates, est)
                chosen = candidates[order[:top_k]]
            else:
                chosen = candidates
            scores = torch.empty(len(chosen), dtype=torch.float64)
            starts = range(0, len(chosen), batch_size)
            if progress:
                from tqdm.auto import tqdm

                starts = tqdm(starts, desc="Score-CAM", unit="batch", leave=False)
            for start in starts:
                idx = chosen[start : start + batch_size]
                batch = x * _masks(low, idx, size).to(x.dtype)  # (b, C, H, W); x is never written
                scores[start : start + len(idx)] = sign * _logit(model(batch), model).double().cpu()
            weights = torch.zeros(n_ch, dtype=torch.float64)
            if fast and fill:
                # every informative channel keeps a weight: exact scores for the chosen,
                # calibrated first-order estimates for the rest
                all_scores = _fill_scores(scores, est[order[:top_k]], est)
                all_scores[order[:top_k]] = scores
                weights[candidates] = torch.softmax(all_scores, dim=0)
            elif len(chosen):
                weights[chosen] = torch.softmax(scores, dim=0)
            cam_low = (weights[:, None, None] * low.double().cpu()).sum(0)
            pos = torch.clamp(cam_low, min=0)
            constant = bool(pos.amax() - pos.amin() <= 0)
            cam = _finish(cam_low, size)
    notes = _notes((h, w), constant or len(chosen) == 0)
    if fast:
        rest = "the rest estimated" if fill else "the rest weight 0"
        notes.insert(
            0, f"fast Score-CAM: {len(chosen)} of {n_ch} channels scored (by {select}), {rest}"
        )
    return CamResult(
        map=cam,
        method="scorecam",
        seconds=time.perf_counter() - t0,
        n_channels_used=len(chosen),
        note="; ".join(notes),
        n_channels=n_ch,
        grid=(h, w),
        logit=logit,
        target=target,
        extras={"select": select if fast else "all", "fill": bool(fast and fill)},
    )


def score_cam(
    model: nn.Module,
    x: torch.Tensor,
    target_layer: nn.Module | str,
    *,
    reshape: Reshape | None = None,
    batch_size: int = 64,
    top_k: int | None = None,
    select: str = DEFAULT_SELECT,
    fill: bool = DEFAULT_FILL,
    target: Target = "positive",
    progress: bool = False,
) -> np.ndarray:
    """Score-CAM map of one image; float32 (H, W) in [0, 1].

    Args:
        model: one-logit binary classifier (output (1,) or (1, 1)); switched to
            eval mode for the call and restored afterwards.
        x: float tensor (1, C, H, W) (or (C, H, W)), already normalised as
            the model expects; never modified.
        target_layer: module of ``model`` or its dotted path.
        reshape: token/NHWC -> NCHW callable; ``None`` derives it from the
            model with :func:`reshape_for` (``None`` for CNNs).
        batch_size: masked images per forward pass (memory ~ batch_size x
            C x H x W floats).
        top_k: weigh only the ``top_k`` channels with the largest mean
            activation (fast Score-CAM); ``None`` uses every channel (the
            published method, one forward pass per channel).
        target: ``"positive"`` explains the logit, ``"negative"`` its negation.
        progress: show a tqdm bar over batches.
    """
    return _score_cam(
        model,
        x,
        target_layer,
        reshape=reshape,
        batch_size=batch_size,
        top_k=top_k,
        select=select,
        fill=fill,
        target=target,
        progress=progress,
    ).map


# --------------------------------------------------------------------------- Grad-CAM


def _grad_cam(
    model: nn.Module,
    x: torch.Tensor,
    target_layer: nn.Module | str,
    *,
    reshape: Reshape | None = None,
    target: Target = "positive",
) -> CamResult:
    t0 = time.perf_counter()
    x, layer, reshape, sign = _prepare(model, x, target_layer, reshape, target)
    size = (int(x.shape[-2]), int(x.shape[-1]))
    # A leaf copy that requires grad keeps the layer output on the graph even when
    # every parameter is frozen; the caller's tensor is left alone.
    xg = x.detach().clone().requires_grad_(True)
    with _eval_mode(model), torch.inference_mode(False), torch.enable_grad():
        with capture_activations(layer) as cap:
            out = model(xg)
        if cap.output is None:
            raise InputError(
                f"CAM layer {_layer_name(model, layer)} of model {type(model).__name__} "
                "was not called in the forward pass; choose a layer on the path to the output"
            )
        raw = cap.output
        logit_t = _logit(out, model)
        logit = float(logit_t[0].detach())
        (grad,) = torch.autograd.grad(sign * logit_t.sum(), raw, allow_unused=True)
        if grad is None:
            grad = torch.zeros_like(raw)
        act = _to_nchw(raw.detach(), reshape, model, _layer_name(model, layer))
        grad = _to_nchw(grad.detach(), reshape, model, _layer_name(model, layer))
    low = act[0].double()
    weights = grad[0].double().mean(dim=(1, 2))  # (K,)
    cam_low = (weights[:, None, None] * low).sum(0)
    pos = torch.clamp(cam_low, min=0)
    constant = bool(pos.amax() - pos.amin() <= 0)
    cam = _finish(cam_low, size)
    n_ch, h, w = low.shape
    return CamResult(
        map=cam,
        method="gradcam",
        seconds=time.perf_counter() - t0,
        n_channels_used=int((weights != 0).sum()),
        note="; ".join(_notes((h, w), constant)),
        n_channels=n_ch,
        grid=(h, w),
        logit=logit,
        target=target,
    )


def grad_cam(
    model: nn.Module,
    x: torch.Tensor,
    target_layer: nn.Module | str,
    *,
    reshape: Reshape | None = None,
    target: Target = "positive",
) -> np.ndarray:
    """Grad-CAM map of one image; float32 (H, W) in [0, 1].

    Channel weights are the spatial mean of d(logit)/d(activation); the map is
    ``relu(sum_k w_k A_k)``, scaled and resized as in :func:`score_cam`.
    Arguments as in :func:`score_cam`. For a class-token ViT choose a layer
    before the last block's attention mixes tokens (``blocks[-1].norm1``):
    after it only the class token reaches the head and the map is zero.
    """
    return _grad_cam(model, x, target_layer, reshape=reshape, target=target).map


# --------------------------------------------------------------------------- one call


def explain_image(
    model: nn.Module,
    crop_tensor: torch.Tensor,
    target_layer: nn.Module | str,
    method: str = "scorecam",
    fast: bool = True,
    top_k: int | None = None,
    batch_size: int = 64,
    *,
    select: str = DEFAULT_SELECT,
    fill: bool = DEFAULT_FILL,
    reshape: Reshape | None = None,
    target: Target = "positive",
    progress: bool = False,
) -> CamResult:
    """CAM of one ROI crop with the chosen method; see :class:`CamResult`.

    Args:
        model: one-logit backbone (e.g. ``multibone.imaging.create_model``).
        crop_tensor: float tensor (1, C, H, W), the normalised ROI crop as the
            model sees it; never modified.
        target_layer: the backbone's CAM layer (module or dotted path, e.g.
            ``BackboneSpec.cam_layer``).
        method: ``"scorecam"`` or ``"gradcam"``.
        fast: Score-CAM only: weigh the ``top_k`` channels with the largest
            mean activation (default :data:`DEFAULT_TOP_K`); ``False`` runs
            every channel (slow on a CPU: one forward pass per channel).
        top_k: channels kept when ``fast``; ignored otherwise.
        batch_size: masked images per forward pass (Score-CAM).
        reshape: see :func:`score_cam` (derived from the model when ``None``).
        target: ``"positive"`` (the logit) or ``"negative"`` (its negation,
            e.g. "tumour" when the positive class is infection).
    """
    if method == "scorecam":
        k = (top_k if top_k is not None else DEFAULT_TOP_K) if fast else None
        return _score_cam(
            model,
            crop_tensor,
            target_layer,
            reshape=reshape,
            batch_size=batch_size,
            top_k=k,
            select=select,
            fill=fill,
            target=target,
            progress=progress,
        )
    if method == "gradcam":
        return _grad_cam(model, crop_tensor, target_layer, reshape=reshape, target=target)
    raise InputError(f"CAM method must be one of {', '.join(METHODS)}; got {method!r}")


# --------------------------------------------------------------------------- lesion focus


@dataclass
class CamBackbone:
    """A backbone ready for CAMs over a cohort.

    Attributes:
        name: backbone short name (report label, e.g. ``"e3"``).
        model: the one-logit model.
        layer: its CAM layer (module or dotted path).
        prepare: maps a crop float32 (S, S) in [0, 1] to the model's input
            tensor (1, C, S, S) (channel replication + normalisation).
        reshape: see :func:`score_cam` (derived from the model when ``None``).
    """

    name: str
    model: nn.Module
    layer: nn.Module | str
    prepare: Callable[[np.ndarray], torch.Tensor]
    reshape: Reshape | None = None


def lesion_focus(
    backbones: Sequence[CamBackbone],
    crops: Sequence[np.ndarray],
    boxes: Sequence[Box],
    *,
    methods: Sequence[str] = METHODS,
    fast: bool = True,
    top_k: int | None = None,
    batch_size: int = 64,
    select: str = DEFAULT_SELECT,
    fill: bool = DEFAULT_FILL,
    target: Target = "positive",
    progress: bool = True,
) -> pd.DataFrame:
    """How much CAM energy falls inside the lesion box, per backbone and method.

    Args:
        backbones: the models to explain.
        crops: float32 (S, S) crops in [0, 1], each *larger than its lesion
            box* (a crop margin > 0 or the whole image; with the crop equal to
            the box every share is trivially 1).
        boxes: lesion box per crop, (x0, y0, x1, y1) in the crop's pixels
            (x1 / y1 exclusive); see :func:`multibone.explain.overlay.box_in_crop`.
        methods: subset of ``("scorecam", "gradcam")``.
        fast, top_k, batch_size, select, target: as in :func:`explain_image`.

    Returns:
        DataFrame, one row per (backbone, method): ``backbone``, ``method``,
        ``n_images`` (crops explained), ``mean_energy_in_box`` (mean share of
        map energy inside the box over informative maps, in [0, 1]; NaN when
        none), ``box_area_share`` (mean box area / crop area: the share a map
        spread evenly would get, the chance level), ``sd_energy_in_box``,
        ``n_uninformative`` (all-zero maps, left out of the mean),
        ``median_seconds`` (per image).
    """
    import pandas as pd

    from multibone.explain.overlay import box_area_share, cam_energy_in_box

    if len(crops) != len(boxes):
        raise InputError(
            f"lesion_focus: {len(crops)} crops but {len(boxes)} boxes; give one box per crop"
        )
    for m in methods:
        if m not in METHODS:
            raise InputError(f"CAM method must be one of {', '.join(METHODS)}; got {m!r}")
    rows = []
    for bb in backbones:
        for method in methods:
            shares, areas, secs = [], [], []
            n_zero = 0
            items = range(len(crops))
            if progress:
                from tqdm.auto import tqdm

                items = tqdm(items, desc=f"CAM {bb.name} {method}", unit="img", leave=False)
            for i in items:
                crop = np.asarray(crops[i])
                res = explain_image(
                    bb.model,
                    bb.prepare(crop),
                    bb.layer,
                    method=method,
                    fast=fast,
                    top_k=top_k,
                    batch_size=batch_size,
                    select=select,
                    fill=fill,
                    reshape=bb.reshape,
                    target=target,
                )
                secs.append(res.seconds)
                areas.append(box_area_share(boxes[i], res.map.shape))
                share = cam_energy_in_box(res.map, boxes[i])
                if math.isnan(share):
                    n_zero += 1
                else:
                    shares.append(share)
            rows.append(
                {
                    "backbone": bb.name,
                    "method": method,
                    "n_images": len(crops),
                    "mean_energy_in_box": float(np.mean(shares)) if shares else float("nan"),
                    "box_area_share": float(np.mean(areas)) if areas else float("nan"),
                    "sd_energy_in_box": float(np.std(shares, ddof=1))
                    if len(shares) > 1
                    else float("nan"),
                    "n_uninformative": n_zero,
                    "median_seconds": float(np.median(secs)) if secs else float("nan"),
                }
            )
    return pd.DataFrame(rows)
