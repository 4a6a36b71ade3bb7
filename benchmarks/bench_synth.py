"""Benchmark ``multibone synth``: time to write a cohort, and how separable its images are.

Usage::

    python benchmarks/bench_synth.py                      # 100 and 1000 patients, median of 3
    python benchmarks/bench_synth.py --proxy              # + image-only separability (logistic regression)
    python benchmarks/bench_synth.py --proxy --cnn 20     # + a tiny CNN trained for 20 epochs (CPU, minutes)

Writes the figures into ``benchmarks/RESULTS_synth.md`` (``--results`` to change),
naming the machine. Goal: 1,000 patients (about 1,900 images) in under 60 s.

Separability proxies (ROI crops with a 10 % margin, 64 x 64 px, read back with
``multibone.io``; both scored at patient level as the mean over a patient's images):

* ``--proxy``: logistic regression on 95 hand-made crop features (intensity
  percentiles, gradient and Laplacian percentiles, an 8 x 8 thumbnail), 5-fold
  patient-grouped cross-validation, out-of-fold AUC;
* ``--cnn EPOCHS``: a 3-block CNN (16-32-64 channels, ~65 k parameters), AdamW +
  one-cycle, flips; trained on a random 70 % of patients, AUC on the other 30 %.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _cpu_seconds() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()}-core CPU sandbox ({model}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, numpy {np.__version__}"
    )


def time_synth(n: int, repeats: int, workers: int, seed: int = 0) -> dict[str, float]:
    from multibone.synthetic import make_synthetic_cohort

    walls, cpus, n_images = [], [], 0
    with tempfile.TemporaryDirectory(prefix="bench_synth_") as tmp:
        for r in range(repeats):
            out = Path(tmp) / f"c{r}"
            load0 = os.getloadavg()[0]
            c0, t0 = _cpu_seconds(), time.perf_counter()
            manifest = make_synthetic_cohort(out, n, seed=seed, progress=False, workers=workers)
            walls.append(time.perf_counter() - t0)
            cpus.append(_cpu_seconds() - c0)
            n_images = sum(1 for _ in open(manifest)) - 1
            print(
                f"  n={n} run {r + 1}: {walls[-1]:.1f} s wall, {cpus[-1]:.1f} s CPU, "
                f"{n_images} images (load avg before {load0:.1f})",
                flush=True,
            )
            shutil.rmtree(out)
    return {
        "n": n,
        "images": n_images,
        "wall_median": statistics.median(walls),
        "wall_min": min(walls),
        "cpu_median": statistics.median(cpus),
        "ms_per_image_cpu": 1000 * statistics.median(cpus) / max(n_images, 1),
    }


def load_crops(root: Path, size: int = 64) -> dict[str, np.ndarray]:
    import pandas as pd
    from PIL import Image

    from multibone.io import read_radiograph

    m = pd.read_csv(root / "manifest.csv", keep_default_na=False)
    x = np.zeros((len(m), size, size), np.float32)
    for k, r in enumerate(m.itertuples()):
        px = read_radiograph(root / r.image_path).pixels
        x0, y0, x1, y1 = r.roi_x0, r.roi_y0, r.roi_x1, r.roi_y1
        mx, my = int(0.1 * (x1 - x0)), int(0.1 * (y1 - y0))
        crop = px[max(0, y0 - my) : y1 + my, max(0, x0 - mx) : x1 + mx]
        x[k] = np.asarray(Image.fromarray(crop).resize((size, size), Image.BILINEAR))
    return {
        "x": x,
        "y": (m.diagnosis == "infection").to_numpy(int),
        "pid": m.patient_id.to_numpy(),
        "center": m.center.to_numpy(),
        "location": m.location.to_numpy(),
    }


def _patient_auc(pid, y, score, center) -> dict[str, float]:
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    df = pd.DataFrame({"pid": pid, "y": y, "s": score, "c": center})
    pat = df.groupby("pid").agg(y=("y", "first"), s=("s", "mean"), c=("c", "first"))
    out = {"image": roc_auc_score(y, score), "patient": roc_auc_score(pat.y, pat.s)}
    for c, g in pat.groupby("c"):
        out[f"centre {c}"] = roc_auc_score(g.y, g.s)
    return out


def proxy_logistic(d: dict[str, np.ndarray]) -> dict[str, float]:
    from scipy import ndimage
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def feats(x: np.ndarray) -> np.ndarray:
        g = np.hypot(ndimage.sobel(x, 0), ndimage.sobel(x, 1))
        lap = np.abs(ndimage.laplace(x))
        small = x.reshape(8, 8, 8, 8).mean((1, 3)).ravel()
        c = x[16:48, 16:48]
        return np.r_[
            np.percentile(x, [5, 25, 50, 75, 95]),
            np.percentile(g, [50, 90, 99]),
            np.percentile(lap, [50, 90, 99]),
            x.std(),
            c.mean() - x.mean(),
            c.std(),
            small - small.mean(),
        ]

    f = np.array([feats(x) for x in d["x"]])
    oof = np.zeros(len(f))
    for tr, te in GroupKFold(5).split(f, d["y"], d["pid"]):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.3, max_iter=2000))
        clf.fit(f[tr], d["y"][tr])
        oof[te] = clf.predict_proba(f[te])[:, 1]
    return _patient_auc(d["pid"], d["y"], oof, d["center"])


def proxy_cnn(d: dict[str, np.ndarray], epochs: int, seed: int = 0) -> dict[str, float]:
    import torch
    from torch import nn

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    pids = np.unique(d["pid"])
    test_p = set(rng.choice(pids, size=int(0.3 * len(pids)), replace=False))
    te = np.array([p in test_p for p in d["pid"]])
    tr = ~te
    mu, sd = d["x"][tr].mean(), d["x"][tr].std()
    xt = torch.tensor((d["x"] - mu) / sd)[:, None]
    yt = torch.tensor(d["y"], dtype=torch.float32)

    def block(i: int, o: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(),
            nn.Conv2d(o, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(),
            nn.MaxPool2d(2),
        )  # fmt: skip

    net = nn.Sequential(
        block(1, 16), block(16, 32), block(32, 64),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3), nn.Linear(64, 1),
    )  # fmt: skip
    opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-3)
    idx = np.where(tr)[0]
    steps = int(epochs * ((len(idx) + 63) // 64))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=steps)
    for _ in range(epochs):
        rng.shuffle(idx)
        for b in range(0, len(idx), 64):
            j = idx[b : b + 64]
            x = xt[j]
            if rng.random() < 0.5:
                x = x.flip(3)
            if rng.random() < 0.5:
                x = x.flip(2)
            loss = nn.functional.binary_cross_entropy_with_logits(net(x).squeeze(1), yt[j])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    with torch.no_grad():
        x = xt[te]
        logits = ((net(x) + net(x.flip(3))) / 2).squeeze(1).numpy()
    return _patient_auc(d["pid"][te], d["y"][te], logits, d["center"][te])


def proxy_clinical(n: int = 4000, seed: int = 1) -> dict[str, float]:
    """Clinical-only vs latent-evidence-only vs both (logistic regression, 5-fold CV).

    Uses the clinical table and the latent lesion evidence (no images), so it shows
    how much combining the two can add when the image model is perfect.
    """
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import cross_val_predict

    from multibone.synthetic.clinical import synthetic_patients
    from multibone.synthetic.writer import patient_lesion

    t = synthetic_patients(n, seed=seed)
    y = (t.diagnosis == "infection").to_numpy(int)
    x = pd.DataFrame(
        {"age": t.age / 50.0, "male": (t.sex == "M") * 1, "axial": (t.location == "axial") * 1}
    )
    for lab in ("crp", "esr"):
        x[f"{lab}_abnormal"] = (t[f"{lab}_status"] == "abnormal") * 1
        x[f"{lab}_missing"] = (t[f"{lab}_status"] == "missing") * 1
    s = np.array(
        [
            patient_lesion(seed, i, r.diagnosis, r.subtype, 0.5).evidence
            for i, r in enumerate(t.itertuples())
        ]
    )

    def cv_auc(features: pd.DataFrame) -> float:
        lr = LogisticRegression(max_iter=1000)
        p = cross_val_predict(lr, features, y, cv=5, method="predict_proba")[:, 1]
        return float(roc_auc_score(y, p))

    return {
        "clinical only": cv_auc(x),
        "lesion evidence only": float(roc_auc_score(y, -s)),
        "clinical + lesion evidence": cv_auc(x.assign(evidence=s)),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--proxy", action="store_true", help="logistic-regression separability proxy")
    ap.add_argument("--cnn", type=int, default=0, metavar="EPOCHS", help="tiny-CNN proxy epochs")
    ap.add_argument("--proxy-patients", type=int, default=1000)
    ap.add_argument("--results", type=Path, default=HERE / "RESULTS_synth.md")
    args = ap.parse_args(argv)

    from multibone.synthetic import evidence_ceiling_auc

    machine = _machine()
    print(machine, flush=True)
    rows = [time_synth(n, args.repeats, args.workers) for n in args.sizes]

    proxies: dict[str, dict[str, float]] = {}
    if args.proxy or args.cnn:
        from multibone.synthetic import make_synthetic_cohort

        with tempfile.TemporaryDirectory(prefix="bench_synth_proxy_") as tmp:
            root = Path(tmp) / "cohort"
            make_synthetic_cohort(
                root, args.proxy_patients, seed=0, progress=False, workers=args.workers
            )
            data = load_crops(root)
        if args.proxy:
            t0 = time.perf_counter()
            proxies["logistic regression, crop features, 5-fold OOF"] = proxy_logistic(data)
            print(f"  logistic proxy {time.perf_counter() - t0:.0f} s", flush=True)
        if args.cnn:
            t0 = time.perf_counter()
            proxies[f"tiny CNN 64 px, {args.cnn} epochs, 30 % held-out patients"] = proxy_cnn(
                data, args.cnn
            )
            print(f"  CNN proxy {time.perf_counter() - t0:.0f} s", flush=True)

    lines = [
        "## Synthetic cohort (`multibone synth`)",
        "",
        f"Machine: {machine}. Shared with other jobs while measured: load averages are "
        "printed per run by the script; wall times on a busy machine are upper bounds, "
        "CPU seconds are the steadier figure.",
        "",
        f"`make_synthetic_cohort(..., workers={args.workers})`, default difficulty 0.5, "
        f"median of {args.repeats} runs:",
        "",
        "| patients | images | wall s (median) | wall s (min) | CPU s (median) | CPU ms / image |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']} | {r['images']} | {r['wall_median']:.1f} | {r['wall_min']:.1f} | "
            f"{r['cpu_median']:.1f} | {r['ms_per_image_cpu']:.1f} |"
        )
    big = [r for r in rows if r["n"] == 1000]
    if big:
        b = big[0]
        ok = "met" if b["wall_median"] < 60 else "not met on this (busy) machine"
        idle = b["cpu_median"] / max(1, min(args.workers, os.cpu_count() or 1))
        lines += [
            "",
            f"Goal 1,000 patients < 60 s: {ok} (median wall {b['wall_median']:.1f} s). "
            f"CPU work is {b['cpu_median']:.1f} s, i.e. about {idle:.0f} s of wall time on "
            f"{args.workers} otherwise idle cores.",
        ]
    if proxies:
        lines += [
            "",
            f"Image-only separability at difficulty 0.5 ({args.proxy_patients} patients; "
            f"perfect observer of the latent lesion evidence: AUC {evidence_ceiling_auc(0.5):.3f}; "
            "crops also show the anatomy, which carries location information):",
            "",
            "| proxy | image AUC | patient AUC | centre A | centre B | centre C |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, p in proxies.items():
            lines.append(
                f"| {name} | {p['image']:.3f} | {p['patient']:.3f} | {p.get('centre A', float('nan')):.3f} | "
                f"{p.get('centre B', float('nan')):.3f} | {p.get('centre C', float('nan')):.3f} |"
            )
    if args.proxy:
        clin = proxy_clinical()
        lines += [
            "",
            "Clinical table vs latent lesion evidence (4,000 patients, logistic regression, "
            "5-fold CV; no images): "
            + "; ".join(f"{k} AUC {v:.3f}" for k, v in clin.items())
            + ". The two are independent given the label, so combining them helps.",
        ]
    text = "\n".join(lines) + "\n"
    args.results.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
