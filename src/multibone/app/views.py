"""Several views of one patient: each image's backbone scores beside the patient score the
stacker used, and which view drove it. Streamlit-free (tested directly).

The patient score is :func:`multibone.imaging.aggregate` of the image logits under the
bundle's rule (``mean_logit``, ``max`` or ``all_positive``); this module only lays out
what :func:`multibone.case.predict_case` computed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

RULE_WORDS = {
    "mean_logit": "mean of the image logits",
    "max": "the most positive view",
    "all_positive": "the least positive view (positive only if every view is)",
}


def _logit(p: float) -> float:
    p = min(max(float(p), 1e-12), 1 - 1e-12)
    return float(np.log(p / (1 - p)))


def driving_view(probabilities: Sequence[float], rule: str | None, patient: float) -> int:
    """Index of the view that pulled the patient score most: the image the rule takes
    (``max``: the largest, ``all_positive``: the smallest), else, for a mean, the view
    furthest out on the side of the patient score."""
    logits = [_logit(p) for p in probabilities]
    if rule == "max":
        return int(np.argmax(logits))
    if rule == "all_positive":
        return int(np.argmin(logits))
    side = 1.0 if _logit(patient) >= 0 else -1.0
    return int(np.argmax([side * v for v in logits]))


def view_table(
    image_scores: Mapping[str, Sequence[float]],
    backbone_scores: Mapping[str, float],
    labels: Sequence[str],
    rule: str | None,
) -> tuple[dict[str, list[str]], list[str]]:
    """The table (column -> cells: one row per image, then the patient row) and one sentence
    per backbone naming the view that drove its patient score. Empty when no backbone."""
    if not image_scores:
        return {}, []
    table: dict[str, list[str]] = {"view": [*labels, f"patient ({rule or 'aggregate'})"]}
    sentences = []
    for b, probs in image_scores.items():
        patient = float(backbone_scores[b])
        table[b] = [f"{float(p):.3f}" for p in probs] + [f"{patient:.3f}"]
        if len(probs) > 1:
            i = driving_view(probs, rule, patient)
            sentences.append(
                f"{b}: {labels[i]} drove the patient score ({float(probs[i]):.3f} of "
                f"{patient:.3f}; rule: {RULE_WORDS.get(rule or '', rule or 'aggregate')})."
            )
    return table, sentences
