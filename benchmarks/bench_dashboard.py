"""Dashboard latency: how long a clinician waits after pressing "Compute the result".

Times, on the machine it runs on (CPU unless torch sees a GPU):

* ``load_bundle`` cold (first call in a fresh Python process; it verifies every file's
  hash), the loading of backbones and stacker that the dashboard then does once per
  process (``st.cache_resource``), and ``load_bundle`` warm (again in the same process);
* ``predict_case``, ``explain_case`` (Score-CAM for every backbone, and with Grad-CAM
  too) and ``case_report_html`` on a demo case, first call and median of ``--repeats``;
* the button-to-result total (predict + explain + report), the number the issue bounds
  by 3 s.

The demo case is a held-out patient of the synthetic cohort next to the bundle, read
through the same helpers the dashboard uses. Usage::

    python benchmarks/bench_dashboard.py [--bundle runs/demo/bundle] [--repeats 5] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from multibone.app import logic

REPO = Path(__file__).resolve().parents[1]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"{cpu}, {cores} usable cores, torch {torch.__version__} with {torch.get_num_threads()} "
        f"threads, {gpu}, Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


_COLD = """
import json, time, sys
t0 = time.perf_counter()
import torch
if int(sys.argv[2]) > 0:
    torch.set_num_threads(int(sys.argv[2]))
from multibone import pipeline
from multibone.bundle import load_bundle
t1 = time.perf_counter()
b = load_bundle(sys.argv[1])
t2 = time.perf_counter()
from multibone.case import runtime
runtime(b)
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "load_bundle": t2 - t1, "warm_up": t3 - t2}))
"""


def cold_load(bundle: Path, threads: int | None) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _COLD, str(bundle), str(threads or 0)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def demo_case(bundle, pipeline, index: int = 0):
    manifest = logic.find_demo_manifest(bundle.path)
    splits = logic.find_run_splits(bundle.path) if manifest else None
    demo = logic.demo_case_from_manifest(manifest or logic.make_demo_manifest(), index, splits)
    images = []
    for i, ((name, data), box) in enumerate(zip(demo.images, demo.boxes, strict=True), start=1):
        img = logic.decode_image_bytes(data, name, f"image {i}")
        images.append(
            pipeline.CaseImage(pixels=img.pixels, roi=box, label=f"image {i} ({img.format})")
        )
    f = demo.fields
    fields = {
        "age": f["age"],
        "sex": f["sex"],
        "site": f["site"],
        "location": f["location"],
        "crp": logic.lab_value(f["crp_mode"], f["crp"]),
        "esr": logic.lab_value(f["esr_mode"], f["esr"]),
    }
    return pipeline.case_from_fields(fields, images)


def several_cases(bundle, pipeline, n_cases: int, repeats: int) -> list[dict]:
    """Button to full result for ``n_cases`` held-out demo patients (the dashboard's path:
    predict, then SHAP + Score-CAM for every backbone and image, then the HTML report), and
    the PDF case report made from it; per case the median of ``repeats`` runs after a
    first call. One throw-away case first, as the dashboard's warm-up does."""
    from multibone.export.pdf import case_report_pdf

    rows = []
    warm = demo_case(bundle, pipeline, n_cases)  # not one of the measured cases
    pipeline.explain_case(bundle, warm, cam_methods=("scorecam",))
    for i in range(n_cases):
        case = demo_case(bundle, pipeline, i)

        def full(case=case):
            t0 = time.perf_counter()
            result = pipeline.predict_case(bundle, case)
            t1 = time.perf_counter()
            expl = pipeline.explain_case(bundle, case, cam_methods=("scorecam",), result=result)
            pipeline.case_report_html(case, result, expl)
            return time.perf_counter() - t0, t1 - t0, result, expl

        first, _, _, _ = full()
        runs = [full() for _ in range(repeats)]
        result, expl = runs[-1][2], runs[-1][3]
        pdf_times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            case_report_pdf(case, result, expl, operating_point="youden",
                            bundle_hash=bundle.hash, synthetic=True)
            pdf_times.append(time.perf_counter() - t0)
        rows.append({
            "case": i,
            "n_images": len(case.images),
            "first_s": first,
            "probability_s": statistics.median(r[1] for r in runs),
            "full_result_s": statistics.median(r[0] for r in runs),
            "pdf_s": statistics.median(pdf_times),
        })
    return rows


