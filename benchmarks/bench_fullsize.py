"""Paper-size latency: predict and the dashboard case on a full-size bundle, and the levers.

Needs a bundle from ``benchmarks/make_fullsize_bundle.py`` (EfficientNet-B3/B4,
ViT-B/16, Swin-B at 224 px, 5 folds each, random weights) and a cohort for images.

Parts (``--parts``, comma-separated):

* ``cold``: a fresh ``multibone predict`` process, one image and one patient with three
  views (torch engine; onnx too when ``BUNDLE-onnx`` exists);
* ``warm``: the same in one process with models loaded (``predict_case``), threads 1 and 2;
* ``levers``: per backbone, the 5 fold models on 3 views: fold-by-fold batches (what
  ImageScorer does), ``torch.func`` vmap over the stacked fold weights, channels_last,
  dynamic int8 quantisation of Linear layers (kept only if probabilities stay within
  1e-3 of fp32), and ONNX Runtime on a one-fold export;
* ``dashboard``: one case end to end as the dashboard runs it: probability, SHAP of the
  stacker, fast Score-CAM for every backbone (averaged over its 5 folds), one image.

    python benchmarks/bench_fullsize.py --bundle /tmp/full/bundle --cohort runs/demo/cohort \\
        --repeats 3 --json full.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path


def _views(cohort: Path, n: int) -> tuple[list[tuple[str, tuple]], dict]:
    import pandas as pd

    m = pd.read_csv(cohort / "manifest.csv")
    rows = m.head(n)
    clin = m.iloc[0]
    views = [(str(cohort / r.image_path), (int(r.roi_x0), int(r.roi_y0), int(r.roi_x1), int(r.roi_y1)))
             for r in rows.itertuples()]
    return views, {"age": float(clin.age), "sex": str(clin.sex), "site": str(clin.site)}


def _median_time(fn, repeats: int) -> float:
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def cold(bundle: Path, cohort: Path, repeats: int) -> list[dict]:
    views, clin = _views(cohort, 3)
    engines = ["torch"] + (["onnx"] if (bundle.parent / (bundle.name + "-onnx")).is_dir() else [])
    rows = []
    for n in (1, 3):
        for engine in engines:
            cmd = [sys.executable, "-m", "multibone.cli", "predict", "--bundle", str(bundle),
                   "--age", str(clin["age"]), "--sex", clin["sex"], "--site", clin["site"],
                   "--engine", engine, "--threads", "2"]
            for path, roi in views[:n]:
                cmd += ["--image", path, "--roi", ",".join(map(str, roi))]

            def once(cmd=cmd):
                r = subprocess.run(cmd, capture_output=True, text=True)
                if r.returncode:
                    raise SystemExit(r.stderr[-2000:])

            rows.append({"part": "cold", "views": n, "engine": engine,
                         "median_s": round(_median_time(once, repeats), 2)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def _case(cohort: Path, n: int):
    from multibone.case import Case, read_case_image

    views, clin = _views(cohort, n)
    ims = [read_case_image(p, roi, label=f"image {i + 1}") for i, (p, roi) in enumerate(views)]
    return Case(images=ims, age=clin["age"], sex=clin["sex"], site=clin["site"])


def warm(bundle_dir: Path, cohort: Path, repeats: int) -> list[dict]:
    from multibone import case as C
    from multibone.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    rows = []
    for threads in (1, 2):
        C.ENGINE_SETTINGS.update(engine="torch", threads=threads)
        C._RUNTIMES.clear()
        t = time.perf_counter()
        C.runtime(bundle)
        load_s = time.perf_counter() - t
        for n in (1, 3):
            case = _case(cohort, n)
            C.predict_case(bundle, case)  # warm-up
            s = _median_time(lambda case=case: C.predict_case(bundle, case), repeats)
            rows.append({"part": "warm", "views": n, "threads": threads, "median_s": round(s, 2),
                         "model_load_s": round(load_s, 1)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def levers(bundle_dir: Path, cohort: Path, repeats: int, threads: int) -> list[dict]:
    import torch

    torch.set_num_threads(threads)
    case = _case(cohort, 3)
    weights = bundle_dir / "backbones"
    rows = []
    for b in sorted(p.name for p in weights.iterdir() if p.is_dir()):
        rows.append(_levers_one(weights, b, case, repeats, threads))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _levers_one(weights: Path, b: str, case, repeats: int, threads: int) -> dict:
    import torch
    from torch.func import functional_call, stack_module_state

    from multibone.imaging.data import preprocess
    from multibone.imaging.folds import fold_numbers, load_fold
    from multibone.io import crop_roi

    folds = [load_fold(weights, b, k) for k in fold_numbers(weights, b)]
    meta = folds[0][1]
    crops = [crop_roi(im.pixels, im.roi, margin=meta["crop_margin"]) for im in case.images]
    x = preprocess(crops, meta)
    models = [m for m, _ in folds]
    row = {"part": "levers", "backbone": b, "arch": meta["arch"], "folds": len(models),
           "images": x.shape[0], "threads": threads}

    def per_fold():
        return torch.stack([m(x).reshape(-1) for m in models])

    with torch.inference_mode():
        ref = per_fold()
        row["per_fold_s"] = _median_time(per_fold, repeats)
        xl = x.contiguous(memory_format=torch.channels_last)
        cl = [copy.deepcopy(m).to(memory_format=torch.channels_last) for m in models]
        row["channels_last_s"] = _median_time(lambda: [m(xl) for m in cl], repeats)
        cl = None

    try:  # one vmapped call over the 5 stacked fold models
        params, buffers = stack_module_state(models)
        base = copy.deepcopy(models[0]).to("meta")

        def one(p, bu, xx):
            return functional_call(base, (p, bu), (xx,))

        def vmapped():
            return torch.vmap(one, in_dims=(0, 0, None))(params, buffers, x)

        with torch.inference_mode():
            out = vmapped().reshape(len(models), -1)
            row["vmap_max_abs_diff"] = float((out - ref).abs().max())
            row["vmap_s"] = _median_time(vmapped, repeats)
    except Exception as exc:  # noqa: BLE001 - some layers do not vmap; say which
        row["vmap_s"] = None
        row["vmap_error"] = f"{type(exc).__name__}: {str(exc)[:120]}"
    params = buffers = None

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = [torch.ao.quantization.quantize_dynamic(copy.deepcopy(m), {torch.nn.Linear},
                                                    dtype=torch.qint8) for m in models]
    with torch.inference_mode():
        qout = torch.stack([m(x).reshape(-1) for m in q])
        row["int8_max_prob_diff"] = float((torch.sigmoid(qout) - torch.sigmoid(ref)).abs().max())
        row["int8_s"] = _median_time(lambda: [m(x) for m in q], repeats)
    row["int8_ok"] = row["int8_max_prob_diff"] <= 1e-3
    q = None

    try:
        import onnxruntime as ort

        from multibone.imaging.onnx_export import export_onnx
        from multibone.imaging.onnx_runtime import OnnxScorer

        with tempfile.TemporaryDirectory() as tmp:
            single = Path(tmp) / "w"
            (single / b).mkdir(parents=True)
            for suffix in ("json", "safetensors"):
                os.symlink(weights / b / f"fold0.{suffix}", single / b / f"fold0.{suffix}")
            export_onnx(single, [b], Path(tmp) / "onnx", bundle_hash="bench")
            sc = OnnxScorer.from_dir(Path(tmp) / "onnx", [b], bundle_hash="bench", threads=threads)
            sess = sc._sessions[b][0][0]
            xn = x.numpy()
            sess.run(None, {"input": xn})
            one_model = _median_time(lambda: sess.run(None, {"input": xn}), repeats)
            row["onnx_s"] = one_model * len(models)  # 5 sessions of the same architecture
            row["onnxruntime"] = ort.__version__
    except ImportError:
        row["onnx_s"] = None
    return row


def dashboard(bundle_dir: Path, cohort: Path, threads: int) -> list[dict]:
    from multibone import case as C
    from multibone.bundle import load_bundle

    C.ENGINE_SETTINGS.update(engine="torch", threads=threads)
    C._RUNTIMES.clear()
    bundle = load_bundle(bundle_dir)
    case = _case(cohort, 1)
    t = time.perf_counter()
    C.runtime(bundle)
    load = time.perf_counter() - t
    t = time.perf_counter()
    res = C.predict_case(bundle, case)
    pred = time.perf_counter() - t
    t = time.perf_counter()
    expl = C.explain_case(bundle, case, cam_methods=("scorecam",), fast=True, result=res)
    total_expl = time.perf_counter() - t
    cams = {v.backbone: round(v.seconds, 1) for v in expl.cams}
    row = {"part": "dashboard", "threads": threads, "model_load_s": round(load, 1),
           "predict_s": round(pred, 2), "explain_s": round(total_expl, 1),
           "shap_and_waterfall_s": round(total_expl - sum(v.seconds for v in expl.cams), 1),
           "scorecam_s_per_backbone": cams, "end_to_end_s": round(pred + total_expl, 1)}
    print(json.dumps(row), flush=True)
    return [row]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--cohort", type=Path, required=True, help="cohort folder with manifest.csv")
    ap.add_argument("--parts", default="warm,levers,cold,dashboard")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    rows: list[dict] = []
    for part in a.parts.split(","):
        if part == "cold":
            rows += cold(a.bundle, a.cohort, a.repeats)
        elif part == "warm":
            rows += warm(a.bundle, a.cohort, a.repeats)
        elif part == "levers":
            rows += levers(a.bundle, a.cohort, a.repeats, a.threads)
        elif part == "dashboard":
            rows += dashboard(a.bundle, a.cohort, a.threads)
        if a.json:
            a.json.write_text(json.dumps({"cpus": os.cpu_count(), "rows": rows}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
