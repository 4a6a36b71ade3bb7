"""Imaging throughput: training and inference images/s per backbone, plain vs fast path.

* plain: fp32, NCHW, every batch read from the image files again (DICOM/PNG decode,
  crop, resize in a DataLoader), i.e. a loop without the crop cache;
* fast: crops decoded once into a tensor (on the GPU on CUDA), flips and
  normalisation on that tensor, channels_last + bf16 autocast on CUDA.

Figures are the median of ``--repeats`` runs of ``--steps`` timed steps (after one
warm-up step). Images come from a small synthetic cohort written to a temporary
folder (or ``--manifest``).

    python benchmarks/bench_imaging.py --device cpu --variants tiny,full
    python benchmarks/bench_imaging.py --device cuda --variants tiny,full --batch 128 \\
        --steps 20 --repeats 5 --workers 8 --json gpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from multibone.imaging.data import DecodingDataset, load_crops, normalise, random_flips
from multibone.imaging.registry import BACKBONES, create_backbone, list_backbones
from multibone.imaging.train import _train_step


def _images(manifest: Path | None, tmp: Path) -> tuple[list[str], list]:
    from multibone.cohort import load_cohort

    if manifest is None:
        from multibone.synthetic import make_synthetic_cohort

        manifest = make_synthetic_cohort(tmp / "cohort", n_patients=40, seed=0, progress=False)
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
    args = ap.parse_args(argv)
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
        paths, rois = _images(args.manifest, Path(tmp))
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
    if args.json:
        args.json.write_text(
            json.dumps({"device": str(device), "where": where, "rows": rows}, indent=2)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
