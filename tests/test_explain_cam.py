"""Score-CAM / Grad-CAM of multibone.explain.cam, checked against the grad-cam package.

The oracle is ``pytorch_grad_cam`` (ScoreCAM / GradCAM, same model, layer,
input and one-logit target): the full maps must agree to float precision.
Models are the registry's ``_tiny`` entries (random weights, created offline,
CAM layers from the registry), inputs 8-64 px, so the file runs in seconds;
the oracle comparisons on full-size timm models are marked slow.
"""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from torch import nn

from multibone.errors import InputError
from multibone.explain import (
    SELECTIONS,
    CamBackbone,
    NHWCToNCHW,
    TokensToGrid,
    capture_activations,
    explain_image,
    grad_cam,
    lesion_focus,
    reshape_for,
    resolve_layer,
    score_cam,
)
from multibone.imaging import create_backbone, get_spec, list_backbones

pgc = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import (  # noqa: E402
    BinaryClassifierOutputTarget,
    ClassifierOutputTarget,
)


def _swin(img_size: int = 64) -> nn.Module:
    return timm.create_model(
        "swin_tiny_patch4_window7_224",
        num_classes=1,
        img_size=img_size,
        window_size=4,
        embed_dim=16,
        depths=(1, 1, 1, 1),
        num_heads=(1, 1, 1, 1),
    )


SIZE = 64
#: the registry's tiny entries (random weights, no download), CAM layers from the registry
ALL = list_backbones("*_tiny")
#: the tiny variants are cheap enough to compare with the oracle in the default run
SCORE_ORACLE = GRAD_ORACLE = ALL
#: full-size timm models (random weights, small inputs): minutes of CPU, run with -m slow
BIG = [
    ("resnet18", "layer4", 96, {}),
    ("efficientnet_b0", "bn2", 96, {}),
    ("vit_small_patch16_224", "blocks.11.norm1", 64, {"img_size": 64}),
]


@pytest.fixture(scope="module")
def models():
    return {
        name: (
            create_backbone(name, img_size=SIZE, seed=0).eval(),
            get_spec(name).cam_layer,
            SIZE,
        )
        for name in ALL
    }


def _x(size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 3, size, size, generator=g)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def _oracle(cls, model, layer, x, target):
    with cls(model, [layer], reshape_transform=reshape_for(model)) as cam:
        return cam(x, targets=[target])[0]


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._backward_hooks for m in model.modules())


# ----------------------------------------------------------------- oracle agreement


@pytest.mark.parametrize("key", SCORE_ORACLE)
def test_score_cam_matches_grad_cam_package(models, key):
    model, layer, size = models[key]
    x = _x(size)
    ref = _oracle(pgc.ScoreCAM, model, resolve_layer(model, layer), x, ClassifierOutputTarget(0))
    mine = score_cam(model, x, layer)
    assert mine.shape == ref.shape == (size, size)
    np.testing.assert_allclose(mine, ref, atol=1e-4)


