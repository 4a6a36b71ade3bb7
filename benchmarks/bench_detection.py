"""Detector throughput: training images/s and inference ms/image, tiny and full-size.

Random weights (``weights: none``), random grey images with one random box each
(half of them without a box: negatives), at each detector's input size unless
``--img-size`` is given. Figures are the median of ``--repeats`` runs of
``--steps`` timed steps after one warm-up step. Inference is one image per call
without test-time augmentation (TTA multiplies it by the number of views, a K-fold
merge by K).

    python benchmarks/bench_detection.py --device cpu
    python benchmarks/bench_detection.py --device cuda --detectors fcos_tiny,fcos_r50,\\
fasterrcnn_r50 --batch 16 --steps 20 --repeats 5 --json gpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from multibone.detection.registry import create_detector, get_spec

GPU_COMMAND = (
    "python benchmarks/bench_detection.py --device cuda "
    "--detectors fcos_tiny,fcos_r50,fasterrcnn_r50 --batch 16 --steps 20 --repeats 5"
)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _batch(n: int, size: int, device: torch.device, gen: torch.Generator):
    images = [torch.rand(3, size, size, generator=gen).to(device) for _ in range(n)]
    targets = []
    for i in range(n):
        if i % 2:
            boxes = torch.zeros(0, 4)
        else:
            x0, y0 = (torch.rand(2, generator=gen) * size * 0.5).tolist()
            s = size * (0.15 + 0.3 * float(torch.rand(1, generator=gen)))
            boxes = torch.tensor([[x0, y0, x0 + s, y0 + s]])
        targets.append(
            {
                "boxes": boxes.to(device),
                "labels": torch.ones(len(boxes), dtype=torch.int64).to(device),
            }
        )
    return images, targets


def _median_rate(fn, steps: int, repeats: int, device: torch.device) -> float:
    """Median seconds per call of ``fn`` over ``repeats`` runs of ``steps`` calls."""
    fn()
    _sync(device)
    per_call = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(steps):
            fn()
        _sync(device)
        per_call.append((time.perf_counter() - t) / steps)
    return statistics.median(per_call)


def bench(name: str, args: argparse.Namespace, device: torch.device) -> dict:
    size = args.img_size or get_spec(name).input_size
    model = create_detector(name, img_size=size, seed=0).to(device)
    gen = torch.Generator().manual_seed(0)
    images, targets = _batch(args.batch, size, device, gen)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def train_step() -> None:
        model.train()
        loss = sum(model(images, targets).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    @torch.no_grad()
    def infer_one() -> None:
        model.eval()
        model(images[:1])

    train_s = _median_rate(train_step, args.steps, args.repeats, device)
    infer_s = _median_rate(infer_one, args.steps, args.repeats, device)
    return {
        "detector": name,
        "img_size": size,
        "batch": args.batch,
        "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "train_images_per_s": round(args.batch / train_s, 1),
        "infer_ms_per_image": round(1000 * infer_s, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--detectors", default="fcos_tiny,fcos_r50")
    p.add_argument("--img-size", type=int, default=None, help="default: each detector's own")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--json", default=None, help="also write the rows to this file")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = [bench(n.strip(), args, device) for n in args.detectors.split(",") if n.strip()]
    machine = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.machine()}, {torch.get_num_threads()} torch threads"
    )
    print(f"# {machine}; median of {args.repeats} x {args.steps} steps; random weights")
    print("| detector | input px | params (M) | batch | train images/s | inference ms/image |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['detector']} | {r['img_size']} | {r['params_M']} | {r['batch']} | "
            f"{r['train_images_per_s']} | {r['infer_ms_per_image']} |"
        )
    if device.type != "cuda":
        print(f"\nOn a GPU: {GPU_COMMAND}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"machine": machine, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
