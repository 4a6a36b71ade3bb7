"""Training loop of one fold model: SGD + step LR + BCE on one logit, best epoch by
validation AUC, atomic per-epoch checkpoints with exact resume, optional DDP.

Determinism: shuffling and flips of epoch ``e`` come from a fresh
``torch.Generator`` seeded with ``derive_seed(seed, "epoch", e)``; the
initialisation and anything drawing from torch's global generator (dropout)
run inside :func:`torch.random.fork_rng` seeded from the run's seed, with that
state saved in each checkpoint. So a run killed after epoch k and resumed ends
with exactly the weights of an uninterrupted run (same machine and threads).
Nothing outside is changed: the global RNG and the determinism flags are
restored on exit.

Multi-GPU: run the same command under ``torchrun --nproc-per-node N``. Each
rank takes an equal shard of every epoch's permutation (as DistributedSampler
does), gradients are averaged by DistributedDataParallel, every rank computes
the (small) validation on its own, and only rank 0 writes files and logs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from multibone._atomic import atomic_path
from multibone.errors import ConfigError, InputError, MultiboneError
from multibone.imaging.aggregate import aggregate_groups
from multibone.imaging.config import ImagingConfig
from multibone.imaging.data import normalise, random_flips
from multibone.imaging.inference import oom_error, predict_logits
from multibone.stats import auc_or_nan

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1


def derive_seed(seed: int, *parts: object) -> int:
    """Stable 63-bit seed from ``seed`` and labels (same on every machine and process)."""
    text = "|".join([str(seed), *map(str, parts)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


# --------------------------------------------------------------------------- distributed


@dataclasses.dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a torchrun job (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def dist_from_env() -> DistInfo:
    """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK (defaults: a single process)."""
    try:
        return DistInfo(
            rank=int(os.environ.get("RANK", "0")),
            world_size=int(os.environ.get("WORLD_SIZE", "1")),
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        )
    except ValueError as exc:
        raise ConfigError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers ({exc})") from exc


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group when launched by torchrun (NCCL on CUDA, gloo on CPU)."""
    info = dist_from_env()
    if info.distributed:
        import torch.distributed as dist

        if device.type == "cuda":
            torch.cuda.set_device(info.local_rank)  # one GPU per rank, before NCCL starts
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        info = DistInfo(dist.get_rank(), dist.get_world_size(), info.local_rank)
    return info


def barrier(info: DistInfo) -> None:
    if info.distributed:
        import torch.distributed as dist

        dist.barrier()


def resolve_device(name: str, info: DistInfo | None = None) -> torch.device:
    """``auto`` -> CUDA (this rank's GPU under torchrun) when available, else CPU."""
    info = info or DistInfo()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"imaging.device: {name!r} asked for but no CUDA GPU is available")
        if name == "cuda":
            name = f"cuda:{info.local_rank if info.distributed else torch.cuda.current_device()}"
    return torch.device(name)


# --------------------------------------------------------------------------- helpers


def _use_flag(setting: str, device: torch.device) -> bool:
    return setting == "on" or (setting == "auto" and device.type == "cuda")


@contextlib.contextmanager
def determinism(enabled: bool, device: torch.device) -> Iterator[None]:
    """Deterministic kernels inside, previous global flags restored after."""
    prev = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_bench = torch.backends.cudnn.benchmark
    prev_det = torch.backends.cudnn.deterministic
    if enabled and device.type == "cuda":
        # cuBLAS is deterministic only with a fixed workspace; read when its handle is made.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # warn_only: a kernel without a deterministic version must not stop a long GPU run.
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = (not enabled) and device.type == "cuda"
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev, warn_only=prev_warn)
        torch.backends.cudnn.benchmark = prev_bench
        torch.backends.cudnn.deterministic = prev_det


@contextlib.contextmanager
def seeded_rng(seed: int, device: torch.device) -> Iterator[None]:
    """torch's global generators seeded inside (init, dropout), restored on exit."""
    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.random.default_generator.manual_seed(seed)
        if device.type == "cuda":
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        yield


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the model's state dict (unwrapping DDP)."""
    inner = getattr(model, "module", model)
    return {k: v.detach().to("cpu", copy=True) for k, v in inner.state_dict().items()}


