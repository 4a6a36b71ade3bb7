"""Imaging throughput: training and inference images/s per backbone, plain vs fast path.

* plain: fp32, NCHW, every batch read from the image files again (DICOM/PNG decode,
  crop, resize in a DataLoader), i.e. a loop without the crop cache;
* fast: crops decoded once into a tensor (on the GPU on CUDA), flips and
  normalisation on that tensor, channels_last + bf16 autocast on CUDA.

Figures are the median of ``--repeats`` runs of ``--steps`` timed steps (after one
warm-up step). Images come from a small synthetic cohort written to a temporary
folder (or ``--manifest``).

The GPU check (issue #15) is one command; ``--dry-run`` runs every part of it on CPU
with tiny models in seconds (tests/test_bench_imaging.py), so the command is known to
start before GPU time is spent::

    python benchmarks/bench_imaging.py --gpu --json gpu.json
    torchrun --standalone --nproc-per-node 2 benchmarks/bench_imaging.py --gpu --ddp-only
    python benchmarks/bench_imaging.py --dry-run

``--gpu`` = CUDA, the four paper-size backbones at 224 px, batch 128 (the paper's),
20 steps x 5 repeats, 8 DataLoader workers for the plain path, plus the ensemble
inference comparison (5 fold models: naive fp32 loop, one image at a time, vs bf16 +
channels_last batches) and the paper recipe's wall time extrapolated for 2,000 crops
(100 epochs, 5 folds of 4/5 of the crops, batch 128). Under torchrun every rank runs
DistributedDataParallel training steps (NCCL on CUDA, gloo on CPU) and rank 0 prints
the summed images/s.

Older usage, unchanged:

    python benchmarks/bench_imaging.py --device cpu --variants tiny,full
    python benchmarks/bench_imaging.py --device cuda --variants tiny,full --batch 128 \\
        --steps 20 --repeats 5 --workers 8 --json gpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from multibone.imaging.data import DecodingDataset, load_crops, normalise, random_flips
from multibone.imaging.registry import BACKBONES, create_backbone, list_backbones
from multibone.imaging.train import _train_step


def _images(manifest: Path | None, tmp: Path, n_patients: int = 40) -> tuple[list[str], list]:
    from multibone.cohort import load_cohort

    if manifest is None:
        from multibone.synthetic import make_synthetic_cohort

        manifest = make_synthetic_cohort(tmp / "cohort", n_patients=n_patients, seed=0, progress=False)
    cohort = load_cohort(manifest, progress=False)
    return cohort.images["image_path"].tolist(), cohort.image_rois()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _loop(step, n_steps: int, batch: int, device: torch.device, repeats: int) -> float:
    """Median images/s of ``repeats`` runs of ``n_steps`` calls of ``step(i)``."""
    step(0)  # warm-up: first-call allocations, cuDNN/oneDNN kernel choice
    _sync(device)
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        for i in range(n_steps):
            step(i)
        _sync(device)
        rates.append(n_steps * batch / (time.perf_counter() - t))
    return statistics.median(rates)


def bench_one(
    name: str,
    tiny: bool,
    size: int,
    paths: list[str],
    rois: list,
    *,
    device: torch.device,
    batch: int,
    steps: int,
    repeats: int,
    workers: int,
) -> dict:
    on_cuda = device.type == "cuda"
    entry = f"{name}_tiny" if tiny else name  # the registry's tiny twin of a full entry
    model = create_backbone(entry, img_size=size, seed=0).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(0)
    y = (torch.arange(batch) % 2).float().to(device)

    # ---- plain: decode every batch from the files, fp32, NCHW
    ds = DecodingDataset(paths, rois, size, margin=0.1)
    loader = DataLoader(
        ds, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
        generator=torch.Generator().manual_seed(0), persistent_workers=workers > 0,
    )  # fmt: skip
    it = iter(loader)

    def next_batch() -> torch.Tensor:
        nonlocal it
        try:
            return next(it)
        except StopIteration:
            it = iter(loader)
            return next(it)

    def plain_train(i: int) -> None:
        x = normalise(next_batch().to(device), 0.5, 0.25)
        _train_step(model, opt, x, y, amp=False)

    @torch.no_grad()
    def plain_infer(i: int) -> None:
        model(normalise(next_batch().to(device), 0.5, 0.25))

    model.train()
    plain_tr = _loop(plain_train, steps, batch, device, repeats)
    model.eval()
    plain_inf = _loop(plain_infer, steps, batch, device, repeats)

    # ---- fast: crops decoded once (on the device), channels_last + bf16 on CUDA
    t = time.perf_counter()
    cache = load_crops(paths, rois, size, 0.1, progress=False)
    decode_s = time.perf_counter() - t
    if on_cuda:
        cache = cache.pin_memory().to(device, non_blocking=True)
        model = model.to(memory_format=torch.channels_last)
    n = cache.shape[0]

    def fast_batch() -> torch.Tensor:
        idx = torch.randint(0, n, (batch,), generator=gen).to(cache.device)
        x = random_flips(cache[idx].unsqueeze(1), gen)
        x = normalise(x, 0.5, 0.25)
        return x.contiguous(memory_format=torch.channels_last) if on_cuda else x

    def fast_train(i: int) -> None:
        _train_step(model, opt, fast_batch(), y, amp=on_cuda)

    @torch.no_grad()
    def fast_infer(i: int) -> None:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=on_cuda):
            model(fast_batch())

    model.train()
    fast_tr = _loop(fast_train, steps, batch, device, repeats)
    model.eval()
    fast_inf = _loop(fast_infer, steps, batch, device, repeats)
    return {
        "backbone": name,
        "variant": "tiny" if tiny else "full",
        "arch": BACKBONES[entry].timm_name,
        "img_size": size,
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "batch": batch,
        "train_plain": round(plain_tr, 1),
        "train_fast": round(fast_tr, 1),
        "infer_plain": round(plain_inf, 1),
        "infer_fast": round(fast_inf, 1),
        "decode_once_s": round(decode_s, 2),
        "n_images": n,
    }


PAPER = {"crops": 2000, "epochs": 100, "folds": 5, "train_fraction": 0.8, "batch": 128}


def paper_hours(train_img_s: float, infer_img_s: float, crops: int = PAPER["crops"]) -> float:
    """Hours for the paper recipe on ``crops`` crops: 5 folds x 100 epochs over 4/5 of
    them (training) plus one scoring pass per epoch over the fold's other 1/5."""
    train = PAPER["epochs"] * PAPER["folds"] * PAPER["train_fraction"] * crops / train_img_s
    val = PAPER["epochs"] * PAPER["folds"] * (1 - PAPER["train_fraction"]) * crops / infer_img_s
    return (train + val) / 3600


