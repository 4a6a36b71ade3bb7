"""``multibone explain``: SHAP and Score-CAM / Grad-CAM for one case."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from multibone.cli._case_args import add_case_arguments, case_from_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Explain one case: SHAP contributions of every clinical feature and backbone score to "
        "the stacker (waterfall PNG), and class activation maps of every backbone on every image "
        "(overlay PNGs). Writes OUT/explanation.json with the values and the CAM timings."
    )
    add_case_arguments(p, allow_cases=False)
    p.add_argument("--out", required=True, help="folder for the PNGs and explanation.json")
    p.add_argument("--method", action="append", choices=["scorecam", "gradcam"],
                   help="CAM method (repeat for both; default scorecam)")
    p.add_argument("--full", action="store_true",
                   help="full Score-CAM over every channel (slow on a CPU) instead of the fast top-k")
    p.add_argument("--force", action="store_true", help="write into an existing --out folder")


def run(args: argparse.Namespace) -> int:
    from multibone._atomic import atomic_dir
    from multibone.bundle import load_bundle
    from multibone.case import case_report_html, explain_case, predict_case

    bundle = load_bundle(args.bundle, trust_pickle=args.trust_pickle)
    case = case_from_args(args, bundle)
    methods = tuple(args.method or ["scorecam"])
    result = predict_case(bundle, case)
    expl = explain_case(bundle, case, cam_methods=methods, fast=not args.full, result=result)
    with atomic_dir(Path(args.out), force=args.force) as tmp:
        (tmp / "shap_waterfall.png").write_bytes(expl.waterfall_png)
        cams = []
        for v in expl.cams:
            name = f"cam_image{v.image_index + 1}_{v.backbone}_{v.method}.png"
            (tmp / name).write_bytes(v.overlay_png)
            cams.append({"image": v.image_index + 1, "backbone": v.backbone, "method": v.method,
                         "seconds": round(v.seconds, 4), "file": name, "note": v.note})
        s = expl.shap
        payload = {
            "prediction": result.to_json(),
            "shap": {
                "explainer": s.explainer_name,
                "output_space": s.output_space,
                "base_value": float(s.base_value),
                "values": dict(zip(s.feature_names, map(float, s.values[0]), strict=True)),
                "note": getattr(s, "note", ""),
            },
            "sentences": expl.sentences,
            "cams": cams,
        }
        (tmp / "explanation.json").write_text(json.dumps(payload, indent=2), encoding="utf-8")
        (tmp / "case_report.html").write_text(case_report_html(case, result, expl), encoding="utf-8")
    print(json.dumps({"out": str(args.out), "files": ["shap_waterfall.png", "explanation.json",
                      "case_report.html", *[c["file"] for c in cams]]}, indent=2))
    return 0
