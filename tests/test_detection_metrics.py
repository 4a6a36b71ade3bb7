"""Localisation rate, missed lesions, false positives and patient rules by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from multibone.detection.metrics import image_score, localisation, patient_calls, patient_scores
from multibone.errors import InputError

E = np.zeros((0, 4))


def test_localisation_by_hand():
    ref = [[[0, 0, 10, 10]], [[0, 0, 10, 10]], [[0, 0, 10, 10]], [[50, 50, 60, 60]], E]
    pred = [
        [[0, 0, 10, 10]],  # IoU 1: found at 0.2 and 0.5
        [[5, 0, 15, 10]],  # IoU 50/150 = 1/3: found at 0.2 only
        [[8, 0, 18, 10], [30, 30, 40, 40]],  # IoU 20/180 = 0.11: not found, not missed; +1 FP
        [[0, 0, 5, 5]],  # IoU 0: missed; the box is a FP
        [[1, 1, 4, 4], [5, 5, 9, 9]],  # normal image: both boxes FP
    ]
    scores = [[0.9], [0.8], [0.7, 0.6], [0.5], [0.4, 0.3]]
    out = localisation(pred, scores, ref)
    assert out["n_lesions"] == 4 and out["n_images"] == 5
    assert out["found_iou>0.2"] == 2 and out["rate_iou>0.2"] == 0.5
    assert out["found_iou>0.5"] == 1 and out["rate_iou>0.5"] == 0.25
    assert out["missed"] == 1 and out["missed_rate"] == 0.25
    # FP: image 3's (8,0,18,10) (IoU 0.11 <= 0.2) and (30,30,..), image 4's, image 5's two
    assert out["fp_boxes"] == 5 and out["fp_per_image"] == 1.0


def test_score_threshold_drops_boxes():
    out = localisation([[[0, 0, 10, 10]]], [[0.1]], [[[0, 0, 10, 10]]], score_thresh=0.5)
    assert out["found_iou>0.2"] == 0 and out["missed"] == 1 and out["fp_boxes"] == 0


def test_no_lesions_gives_nan_rates():
    out = localisation([E], [[]], [E])
    assert math.isnan(out["rate_iou>0.2"]) and out["fp_per_image"] == 0


def test_mismatched_lengths_refused():
    with pytest.raises(InputError, match="one per image"):
        localisation([E], [[], []], [E])


def test_image_score_is_best_box():
    assert image_score([0.2, 0.7, 0.1]) == 0.7
    assert image_score([]) == 0.0


def test_patient_rules_by_hand():
    images = pd.DataFrame(
        {
            "patient_id": ["A", "A", "B", "B", "C", "C"],
            "view": ["AP", "lateral"] * 3,
            "score": [0.9, 0.6, 0.9, 0.1, 0.2, 0.3],
            "lesion": [1, 1, 1, 1, 0, 0],
        }
    )
    both = patient_calls(images, 0.5, "all_views")
    assert both["call"].tolist() == [1, 0, 0]  # B positive on one view only
    np.testing.assert_allclose(both["score"], [0.6, 0.1, 0.2])
    anyv = patient_calls(images, 0.5, "max")
    assert anyv["call"].tolist() == [1, 1, 0]
    assert patient_scores(images)["lesion"].tolist() == [1, 1, 0]