def bench_ensemble(
    name: str, tiny: bool, size: int, cache: torch.Tensor, *, device: torch.device,
    folds: int, batch: int, repeats: int, n_images: int,
) -> dict:
    """Images/s scored by ``folds`` fold models: naive fp32 loop (one image, one model at
    a time) vs multibone's way (each fold model over all images in batches; bf16 +
    channels_last on CUDA)."""
    on_cuda = device.type == "cuda"
    entry = f"{name}_tiny" if tiny else name
    models = [create_backbone(entry, img_size=size, seed=k).to(device).eval() for k in range(folds)]
    x = cache[:n_images].to(device)
    if x.shape[0] < n_images:  # repeat the crops to reach n_images
        x = x.repeat((n_images + x.shape[0] - 1) // x.shape[0], 1, 1)[:n_images]

    @torch.no_grad()
    def naive() -> None:
        for i in range(x.shape[0]):
            xi = normalise(x[i : i + 1], 0.5, 0.25)
            for m in models:
                m(xi)

    if on_cuda:
        fast_models = [m.to(memory_format=torch.channels_last) for m in models]
    else:
        fast_models = models

    @torch.no_grad()
    def fast() -> None:
        for s in range(0, x.shape[0], batch):
            xb = normalise(x[s : s + batch], 0.5, 0.25)
            if on_cuda:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=on_cuda):
                for m in fast_models:
                    m(xb)

    rates = {}
    for label, fn in (("naive", naive), ("fast", fast)):
        fn()  # warm-up
        _sync(device)
        ts = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            _sync(device)
            ts.append(time.perf_counter() - t)
        rates[label] = x.shape[0] / statistics.median(ts)
    return {"backbone": name, "folds": folds, "images": int(x.shape[0]),
            "ensemble_naive_img_s": round(rates["naive"], 1),
            "ensemble_fast_img_s": round(rates["fast"], 1),
            "ensemble_speedup": round(rates["fast"] / rates["naive"], 2)}


