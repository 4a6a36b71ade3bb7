"""The lesion-detector section of the evaluation report, read from the run's files.

The detector stage (:mod:`multibone.detection.stage`) writes
``RUN/detection/detection_metrics.json`` and example PNGs; this module only turns
them into plain data for ``templates/report.html`` (the evaluation layer does not
import the detection layer). ``None`` when the run has no detector.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from multibone._html import png_data_uri
from multibone.evaluation._output import table

METRICS = Path("detection") / "detection_metrics.json"


def _auc(a: dict | None) -> tuple:
    a = a or {}
    return a.get("auc"), a.get("ci_low"), a.get("ci_high")


def detection_context(run_dir: str | Path, warnings: list[str] | None = None) -> dict | None:
    """``{"intro", "sets", "operating", "examples"}`` for the report, or None."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return None
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
        sets = m["sets"]
    except (OSError, ValueError, KeyError) as exc:
        if warnings is not None:
            warnings.append(f"{path.name} could not be read ({exc}); detection section left out.")
        return None
    rows, op_rows = [], []
    for name, s in sets.items():
        auc, lo, hi = _auc(s.get("image_auc"))
        pa, _, _ = _auc(s.get("patient_auc_all_views"))
        pm, _, _ = _auc(s.get("patient_auc_max"))
        rows.append({
            "set": name,
            "images": s.get("n_images"),
            "lesions": s.get("n_lesions"),
            "localisation IoU>0.2": s.get("rate_iou>0.2"),
            "localisation IoU>0.5": s.get("rate_iou>0.5"),
            "missed (IoU=0)": s.get("missed"),
            "FP boxes/image": s.get("fp_per_image"),
            "image AUC": auc,
            "AUC CI low": lo,
            "AUC CI high": hi,
            "patient AUC (all views)": pa,
            "patient AUC (max)": pm,
            "proposed box on lesion": s.get("proposal_hit_rate"),
        })
        for op, o in (s.get("at_operating_points") or {}).items():
            op_rows.append({"set": name, "point": op, "threshold": o.get("threshold"),
                            "sensitivity": o.get("sensitivity"),
                            "specificity": o.get("specificity")})
    examples = []
    for e in m.get("examples") or []:
        f = path.parent / e.get("file", "")
        if f.is_file():
            iou = e.get("iou")
            what = "normal control" if not e.get("lesion") else (
                f"IoU {iou:.2f}" if iou is not None else "no box above threshold")
            examples.append((png_data_uri(f.read_bytes()),
                             f"centre {e.get('center')}, {e.get('view')}: best box "
                             f"{e.get('best_score', 0):.2f}, {what}"))
    intro = (
        f"{m.get('detector')} ("
        + ("trained from scratch" if m.get("weights") == "none"
           else f"initial weights: {m.get('weights')}")
        + f"), {m.get('img_size')} px, "
        f"{m.get('epochs')} epochs, {m.get('n_folds')} fold models cross-fitted on the "
        f"backbones' patient folds; {m.get('n_normal_patients')} normal-control patients as "
        f"negatives. A box scoring >= {m.get('box_thresh')} is a detection; the image score is "
        "the best box's confidence. Held-out images get the fold models' boxes merged. "
        "Operating points are fixed on the development (cross-fitted) images."
    )
    return {
        "intro": intro,
        "sets": table(pd.DataFrame(rows)),
        "operating": table(pd.DataFrame(op_rows), digits=3),
        "examples": examples,
    }
