"""One patient's case: input checks, prediction, explanation and report.

Everything the dashboard shows and ``multibone predict`` / ``explain`` print
comes from here, so a test can call it without Streamlit. No identifier from a
DICOM header is ever read: images enter as pixel arrays with a display label
such as ``"image 1"``.
"""

from __future__ import annotations

import io
import json
import math
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from multibone.disclaimer import DISCLAIMER  # re-exported: the dashboard reads case.DISCLAIMER
from multibone.errors import InputError
from multibone.stats import PLAIN_LABELS

#: Operating points in the order a clinician picks them, with plain names (from stats).
OPERATING_POINTS = PLAIN_LABELS


@dataclass
class CaseImage:
    """One radiograph of the case.

    pixels: float32 (H, W) in [0, 1], bone bright (``multibone.io.read_radiograph``).
    roi: lesion box (x0, y0, x1, y1) in pixels, x1/y1 exclusive; None = whole image.
    label: display name, e.g. ``"image 1 (DICOM)"``; never a DICOM header field.
    """

    pixels: np.ndarray
    roi: tuple[int, int, int, int] | None = None
    label: str = "image"
    #: where ``roi`` came from: ``given``, ``detector`` (filled in by :func:`predict_cases`
    #: from the bundle's lesion detector when no box was given) or ``whole_image``;
    #: "" until the case is scored
    roi_source: str = ""
    #: the detector's confidence in its box (``roi_source == "detector"``)
    roi_score: float | None = None


@dataclass
class Case:
    """One patient's input. crp in mg/L, esr in mm/h, or "normal"/"abnormal", or None."""

    images: list[CaseImage]
    age: float
    sex: str
    site: str = ""
    location: str = ""
    crp: float | str | None = None
    esr: float | str | None = None
    #: fields given that the bundle's model does not use (dropped, named in the result)
    ignored: list[str] = field(default_factory=list)

    def fields(self) -> dict[str, Any]:
        return {
            "age": self.age,
            "sex": self.sex,
            "site": self.site or None,
            "location": self.location or None,
            "crp": self.crp,
            "esr": self.esr,
        }


@dataclass
class CaseResult:
    probability: float
    positive_class: str
    negative_class: str
    decisions: dict[str, dict]
    backbone_scores: dict[str, float]
    image_scores: dict[str, list[float]]
    features: dict[str, float | None]
    bundle_version: str
    seconds: float = 0.0
    #: what the bundle was trained on (``bundle.json``'s training_data, summarised)
    provenance: dict = field(default_factory=dict)
    #: loud warnings for whoever reads the result (synthetic training data, unlike images)
    warnings: list[str] = field(default_factory=list)
    #: case fields given but not used by this bundle's model (ignored)
    ignored_fields: list[str] = field(default_factory=list)
    #: per image: is it unlike the training images? (bundles with backbones)
    images_unlike_training: list[dict] = field(default_factory=list)
    #: per image: ``roi_source`` (given / detector / whole_image), ``box`` and ``score``
    rois: list[dict] = field(default_factory=list)
    #: conformal "refer when unsure": ``set`` (diagnoses left), ``refer``, ``text``,
    #: ``error_rate``; empty for a bundle without conformal.json (issue #14)
    referral: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d = asdict(self)
        d["features"] = {k: (None if v is None or (isinstance(v, float) and math.isnan(v)) else v)
                         for k, v in self.features.items()}
        d["disclaimer"] = DISCLAIMER
        return d


@dataclass
class CamView:
    image_index: int
    backbone: str
    method: str
    cam: np.ndarray
    overlay_png: bytes
    seconds: float
    note: str = ""


@dataclass
class CaseExplanation:
    shap: Any
    sentences: list[str]
    waterfall_png: bytes
    cams: list[CamView] = field(default_factory=list)
    explainer: str = ""


# --------------------------------------------------------------------------- input


_FIELD_LINE = re.compile(r"^case field ([\w\[\].]+): (.*)$")


def _used_fields(fields: dict, needed: list[str] | None) -> dict:
    """The case fields a model uses (``needed``: case field names; None = all).

    ``site`` stands for site and location; fields not needed are dropped (ignored).
    """
    keys = ["age", "sex", "site", "location", "crp", "esr"]
    if needed is not None:
        keys = [k for k in keys if k in ("age", "sex") or (k == "location" and "site" in needed)
                or k in needed]
    return {k: v for k, v in fields.items() if k in keys}


