"""Box utilities against hand computations: IoU, flips, resizing, the WBF / NMS merge."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision import tv_tensors

from multibone.detection.boxes import (
    box_iou,
    check_box,
    from_normalised,
    hflip_boxes,
    merge_boxes,
    resize_with_boxes,
    to_normalised,
    train_transform,
    vflip_boxes,
)
from multibone.errors import InputError


def test_iou_by_hand():
    a = [[0, 0, 10, 10]]
    b = [[5, 5, 15, 15], [0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 5, 10]]
    # overlap 5x5=25, union 100+100-25=175; identical; disjoint; half the box
    np.testing.assert_allclose(box_iou(a, b), [[25 / 175, 1.0, 0.0, 0.5]])
    assert box_iou(np.zeros((0, 4)), a).shape == (0, 1)


def test_check_box_names_the_place():
    check_box((0, 0, 64, 48), 64, 48, "x")  # touching the edges is inside
    with pytest.raises(InputError, match=r"img.png row 3: .*zero area"):
        check_box((10, 10, 10, 20), 64, 48, "img.png row 3")
    with pytest.raises(InputError, match=r"outside the image \(64 wide x 48 high\)"):
        check_box((10, 10, 65, 20), 64, 48, "img.png")


def test_flips_by_hand_and_as_torchvision_moves_pixels():
    boxes = [[2, 3, 12, 7]]
    np.testing.assert_array_equal(hflip_boxes(boxes, 20), [[8, 3, 18, 7]])
    np.testing.assert_array_equal(vflip_boxes(boxes, 10), [[2, 3, 12, 7]])  # symmetric in y
    np.testing.assert_array_equal(vflip_boxes([[2, 1, 12, 4]], 10), [[2, 6, 12, 9]])
    np.testing.assert_array_equal(hflip_boxes(hflip_boxes(boxes, 20), 20), boxes)
    # The box must cover the same pixels after the image is flipped.
    img = torch.zeros(1, 10, 20)
    img[:, 3:7, 2:12] = 1.0
    t = train_transform(flips=["horizontal"], flip_prob=1.0)
    out = t(
        {
            "image": tv_tensors.Image(img),
            "boxes": tv_tensors.BoundingBoxes(
                torch.tensor(boxes, dtype=torch.float32), format="XYXY", canvas_size=(10, 20)
            ),
            "labels": torch.ones(1, dtype=torch.int64),
        }
    )
    x0, y0, x1, y1 = out["boxes"][0].int().tolist()
    assert (x0, y0, x1, y1) == (8, 3, 18, 7)
    assert out["image"][0, y0:y1, x0:x1].min() == 1.0 and out["image"].sum() == 40


def test_resize_moves_boxes_exactly():
    img = torch.rand(1, 40, 80)
    im2, b2 = resize_with_boxes(img, [[8, 4, 40, 20]], 20)
    assert im2.shape == (1, 20, 20)
    np.testing.assert_allclose(b2.numpy(), [[2, 2, 10, 10]])  # x / 4, y / 2
    _, b3 = resize_with_boxes(img, np.zeros((0, 4)), (10, 40))
    assert b3.shape == (0, 4)


def test_affine_keeps_box_on_the_bright_square():
    torch.manual_seed(3)
    img = torch.zeros(1, 64, 64)
    img[:, 20:36, 24:44] = 1.0
    t = train_transform(flips=[], scale=0.3, translate=0.1)
    for _ in range(5):
        out = t(
            {
                "image": tv_tensors.Image(img),
                "boxes": tv_tensors.BoundingBoxes(
                    torch.tensor([[24.0, 20, 44, 36]]), format="XYXY", canvas_size=(64, 64)
                ),
                "labels": torch.ones(1, dtype=torch.int64),
            }
        )
        mask = out["image"][0] > 0.5
        ys, xs = torch.nonzero(mask, as_tuple=True)
        box = out["boxes"][0]
        # The bright square's extent is the box, to within a pixel of interpolation.
        assert abs(xs.min() - box[0]) <= 1.01 and abs(xs.max() + 1 - box[2]) <= 1.01
        assert abs(ys.min() - box[1]) <= 1.01 and abs(ys.max() + 1 - box[3]) <= 1.01


def test_normalisation_round_trip():
    b = [[10, 5, 50, 25]]
    n = to_normalised(b, 100, 50)
    np.testing.assert_allclose(n, [[0.1, 0.1, 0.5, 0.5]])
    np.testing.assert_allclose(from_normalised(n, 100, 50), b)
    np.testing.assert_allclose(to_normalised([[-5, 0, 120, 50]], 100, 50), [[0, 0, 1, 1]])


def test_wbf_fuses_by_confidence_weighted_mean():
    # Two models agree on one lesion; model 2 also fires elsewhere.
    m1 = ([[10, 10, 30, 30]], [0.9])
    m2 = ([[12, 10, 32, 30], [60, 60, 80, 80]], [0.6, 0.3])
    boxes, scores = merge_boxes([m1, m2], 100, 100, method="wbf", iou_thr=0.5)
    # Fused box = score-weighted mean: x0 = (10*.9 + 12*.6) / 1.5 = 10.8, x1 = 30.8.
    np.testing.assert_allclose(boxes[0], [10.8, 10, 30.8, 30], atol=1e-4)
    # 'avg': mean score of the cluster x (boxes in cluster / models) = 0.75 * 2/2;
    # a box only one model of two found keeps 0.3 * 1/2.
    np.testing.assert_allclose(scores, [0.75, 0.15], atol=1e-6)
    np.testing.assert_allclose(boxes[1], [60, 60, 80, 80], atol=1e-4)


def test_nms_keeps_the_best_of_overlapping_boxes():
    m1 = ([[10, 10, 30, 30]], [0.9])
    m2 = ([[12, 10, 32, 30], [60, 60, 80, 80]], [0.95, 0.3])
    boxes, scores = merge_boxes([m1, m2], 100, 100, method="nms", iou_thr=0.5)
    np.testing.assert_allclose(boxes, [[12, 10, 32, 30], [60, 60, 80, 80]], atol=1e-6)
    np.testing.assert_allclose(scores, [0.95, 0.3])
    # Below the IoU threshold both survive: IoU here is 18*20 / (2*400 - 360) = 0.818.
    b2, _ = merge_boxes([m1, m2], 100, 100, method="nms", iou_thr=0.9)
    assert len(b2) == 3


def test_merge_validates_before_ensemble_boxes():
    with pytest.raises(InputError, match="2 boxes but 1 scores"):
        merge_boxes([([[0, 0, 1, 1], [1, 1, 2, 2]], [0.5])], 10, 10)
    with pytest.raises(InputError, match="score outside"):
        merge_boxes([([[0, 0, 1, 1]], [1.5])], 10, 10)
    with pytest.raises(InputError, match="non-finite"):
        merge_boxes([([[0, 0, np.nan, 1]], [0.5])], 10, 10)
    # Degenerate boxes are dropped, nothing at all is an empty result.
    b, s = merge_boxes([([[3, 3, 3, 5]], [0.5]), (np.zeros((0, 4)), [])], 10, 10)
    assert b.shape == (0, 4) and s.shape == (0,)
