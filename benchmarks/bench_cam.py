"""Score-CAM cost vs fidelity: grad-cam's ScoreCAM against multibone's full and fast maps.

What it measures (per image, CPU, median of several runs):

* ``gradcam-pkg ScoreCAM``: ``pytorch_grad_cam.ScoreCAM`` as shipped (masked
  forward passes in batches of 16, every channel), the reference cost;
* ``multibone full``: :func:`multibone.explain.score_cam` with every channel
  (same map as the package, checked here too);
* ``multibone fast``: ``top_k`` masked passes, channel rule ``select``:
  ``surrogate`` (the default: first-order estimates + a ridge surrogate fills
  in the unscored channels), and the naive ``mean`` / ``gradient`` top-k
  pre-selections (unscored channels weight 0) for comparison;
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

    python benchmarks/bench_cam.py                    # everything: ~15 min on an idle
                                                      # 2-core CPU (+ ~5 min first-run
                                                      # training), far longer when shared
    python benchmarks/bench_cam.py --quick            # tiny variants only (~1 min)
    python benchmarks/bench_cam.py --summarize benchmarks/results_cam.json   # tables

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
    DEFAULT_TOP_K,
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


def train_blobs(
    make_model, tag: str, size: int, steps: int, batch: int, lr: float, wd: float, cache: Path
) -> torch.nn.Module:
    """A one-logit model trained ``steps`` AdamW steps on blobs (state dict cached by ``tag``).

    ``make_model()`` builds the untrained model (seeded by the caller). With
    ``wd=0`` AdamW is plain Adam.
    """
    model = make_model()
    path = cache / f"{tag}_{size}px_blobs_{steps}x{batch}_lr{lr:g}.pt"
    if path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        print(f"loaded {path}", flush=True)
        return model.eval()
    rng = np.random.default_rng(0)
    opt = torch.optim.AdamW(model.parameters(), lr, weight_decay=wd)
    model.train()
    t0 = time.perf_counter()
    for step in range(steps):
        x, y, _, _ = blob_batch(rng, batch, size)
        loss = F.binary_cross_entropy_with_logits(model(x)[:, 0], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 10 == 0 or step == steps - 1:
            print(
                f"{tag} step {step}: loss {loss.item():.3f} ({time.perf_counter() - t0:.0f}s)",
                flush=True,
            )
    model.eval()
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return model


def heldout(model, size: int, n: int = 64) -> tuple[float, list[float]]:
    """AUC and logits of ``model`` on ``n`` held-out blob images."""
    from sklearn.metrics import roc_auc_score

    x, y, _, _ = blob_batch(np.random.default_rng(7), n, size)
    with torch.inference_mode():
        logits = model(x)[:, 0].numpy()
    return float(roc_auc_score(y.numpy(), logits)), logits.round(2).tolist()


def _b3(seed: int = 0):
    import timm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return timm.create_model(B3, num_classes=1, pretrained=False)


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


def study(label, model, layer, xs, boxes, variants, runs, pkg_runs, full_runs) -> dict:
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
        for sel, k in variants:
            if k >= full.n_channels_used:
                continue
            t, fast = timed(
                lambda x=x, k=k, sel=sel: explain_image(model, x, layer, top_k=k, select=sel), runs
            )
            item[f"{sel}{k}_s"] = t
            item[f"{sel}{k}_r"] = pearson(fast.map, full.map)
            if ref is not None:
                item[f"{sel}{k}_speedup_vs_pkg"] = item["pkg_scorecam_s"] / t
            item[f"{sel}{k}_speedup_vs_full"] = item["full_s"] / t
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
    """Fast Score-CAM overlays of the predicted class (``target`` from the logit's sign).

    RG3_UNCI radiograph (map pasted into the crop box, lesion box in green) and
    held-out blob images; weighted blending (the radiograph shows where the map is low).
    """
    from pydicom.data import get_testdata_file

    from multibone.explain import overlay, save_png
    from multibone.io import crop_roi, read_radiograph, resize_square, roi_box, to_uint8

    def predicted(x):
        with torch.inference_mode():
            return "positive" if float(model(x)[0, 0]) > 0 else "negative"

    def green(img, box, width):
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        h, w = img.shape[:2]
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        img[y0 : y0 + width, x0:x1] = img[y1 - width : y1, x0:x1] = (0, 255, 0)
        img[y0:y1, x0 : x0 + width] = img[y0:y1, x1 - width : x1] = (0, 255, 0)

    written, lines = [], []
    rad = read_radiograph(get_testdata_file("RG3_UNCI.dcm"))
    lesion = (740.0, 960.0, 980.0, 1240.0)
    crop_box = roi_box(rad.pixels.shape, lesion, 0.5)
    x = to_input(resize_square(crop_roi(rad.pixels, lesion, margin=0.5), B3_SIZE))
    target = predicted(x)
    grey = to_uint8(rad.pixels)
    cx0, cy0, cx1, cy1 = crop_box
    for method in ("scorecam", "gradcam"):
        res = explain_image(model, x, B3_LAYER, method=method, top_k=top_k, target=target)
        full = overlay(grey, res.map, alpha=0.6, box=crop_box, outline=True, weighted=True)
        green(full, lesion, 3)
        if method == "scorecam":
            path = directory / "cam_rg3_unci_scorecam_fast.png"
            written.append(str(save_png(full[::2, ::2].copy(), path)))
        path = directory / f"cam_rg3_unci_{method}_zoom.png"
        written.append(str(save_png(full[cy0:cy1, cx0:cx1].copy(), path)))
        lines.append(f"RG3 {method}: logit {res.logit:+.1f}, target {target}, note '{res.note}'")
    xs, _, ims, boxes = blob_batch(np.random.default_rng(7), 8, B3_SIZE)
    for i in (1, 7):  # a label-1 and a label-0 held-out image
        target = predicted(xs[i : i + 1])
        r = explain_image(model, xs[i : i + 1], B3_LAYER, top_k=top_k, target=target)
        ov = overlay(to_uint8(ims[i]), r.map, alpha=0.6, weighted=True)
        green(ov, boxes[i], 1)
        path = directory / f"cam_blob{i}_scorecam_fast.png"
        written.append(str(save_png(ov, path)))
        share = cam_energy_in_box(r.map, boxes[i])
        lines.append(
            f"{path.name}: logit {r.logit:+.1f}, target {target}, energy in box {share:.2f}"
        )
    print("\n".join(lines), flush=True)
    return written


def summarize(results: dict) -> str:
    """Markdown tables of a results JSON (medians over images; min r in brackets)."""

    def f(v, fmt="{:.3f}"):
        return "-" if v is None or v != v else fmt.format(v)

    lines = [
        "| case | channels | grad-cam ScoreCAM s | full s | full vs grad-cam r | "
        + "fast variant | fast s | speed-up vs grad-cam | speed-up vs full | r fast vs full (min) | "
        + "Grad-CAM s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in results["cases"]:
        variants = sorted(
            {k[len("median_") : -2] for k in c if k.startswith("median_") and k.endswith("_r")}
            - {"full_vs_pkg", "gradcam_vs_pkg", "gradcam_vs_full_scorecam"}
        )
        for i, v in enumerate(variants):
            head = (
                [
                    c["case"],
                    f(c.get("median_n_channels"), "{:.0f}"),
                    f(c.get("median_pkg_scorecam_s"), "{:.2f}"),
                    f(c.get("median_full_s"), "{:.2f}"),
                    f(c.get("median_full_vs_pkg_r"), "{:.4f}"),
                ]
                if i == 0
                else ["", "", "", "", ""]
            )
            lines.append(
                "| "
                + " | ".join(
                    head
                    + [
                        v,
                        f(c.get(f"median_{v}_s"), "{:.2f}"),
                        f(c.get(f"median_{v}_speedup_vs_pkg"), "{:.1f}x"),
                        f(c.get(f"median_{v}_speedup_vs_full"), "{:.1f}x"),
                        f"{f(c.get(f'median_{v}_r'))} ({f(c.get(f'min_{v}_r'))})",
                        f(c.get("median_gradcam_s"), "{:.2f}") if i == 0 else "",
                    ]
                )
                + " |"
            )
    lines += [
        "",
        "| case | n images | box area share (chance) | full Score-CAM | fast surrogate | "
        + "Grad-CAM | Grad-CAM vs full Score-CAM r |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in results["cases"]:
        if "median_box_area_share" not in c:
            continue
        fast_key = f"median_surrogate{DEFAULT_TOP_K}_energy_in_box"
        if fast_key not in c:
            fast_key = "median_surrogate16_energy_in_box"
        lines.append(
            f"| {c['case']} | {c['n_images']} | {f(c.get('median_box_area_share'))} | "
            f"{f(c.get('median_full_energy_in_box'))} | {f(c.get(fast_key))} | "
            f"{f(c.get('median_gradcam_energy_in_box'))} | "
            f"{f(c.get('median_gradcam_vs_full_scorecam_r'))} |"
        )
    return "\n".join(lines)


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
    ap.add_argument("--runs", type=int, default=3, help="runs per fast / Grad-CAM timing (median)")
    ap.add_argument(
        "--pkg-runs", type=int, default=1, help="runs of the package's full ScoreCAM on B3"
    )
    ap.add_argument(
        "--full-runs", type=int, default=1, help="runs of multibone's full Score-CAM on B3"
    )
    ap.add_argument("--top-k", type=int, nargs="+", default=[32, 64, 128], help="surrogate budgets")
    ap.add_argument("--fidelity-images", type=int, default=2, help="held-out blob images (<= 2)")
    ap.add_argument("--train-steps", type=int, default=40)
    ap.add_argument(
        "--cache", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "multibone_bench_cam"
    )
    ap.add_argument("--json", type=Path, default=Path(__file__).with_name("results_cam.json"))
    ap.add_argument(
        "--only", nargs="+", default=None, help="subset of: tiny b3_random b3_trained radiograph"
    )
    ap.add_argument("--overlays", type=Path, default=None, help="also write overlay PNGs here")
    ap.add_argument("--summarize", type=Path, default=None, help="print tables of a results JSON")
    args = ap.parse_args(argv)
    if args.summarize:
        print(summarize(json.loads(args.summarize.read_text())))
        return 0
    torch.set_num_threads(args.threads)
    parts = args.only or (
        ["tiny"] if args.quick else ["tiny", "b3_random", "b3_trained", "radiograph"]
    )
    out = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}, "cases": []}
    print(json.dumps(out["machine"]), flush=True)

    tiny_variants = [("surrogate", 8), ("surrogate", 16), ("mean", 8), ("gradient", 8)]
    b3_variants = [("surrogate", k) for k in args.top_k] + [("mean", 64), ("gradient", 64)]
    if "tiny" in parts:
        from multibone.imaging import create_backbone, get_spec, list_backbones

        gen = torch.Generator().manual_seed(0)
        for name in [get_spec(t).family for t in list_backbones("*_tiny")]:
            layer = get_spec(f"{name}_tiny").cam_layer
            model = create_backbone(f"{name}_tiny", img_size=64, seed=0).eval()
            xs = [torch.randn(1, 3, 64, 64, generator=gen) for _ in range(2)]
            out["cases"].append(
                study(
                    f"{name} tiny 64px random init",
                    model,
                    layer,
                    xs,
                    None,
                    tiny_variants,
                    args.runs,
                    3,
                    3,
                )
            )
        for name in ("e3", "vit", "swin", "resnet50"):
            layer = get_spec(f"{name}_tiny").cam_layer
            model = train_blobs(
                lambda name=name: create_backbone(f"{name}_tiny", img_size=128, seed=0),
                f"tiny_{name}",
                128,
                80,
                16,
                1e-3,
                0.05,
                args.cache,
            )
            auc, logits = heldout(model, 128)
            _, _, ims, boxes = blob_batch(np.random.default_rng(7), 3, 128)
            case = study(
                f"{name} tiny 128px trained on blobs",
                model,
                layer,
                [to_input(i) for i in ims],
                boxes,
                tiny_variants,
                args.runs,
                3,
                3,
            )
            case["heldout_auc_64"], case["heldout_logits_64"] = auc, logits
            out["cases"].append(case)
    if "b3_random" in parts:
        model = _b3().eval()
        img, box = blob_image(np.random.default_rng(11), B3_SIZE, 1)
        out["cases"].append(
            study(
                f"{B3} {B3_SIZE}px random init",
                model,
                B3_LAYER,
                [to_input(img)],
                [box],
                b3_variants,
                args.runs,
                args.pkg_runs,
                args.full_runs,
            )
        )
    if "b3_trained" in parts or "radiograph" in parts or args.overlays:
        # plain Adam 1e-3, batch 8: a brief, overconfident model (logits of +-100)
        model = train_blobs(_b3, B3, B3_SIZE, args.train_steps, 8, 1e-3, 0.0, args.cache)
        if "b3_trained" in parts:
            auc, logits = heldout(model, B3_SIZE)
            print(f"held-out blob AUC {auc:.3f}; logits {logits}", flush=True)
            _, _, ims, boxes = blob_batch(np.random.default_rng(7), 8, B3_SIZE)
            pick = [1, 3][: args.fidelity_images]  # two label-1 images (class shown by the blob)
            case = study(
                f"{B3} {B3_SIZE}px trained on blobs",
                model,
                B3_LAYER,
                [to_input(ims[i]) for i in pick],
                [boxes[i] for i in pick],
                b3_variants,
                args.runs,
                0,
                args.full_runs,
            )
            case["heldout_auc_64"], case["heldout_logits_64"] = auc, logits
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
                    b3_variants,
                    args.runs,
                    0,
                    args.full_runs,
                )
            )
        if args.overlays:
            out["overlays"] = write_overlays(model, args.overlays, DEFAULT_TOP_K)
    out["machine"]["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    args.json.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