def bench_ddp(name: str, tiny: bool, size: int, cache: torch.Tensor, *, batch: int, steps: int,
              repeats: int) -> dict | None:
    """DistributedDataParallel training steps on every torchrun rank (fast path); summed
    images/s on rank 0, None on other ranks."""
    import os

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", 0))
    on_cuda = torch.cuda.is_available()
    device = torch.device("cuda", local) if on_cuda else torch.device("cpu")
    if on_cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if on_cuda else "gloo")
    entry = f"{name}_tiny" if tiny else name
    model = create_backbone(entry, img_size=size, seed=0).to(device)
    if on_cuda:
        model = model.to(memory_format=torch.channels_last)
    ddp = DDP(model, device_ids=[local] if on_cuda else None)
    opt = torch.optim.SGD(ddp.parameters(), lr=1e-3, momentum=0.9)
    data = cache.to(device)
    gen = torch.Generator().manual_seed(rank)
    y = (torch.arange(batch) % 2).float().to(device)

    def step(i: int) -> None:
        idx = torch.randint(0, data.shape[0], (batch,), generator=gen).to(device)
        xb = normalise(random_flips(data[idx].unsqueeze(1), gen), 0.5, 0.25)
        if on_cuda:
            xb = xb.contiguous(memory_format=torch.channels_last)
        _train_step(ddp, opt, xb, y, amp=on_cuda)

    ddp.train()
    rate = torch.tensor([_loop(step, steps, batch, device, repeats)], device=device)
    dist.all_reduce(rate)
    out = {"backbone": name, "world_size": world, "ddp_train_img_s": round(float(rate), 1),
           "backend": dist.get_backend()}
    dist.barrier()
    return out if rank == 0 else None


