"""Training loop of one detector: seed 000's warm-restart cycles with an EMA of the
weights, atomic per-epoch checkpoints and exact resume.

Cycles: at the start of each cycle the optimizer (and its cosine learning-rate
schedule) is built anew, the weights are kept. The EMA (timm's ``ModelEmaV3``,
with warm-up) runs through all cycles; its weights are the ones returned for
saving and inference.

Determinism: the shuffling and augmentation of epoch ``e`` draw from torch's
global generator seeded with ``derive_seed(seed, "epoch", e)`` inside
``torch.random.fork_rng`` (restored after), so an epoch depends only on the
weights and optimizer state it starts from. Those are in every checkpoint: a run
killed after epoch k and resumed ends with exactly the weights of a straight run
(same machine and thread count).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from multibone._atomic import atomic_path
from multibone.detection.boxes import train_transform
from multibone.detection.config import DetectionConfig
from multibone.detection.data import DetectionImages
from multibone.errors import ConfigError, InputError, MultiboneError

CHECKPOINT_FORMAT = 1


def derive_seed(seed: int, *parts: object) -> int:
    """Stable 63-bit seed from ``seed`` and labels (the formula of ``imaging.train``)."""
    text = "|".join([str(seed), *map(str, parts)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; a CUDA request without a GPU is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"detection.device: {name!r} asked for but no CUDA GPU is available")
    return torch.device(name)


def _new_optimizer(model: nn.Module, config: DetectionConfig):
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    else:
        opt = torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, T_max=config.epochs_per_cycle, eta_min=config.lr * config.lr_min_factor
    )
    return opt, sched


def _batch(data: DetectionImages, idx: torch.Tensor, transform, device: torch.device):
    """Augmented images (3 channels) and targets of the images ``idx``."""
    from torchvision import tv_tensors

    images, targets = [], []
    size = tuple(data.images.shape[-2:])
    for i in idx.tolist():
        boxes = data.boxes[i]
        sample = {
            "image": tv_tensors.Image(data.images[i].expand(3, *size)),
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=size),
            "labels": torch.ones(len(boxes), dtype=torch.int64),
        }
        out = transform(sample)
        images.append(out["image"].as_subclass(torch.Tensor).to(device))
        targets.append(
            {
                "boxes": out["boxes"].as_subclass(torch.Tensor).reshape(-1, 4).to(device),
                "labels": out["labels"].to(device),
            }
        )
    return images, targets


@dataclasses.dataclass
class DetectorFit:
    """Outcome of :func:`fit_detector`.

    ema_state / last_state: CPU state dicts of the EMA and of the raw weights.
    history: one dict per epoch: epoch, cycle, lr, loss (mean summed detection loss).
    resumed_from: epochs already done when this call started (0 = fresh).
    """

    ema_state: dict[str, torch.Tensor]
    last_state: dict[str, torch.Tensor]
    history: list[dict]
    resumed_from: int = 0


def _cpu(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def fit_detector(
    model: nn.Module,
    data: DetectionImages,
    *,
    config: DetectionConfig,
    seed: int,
    device: torch.device,
    checkpoint: Path | None = None,
    fingerprint: str = "",
    resume: bool = False,
    progress: bool = True,
    desc: str = "detector",
    on_epoch_end: Callable[[int, dict], None] | None = None,
    bar=None,
) -> DetectorFit:
    """Train ``model`` for ``config.cycles * config.epochs_per_cycle`` epochs on ``data``.

    Images without boxes train as negatives (targets with boxes ``(0, 4)``).
    ``checkpoint`` is rewritten atomically after each epoch; with ``resume`` an
    existing one continues the run (its ``fingerprint`` must match).
    ``on_epoch_end(epoch, record)`` runs after each checkpoint (raising there
    simulates a crash). ``bar``: a tqdm bar to advance by one per epoch (a caller's
    bar over several models); by default this call shows its own.
    """
    from timm.utils import ModelEmaV3
    from tqdm.auto import tqdm

    n = len(data)
    if n < 1:
        raise InputError(f"{desc}: no training images")
    model = model.to(device)
    ema = ModelEmaV3(model, decay=config.ema_decay, use_warmup=True)
    optimizer, scheduler = _new_optimizer(model, config)
    transform = train_transform(
        flips=config.flips,
        flip_prob=config.flip_prob,
        scale=config.scale,
        translate=config.translate,
    )
    start, step, history = 0, 0, []
    if resume and checkpoint is not None and checkpoint.is_file():
        ck = torch.load(checkpoint, map_location="cpu", weights_only=True)
        if ck.get("format") != CHECKPOINT_FORMAT or ck.get("fingerprint") != fingerprint:
            raise ConfigError(
                f"{checkpoint}: checkpoint was written with other data or settings; "
                "start over with --force"
            )
        model.load_state_dict(ck["model"])
        ema.module.load_state_dict(ck["ema"])
        optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        start, step, history = int(ck["epoch"]), int(ck["step"]), list(ck["history"])
    epochs = config.epochs
    own_bar = bar is None
    if own_bar:
        bar = tqdm(total=epochs, initial=start, desc=desc, unit="epoch", disable=not progress)
    else:
        bar.update(start)
    try:
        for epoch in range(start, epochs):
            cycle, within = divmod(epoch, config.epochs_per_cycle)
            if within == 0:  # warm restart: new optimizer and schedule, weights kept
                optimizer, scheduler = _new_optimizer(model, config)
            lr = optimizer.param_groups[0]["lr"]
            model.train()
            loss_sum, seen = 0.0, 0
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(derive_seed(seed, "epoch", epoch))
                perm = torch.randperm(n)
                for s in range(0, n, config.batch_size):
                    images, targets = _batch(
                        data, perm[s : s + config.batch_size], transform, device
                    )
                    losses = model(images, targets)
                    loss = sum(losses.values())
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    step += 1
                    ema.update(model, step=step)
                    loss_sum += float(loss.detach()) * len(images)
                    seen += len(images)
            scheduler.step()
            mean_loss = loss_sum / max(seen, 1)
            if not math.isfinite(mean_loss):
                raise MultiboneError(
                    f"{desc}: training loss became {mean_loss} at epoch {epoch + 1}; "
                    f"lower detection.lr (now {config.lr})"
                )
            record = {"epoch": epoch + 1, "cycle": cycle + 1, "lr": lr, "loss": mean_loss}
            history.append(record)
            bar.set_postfix(model=desc, cycle=cycle + 1, loss=f"{mean_loss:.3f}")
            bar.update(1)
            if checkpoint is not None:
                state = {
                    "format": CHECKPOINT_FORMAT,
                    "fingerprint": fingerprint,
                    "epoch": epoch + 1,
                    "step": step,
                    "model": _cpu(model),
                    "ema": _cpu(ema.module),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "history": history,
                }
                with atomic_path(checkpoint) as tmp:
                    torch.save(state, tmp)
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, record)
    finally:
        if own_bar:
            bar.close()
    return DetectorFit(_cpu(ema.module), _cpu(model), history, resumed_from=start)