def ignored_fields(fields: dict, needed: list[str] | None) -> list[str]:
    """Case fields given (non-empty) that the model does not use, so are ignored."""
    used = _used_fields(fields, needed)
    return [k for k in ("site", "location", "crp", "esr")
            if k not in used and fields.get(k) not in (None, "")]


def needed_fields(bundle) -> list[str]:
    """Case fields the bundle's model uses (age, sex, site, crp, esr; site = site or location).

    Features dropped before fitting (never observed or constant on development
    data) are not asked for; age and sex are always part of a case.
    """
    from multibone.stacking.prune import case_fields

    return case_fields(bundle.meta["feature_schema"]["clinical"])


def case_field_errors(fields: dict, images: list[CaseImage] | None = None, *,
                      needed: list[str] | None = None) -> dict[str, str]:
    """Field name -> message for every bad field (limits from ``case.schema.json``).

    ``fields`` holds age, sex, site, location, crp, esr (text or numbers; empty
    text or None = missing for the labs). Lesion boxes of ``images`` are
    checked against their image as ``roi_1``, ``roi_2``, ... Empty dict: valid.
    ``needed``: the fields the bundle's model uses (:func:`needed_fields`); the
    others are ignored, not checked (None: all are used).
    """
    from multibone.cohort import validate_case
    from multibone.cohort.sites import location_for_site

    errors: dict[str, str] = {}
    case = _used_fields(fields, needed)
    try:
        validate_case(case, require_images=False)
    except InputError as exc:
        for line in str(exc).splitlines():
            m = _FIELD_LINE.match(line)
            if m:
                errors.setdefault(m.group(1).split(".")[0].split("[")[0], m.group(2))
            else:
                errors.setdefault("case", line)
    for key in ("age", "sex"):
        if fields.get(key) in (None, "") and key not in errors:
            errors[key] = f"{key} is required"
    site, location = (case.get("site") or ""), (case.get("location") or "")
    site_needed = needed is None or "site" in needed
    if site_needed and "site" not in errors and "location" not in errors and not location:
        if not site:
            errors["site"] = "give the lesion's site (e.g. femur) or its location (axial/appendicular)"
        elif not location_for_site(str(site)):
            errors["site"] = (
                f"site {site!r} is not a bone multibone knows; pick a known site or give the "
                "location (axial or appendicular)"
            )
    for i, im in enumerate(images or [], start=1):
        msg = roi_problem(im.roi, im.pixels.shape)
        if msg:
            errors[f"roi_{i}"] = msg
    return errors


def roi_problem(roi, shape) -> str:
    """Plain message when a lesion box does not fit its image ('' when fine)."""
    if roi is None:
        return ""
    try:
        x0, y0, x1, y1 = (int(v) for v in roi)
    except (TypeError, ValueError):
        return "lesion box must be four whole numbers x0, y0, x1, y1"
    h, w = int(shape[0]), int(shape[1])
    if min(x0, y0) < 0:
        return "lesion box starts outside the image (negative coordinate)"
    if x1 <= x0 or y1 <= y0:
        return f"lesion box is empty: x1 ({x1}) must exceed x0 ({x0}) and y1 ({y1}) exceed y0 ({y0})"
    if x1 > w or y1 > h:
        return f"lesion box reaches ({x1}, {y1}) but the image is {w} x {h} px (width x height)"
    return ""


def case_from_fields(fields: dict, images: list[CaseImage], *, needed: list[str] | None = None,
                     require_images: bool = True) -> Case:
    """Build a :class:`Case`; raises :class:`InputError` listing every bad field.

    ``needed``: the fields the bundle's model uses (:func:`needed_fields`); the
    others are dropped unchecked. ``require_images=False`` for a bundle
    without backbones (no radiograph needed).
    """
    if require_images and not images:
        raise InputError("case: give at least one radiograph")
    errors = case_field_errors(fields, images, needed=needed)
    if errors:
        raise InputError("\n".join(f"case field {k}: {v}" for k, v in errors.items()))
    from multibone.cohort import validate_case

    clean = validate_case(_used_fields(fields, needed), require_images=False)
    return Case(
        images=list(images),
        age=float(clean["age"]),
        sex=str(clean["sex"]),
        site=str(clean.get("site") or ""),
        location=str(clean.get("location") or ""),
        crp=clean.get("crp"),
        esr=clean.get("esr"),
        ignored=ignored_fields(fields, needed),
    )


