"""Speed where people wait: ``multibone predict`` cold start and worklist throughput.

Two parts, both on an existing bundle and a manifest-format CSV of cases:

* ``cold``: wall time of a fresh ``python -m multibone.cli predict`` process scoring one
  case (import + bundle load + scoring), per engine (torch, onnx) and, with
  ``--before SRC``, for an older source tree (e.g. ``git archive <commit> | tar -x``) on
  the same bundle. Runs are interleaved (A B A B ...) so load from other jobs hits
  all variants alike; medians of ``--repeats``.
* ``worklist``: patients/s in one process, models already loaded: one
  :func:`multibone.case.predict_case` call per patient (what ``predict --cases`` did
  before) vs :func:`multibone.case.predict_cases` in chunks (one forward pass per fold
  model per chunk), per engine and thread count. Medians of ``--repeats``.

    python benchmarks/bench_predict.py --bundle runs/demo/bundle \\
        --cases runs/demo/cohort/manifest.csv --patients 60 --repeats 3 --json out.json

An ONNX export must exist for the onnx rows (``multibone export-onnx --bundle B``).
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


def _case_args(manifest: Path) -> list[str]:
    import pandas as pd

    m = pd.read_csv(manifest)
    g = m[m["patient_id"] == m["patient_id"].iloc[0]]
    r0 = g.iloc[0]
    args = ["--age", str(r0.age), "--sex", str(r0.sex), "--site", str(r0.site)]
    for r in g.itertuples():
        args += ["--image", str(manifest.parent / r.image_path),
                 "--roi", f"{r.roi_x0},{r.roi_y0},{r.roi_x1},{r.roi_y1}"]
    return args


def cold(bundle: Path, manifest: Path, repeats: int, before: Path | None, threads: int) -> list[dict]:
    case = _case_args(manifest)
    variants = {
        "torch": (None, ["--engine", "torch", "--threads", str(threads)]),
        "onnx": (None, ["--engine", "onnx", "--threads", str(threads)]),
    }
    if before is not None:
        variants["before (torch)"] = (before, [])
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(repeats):
        for name, (src, extra) in variants.items():
            env = dict(os.environ)
            if src is not None:
                env["PYTHONPATH"] = str(src / "src")
            cmd = [sys.executable, "-m", "multibone.cli", "predict", "--bundle", str(bundle), *case, *extra]
            t = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, text=True, env=env)
            dt = time.perf_counter() - t
            if r.returncode != 0:
                raise SystemExit(f"{name}: predict failed:\n{r.stderr[-2000:]}")
            times[name].append(dt)
    return [{"part": "cold", "variant": k, "median_s": statistics.median(v), "runs_s": v}
            for k, v in times.items()]


def _cases(manifest: Path, n: int):
    import pandas as pd

    from multibone.case import Case, CaseImage
    from multibone.io import read_radiograph

    m = pd.read_csv(manifest)
    out = []
    for _pid, g in list(m.groupby("patient_id", sort=False))[:n]:
        r0 = g.iloc[0]
        ims = [CaseImage(read_radiograph(manifest.parent / r.image_path).pixels,
                         (int(r.roi_x0), int(r.roi_y0), int(r.roi_x1), int(r.roi_y1)))
               for r in g.itertuples()]
        out.append(Case(images=ims, age=float(r0.age), sex=str(r0.sex), site=str(r0.site)))
    return out


def worklist(bundle_dir: Path, manifest: Path, n: int, repeats: int, engines: list[str],
             threads: list[int], chunk: int) -> list[dict]:
    from multibone import case as C
    from multibone.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    cases = _cases(manifest, n)
    n_images = sum(len(c.images) for c in cases)
    rows = []
    for engine in engines:
        for th in threads:
            C.ENGINE_SETTINGS.update(engine=engine, threads=th)
            C._RUNTIMES.clear()
            C.predict_cases(bundle, cases[:2])  # load models, warm up
            per, bat = [], []
            for _ in range(repeats):
                t = time.perf_counter()
                for c in cases:
                    C.predict_case(bundle, c)
                per.append(time.perf_counter() - t)
                t = time.perf_counter()
                for s in range(0, len(cases), chunk):
                    C.predict_cases(bundle, cases[s : s + chunk])
                bat.append(time.perf_counter() - t)
            p, b = statistics.median(per), statistics.median(bat)
            rows.append({"part": "worklist", "engine": engine, "threads": th, "patients": len(cases),
                         "images": n_images, "per_patient_pps": len(cases) / p,
                         "batched_pps": len(cases) / b, "speedup": p / b})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--cases", type=Path, required=True, help="manifest-format CSV (images + clinical)")
    ap.add_argument("--patients", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=32)
    ap.add_argument("--engines", default="torch,onnx")
    ap.add_argument("--threads", default="1,2", help="thread counts for the worklist part")
    ap.add_argument("--cold-threads", type=int, default=2)
    ap.add_argument("--before", type=Path, default=None, help="older source tree for the cold part")
    ap.add_argument("--parts", default="cold,worklist")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    rows: list[dict] = []
    parts = a.parts.split(",")
    if "cold" in parts:
        rows += cold(a.bundle, a.cases, a.repeats, a.before, a.cold_threads)
    if "worklist" in parts:
        rows += worklist(a.bundle, a.cases, a.patients, a.repeats, a.engines.split(","),
                         [int(t) for t in a.threads.split(",")], a.chunk)
    for r in rows:
        print(json.dumps(r))
    if a.json:
        a.json.write_text(json.dumps({"machine": platform.platform(), "cpus": os.cpu_count(),
                                      "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
