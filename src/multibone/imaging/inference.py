"""The one inference path of the imaging layer: grey crops -> one logit per image.

Training validation, cross-fitted scoring and :class:`~multibone.imaging.ImageScorer`
(predict, dashboard) all call :func:`predict_logits`, so an image gets the same
logit whichever of them scores it. (CAMs run their own forward passes: they need
hooks and gradients, not plain scores.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from multibone.errors import MultiboneError
from multibone.imaging.data import normalise

__all__ = ["oom_error", "predict_logits"]


def oom_error(what: str, batch_size: int) -> MultiboneError:
    """The error raised when CUDA runs out of memory: names the settings to lower."""
    smaller = max(2, batch_size // 2)
    return MultiboneError(
        f"out of GPU memory while {what} at batch_size {batch_size}; set imaging.batch_size "
        f"smaller (e.g. {smaller}), or lower imaging.img_size / imaging.eval_batch_size"
    )


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    x: torch.Tensor,
    mean: float | Sequence[float],
    std: float | Sequence[float],
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
    amp: bool = False,
    channels_last: bool = False,
) -> np.ndarray:
    """Logits of grey crops in eval mode.

    Parameters
    ----------
    model: one-logit backbone, already on ``device``; its train/eval mode is restored after.
    x: float32 ``(N, S, S)`` grey crops in [0, 1] at the model's size (any device).
    mean, std: normalisation of the model (scalar, or 3 per-channel values).
    batch_size: images per forward pass.
    amp: bf16 autocast; channels_last: NHWC memory format (the model must match).

    Returns float32 ``(N,)`` logits (numpy, CPU).
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    out = []
    try:
        for s in range(0, x.shape[0], batch_size):
            xb = normalise(x[s : s + batch_size].to(device, non_blocking=True), mean, std)
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                out.append(model(xb).float().reshape(-1).cpu())
    except torch.cuda.OutOfMemoryError as exc:
        raise oom_error("scoring images", batch_size) from exc
    finally:
        model.train(was_training)
    if not out:
        return np.zeros(0, dtype=np.float32)
    return torch.cat(out).numpy().astype(np.float32)
