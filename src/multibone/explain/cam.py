"""Class activation maps for multibone's image backbones: Score-CAM and Grad-CAM.

What this module owns
---------------------
* :func:`score_cam` - Score-CAM as the ``grad-cam`` package computes it (the
  test oracle), written here with batched masked forward passes under
  ``torch.inference_mode``, and a fast variant that runs only ``top_k``
  masked forward passes (see "Fast Score-CAM" below).
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
after a ReLU).

Fast Score-CAM (``top_k`` forward passes instead of one per channel)
--------------------------------------------------------------------
The cost of Score-CAM is one forward pass per channel (1536 for
EfficientNet-B3). The fast variant keeps every channel in the weighted sum but
scores only ``top_k`` of them exactly; the rule is ``select``:

* ``"surrogate"`` (default): one backward pass gives ``g = d logit / dx``;
  each channel's masked score is estimated to first order as
  ``s_k ~ logit(x) - <g * x, 1 - M_k> = const + <g * x, M_k>``. A linear
  surrogate (ridge regression) predicts ``s_k`` from that estimate and the
  channel's normalised map averaged over a 2x2 grid. Round 1 scores
  ``top_k // 2`` channels exactly (half the highest estimates, half spread
  over the ranking) and fits the surrogate; round 2 scores the channels the
  surrogate then ranks highest (they carry the softmax weight); the refitted
  surrogate predicts every channel not scored, and the softmax runs over all
  channels with exact scores where measured. Fidelity and speed are in
  benchmarks/RESULTS_cam.md.
* ``"gradient"``: the ``top_k`` highest estimates, the rest weight 0.
* ``"mean"`` / ``"max"``: the ``top_k`` channels with the largest mean / max
  activation, the rest weight 0 (no backward pass; poor fidelity on trained
  models, kept for comparison).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from multibone.errors import InputError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import pandas as pd

__all__ = [
    "DEFAULT_SELECT",
    "DEFAULT_TOP_K",
    "METHODS",
    "SELECTIONS",
    "ActivationCapture",
    "CamBackbone",
    "CamResult",
    "NHWCToNCHW",
    "TokensToGrid",
    "auto_batch_size",
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
DEFAULT_TOP_K = 32
#: Method names accepted by :func:`explain_image` and :func:`lesion_focus`.
METHODS = ("scorecam", "gradcam")
#: Channel selection rules of fast Score-CAM (see the module docstring).
SELECTIONS = ("surrogate", "gradient", "mean", "max")
DEFAULT_SELECT = "surrogate"
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
        select: Score-CAM channel rule: ``"all"`` (every channel scored, the
            published method) or the fast rule used (:data:`SELECTIONS`);
            ``""`` for Grad-CAM.
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
    select: str = ""


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


def auto_batch_size(device: torch.device | str) -> int:
    """Masked images per forward pass when none is given: 8 on a CPU, 64 elsewhere.

    On a 2-core CPU, EfficientNet-B3 at 224 px runs 0.041 s/image in batches of
    4-8 and 0.079 s/image in batches of 64 (cache pressure), so small batches
    win there; accelerators want large ones.
    """
    return 8 if torch.device(device).type == "cpu" else 64


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


def _interp_matrix(n_out: int, n_in: int) -> torch.Tensor:
    """(n_out, n_in) float64 matrix of 1-D linear interpolation with ``align_corners=True``
    (bilinear upsampling of an (h, w) map is ``U_h @ a @ U_w.T``)."""
    eye = torch.eye(n_in, dtype=torch.float64)[None]
    return F.interpolate(eye, size=n_out, mode="linear", align_corners=True)[0].T


def _cell_edges(n_out: int, n_in: int) -> torch.Tensor:
    """Output indices that are the first or last sample inside each input cell.

    Upsampled values are multilinear within a cell, so over the samples of a
    cell they peak at such an edge sample: the map's min / max are found there.
    """
    pos = torch.arange(n_out, dtype=torch.float64) * (n_in - 1) / max(n_out - 1, 1)
    cell = pos.floor().clamp(max=max(n_in - 2, 0))
    change = torch.ones(n_out, dtype=torch.bool)
    change[1:-1] = (cell[1:-1] != cell[:-2]) | (cell[1:-1] != cell[2:])
    return torch.nonzero(change).flatten()


def _estimate_scores(
    low: torch.Tensor, candidates: torch.Tensor, size: tuple[int, int], saliency: torch.Tensor
) -> torch.Tensor:
    """First-order (Taylor) estimate of each candidate channel's masked score, up to a constant.

    logit(x * M_k) ~ logit(x) - <g * x, 1 - M_k> = const + <g * x, M_k>, with
    g = d logit / dx (``saliency`` = sum over input channels of g * x, (H, W)):
    one backward pass instead of one forward pass per channel. The upsampling
    is linear, ``U a = U_h a U_w^T``, so ``<s, U a_k> = <U_h^T s U_w, a_k>`` and
    no (H, W) mask is ever built; the masks' exact min / max come from the
    cell-edge samples (see :func:`_cell_edges`).
    """
    h, w = low.shape[1:]
    uh, uw = _interp_matrix(size[0], h), _interp_matrix(size[1], w)
    sal = saliency.double().cpu()
    maps = low[candidates].double().cpu()  # (n, h, w)
    dot = (maps * (uh.T @ sal @ uw)).sum(dim=(1, 2))
    edges = uh[_cell_edges(size[0], h)] @ maps @ uw[_cell_edges(size[1], w)].T
    mn = edges.amin(dim=(1, 2))
    mx = edges.amax(dim=(1, 2))
    return (dot - mn * sal.sum()) / (mx - mn + _MASK_EPS)


def _spread_pick(order: torch.Tensor, n: int) -> torch.Tensor:
    """Half of ``n`` from the head of ``order``, half at evenly spaced ranks of the rest."""
    n = min(n, len(order))
    n_top = (n + 1) // 2
    rest = order[n_top:]
    n_cal = min(n - n_top, len(rest))
    picks = torch.linspace(0, len(rest) - 1, n_cal).round().long() if n_cal else rest[:0]
    return torch.cat([order[:n_top], rest[picks]])


def _surrogate_features(low: torch.Tensor, candidates: torch.Tensor, est: torch.Tensor):
    """(n, 5) features of each candidate channel for the score surrogate: the first-order
    estimate and the channel's min-max normalised map averaged over a 2x2 grid (where
    in the image the mask keeps the picture)."""
    maps = low[candidates]
    mn = maps.amin(dim=(1, 2), keepdim=True)
    mx = maps.amax(dim=(1, 2), keepdim=True)
    norm = (maps - mn) / (mx - mn + _MASK_EPS)
    h, w = norm.shape[1:]
    pooled = F.adaptive_avg_pool2d(norm[:, None], (min(2, h), min(2, w))).flatten(1)
    return torch.cat([est[:, None], pooled.double()], 1)


def _ridge_predict(x_fit: torch.Tensor, y: torch.Tensor, x_all: torch.Tensor, lam: float = 1.0):
    """Ridge regression on standardised features (penalty ``lam``); predictions for ``x_all``."""
    mu = x_fit.mean(0)
    sd = x_fit.std(0, unbiased=False)
    sd = torch.where(sd > 0, sd, torch.ones_like(sd))  # a constant feature drops out
    z = (x_fit - mu) / sd
    gram = z.T @ z + lam * torch.eye(z.shape[1], dtype=z.dtype)
    beta = torch.linalg.solve(gram, z.T @ (y - y.mean()))
    return ((x_all - mu) / sd) @ beta + y.mean()


def _score_cam(
    model: nn.Module,
    x: torch.Tensor,
    target_layer: nn.Module | str,
    *,
    reshape: Reshape | None = None,
    batch_size: int | None = None,
    top_k: int | None = None,
    select: str = DEFAULT_SELECT,
    target: Target = "positive",
    progress: bool = False,
) -> CamResult:
    t0 = time.perf_counter()
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise InputError(
            f"batch_size must be a positive integer or None (auto); got {batch_size!r}"
        )
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        raise InputError(f"top_k must be a positive integer or None (all channels); got {top_k!r}")
    if select not in SELECTIONS:
        raise InputError(f"select must be one of {', '.join(SELECTIONS)}; got {select!r}")
    x, layer, reshape, sign = _prepare(model, x, target_layer, reshape, target)
    if batch_size is None:
        batch_size = auto_batch_size(x.device)
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
        need_est = fast and select in ("surrogate", "gradient")
        saliency = _input_saliency(model, x, sign) if need_est else None
        with torch.inference_mode():
            bar = None
            if progress:
                from tqdm.auto import tqdm

                n_total = top_k if fast else len(candidates)
                bar = tqdm(total=n_total, desc="Score-CAM", unit="pass", leave=False)

            def score(idx: torch.Tensor) -> torch.Tensor:
                """Exact masked scores of channels ``idx`` (batched forward passes)."""
                out = torch.empty(len(idx), dtype=torch.float64)
                for start in range(0, len(idx), batch_size):
                    part = idx[start : start + batch_size]
                    batch = x * _masks(low, part, size).to(x.dtype)  # (b, C, H, W); x unchanged
                    out[start : start + len(part)] = (
                        sign * _logit(model(batch), model).double().cpu()
                    )
                    if bar is not None:
                        bar.update(len(part))
                return out

            weights = torch.zeros(n_ch, dtype=torch.float64)
            if not fast:
                chosen = candidates
                if len(chosen):
                    weights[chosen] = torch.softmax(score(chosen), dim=0)
            elif select == "surrogate":
                est = _estimate_scores(low, candidates, size, saliency)
                feats = _surrogate_features(low, candidates, est)
                # round 1: half the budget, spread over the estimate's ranking
                order = torch.argsort(est, descending=True, stable=True)
                first = _spread_pick(order, max(1, top_k // 2))
                s1 = score(candidates[first])
                # round 2: the channels the surrogate now ranks highest
                pred = _ridge_predict(feats[first], s1, feats)
                pred[first] = -math.inf
                second = torch.argsort(pred, descending=True, stable=True)[: top_k - len(first)]
                s2 = score(candidates[second])
                plan = torch.cat([first, second])
                exact = torch.cat([s1, s2])
                # no extrapolation above the best measured score: the channels the
                # surrogate ranked highest were measured in round 2
                all_scores = _ridge_predict(feats[plan], exact, feats).clamp(max=float(exact.max()))
                all_scores[plan] = exact
                chosen = candidates[plan]
                weights[candidates] = torch.softmax(all_scores, dim=0)
            else:
                if select == "gradient":
                    key = _estimate_scores(low, candidates, size, saliency)
                else:
                    flat_c = low[candidates].flatten(1)
                    key = (flat_c.mean(1) if select == "mean" else flat_c.amax(1)).double()
                chosen = candidates[torch.argsort(key, descending=True, stable=True)[:top_k]]
                weights[chosen] = torch.softmax(score(chosen), dim=0)
            if bar is not None:
                bar.close()
            cam_low = (weights[:, None, None] * low.double().cpu()).sum(0)
            pos = torch.clamp(cam_low, min=0)
            constant = bool(pos.amax() - pos.amin() <= 0)
            cam = _finish(cam_low, size)
    notes = _notes((h, w), constant or len(chosen) == 0)
    if fast:
        rest = "the rest estimated" if select == "surrogate" else "the rest weight 0"
        notes.insert(
            0, f"fast Score-CAM: {len(chosen)} of {n_ch} channels scored ({select}), {rest}"
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
        select=select if fast else "all",
    )


def score_cam(
    model: nn.Module,
    x: torch.Tensor,
    target_layer: nn.Module | str,
    *,
    reshape: Reshape | None = None,
    batch_size: int | None = None,
    top_k: int | None = None,
    select: str = DEFAULT_SELECT,
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
            C x H x W floats); ``None`` = :func:`auto_batch_size`.
        top_k: run only ``top_k`` masked forward passes (fast Score-CAM, see
            the module docstring); ``None`` scores every channel (the
            published method, one forward pass per channel).
        select: how fast Score-CAM picks and fills channels, one of
            :data:`SELECTIONS` (default ``"surrogate"``).
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
    batch_size: int | None = None,
    *,
    select: str = DEFAULT_SELECT,
    reshape: Reshape | None = None,
    target: Target = "positive",
    progress: bool = False,
) -> CamResult:
    """CAM of one ROI crop with the chosen method; see :class:`CamResult`.

    Args:
        model: one-logit backbone (e.g. ``multibone.imaging.create_backbone``).
        crop_tensor: float tensor (1, C, H, W), the normalised ROI crop as the
            model sees it; never modified.
        target_layer: the backbone's CAM layer (module or dotted path, e.g.
            ``BackboneSpec.cam_layer``).
        method: ``"scorecam"`` or ``"gradcam"``.
        fast: Score-CAM only: run ``top_k`` masked forward passes (default
            :data:`DEFAULT_TOP_K`) and estimate the other channels' scores
            (see the module docstring); ``False`` scores every channel (slow
            on a CPU: one forward pass per channel).
        top_k: forward passes when ``fast``; ignored otherwise.
        select: fast Score-CAM rule, one of :data:`SELECTIONS`.
        batch_size: masked images per forward pass (Score-CAM); ``None`` =
            :func:`auto_batch_size` (8 on a CPU, 64 on an accelerator).
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
        name: backbone registry name (report label, e.g. ``"e3"`` or ``"e3_tiny"``).
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
    batch_size: int | None = None,
    select: str = DEFAULT_SELECT,
    target: Target = "positive",
    progress: bool = True,
    per_image: bool = False,
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
        With ``per_image=True``: one row per (backbone, method, crop) instead,
        columns ``backbone``, ``method``, ``image`` (position in ``crops``),
        ``energy_in_box`` (NaN for an all-zero map), ``box_area_share``,
        ``seconds``, ``note``.
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
                if per_image:
                    rows.append(
                        {
                            "backbone": bb.name,
                            "method": method,
                            "image": i,
                            "energy_in_box": share,
                            "box_area_share": areas[-1],
                            "seconds": res.seconds,
                            "note": res.note,
                        }
                    )
            if per_image:
                continue
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