def read_case_image(path: str | Path, roi=None, label: str = "image") -> CaseImage:
    """Load a radiograph file as a :class:`CaseImage` (checks the box against the image)."""
    from multibone.io import read_radiograph

    rad = read_radiograph(path)
    msg = roi_problem(roi, rad.pixels.shape)
    if msg:
        raise InputError(f"{Path(path).name}: {msg}")
    return CaseImage(pixels=rad.pixels, roi=tuple(int(v) for v in roi) if roi else None,
                     label=f"{label} ({rad.format.upper()})")


# --------------------------------------------------------------------------- runtime


@dataclass
class _Runtime:
    stacker: Any
    scorer: Any  # ImageScorer or None (clinical-only bundle)
    features: list[str]
    clinical: list[str]
    backbones: list[str]
    post: Any = None  # multibone.stacking.postprocess.Postprocess
    ood: Any = None  # multibone.imaging.ood.OODModel (None: clinical-only or older bundle)
    ood_models: dict = field(default_factory=dict)  # backbone -> (fold-0 torch model, meta)


_RUNTIMES: dict[tuple, _Runtime] = {}

#: Image engine settings used when a caller passes none: ``engine`` (auto / torch / onnx),
#: ``onnx_dir`` (None = ``<bundle>-onnx``), ``threads`` (None = half the CPUs, at most 8). The CLI
#: sets them from --engine / --onnx / --threads; see :mod:`multibone.imaging.engine`.
ENGINE_SETTINGS: dict[str, Any] = {"engine": "auto", "onnx_dir": None, "threads": None}


def runtime(bundle) -> _Runtime:
    """Loaded models of a verified bundle, cached per (path, bundle.json hash, engine settings)."""
    settings = dict(ENGINE_SETTINGS)
    key = (str(bundle.path), bundle.hash, tuple(sorted((k, str(v)) for k, v in settings.items())))
    rt = _RUNTIMES.get(key)
    if rt is None:
        schema = bundle.meta["feature_schema"]
        scorer = None
        if bundle.backbones:
            from multibone.imaging.engine import make_scorer

            scorer = make_scorer(bundle.path / "backbones", bundle.backbones,
                                 bundle_path=bundle.path, bundle_hash=bundle.hash, **settings)
        rt = _Runtime(
            stacker=bundle.load_object("stacker.skops"),
            scorer=scorer,
            features=list(schema["features"]),
            clinical=list(schema["clinical"]),
            backbones=list(schema["backbones"]),
        )
        from multibone.stacking.postprocess import load_postprocess

        rt.post = load_postprocess(bundle.path)
        if bundle.backbones:
            from multibone.imaging.ood import OODModel

            rt.ood = OODModel.load(bundle.path / "ood")
            # An ONNX export carries the pooled-feature graphs: no torch model is loaded then.
            if rt.ood is not None and not getattr(scorer, "embeds", lambda _: False)(list(rt.ood.summaries)):
                from multibone.imaging.folds import load_fold

                rt.ood_models = {b: load_fold(bundle.path / "backbones", b, 0)
                                 for b in rt.ood.summaries}
        _RUNTIMES[key] = rt
    return rt


def _crops(rt: _Runtime, case: Case) -> list[np.ndarray]:
    from multibone.io import crop_roi

    margin = rt.scorer.crop_margin if rt.scorer is not None else 0.0
    return [crop_roi(im.pixels, im.roi, margin=margin) for im in case.images]


def _feature_row(rt: _Runtime, case: Case, backbone_scores: dict[str, float]) -> pd.DataFrame:
    return _feature_rows(rt, [case], [backbone_scores])


def _feature_rows(rt: _Runtime, cases: list[Case], scores: list[dict[str, float]]) -> pd.DataFrame:
    """The stacker's input, one row per case (clinical features encoded in one call)."""
    from multibone.cohort import case_to_cohort
    from multibone.stacking.features import clinical_features

    patients = pd.concat(
        [case_to_cohort(c.fields(), check_images=False, require_images=False).patients for c in cases],
        ignore_index=True,
    )
    clin = clinical_features(patients)
    X = pd.DataFrame({b: [s[b] for s in scores] for b in rt.backbones}, index=clin.index)
    for c in rt.clinical:
        X[c] = clin[c].astype(float)
    X = X.reindex(columns=rt.features)
    X.index = pd.Index(["case"] * len(cases), name="patient_id")
    return X


