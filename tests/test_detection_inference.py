"""Test-time augmentation is undone before the merge: a stand-in detector that boxes the
bright square of whatever image it sees must give back the square in original pixels,
under flips, scales and several models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from multibone.detection.config import DetectionConfig
from multibone.detection.inference import detect


class _Transform:
    def __init__(self) -> None:
        self.min_size, self.max_size = (64,), 64


class SquareFinder(nn.Module):
    """Boxes the pixels above 0.5 of its input; records the input sizes it saw."""

    def __init__(self, score: float = 0.9) -> None:
        super().__init__()
        self.transform = _Transform()
        self.score = score
        self.seen: list[tuple[int, int]] = []

    def forward(self, images):
        out = []
        for x in images:
            self.seen.append(tuple(x.shape[-2:]))
            ys, xs = torch.nonzero(x[0] > 0.5, as_tuple=True)
            box = torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]]).float()
            out.append(
                {"boxes": box, "scores": torch.tensor([self.score]), "labels": torch.ones(1)}
            )
        return out


def _image() -> tuple[np.ndarray, list[float]]:
    img = np.full((120, 200), 0.1, np.float32)
    img[30:60, 20:80] = 0.9  # x 20..80, y 30..60: off-centre, so a missed un-flip shows
    return img, [20.0, 30.0, 80.0, 60.0]


@pytest.mark.parametrize("merge", ["wbf", "nms"])
def test_tta_undone_before_merge(merge):
    img, truth = _image()
    cfg = DetectionConfig(
        detector="fcos_tiny", img_size=100, tta=["hflip"], tta_scales=[0.8, 1.2], merge=merge
    )
    models = [SquareFinder(0.9), SquareFinder(0.6)]
    boxes, scores = detect(models, img, cfg)
    # 3 scales x 2 flips x 2 models, each source one box on the same square: one box out.
    assert len(boxes) == 1
    # Resizing 200 x 120 to 80..120 px squares blurs the edge by at most one input pixel.
    np.testing.assert_allclose(boxes[0], truth, atol=2.5)
    assert sorted(set(models[0].seen)) == [(80, 80), (100, 100), (120, 120)]
    assert models[0].transform.min_size == (64,)  # the model's own size is restored
    expected = 0.9 if merge == "nms" else (0.9 + 0.6) / 2  # WBF: mean over all 12 sources
    assert scores[0] == pytest.approx(expected, abs=1e-6)


def test_without_tta_one_source_is_returned_as_is():
    img, truth = _image()
    cfg = DetectionConfig(detector="fcos_tiny", img_size=100, tta=[])
    boxes, scores = detect([SquareFinder()], img, cfg)
    np.testing.assert_allclose(boxes[0], truth, atol=2.5)
    assert scores.tolist() == [pytest.approx(0.9)]
