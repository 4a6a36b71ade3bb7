"""Score-CAM cost vs fidelity: grad-cam's ScoreCAM against multibone's full and fast maps.

What it measures (per image, CPU, median of several runs):

* ``gradcam-pkg ScoreCAM``: ``pytorch_grad_cam.ScoreCAM`` as shipped (masked
  forward passes in batches of 16, every channel), the reference cost;
* ``multibone full``: :func:`multibone.explain.score_cam` with every channel
  (same map as the package, checked here too);
* ``multibone fast k``: the ``top_k`` channels with the largest mean activation;
* ``Grad-CAM`` (multibone and the package).

and the fidelity of the fast maps: Pearson r (over pixels) with the full
Score-CAM map of the same model, layer and image, on

* a briefly trained EfficientNet-B3 (224 px, a few dozen Adam steps on
  synthetic "lesion" blobs, cached after the first run), on held-out blob
  images; the share of map energy inside the blob's box is reported too;
* the same model on a real radiograph crop (pydicom-data RG3_UNCI.dcm, distal
  tibia lesion);
* random-init models (the registry's tiny variants, EfficientNet-B3).

Usage::

    python benchmarks/bench_cam.py                    # everything (~1 h on 2 cores)
    python benchmarks/bench_cam.py --quick            # tiny variants only (~1 min)
    python benchmarks/bench_cam.py --threads 2 --json benchmarks/results_cam.json

Random numbers come from local generators (numpy Generator, torch Generator /
fork_rng); nothing global is seeded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from multibone.explain import (
    SELECTIONS,
    box_area_share,
    cam_energy_in_box,
    explain_image,
    reshape_for,
    resolve_layer,
)

B3 = "efficientnet_b3"
B3_LAYER = "bn2"  # the registry's e3 CAM layer (1536 channels)
B3_SIZE = 224
MEAN, STD = 0.4, 0.2  # scalar normalisation used for the blob model (and the radiograph crop)


# --------------------------------------------------------------------------- data


def blob_image(rng: np.random.Generator, size: int, label: int):
    """Grey (size, size) float32 in [0, 1] with a 'bone' band and one lesion; its box.

    label 1: bright disc with a rim (sharp margin); label 0: dark ill-defined
    lysis. Both classes carry a lesion, so the class is decided inside the box.
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    img = (
        0.35
        + 0.05 * np.sin(xx / size * rng.uniform(2, 6) + rng.uniform(0, 6))
        + 0.05 * np.cos(yy / size * rng.uniform(2, 6) + rng.uniform(0, 6))
    )
    bx, bw = rng.uniform(0.3, 0.7) * size, rng.uniform(0.15, 0.25) * size
    img = img + 0.2 * np.exp(-(((xx - bx) / bw) ** 4))
    cx, cy = rng.uniform(0.25, 0.75, size=2) * size
    r = rng.uniform(0.07, 0.13) * size
    d = np.hypot(xx - cx, yy - cy)
    if label == 1:
        img = img + 0.3 * (d < r) + 0.15 * ((d >= r) & (d < r * 1.25))
    else:
        img = img - 0.25 * np.exp(-((d / (0.8 * r)) ** 2))
    img = img + rng.normal(0, 0.03, img.shape)
    box = (cx - 1.3 * r, cy - 1.3 * r, cx + 1.3 * r, cy + 1.3 * r)
    return np.clip(img, 0, 1).astype(np.float32), box


def to_input(img: np.ndarray) -> torch.Tensor:
    """(H, W) [0, 1] -> (1, 3, H, W) normalised, grey replicated to 3 channels."""
    t = (torch.from_numpy(np.ascontiguousarray(img)) - MEAN) / STD
    return t[None, None].repeat(1, 3, 1, 1)


def blob_batch(rng: np.random.Generator, n: int, size: int):
    labels = rng.integers(0, 2, n)
    ims, boxes = zip(*[blob_image(rng, size, int(lab)) for lab in labels], strict=True)
    x = torch.cat([to_input(im) for im in ims])
    return x, torch.tensor(labels, dtype=torch.float32), list(ims), list(boxes)


