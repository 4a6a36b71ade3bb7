"""What a bundle was trained on, said in every case output.

A probability means something only for patients like those the model learnt
from. :func:`provenance` summarises ``bundle.json``'s ``training_data`` (and
the model's identity) for the ``predict`` JSON, the batch CSV, the case report
and the dashboard; :func:`provenance_warnings` gives the loud lines: above all
:data:`multibone.disclaimer.SYNTHETIC_WARNING` when the cohort was synthetic.
"""

from __future__ import annotations

from typing import Any

from multibone.disclaimer import SYNTHETIC_WARNING


def provenance(meta: dict[str, Any]) -> dict[str, Any]:
    """Training-data provenance of a bundle's metadata (``bundle.json`` as a dict).

    Keys: ``synthetic`` (bool or None when the bundle does not say), ``patients``,
    ``images``, ``centres`` (list), ``development_centres``, ``positive_class``,
    ``created_by``, ``model`` (stacker family and backbones), ``text`` (one line).
    """
    td = meta.get("training_data") or {}
    by_split = td.get("by_split") or {}
    dev = by_split.get("dev") or {}
    synthetic = td.get("synthetic")
    centres = [str(c) for c in td.get("centres") or [] if str(c) not in ("", "nan")]
    backbones = list(meta.get("backbones") or [])
    family = (meta.get("stacker") or {}).get("family", "?")
    kind = "SYNTHETIC" if synthetic else ("real" if synthetic is False else "undeclared")
    where = f" from {len(centres)} centre(s) ({', '.join(centres)})" if centres else ""
    text = (
        f"trained on {kind} data: {td.get('n_patients', '?')} patients, "
        f"{td.get('n_images', 0)} images{where}; model {family}"
        + (f" over {', '.join(backbones)}" if backbones else " on clinical data only")
    )
    return {
        "synthetic": synthetic,
        "patients": td.get("n_patients"),
        "images": td.get("n_images"),
        "centres": centres,
        "development_centres": [str(c) for c in dev.get("centres") or []],
        "positive_class": meta.get("positive_class"),
        "created_by": meta.get("created_by") or meta.get("multibone_version"),
        "model": {"stacker": family, "backbones": backbones},
        "text": text,
    }


def provenance_warnings(meta: dict[str, Any]) -> list[str]:
    """Loud warnings about a bundle's training data (a new list; empty when none)."""
    td = meta.get("training_data") or {}
    if td.get("synthetic"):
        return [f"TRAINED ON SYNTHETIC DATA: never use this bundle on patients. {SYNTHETIC_WARNING}"]
    if "synthetic" not in td:
        return ["this bundle does not say what data it was trained on (an older bundle format)"]
    return []


__all__ = ["provenance", "provenance_warnings"]