def _sync_buffers(model: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP broadcasts them at the start of each forward, but the last forward of an
    epoch updates them locally; without this the ranks would validate (and pick
    epochs) with slightly different models.
    """
    import torch.distributed as dist

    for buf in model.buffers():
        dist.broadcast(buf, src=0)


def _train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    xb: torch.Tensor,
    yb: torch.Tensor,
    amp: bool,
) -> torch.Tensor:
    """One SGD step on a normalised batch; returns the (detached) summed BCE loss."""
    with torch.autocast(device_type=xb.device.type, dtype=torch.bfloat16, enabled=amp):
        logits = model(xb).float().reshape(-1)
    loss = F.binary_cross_entropy_with_logits(logits, yb)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach() * yb.numel()


# --------------------------------------------------------------------------- fit


@dataclasses.dataclass
class FitResult:
    """Outcome of :func:`fit`.

    best_state: CPU state dict of the selected epoch.
    best_epoch: 1-based epoch selected (last epoch when there is no validation set).
    best_auc: validation patient AUC of that epoch (NaN without validation).
    history: one dict per epoch: epoch, lr, loss (mean train BCE), val_loss, val_auc.
    resumed_from: epochs already done when this call started (0 = fresh).
    """

    best_state: dict[str, torch.Tensor]
    best_epoch: int
    best_auc: float
    history: list[dict]
    resumed_from: int = 0


EpochCallback = Callable[[int, dict], None]


def fit(
    model: nn.Module,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: np.ndarray,
    val_groups: np.ndarray,
    *,
    config: ImagingConfig,
    seed: int,
    norm_mean: float | list[float],
    norm_std: float | list[float],
    device: torch.device,
    checkpoint: Path | None = None,
    fingerprint: str = "",
    resume: bool = False,
    dist: DistInfo | None = None,
    progress: bool = True,
    desc: str = "",
    on_epoch_end: EpochCallback | None = None,
) -> FitResult:
    """Train ``model`` (one output logit) for ``config.epochs`` epochs.

    Parameters
    ----------
    train_x: float32 ``(N, S, S)`` grey crops in [0, 1] (CPU; moved to ``device`` once).
    train_y: float32 ``(N,)`` image labels 0/1.
    val_x: float32 ``(M, S, S)`` validation crops (M may be 0: the last epoch is kept).
    val_y: float ``(P,)`` patient labels of the validation patients.
    val_groups: int ``(M,)`` patient index (0..P-1) of each validation image.
    seed: run seed of this model (derive it per backbone and fold).
    norm_mean, norm_std: scalar training-set statistics (or 3 per-channel values).
    checkpoint: file rewritten atomically after each epoch; with ``resume`` an
        existing one continues the run (``fingerprint`` must match).
    on_epoch_end: called as ``on_epoch_end(epoch, record)`` after each epoch's
        checkpoint is written (rank 0); raising there simulates a crash.
    """
    dist = dist or DistInfo()
    if train_x.shape[0] < 2:
        raise InputError(f"{desc}: fewer than 2 training images; the fold cannot be trained")
    amp = _use_flag(config.amp, device)
    cl = _use_flag(config.channels_last, device)
    per_rank_bs = max(2, config.batch_size // dist.world_size)

    model = model.to(device)
    if cl:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=config.lr_step, gamma=config.lr_gamma
    )
    if device.type == "cuda":
        # The decoded-crop cache lives on the GPU: one pinned copy, no per-batch transfers.
        train_x = train_x.pin_memory().to(device, non_blocking=True)
        val_x = val_x.pin_memory().to(device, non_blocking=True)
    train_y = train_y.to(device=device, dtype=torch.float32)
    horizontal = "horizontal" in config.flips
    vertical = "vertical" in config.flips

    start = 0
    best_state: dict[str, torch.Tensor] | None = None
    best_epoch, best_auc, best_loss = 0, -math.inf, math.inf
    history: list[dict] = []
    if resume and checkpoint is not None and checkpoint.is_file():
        ck = torch.load(checkpoint, map_location="cpu", weights_only=True)
        if ck.get("format") != CHECKPOINT_FORMAT or ck.get("fingerprint") != fingerprint:
            raise ConfigError(
                f"{checkpoint}: checkpoint was written with other data or settings; "
                "start over with --force"
            )
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        start = int(ck["epoch"])
        best_state, best_epoch = ck["best_state"], int(ck["best_epoch"])
        best_auc, best_loss = float(ck["best_auc"]), float(ck["best_loss"])
        history = list(ck["history"])
        _set_rng_state(ck["rng"], device)
        if dist.is_main:
            log.info("%s: resuming after epoch %d of %d", desc, start, config.epochs)

    net: nn.Module = model
    if dist.distributed:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    from tqdm.auto import tqdm

    bar = tqdm(
        total=config.epochs,
        initial=start,
        desc=desc,
        unit="epoch",
        disable=not (progress and dist.is_main),
        leave=False,
    )
    n = train_x.shape[0]
    try:
        for epoch in range(start, config.epochs):
            gen = torch.Generator().manual_seed(derive_seed(seed, "epoch", epoch))
            perm = torch.randperm(n, generator=gen)
            if dist.distributed:
                # Equal shards, padded by wrapping around (what DistributedSampler does).
                total = math.ceil(n / dist.world_size) * dist.world_size
                perm = torch.cat([perm, perm[: total - n]])[dist.rank :: dist.world_size]
            net.train()
            lr = optimizer.param_groups[0]["lr"]
            loss_sum = torch.zeros((), device=device)
            seen = 0
            for s in range(0, len(perm), per_rank_bs):
                idx = perm[s : s + per_rank_bs]
                if len(idx) < 2:
                    continue  # BatchNorm cannot train on one image; every rank skips alike
                xb = train_x[idx.to(train_x.device)].unsqueeze(1)
                xb = random_flips(
                    xb, gen, horizontal=horizontal, vertical=vertical, p=config.flip_prob
                )
                xb = normalise(xb, norm_mean, norm_std)
                if cl:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                try:
                    loss_sum += _train_step(net, optimizer, xb, train_y[idx.to(device)], amp)
                except torch.cuda.OutOfMemoryError as exc:
                    raise oom_error(f"training {desc}", config.batch_size) from exc
                seen += len(idx)
            scheduler.step()
            if dist.distributed:
                _sync_buffers(model)
            train_loss = float(loss_sum) / max(seen, 1)
            if not math.isfinite(train_loss):
                raise MultiboneError(
                    f"{desc}: training loss became {train_loss} at epoch {epoch + 1}; "
                    f"lower imaging.lr (now {config.lr})"
                )
            record = {"epoch": epoch + 1, "lr": lr, "loss": train_loss}
            if val_x.shape[0]:
                logits = predict_logits(
                    model,
                    val_x,
                    norm_mean,
                    norm_std,
                    device=device,
                    batch_size=config.eval_batch_size,
                    amp=amp,
                    channels_last=cl,
                )
                patient = aggregate_groups(logits, val_groups, config.aggregation)
                record["val_auc"] = auc_or_nan(val_y, patient)
                record["val_loss"] = float(
                    F.binary_cross_entropy_with_logits(
                        torch.from_numpy(patient).double(), torch.from_numpy(val_y).double()
                    )
                )
                auc = record["val_auc"]
                if math.isnan(auc):  # cannot happen with a two-class validation set
                    better = best_state is None or record["val_loss"] < best_loss
                else:
                    better = auc > best_auc + 1e-12 or (
                        abs(auc - best_auc) <= 1e-12 and record["val_loss"] < best_loss
                    )
            else:
                record["val_auc"] = float("nan")
                record["val_loss"] = float("nan")
                better = True
            if better:
                best_state = cpu_state(model)
                best_epoch = epoch + 1
                best_auc = record["val_auc"] if val_x.shape[0] else float("nan")
                best_loss = record["val_loss"] if val_x.shape[0] else math.inf
            history.append(record)
            if dist.is_main:
                # With a bar on screen the per-epoch line is for `-v` only (one clean bar).
                log.log(
                    logging.INFO if bar.disable else logging.DEBUG,
                    "%s epoch %d/%d: loss %.4f, val AUC %.3f, val loss %.4f, lr %.3g (best epoch %d)",
                    desc,
                    epoch + 1,
                    config.epochs,
                    train_loss,
                    record["val_auc"],
                    record["val_loss"],
                    lr,
                    best_epoch,
                )
                bar.set_postfix(loss=f"{train_loss:.3f}", val_auc=f"{record['val_auc']:.3f}")
                bar.update(1)
                if checkpoint is not None:
                    state = {
                        "format": CHECKPOINT_FORMAT,
                        "fingerprint": fingerprint,
                        "epoch": epoch + 1,
                        "model": cpu_state(model),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "best_state": best_state,
                        "best_epoch": best_epoch,
                        "best_auc": best_auc,
                        "best_loss": best_loss,
                        "history": history,
                        # Epoch generators are re-derived from the seed; the global state
                        # (dropout, drop-path) is what must be carried over.
                        "rng": _rng_state(device),
                        "loader_rng": gen.get_state(),
                    }
                    with atomic_path(checkpoint) as tmp:
                        torch.save(state, tmp)
                if on_epoch_end is not None:
                    on_epoch_end(epoch + 1, record)
    finally:
        bar.close()
    assert best_state is not None
    return FitResult(best_state, best_epoch, float(best_auc), history, resumed_from=start)