def train_blobs(arch: str, size: int, steps: int, batch: int, cache: Path) -> torch.nn.Module:
    """A one-logit timm model trained ``steps`` AdamW steps on blobs (cached state dict)."""
    import timm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = timm.create_model(arch, num_classes=1, pretrained=False)
    path = cache / f"{arch}_{size}px_blobs_{steps}x{batch}.pt"
    if path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        print(f"loaded {path}", flush=True)
        return model.eval()
    rng = np.random.default_rng(0)
    # gentle recipe (AdamW 3e-4, clipped gradients): plain Adam 1e-3 gave logits of +-100,
    # which turns Score-CAM's softmax over channel scores into a one-hot weight
    opt = torch.optim.AdamW(model.parameters(), 3e-4, weight_decay=0.05)
    model.train()
    t0 = time.perf_counter()
    for step in range(steps):
        x, y, _, _ = blob_batch(rng, batch, size)
        loss = F.binary_cross_entropy_with_logits(model(x)[:, 0], y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        print(
            f"train step {step}: loss {loss.item():.3f} ({time.perf_counter() - t0:.0f}s)",
            flush=True,
        )
    model.eval()
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return model


def radiograph_crop(size: int) -> tuple[np.ndarray, tuple]:
    """RG3_UNCI.dcm (pydicom-data, a lower leg): crop around the distal tibia lesion."""
    from pydicom.data import get_testdata_file

    from multibone.io import crop_roi, read_radiograph, resize_square, roi_box

    rad = read_radiograph(get_testdata_file("RG3_UNCI.dcm"))
    lesion = (740.0, 960.0, 980.0, 1240.0)  # x0, y0, x1, y1, read off the image by eye
    crop_box = roi_box(rad.pixels.shape, lesion, 0.5)
    crop = resize_square(crop_roi(rad.pixels, lesion, margin=0.5), size)
    from multibone.explain import box_in_crop

    return crop, box_in_crop(lesion, crop_box, size)


# --------------------------------------------------------------------------- measuring


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def timed(fn, runs: int):
    """Median wall-clock seconds of ``runs`` calls and the last result."""
    secs, out = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        secs.append(time.perf_counter() - t0)
    return statistics.median(secs), out


def pkg_cam(kind: str, model, layer, x):
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = pgc.ScoreCAM if kind == "score" else pgc.GradCAM
    with cls(model, [layer], reshape_transform=reshape_for(model)) as cam:
        # ScoreCAM's batch size stays at the package default (16)
        return cam(x, targets=[ClassifierOutputTarget(0)])[0]


def study(label, model, layer, xs, boxes, ks, selects, runs, pkg_runs, full_runs) -> dict:
    """Per image: the package's ScoreCAM (first image only), full and fast Score-CAM, Grad-CAM.

    Times are medians of ``runs`` calls (``pkg_runs`` / ``full_runs`` for the full maps);
    fidelity is Pearson r of each fast map with the full map of the same image.
    """
    layer_mod = resolve_layer(model, layer)
    per = []
    for i, x in enumerate(xs):
        box = boxes[i] if boxes else None
        item: dict = {"image": i}
        ref = None
        if i == 0 and pkg_runs > 0:
            item["pkg_scorecam_s"], ref = timed(
                lambda x=x: pkg_cam("score", model, layer_mod, x), pkg_runs
            )
        item["full_s"], full = timed(
            lambda x=x: explain_image(model, x, layer, fast=False), full_runs
        )
        item["logit"] = full.logit
        item["n_channels"], item["n_channels_scored"] = full.n_channels, full.n_channels_used
        item["full_constant"] = bool(full.map.max() == 0)
        if ref is not None:
            item["full_vs_pkg_r"] = pearson(full.map, ref)
            item["full_vs_pkg_maxabs"] = float(np.abs(full.map - ref).max())
        if box is not None:
            item["full_energy_in_box"] = cam_energy_in_box(full.map, box)
            item["box_area_share"] = box_area_share(box, full.map.shape)
        for sel in selects:
            for k in ks:
                if k >= full.n_channels_used:
                    continue
                t, fast = timed(
                    lambda x=x, k=k, sel=sel: explain_image(model, x, layer, top_k=k, select=sel),
                    runs,
                )
                item[f"{sel}{k}_s"] = t
                item[f"{sel}{k}_r"] = pearson(fast.map, full.map)
                if ref is not None:
                    item[f"{sel}{k}_speedup_vs_pkg"] = item["pkg_scorecam_s"] / t
                if box is not None:
                    item[f"{sel}{k}_energy_in_box"] = cam_energy_in_box(fast.map, box)
        item["gradcam_s"], g = timed(
            lambda x=x: explain_image(model, x, layer, method="gradcam"), runs
        )
        item["pkg_gradcam_s"], gref = timed(lambda x=x: pkg_cam("grad", model, layer_mod, x), runs)
        item["gradcam_vs_pkg_r"] = pearson(g.map, gref)
        item["gradcam_vs_full_scorecam_r"] = pearson(g.map, full.map)
        if box is not None:
            item["gradcam_energy_in_box"] = cam_energy_in_box(g.map, box)
        per.append(item)
        print(json.dumps({"case": label, **item}), flush=True)
    summary: dict = {"case": label, "n_images": len(per), "per_image": per}
    for key in per[0]:
        vals = [p[key] for p in per if key in p and p[key] == p[key]]
        if vals and key != "image":
            summary[f"median_{key}"] = statistics.median(vals)
            summary[f"min_{key}"] = min(vals)
    return summary


def write_overlays(model, directory: Path, top_k: int) -> list[str]:
    """Fast Score-CAM overlays: the RG3_UNCI radiograph (map pasted into the crop box) and a blob."""
    from pydicom.data import get_testdata_file

    from multibone.explain import overlay, save_png
    from multibone.io import crop_roi, read_radiograph, resize_square, roi_box, to_uint8

    written = []
    rad = read_radiograph(get_testdata_file("RG3_UNCI.dcm"))
    lesion = (740.0, 960.0, 980.0, 1240.0)
    crop_box = roi_box(rad.pixels.shape, lesion, 0.5)
    crop = resize_square(crop_roi(rad.pixels, lesion, margin=0.5), B3_SIZE)
    res = explain_image(model, to_input(crop), B3_LAYER, top_k=top_k)
    grey = to_uint8(rad.pixels)
    full = overlay(grey, res.map, alpha=0.45, box=crop_box, outline=True)
    # the lesion box itself, 3 px green, so the reader can judge the focus
    x0, y0, x1, y1 = (int(v) for v in lesion)
    full[y0 : y0 + 3, x0:x1] = full[y1 - 3 : y1, x0:x1] = (0, 255, 0)
    full[y0:y1, x0 : x0 + 3] = full[y0:y1, x1 - 3 : x1] = (0, 255, 0)
    written.append(
        str(save_png(full[::2, ::2].copy(), directory / "cam_rg3_unci_scorecam_fast.png"))
    )
    cx0, cy0, cx1, cy1 = crop_box
    written.append(
        str(
            save_png(
                full[cy0:cy1, cx0:cx1].copy(), directory / "cam_rg3_unci_scorecam_fast_zoom.png"
            )
        )
    )
    g = explain_image(model, to_input(crop), B3_LAYER, method="gradcam")
    zoom_g = overlay(grey, g.map, alpha=0.45, box=crop_box)[cy0:cy1, cx0:cx1].copy()
    written.append(str(save_png(zoom_g, directory / "cam_rg3_unci_gradcam_zoom.png")))
    for label in (1, 0):
        img, box = blob_image(np.random.default_rng(20 + label), B3_SIZE, label)
        r = explain_image(model, to_input(img), B3_LAYER, top_k=top_k)
        ov = overlay(to_uint8(img), r.map, alpha=0.45)
        bx0, by0, bx1, by1 = (int(round(v)) for v in box)
        bx0, by0 = max(bx0, 0), max(by0, 0)
        bx1, by1 = min(bx1, B3_SIZE) - 1, min(by1, B3_SIZE) - 1
        ov[by0, bx0:bx1] = ov[by1, bx0:bx1] = (0, 255, 0)
        ov[by0:by1, bx0] = ov[by0:by1, bx1] = (0, 255, 0)
        path = directory / f"cam_blob_label{label}_scorecam_fast.png"
        written.append(str(save_png(ov, path)))
        print(
            f"{path.name}: logit {r.logit:+.2f}, energy in box {cam_energy_in_box(r.map, box):.2f}"
        )
    print(f"RG3 crop: logit {res.logit:+.2f}; overlays: {written}", flush=True)
    return written


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "loadavg_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny variants only")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--runs", type=int, default=5, help="runs per fast / Grad-CAM timing (median)")
    ap.add_argument(
        "--pkg-runs", type=int, default=1, help="runs of the package's full ScoreCAM on B3"
    )
    ap.add_argument(
        "--full-runs", type=int, default=1, help="runs of multibone's full Score-CAM on B3"
    )
    ap.add_argument("--top-k", type=int, nargs="+", default=[16, 32, 64, 128])
    ap.add_argument("--select", nargs="+", default=list(SELECTIONS), help="fast selection rules")
    ap.add_argument("--fidelity-images", type=int, default=3, help="held-out blob images")
    ap.add_argument("--train-steps", type=int, default=60)
    ap.add_argument(
        "--cache", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "multibone_bench_cam"
    )
    ap.add_argument("--json", type=Path, default=Path(__file__).with_name("results_cam.json"))
    ap.add_argument(
        "--only", nargs="+", default=None, help="subset of: tiny b3_random b3_trained radiograph"
    )
    ap.add_argument("--overlays", type=Path, default=None, help="also write overlay PNGs here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    parts = args.only or (
        ["tiny"] if args.quick else ["tiny", "b3_random", "b3_trained", "radiograph"]
    )
    out = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}, "cases": []}
    print(json.dumps(out["machine"]), flush=True)

    sel = args.select
    if "tiny" in parts:
        from multibone.imaging import BACKBONES, create_model, get_spec

        gen = torch.Generator().manual_seed(0)
        for name in BACKBONES:
            model = create_model(name, tiny=True, img_size=64, seed=0).eval()
            xs = [torch.randn(1, 3, 64, 64, generator=gen) for _ in range(3)]
            out["cases"].append(
                study(
                    f"{name} tiny 64px random",
                    model,
                    get_spec(name).tiny_cam_layer,
                    xs,
                    None,
                    [8, 16, 32],
                    sel,
                    args.runs,
                    3,
                    3,
                )
            )
    if "b3_random" in parts:
        import timm

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = timm.create_model(B3, num_classes=1).eval()
        img, box = blob_image(np.random.default_rng(11), B3_SIZE, 1)
        out["cases"].append(
            study(
                f"{B3} {B3_SIZE}px random init",
                model,
                B3_LAYER,
                [to_input(img)],
                [box],
                args.top_k,
                sel,
                args.runs,
                args.pkg_runs,
                args.full_runs,
            )
        )
    if "b3_trained" in parts or "radiograph" in parts or args.overlays:
        model = train_blobs(B3, B3_SIZE, args.train_steps, 8, args.cache)
        if "b3_trained" in parts:
            x, y, ims, boxes = blob_batch(np.random.default_rng(7), 64, B3_SIZE)
            with torch.inference_mode():
                logits = model(x)[:, 0]
            from sklearn.metrics import roc_auc_score

            auc = float(roc_auc_score(y.numpy(), logits.numpy()))
            print(
                f"held-out blob AUC {auc:.3f}; logits {np.round(logits.numpy(), 1).tolist()}",
                flush=True,
            )
            n = args.fidelity_images
            case = study(
                f"{B3} {B3_SIZE}px trained on blobs",
                model,
                B3_LAYER,
                [to_input(im) for im in ims[:n]],
                boxes[:n],
                args.top_k,
                sel,
                args.runs,
                args.pkg_runs,
                args.full_runs,
            )
            case["heldout_auc_64"] = auc
            case["heldout_logits_64"] = logits.numpy().round(2).tolist()
            out["cases"].append(case)
        if "radiograph" in parts:
            crop, box = radiograph_crop(B3_SIZE)
            out["cases"].append(
                study(
                    f"{B3} {B3_SIZE}px trained on blobs, RG3_UNCI crop",
                    model,
                    B3_LAYER,
                    [to_input(crop)],
                    [box],
                    args.top_k,
                    sel,
                    args.runs,
                    0,
                    args.full_runs,
                )
            )
    out["machine"]["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    args.json.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