@pytest.mark.parametrize("key", GRAD_ORACLE)
def test_grad_cam_matches_grad_cam_package(models, key):
    model, layer, size = models[key]
    x = _x(size, seed=1)
    ref = _oracle(pgc.GradCAM, model, resolve_layer(model, layer), x, ClassifierOutputTarget(0))
    mine = grad_cam(model, x, layer)
    np.testing.assert_allclose(mine, ref, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("arch, layer, size, kwargs", BIG)
def test_full_size_models_match_grad_cam_package(arch, layer, size, kwargs):
    model = timm.create_model(arch, num_classes=1, pretrained=False, **kwargs).eval()
    x = _x(size, seed=8)
    for cls, fn in ((pgc.ScoreCAM, score_cam), (pgc.GradCAM, grad_cam)):
        ref = _oracle(cls, model, resolve_layer(model, layer), x, ClassifierOutputTarget(0))
        np.testing.assert_allclose(fn(model, x, layer), ref, atol=1e-4)


@pytest.mark.parametrize("cls, fn", [("ScoreCAM", score_cam), ("GradCAM", grad_cam)])
def test_negative_target_matches_binary_target_of_grad_cam(models, cls, fn):
    model, layer, size = models["resnet50_tiny"]
    x = _x(size, seed=2)
    ref = _oracle(
        getattr(pgc, cls), model, resolve_layer(model, layer), x, BinaryClassifierOutputTarget(0)
    )
    mine = fn(model, x, layer, target="negative")
    np.testing.assert_allclose(mine, ref, atol=1e-4)
    if fn is grad_cam:  # random weights: Score-CAM's softmax is near uniform either way
        assert _pearson(mine, fn(model, x, layer)) < 0.99


# ----------------------------------------------------------------- shapes, invariants


@pytest.mark.parametrize("method", ["scorecam", "gradcam"])
@pytest.mark.parametrize("key", ALL)
def test_output_contract_and_no_side_effects(models, key, method):
    model, layer, size = models[key]
    model.train()  # the caller's mode must come back
    x = _x(size, seed=3)
    before = x.clone()
    res = explain_image(model, x, layer, method=method, fast=True, top_k=8, batch_size=4)
    assert res.map.shape == (size, size) and res.map.dtype == np.float32
    assert np.isfinite(res.map).all() and res.map.min() >= 0.0 and res.map.max() <= 1.0
    assert res.method == method and res.seconds > 0 and res.n_channels > 0
    assert torch.equal(x, before)  # input left unchanged
    assert model.training
    assert _no_hooks(model)
    model.eval()


@pytest.mark.parametrize("select", SELECTIONS)
def test_fast_score_cam_runs_top_k_passes(models, select):
    model, layer, size = models["resnet50_tiny"]
    x = _x(size, seed=4)
    before = x.clone()
    model.zero_grad(set_to_none=True)  # the package's GradCAM (oracle tests) leaves .grad behind
    fast = explain_image(model, x, layer, top_k=6, select=select)
    assert fast.n_channels_used == 6 and "6 of" in fast.note and select in fast.note
    assert fast.map.shape == (size, size) and np.isfinite(fast.map).all()
    assert torch.equal(x, before) and _no_hooks(model)
    assert all(p.grad is None for p in model.parameters())  # the backward pass leaves no .grad


def test_fast_equals_full_when_k_covers_all_channels(models):
    model, layer, size = models["resnet50_tiny"]
    x = _x(size, seed=4)
    full = explain_image(model, x, layer, fast=False)
    big = explain_image(model, x, layer, top_k=10_000)
    np.testing.assert_array_equal(big.map, full.map)
    assert full.n_channels_used <= full.n_channels and "fast" not in full.note


@pytest.mark.parametrize("key", ["e3_tiny", "resnet50_tiny"])
def test_surrogate_fast_map_tracks_the_full_map(models, key):
    # random weights: every channel's masked score is about the same, so the full map is
    # close to the plain mean of the channels; the surrogate keeps them all, top-k drops them
    model, layer, size = models[key]
    x = _x(size, seed=7)
    full = score_cam(model, x, layer)
    fast = score_cam(model, x, layer, top_k=8)
    drop = score_cam(model, x, layer, top_k=8, select="mean")
    assert _pearson(fast, full) > 0.95
    assert _pearson(fast, full) > _pearson(drop, full)


def test_batch_size_does_not_change_the_map(models):
    model, layer, size = models["vit_tiny"]
    x = _x(size, seed=5)
    a = score_cam(model, x, layer, batch_size=1, top_k=12)
    b = score_cam(model, x, layer, batch_size=64, top_k=12)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_feature_map_1x1_gives_a_note_not_a_crash(models):
    model = models["resnet50_tiny"][0]
    x = _x(32)  # layer4 has stride 32: a 1x1 feature map at 32 px
    for method in ("scorecam", "gradcam"):
        res = explain_image(model, x, "layer4", method=method)
        assert res.grid == (1, 1)
        assert "uninformative" in res.note
        assert res.map.shape == (32, 32) and np.isfinite(res.map).all()


class _Flat(nn.Module):
    """conv (no padding) -> relu -> mean -> linear: a constant image gives constant maps."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.act = nn.ReLU()
        self.fc = nn.Linear(4, 1)

    def forward(self, x):
        return self.fc(self.act(self.conv(x)).mean((2, 3)))


@pytest.mark.parametrize("method", ["scorecam", "gradcam"])
def test_constant_activations_give_zero_map_without_nan(method):
    model = _Flat()
    res = explain_image(model, torch.ones(1, 3, 20, 20), "act", method=method)
    assert np.isfinite(res.map).all() and res.map.max() == 0.0
    assert "constant" in res.note
    if method == "scorecam":
        assert res.n_channels_used == 0  # constant channels get weight 0 and no pass


def test_hooks_removed_when_the_forward_raises():
    class Boom(_Flat):
        def forward(self, x):
            self.act(self.conv(x))
            raise RuntimeError("boom")

    model = Boom()
    with pytest.raises(RuntimeError, match="boom"):
        score_cam(model, torch.ones(1, 3, 8, 8), "act")
    with pytest.raises(RuntimeError, match="boom"):
        grad_cam(model, torch.ones(1, 3, 8, 8), "act")
    assert _no_hooks(model)


def test_capture_activations_context_manager():
    model = _Flat()
    with capture_activations(model.conv) as cap:
        assert model.conv._forward_hooks
        model(torch.zeros(1, 3, 6, 6))
    assert cap.output.shape == (1, 4, 4, 4) and not model.conv._forward_hooks


def test_grad_cam_with_frozen_parameters(models):
    model, layer, size = models["resnet50_tiny"]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        x = _x(size, seed=6)
        ref = _oracle(
            pgc.GradCAM,
            model,
            resolve_layer(model, layer),
            x.clone().requires_grad_(),
            ClassifierOutputTarget(0),
        )
        np.testing.assert_allclose(grad_cam(model, x, layer), ref, atol=1e-4)
    finally:
        for p in model.parameters():
            p.requires_grad_(True)


# ----------------------------------------------------------------- reshapes


def test_reshape_for_vit_derives_prefix_and_non_square_grid():
    vit = timm.create_model("test_vit", num_classes=1, img_size=(32, 48))
    rs = reshape_for(vit)
    assert isinstance(rs, TokensToGrid) and rs.prefix == vit.num_prefix_tokens == 1
    assert rs.grid == (2, 3)
    tokens = torch.arange(1 * 7 * 2, dtype=torch.float32).reshape(1, 7, 2)
    grid = rs(tokens)
    assert grid.shape == (1, 2, 2, 3)
    # token 1 + (r * 3 + c) sits at (r, c); token 0 (class) is dropped
    assert torch.equal(grid[0, :, 1, 2], tokens[0, 1 + 5])
    res = explain_image(vit, torch.randn(1, 3, 32, 48), "blocks.5.norm1", top_k=4)
    assert res.grid == (2, 3) and res.map.shape == (32, 48)


def test_reshape_for_vit_with_register_tokens():
    vit = timm.create_model(
        "vit_tiny_patch16_224", num_classes=1, img_size=32, reg_tokens=4, depth=1
    )
    rs = reshape_for(vit)
    assert rs.prefix == 5  # class token + 4 registers, read from the model
    assert explain_image(vit, torch.randn(1, 3, 32, 32), "blocks.0.norm1", top_k=4).grid == (2, 2)


def test_reshape_for_swin_and_cnn():
    assert isinstance(reshape_for(_swin()), NHWCToNCHW)
    assert reshape_for(timm.create_model("test_resnet", num_classes=1)) is None
    nhwc = torch.randn(1, 2, 3, 5)
    assert torch.equal(NHWCToNCHW()(nhwc), nhwc.permute(0, 3, 1, 2))


# ----------------------------------------------------------------- bad input


def test_missing_layer_names_model_and_layer(models):
    model = models["resnet50_tiny"][0]
    with pytest.raises(
        InputError, match=r"CAM layer 'layer9\.0' not found in model ResNet.*layer4"
    ):
        explain_image(model, _x(32), "layer9.0")
    with pytest.raises(InputError, match=r"'7' is not a child of layer4"):
        resolve_layer(model, "layer4.7")
    assert resolve_layer(model, "layer4.-1") is model.layer4[-1]
    with pytest.raises(InputError, match="not a submodule of model ResNet"):
        resolve_layer(model, nn.Conv2d(1, 1, 1))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"x": torch.randn(2, 3, 32, 32)}, r"shape \(1, C, H, W\)"),
        ({"x": torch.randn(32, 32)}, r"shape \(1, C, H, W\)"),
        ({"x": torch.zeros(1, 3, 32, 32, dtype=torch.uint8)}, "float tensor"),
        ({"x": torch.full((1, 3, 32, 32), float("nan"))}, "NaN"),
        ({"x": np.zeros((1, 3, 32, 32))}, "torch.Tensor"),
        ({"method": "lime"}, "scorecam, gradcam"),
        ({"target": "tumour"}, "'positive'"),
        ({"top_k": 0}, "top_k"),
        ({"batch_size": 0}, "batch_size"),
        ({"select": "random"}, "surrogate, gradient, mean, max"),
        ({"target_layer": ""}, "dotted path"),
    ],
)
def test_bad_input_table(models, kwargs, match):
    model, layer, _ = models["resnet50_tiny"]
    args = {"x": _x(32), "target_layer": layer, "method": "scorecam"} | kwargs
    with pytest.raises(InputError, match=match):
        explain_image(model, args.pop("x"), args.pop("target_layer"), **args)


def test_multi_logit_model_refused():
    model = timm.create_model("test_resnet", num_classes=3)
    with pytest.raises(InputError, match=r"one logit .*num_classes=1"):
        grad_cam(model, _x(32), "layer4")
    assert _no_hooks(model)


def test_token_layer_without_reshape_is_explained():
    class Tok(nn.Module):  # a token model with no timm attributes to derive a reshape from
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(3, 4)
            self.head = nn.Linear(4, 1)

        def forward(self, x):
            t = self.proj(x.flatten(2).transpose(1, 2))
            return self.head(t.mean(1))

    with pytest.raises(InputError, match=r"shape \(1, 64, 4\).*reshape_for"):
        grad_cam(Tok(), torch.randn(1, 3, 8, 8), "proj")


# ----------------------------------------------------------------- lesion focus


def test_lesion_focus_table(models):
    model, layer, size = models["resnet50_tiny"]
    rng = np.random.default_rng(0)
    crops = [rng.random((size, size), dtype=np.float32) for _ in range(2)]
    boxes = [(8, 8, 40, 40), (0, 0, 32, 64)]
    bb = CamBackbone(
        name="resnet",
        model=model,
        layer=layer,
        prepare=lambda c: torch.from_numpy(c)[None, None].repeat(1, 3, 1, 1),
    )
    df = lesion_focus([bb], crops, boxes, top_k=4, progress=False)
    assert list(df.columns[:5]) == [
        "backbone",
        "method",
        "n_images",
        "mean_energy_in_box",
        "box_area_share",
    ]
    assert df["method"].tolist() == ["scorecam", "gradcam"]
    assert (df["n_images"] == 2).all()
    np.testing.assert_allclose(df["box_area_share"], (32 * 32 / 64**2 + 0.5) / 2)
    ok = df["mean_energy_in_box"].dropna()
    assert ((ok >= 0) & (ok <= 1)).all()
    per = lesion_focus([bb], crops, boxes, top_k=4, progress=False, per_image=True)
    assert list(per.columns[:5]) == [
        "backbone",
        "method",
        "image",
        "energy_in_box",
        "box_area_share",
    ]
    assert len(per) == 4 and per["image"].tolist() == [0, 1, 0, 1]
    means = per.groupby("method", sort=False)["energy_in_box"].mean()
    np.testing.assert_allclose(means.to_numpy(), df["mean_energy_in_box"].to_numpy())
    with pytest.raises(InputError, match="2 crops but 1 boxes"):
        lesion_focus([bb], crops, boxes[:1], progress=False)


def test_first_order_estimate_matches_explicit_masks():
    # the estimate avoids building (H, W) masks; check it against building them
    from multibone.explain.cam import _estimate_scores, _masks

    g = torch.Generator().manual_seed(0)
    low = torch.randn(6, 5, 7, generator=g)
    saliency = torch.randn(37, 50, generator=g)
    idx = torch.arange(6)
    explicit = (_masks(low, idx, (37, 50))[:, 0].double() * saliency.double()).sum(dim=(1, 2))
    torch.testing.assert_close(
        _estimate_scores(low, idx, (37, 50), saliency), explicit, rtol=1e-5, atol=1e-4
    )