def predict_case(bundle, case: Case) -> CaseResult:
    """Calibrated probability of the positive class, decisions, per-backbone scores."""
    return predict_cases(bundle, [case])[0]


def predict_cases(bundle, cases: list[Case]) -> list[CaseResult]:
    """:func:`predict_case` for many patients at once, with the same results.

    All crops of all ``cases`` go through each fold model together (in batches of
    the scorer's ``batch_size``) and the stacker sees all feature rows in one call:
    a worklist is scored several times faster than case by case. Each result's
    ``seconds`` is the batch's wall time divided by the number of cases.
    """
    t0 = time.perf_counter()
    rt = runtime(bundle)
    for case in cases:
        if rt.backbones and not case.images:
            raise InputError("this bundle needs at least one radiograph")
        for i, im in enumerate(case.images, start=1):
            msg = roi_problem(im.roi, im.pixels.shape)
            if msg:
                raise InputError(f"case field roi_{i}: {msg}")
    roi_notes = [fill_rois(bundle, case) if rt.backbones else ([], []) for case in cases]
    per_case: list[tuple[dict[str, float], dict[str, list[float]]]] = [({}, {}) for _ in cases]
    ood_per_case: list[list[dict]] = [[] for _ in cases]
    if rt.scorer is not None and cases:
        from multibone.imaging.aggregate import aggregate, sigmoid

        crops = [c for case in cases for c in _crops(rt, case)]
        logits = rt.scorer.score(crops)
        unlike = _unlike_training(rt, crops)
        start = 0
        for j, (case, (backbone_scores, image_scores)) in enumerate(
                zip(cases, per_case, strict=True)):
            stop = start + len(case.images)
            ood_per_case[j] = [{"image": im.label, **u}
                               for im, u in zip(case.images, unlike[start:stop], strict=True)]
            for b in rt.backbones:
                mine = logits[b][start:stop]
                image_scores[b] = [float(sigmoid(v)) for v in mine]
                backbone_scores[b] = float(sigmoid(aggregate(mine, rt.scorer.aggregation)))
            start = stop
    if not cases:
        return []
    X = _feature_rows(rt, cases, [bs for bs, _ in per_case])
    probs_model = rt.stacker.predict_proba(X)[:, 1]
    # a site's recalibration moves the stated probability, never the ranking (issue #14)
    probs = rt.post.probability(probs_model)
    from multibone.bundle.provenance import provenance, provenance_warnings

    seconds = (time.perf_counter() - t0) / len(cases)
    results = []
    for j, case in enumerate(cases):
        backbone_scores, image_scores = per_case[j]
        p = float(probs[j])
        decisions = {}
        for name, op in bundle.thresholds.items():
            positive = p >= float(op["threshold"])
            decisions[name] = {
                "threshold": float(op["threshold"]),
                "positive": bool(positive),
                "call": bundle.positive_class if positive else bundle.negative_class,
                "sensitivity": float(op["sensitivity"]),
                "specificity": float(op["specificity"]),
                "meaning": OPERATING_POINTS.get(name, name),
            }
        warnings = provenance_warnings(bundle.meta)
        warnings.extend(roi_notes[j][1])
        strange = [u["image"] for u in ood_per_case[j] if u.get("unlike_training")]
        if strange:
            warnings.append(
                f"{', '.join(strange)}: unlike the training images (outside what the backbones "
                "saw in development: another kind of image, body part or acquisition?); its "
                "scores may mean nothing"
            )
        if case.ignored:
            warnings.append(
                f"ignored: {', '.join(case.ignored)} (this bundle's model does not use "
                f"{'it' if len(case.ignored) == 1 else 'them'})"
            )
        results.append(CaseResult(
            provenance=provenance(bundle.meta),
            warnings=warnings,
            ignored_fields=list(case.ignored),
            probability=p,
            positive_class=bundle.positive_class,
            negative_class=bundle.negative_class,
            decisions=decisions,
            # calibrated per-backbone probabilities (the stacker took the raw ones)
            backbone_scores=rt.post.backbone_probabilities(backbone_scores),
            image_scores=rt.post.image_probabilities(image_scores),
            referral=rt.post.referral(float(probs_model[j]), bundle.positive_class,
                                      bundle.negative_class),
            features={k: (None if pd.isna(v) else float(v)) for k, v in X.iloc[j].items()},
            bundle_version=bundle.version,
            seconds=seconds,
            rois=roi_notes[j][0],
            images_unlike_training=ood_per_case[j],
        ))
    return results