def _ddp_rows(args, paths, rois) -> int:
    import torch.distributed as dist

    tiny = args.dry_run or args.variants == "tiny"
    size = args.tiny_size if tiny else args.full_size
    batch = args.batch if tiny else (args.full_batch or args.batch)
    rows = []
    for name in args.backbones.split(","):
        cache = load_crops(paths, rois, size, 0.1, progress=False)
        row = bench_ddp(name, tiny, size, cache, batch=batch, steps=args.steps, repeats=args.repeats)
        if row is not None:
            rows.append(row)
            print(f"| {name} | DDP x{row['world_size']} ({row['backend']}) | "
                  f"{row['ddp_train_img_s']} img/s |", flush=True)
    if rows and args.json:
        args.json.write_text(json.dumps({"ddp": rows}, indent=2))
    dist.destroy_process_group()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--variants", default="tiny,full", help="tiny, full or both")
    full = [n for n in BACKBONES if n not in list_backbones("*_tiny")]
    ap.add_argument("--backbones", default=",".join(full), help="full entries (tiny: <name>_tiny)")
    ap.add_argument("--tiny-size", type=int, default=48, help="px for tiny variants (demo: 48)")
    ap.add_argument("--full-size", type=int, default=224, help="px for full models (paper: 224)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--full-batch", type=int, default=None, help="batch for full models")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers of the plain path")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    ap.add_argument("--manifest", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    ap.add_argument("--gpu", action="store_true",
                    help="the GPU check: cuda, full backbones at 224, batch 128, 20 steps x 5, "
                         "8 workers, ensemble and paper-recipe rows")
    ap.add_argument("--dry-run", action="store_true",
                    help="every part of --gpu on CPU with tiny models, 1 step: checks the command starts")
    ap.add_argument("--ddp-only", action="store_true",
                    help="under torchrun: only the DistributedDataParallel training rows")
    ap.add_argument("--folds", type=int, default=5, help="fold models in the ensemble rows")
    ap.add_argument("--ensemble-images", type=int, default=64,
                    help="images scored in the ensemble rows")
    args = ap.parse_args(argv)
    extended = args.gpu or args.dry_run
    if extended and args.backbones == ap.get_default("backbones"):
        args.backbones = "e3,e4,vit,swin"  # the paper's four
    if args.gpu and not torch.cuda.is_available():
        print("--gpu needs a CUDA GPU (torch.cuda.is_available() is False here); "
              "--dry-run checks the same command on CPU", file=sys.stderr)
        return 2
    if args.gpu:
        args.device, args.variants, args.full_size = "cuda", "full", 224
        args.batch = args.full_batch = 128
        args.steps, args.repeats, args.workers = 20, 5, 8
        args.ensemble_images = max(args.ensemble_images, 512)
    if args.dry_run:
        args.device, args.variants, args.tiny_size = "cpu", "tiny", 32
        args.batch, args.steps, args.repeats, args.workers = 4, 1, 1, 0
        args.folds, args.ensemble_images = 2, 4
        args.threads = args.threads or 1
    import os

    under_torchrun = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    )
    print(f"# torch {torch.__version__}, device {device} ({where})")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths, rois = _images(args.manifest, Path(tmp), 8 if args.dry_run else 40)
        if under_torchrun:
            return _ddp_rows(args, paths, rois)
        for variant in args.variants.split(","):
            tiny = variant == "tiny"
            size = args.tiny_size if tiny else args.full_size
            batch = args.batch if tiny else (args.full_batch or args.batch)
            for name in args.backbones.split(","):
                if not tiny and size < BACKBONES[name].min_input_size:
                    continue
                row = bench_one(
                    name, tiny, size, paths, rois, device=device, batch=batch,
                    steps=args.steps, repeats=args.repeats, workers=args.workers,
                )  # fmt: skip
                rows.append(row)
                print(
                    f"| {name} | {row['variant']} ({row['arch']}, {row['params_m']} M) | {size} | "
                    f"{batch} | {row['train_plain']} | {row['train_fast']} | "
                    f"{row['infer_plain']} | {row['infer_fast']} |",
                    flush=True,
                )
                if extended:
                    cache = load_crops(paths, rois, size, 0.1, progress=False)
                    row.update(bench_ensemble(
                        name, tiny, size, cache, device=device, folds=args.folds,
                        batch=batch, repeats=args.repeats, n_images=args.ensemble_images))
                    row["paper_hours_plain"] = round(
                        paper_hours(row["train_plain"], row["infer_plain"]), 2)
                    row["paper_hours_fast"] = round(
                        paper_hours(row["train_fast"], row["infer_fast"]), 2)
                    print(f"|   ensemble of {args.folds}: naive {row['ensemble_naive_img_s']} img/s, "
                          f"fast {row['ensemble_fast_img_s']} img/s (x{row['ensemble_speedup']}); "
                          f"paper recipe on 2,000 crops: plain {row['paper_hours_plain']} h, "
                          f"fast {row['paper_hours_fast']} h |", flush=True)
    if args.json:
        args.json.write_text(
            json.dumps({"device": str(device), "where": where, "rows": rows}, indent=2)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