def timed(fn, repeats: int) -> tuple[float, float, list[float], object]:
    """(first call s, median of the next ``repeats`` calls s, all times, last result)."""
    times = []
    result = None
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return times[0], statistics.median(times[1:]), times, result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--bundle", type=Path, default=None, help="bundle folder (default: as the dashboard)"
    )
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads (default: what the dashboard sets, logic.torch_threads())",
    )
    ap.add_argument(
        "--cases",
        type=int,
        default=0,
        help="also time the full result (and the PDF) on this many held-out demo patients",
    )
    args = ap.parse_args(argv)
    threads = args.threads or logic.torch_threads()
    if threads:
        import torch

        torch.set_num_threads(threads)

    from multibone import pipeline
    from multibone.bundle import load_bundle

    loc = logic.locate_bundle(
        str(args.bundle) if args.bundle else None, default_run=pipeline.DEFAULT_DEMO_RUN
    )
    if not loc.exists:
        print(f"no bundle at {loc.path}: run 'multibone demo' first", file=sys.stderr)
        return 2
    cold = cold_load(loc.path, threads)
    warm_first, warm_med, _, bundle = timed(lambda: load_bundle(loc.path), args.repeats)
    from multibone.case import runtime

    runtime(bundle)  # the dashboard does this once, inside st.cache_resource
    case = demo_case(bundle, pipeline)
    p_first, p_med, p_all, result = timed(lambda: pipeline.predict_case(bundle, case), args.repeats)
    e_first, e_med, e_all, expl = timed(
        lambda: pipeline.explain_case(bundle, case, cam_methods=("scorecam",)), args.repeats
    )
    g_first, g_med, _, _ = timed(
        lambda: pipeline.explain_case(bundle, case, cam_methods=("scorecam", "gradcam")),
        args.repeats,
    )
    r_first, r_med, _, _ = timed(
        lambda: pipeline.case_report_html(case, result, expl), args.repeats
    )
    totals = [p + e for p, e in zip(p_all[1:], e_all[1:], strict=True)]
    total_med = statistics.median(totals) + r_med
    first_total = p_first + e_first + r_first
    rows = [
        ("import torch + multibone.pipeline (fresh process)", cold["import"], None),
        ("load_bundle, cold (fresh process; verifies every SHA-256)", cold["load_bundle"], None),
        ("loading backbones + stacker after load (fresh process)", cold["warm_up"], None),
        ("load_bundle, warm (same process)", warm_first, warm_med),
        ("predict_case", p_first, p_med),
        ("explain_case, Score-CAM all backbones", e_first, e_med),
        ("explain_case, Score-CAM + Grad-CAM", g_first, g_med),
        ("case_report_html", r_first, r_med),
        ("button to result (predict + explain + report)", first_total, total_med),
    ]
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    info = {
        "machine": machine(),
        "load_average_1_5_15": [round(x, 2) for x in load],
        "bundle": str(loc.path),
        "backbones": bundle.backbones,
        "n_images": len(case.images),
        "image_shapes": [list(im.pixels.shape) for im in case.images],
        "repeats": args.repeats,
        "torch_threads": threads or "torch default",
        "probability": float(result.probability),
    }
    if args.markdown:
        print(f"Machine: {info['machine']}  ")
        print(f"Load average at the end (1, 5, 15 min): {info['load_average_1_5_15']}  ")
        print(
            f"Bundle: `{info['bundle']}` (backbones {', '.join(info['backbones'])}); demo case with "
            f"{info['n_images']} image(s) {info['image_shapes']}; torch threads: "
            f"{info['torch_threads']}; median of {args.repeats} runs after a first call.\n"
        )
        print("| step | first call (s) | median (s) |")
        print("|---|---:|---:|")
        for name, first, med in rows:
            print(f"| {name} | {first:.3f} | {'' if med is None else f'{med:.3f}'} |")
    cases = several_cases(bundle, pipeline, args.cases, args.repeats) if args.cases else []
    if cases and args.markdown:
        print(f"\nSeveral cases ({len(cases)} held-out patients; per case the median of "
              f"{args.repeats} runs after a first call):\n")
        print("| case | images | first call (s) | probability (s) | full result (s) | PDF (s) |")
        print("|---:|---:|---:|---:|---:|---:|")
        for c in cases:
            print(f"| {c['case']} | {c['n_images']} | {c['first_s']:.3f} | "
                  f"{c['probability_s']:.3f} | {c['full_result_s']:.3f} | {c['pdf_s']:.3f} |")
        med = {k: statistics.median(c[k] for c in cases)
               for k in ("first_s", "probability_s", "full_result_s", "pdf_s")}
        print(f"| **median** | | {med['first_s']:.3f} | {med['probability_s']:.3f} | "
              f"**{med['full_result_s']:.3f}** | {med['pdf_s']:.3f} |")
    if not args.markdown:
        info["seconds"] = {name: {"first": first, "median": med} for name, first, med in rows}
        info["cases"] = cases
        print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
