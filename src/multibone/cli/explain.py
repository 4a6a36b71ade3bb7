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
        "(overlay PNGs). Writes OUT/explanation.json with the values and the CAM timings, and the case "
        "report as case_report.html and case_report.pdf (no DICOM header field in either). "
        "With --dicom-out DIR, also DICOM objects for PACS (see --dicom-out)."
    )
    add_case_arguments(p, allow_cases=False)
    p.add_argument("--out", required=True, help="folder for the PNGs and explanation.json")
    p.add_argument("--method", action="append", choices=["scorecam", "gradcam"],
                   help="CAM method (repeat for both; default scorecam)")
    p.add_argument("--full", action="store_true",
                   help="full Score-CAM over every channel (slow on a CPU) instead of the fast top-k")
    p.add_argument("--force", action="store_true", help="write into an existing --out folder")
    p.add_argument("--operating-point", metavar="NAME", default=None,
                   help="operating point headlined in case_report.pdf and in the DICOM SR "
                        "(youden, sens90, spec90, ... as the bundle's thresholds.json names "
                        "them; default youden)")
    p.add_argument("--dicom-out", type=Path, metavar="DIR", default=None,
                   help="also write a DICOM Secondary Capture of the CAM overlay and a DICOM "
                        "Structured Report (probability, decision, operating point, lesion box) "
                        "for the first DICOM --image into DIR, for PACS. These two files carry "
                        "the source image's patient module (a PACS needs it to file them); "
                        "nothing else multibone writes does")


def run(args: argparse.Namespace) -> int:
    from multibone._atomic import atomic_dir
    from multibone.bundle import load_bundle
    from multibone.case import case_report_html, explain_case, predict_case
    from multibone.errors import InputError
    from multibone.export.dicom import dicom_results, first_dicom_source, write_dicom_results
    from multibone.export.pdf import case_report_pdf, choose_operating_point

    bundle = load_bundle(args.bundle, trust_pickle=args.trust_pickle)
    case = case_from_args(args, bundle)
    methods = tuple(args.method or ["scorecam"])
    result = predict_case(bundle, case)
    if args.dicom_out is not None and args.dicom_out.exists() and not args.force:
        raise InputError(f"{args.dicom_out} already exists; pass --force to overwrite it")
    expl = explain_case(bundle, case, cam_methods=methods, fast=not args.full, result=result)
    op = choose_operating_point(result.decisions, args.operating_point)
    pdf = case_report_pdf(case, result, expl, operating_point=op, bundle_hash=bundle.hash,
                          synthetic=bool(bundle.training_data.get("synthetic")))
    dicom = None
    if args.dicom_out is not None:
        index, source = first_dicom_source(args.image)
        dicom = dicom_results(source, case=case, result=result, explanation=expl,
                              source_index=index, operating_point=op, bundle_hash=bundle.hash)
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
        (tmp / "case_report.pdf").write_bytes(pdf)
    written = {"out": str(args.out), "files": ["shap_waterfall.png", "explanation.json",
               "case_report.html", "case_report.pdf", *[c["file"] for c in cams]]}
    if dicom is not None:
        written["dicom_out"] = [str(p) for p in write_dicom_results(dicom, args.dicom_out,
                                                                    force=args.force)]
    print(json.dumps(written, indent=2))
    return 0