def _unlike_training(rt: _Runtime, crops: list[np.ndarray]) -> list[dict]:
    """Per crop: is it unlike the development crops (:mod:`multibone.imaging.ood`)?
    Empty dicts when the bundle carries no summary (an older bundle)."""
    if rt.ood is None:
        return [{} for _ in crops]
    if not rt.ood_models:  # ONNX engine with the export's pooled-feature graphs
        return rt.ood.check(rt.scorer.embed(crops, list(rt.ood.summaries)))
    from multibone.imaging.ood import embed_all

    return rt.ood.check(embed_all(rt.ood_models, crops))


def _png_bytes(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def explain_case(
    bundle,
    case: Case,
    *,
    cam_methods: tuple[str, ...] = ("scorecam",),
    fast: bool = True,
    result: CaseResult | None = None,
) -> CaseExplanation:
    """SHAP contributions of the stacker and CAM overlays per image, backbone and method.

    CAMs are averaged over a backbone's fold models (the score is their mean
    too), on the crop the model saw, and drawn over that region of the
    radiograph. SHAP explains the uncalibrated stacker; the calibrated
    probability is shown beside it (see :mod:`multibone.explain.shap_stacker`).
    """
    from multibone.explain import describe_contributions, explain_stacker, waterfall_png

    rt = runtime(bundle)
    if result is None:  # pass predict_case's result to skip scoring the images twice
        result = predict_case(bundle, case)
    X = _feature_row(rt, case, result.backbone_scores)
    expl = explain_stacker(rt.stacker, X)
    sentences = describe_contributions(expl, 0, bundle.positive_class, bundle.negative_class)
    with tempfile.TemporaryDirectory() as tmp:
        png = waterfall_png(expl, 0, Path(tmp) / "waterfall.png",
                            positive_class=bundle.positive_class,
                            negative_class=bundle.negative_class)
        waterfall = Path(png).read_bytes()
    cams: list[CamView] = []
    if rt.scorer is not None and cam_methods:
        cams = _case_cams(rt, case, cam_methods, fast)
    return CaseExplanation(shap=expl, sentences=sentences, waterfall_png=waterfall, cams=cams,
                           explainer=expl.explainer_name)


def _case_cams(rt: _Runtime, case: Case, methods, fast: bool) -> list[CamView]:
    from multibone.explain.cam import explain_image
    from multibone.explain.overlay import overlay
    from multibone.imaging import preprocess
    from multibone.io import roi_box, to_uint8

    margin = rt.scorer.crop_margin
    crops = _crops(rt, case)
    views: list[CamView] = []
    for i, (im, crop) in enumerate(zip(case.images, crops, strict=True)):
        box = roi_box(im.pixels.shape, im.roi, margin)
        shown = to_uint8(im.pixels)
        for b in rt.backbones:
            folds = rt.scorer.folds(b)
            for method in methods:
                t0 = time.perf_counter()
                maps, notes = [], set()
                for model, meta in folds:
                    x = preprocess([crop], meta)
                    res = explain_image(model, x, meta["cam_layer"], method=method, fast=fast)
                    maps.append(res.map)
                    if res.note:
                        notes.add(res.note)
                cam = np.mean(maps, axis=0)
                if cam.max() > 0:
                    cam = cam / cam.max()
                rgb = overlay(shown, cam, 0.4, box=box, outline=im.roi is not None)
                views.append(CamView(i, b, method, cam.astype(np.float32), _png_bytes(rgb),
                                     time.perf_counter() - t0, "; ".join(sorted(notes))))
    return views


# --------------------------------------------------------------------------- report


def case_report_html(case: Case, result: CaseResult, explanation: CaseExplanation | None = None) -> str:
    """A self-contained HTML case report (``templates/case_report.html``): inputs, outputs, figures.

    Holds no DICOM header field: images are labelled by position and drawn
    from pixels only.
    """
    from multibone._html import png_data_uri, render
    from multibone.io import to_uint8

    images = [
        {
            "uri": png_data_uri(_png_bytes(np.repeat(to_uint8(im.pixels)[..., None], 3, axis=2))),
            "label": im.label,
            "box": (str(im.roi) if im.roi else "whole image") + (
                f" (proposed by the lesion detector, score {im.roi_score:.2f})"
                if im.roi_source == "detector" and im.roi_score is not None else ""),
        }
        for im in case.images
    ]
    expl = None
    if explanation is not None:
        expl = {
            "sentences": explanation.sentences,
            "explainer": explanation.explainer,
            "waterfall": png_data_uri(explanation.waterfall_png),
            "cams": [
                {
                    "uri": png_data_uri(v.overlay_png),
                    "caption": f"{case.images[v.image_index].label}: {v.backbone}, {v.method}",
                }
                for v in explanation.cams
            ],
        }
    return render(
        "case_report.html",
        title="multibone case report",
        heading="multibone case report",
        inputs=[(k, "" if v is None else str(v)) for k, v in case.fields().items()],
        images=images,
        positive_class=result.positive_class,
        negative_class=result.negative_class,
        probability=f"{result.probability:.1%}",
        decisions=[
            {
                "meaning": d["meaning"],
                "threshold": f"{d['threshold']:.3f}",
                "call": d["call"],
                "sensitivity": f"{d['sensitivity']:.2f}",
                "specificity": f"{d['specificity']:.2f}",
            }
            for d in result.decisions.values()
        ],
        backbone_scores=[(b, f"{s:.3f}") for b, s in result.backbone_scores.items()],
        referral=result.referral,
        explanation=expl,
        bundle_version=result.bundle_version,
        synthetic=bool(result.provenance.get("synthetic")),
        trained_on=result.provenance.get("text", ""),
        case_warnings=[w for w in result.warnings],
    )


def result_json(result: CaseResult) -> str:
    return json.dumps(result.to_json(), indent=2)


def _lab_field(value: float, abnormal: float) -> float | str | None:
    if not pd.isna(value):
        return float(value)
    if not pd.isna(abnormal):
        return "abnormal" if abnormal == 1 else "normal"
    return None


def predict_cases_csv(bundle, cases_csv: str | Path, out: str | Path | None, *, force: bool = False,
                      chunk: int = 32) -> Path:
    """Score every patient of a manifest-format CSV; write one row per patient.

    Output columns: patient_id, probability, one ``call_<point>`` per operating
    point, one ``score_<backbone>`` per backbone, ``unlike_training_images``
    (how many of the patient's images are unlike the training crops; bundles
    with backbones), then ``trained_on`` (the bundle's training-data provenance)
    and ``warning`` (the synthetic-data warning when it applies) on every row.
    A bundle without backbones needs no ``image_path`` column. Written
    atomically; an existing file is refused unless ``force``.
    """
    from multibone._atomic import atomic_path
    from multibone.cohort import load_cases
    from multibone.io import read_radiograph

    cases_csv = Path(cases_csv)
    out = Path(out) if out else cases_csv.with_name(cases_csv.stem + "_predictions.csv")
    if out.exists() and not force:
        raise InputError(f"{out} already exists; pass --force to overwrite it")
    needs_images = bool(bundle.backbones)
    cohort = load_cases(cases_csv, positive_class=bundle.positive_class,
                        require_images=needs_images, check_images=needs_images)
    rows = []
    patients = list(cohort.patients.itertuples())
    by_patient = dict(tuple(cohort.images.groupby("patient_id", sort=False)))
    results: list[tuple[Any, CaseResult]] = []
    # Patients are scored in chunks (one forward pass per fold model per chunk): as fast
    # as one big batch, with only ``chunk`` patients' radiographs in memory at a time.
    for s in range(0, len(patients), max(1, int(chunk))):
        batch = []
        for p in patients[s : s + max(1, int(chunk))]:
            ims = by_patient.get(p.patient_id)
            images = []
            for r in ([] if ims is None else ims.itertuples()):
                roi = None if pd.isna(r.roi_x0) else (int(r.roi_x0), int(r.roi_y0), int(r.roi_x1), int(r.roi_y1))
                images.append(CaseImage(read_radiograph(r.image_path).pixels, roi, f"row {r.row}"))
            batch.append(Case(images=images, age=float(p.age), sex=str(p.sex), site=str(p.site or ""),
                              location=str(p.location or ""), crp=_lab_field(p.crp, p.crp_abnormal),
                              esr=_lab_field(p.esr, p.esr_abnormal)))
        results.extend(zip(patients[s : s + len(batch)], predict_cases(bundle, batch), strict=True))
    for p, res in results:
        row = {"patient_id": p.patient_id, "probability": res.probability}
        row.update({f"call_{k}": d["call"] for k, d in res.decisions.items()})
        row.update({f"score_{b}": s for b, s in res.backbone_scores.items()})
        if res.referral:  # conformal "refer when unsure" (issue #14)
            row["refer"] = int(res.referral["refer"])
        if needs_images:
            row["unlike_training_images"] = sum(
                1 for im in res.images_unlike_training if im.get("unlike_training"))
        row["trained_on"] = res.provenance.get("text", "")
        row["warning"] = " ".join(w for w in res.warnings if not w.startswith("ignored:"))
        rows.append(row)
    with atomic_path(out, suffix=".csv") as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    return out


# --------------------------------------------------------------------------- lesion proposal

_DETECTORS: dict[tuple[str, str], tuple] = {}


def propose_box(bundle, pixels: np.ndarray) -> tuple[tuple[int, int, int, int], float] | None:
    """The detector's best lesion box on one image and its confidence, or None.

    None when the bundle carries no detector (no ``detection/`` folder) or the detector
    finds nothing above its ``box_thresh``. The box is in original pixels, x1/y1
    exclusive, cut to the image. The dashboard shows it as a proposal until the user
    accepts or redraws it.
    """
    place = Path(bundle.path) / "detection"
    if not place.is_dir():
        return None
    key = (str(bundle.path), bundle.hash)
    if key not in _DETECTORS:
        from multibone.detection.run import load_detectors

        _DETECTORS[key] = load_detectors(place)
    models, config = _DETECTORS[key]
    from multibone.detection.inference import detect

    boxes, scores = detect(models, pixels, config)
    if not len(scores) or float(scores[0]) < float(getattr(config, "box_thresh", 0.0)):
        return None
    h, w = int(pixels.shape[0]), int(pixels.shape[1])
    x0, y0, x1, y1 = (float(v) for v in boxes[0])
    box = (max(0, math.floor(x0)), max(0, math.floor(y0)), min(w, math.ceil(x1)), min(h, math.ceil(y1)))
    if box[2] <= box[0] or box[3] <= box[1]:
        return None
    return box, float(scores[0])


def fill_rois(bundle, case: Case) -> tuple[list[dict], list[str]]:
    """Give every image of ``case`` without a lesion box the detector's best box.

    Images with a box keep it (``roi_source`` ``given``). Without one, the bundle's
    detector (:func:`propose_box`) proposes its best box above its ``box_thresh``
    (``detector``, with the box's score); when it finds none, or the bundle carries no
    detector, the whole image is scored (``whole_image``) and, with a detector, a
    warning says so. Fills ``roi``/``roi_source``/``roi_score`` of the images in place
    (an image already resolved is left as it is), so an explanation or report of the
    same case shows the box that was scored. Returns (per-image records, warnings).
    """
    has_detector = (Path(bundle.path) / "detection").is_dir()
    records, warnings = [], []
    for i, im in enumerate(case.images, start=1):
        if not im.roi_source:
            if im.roi is not None:
                im.roi_source = "given"
            else:
                found = propose_box(bundle, im.pixels) if has_detector else None
                if found is not None:
                    im.roi, im.roi_score = found[0], float(found[1])
                    im.roi_source = "detector"
                else:
                    im.roi_source = "whole_image"
                    if has_detector:
                        warnings.append(
                            f"{im.label}: no lesion box given and the detector found none above "
                            "its threshold; the whole image was scored. Draw the lesion box "
                            "(--roi x0,y0,x1,y1) for a score on the lesion."
                        )
        records.append({
            "image": i,
            "label": im.label,
            "roi_source": im.roi_source,
            "box": list(im.roi) if im.roi is not None else None,
            "score": im.roi_score,
        })
    return records, warnings
