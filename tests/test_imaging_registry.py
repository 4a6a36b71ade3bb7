"""Backbone registry: every tiny model runs forward without downloads; full models
exist in timm with their CAM layers; weights from local files are remapped; the
hub fails fast without a network."""

from __future__ import annotations

import time

import pytest
import timm
import torch

from multibone.errors import InputError, WeightsError
from multibone.imaging import registry
from multibone.imaging.registry import (
    BACKBONES,
    create_model,
    get_cam_layer,
    get_spec,
    load_weights_file,
)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Any attempt to open a socket fails the test: nothing here may download."""
    import socket

    def refuse(*a, **k):
        raise AssertionError("a test tried to open a network connection")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


# One torch thread for every test here (fixture in conftest.py; the machine is shared).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("name", list(BACKBONES))
def test_tiny_forward_shape_and_cam_layer(name):
    model = create_model(name, tiny=True, img_size=64, seed=0).eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    feats = {}
    layer = get_cam_layer(model, name, tiny=True)
    handle = layer.register_forward_hook(lambda m, i, o: feats.setdefault("o", o))
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        handle.remove()
    assert out.shape == (2, 1)
    assert torch.isfinite(out).all()
    assert feats["o"].ndim in (3, 4) and torch.isfinite(feats["o"]).all()
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params < 5_000_000, f"tiny {name} has {n_params} parameters"


@pytest.mark.parametrize("name", list(BACKBONES))
def test_full_model_arch_and_cam_layer_exist(name):
    spec = get_spec(name)
    assert spec.timm_name in timm.list_models()
    # Built on the meta device: checks the architecture and layer path without memory or time.
    with torch.device("meta"):
        model = create_model(name, tiny=False, img_size=spec.input_size)
    assert get_cam_layer(model, spec, tiny=False) is not None
    assert model.get_classifier().out_features == 1


@pytest.mark.parametrize("name", ["vit", "swin"])
def test_transformers_built_at_training_size(name):
    model = create_model(name, tiny=True, img_size=48, seed=0).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 48, 48)).shape == (1, 1)


def test_seeded_init_is_reproducible_and_leaves_global_rng_alone():
    before = torch.get_rng_state()
    a = create_model("e3", tiny=True, seed=7).state_dict()
    b = create_model("e3", tiny=True, seed=7).state_dict()
    c = create_model("e3", tiny=True, seed=8).state_dict()
    assert torch.equal(torch.get_rng_state(), before)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


# --------------------------------------------------------------------------- local weights


def _resnet_sd(num_classes: int) -> dict[str, torch.Tensor]:
    return timm.create_model("test_resnet", num_classes=num_classes).state_dict()


def _radimagenet_style(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Names as a RadImageNet-style ``nn.Sequential(*resnet.children())`` under DataParallel."""
    model = timm.create_model("test_resnet", num_classes=1000)
    children = [n for n, _ in model.named_children()]
    out = {}
    for k, v in sd.items():
        head, _, rest = k.partition(".")
        if head == "fc":  # RadImageNet checkpoints ship without a classifier, or a foreign one
            out[f"module.head.{rest}"] = v
        else:
            out[f"module.backbone.{children.index(head)}.{rest}"] = v
    return out


@pytest.mark.parametrize(
    "fmt, transform",
    [
        ("safetensors", lambda sd: sd),
        ("pt", lambda sd: sd),
        ("pt", lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}}),
        ("pt", _radimagenet_style),
    ],
    ids=["safetensors", "plain-state-dict", "wrapped-module-prefix", "radimagenet-sequential"],
)
def test_local_weights_are_remapped(tmp_path, fmt, transform):
    from safetensors.torch import save_file

    source = _resnet_sd(num_classes=1000)  # ImageNet-like 1000-class head
    payload = transform(source)
    path = tmp_path / f"w.{fmt}"
    if fmt == "safetensors":
        save_file({k: v.contiguous() for k, v in payload.items()}, str(path))
    else:
        torch.save(payload, path)
    model = create_model("resnet50", tiny=True, weights=path, seed=0)
    got = model.state_dict()
    for k in ("conv1.0.weight", "layer4.0.conv1.weight", "bn1.running_mean"):
        assert torch.equal(got[k], source[k]), k
    assert got["fc.weight"].shape == (1, source["fc.weight"].shape[1])  # new one-logit head


def _effnet_file(tmp_path):
    path = tmp_path / "effnet.pt"
    torch.save(timm.create_model("test_efficientnet", num_classes=1).state_dict(), path)
    return path


def _garbage_file(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(b"not a checkpoint")
    return path


@pytest.mark.parametrize(
    "make, match",
    [
        (_effnet_file, r"missing key\(s\) \[.*\], \d+ unexpected key\(s\) \[conv_stem"),
        (lambda p: p / "absent.safetensors", "weights file not found"),
        (_garbage_file, "cannot read weights"),
    ],
    ids=["keys-do-not-fit", "missing-file", "not-a-checkpoint"],
)
def test_bad_weight_files(tmp_path, make, match):
    with pytest.raises(WeightsError, match=match):
        create_model("resnet50", tiny=True, weights=make(tmp_path))


def test_keys_mismatch_message_counts(tmp_path):
    model = timm.create_model("test_resnet", num_classes=1)
    with pytest.raises(WeightsError, match=r"\d+ missing key\(s\).*\(\d+ more\)"):
        load_weights_file(model, _effnet_file(tmp_path))


# --------------------------------------------------------------------------- hub


def test_imagenet_without_network_fails_fast(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(registry, "_hub_reachable", lambda timeout=2.0: False)
    t = time.perf_counter()
    with pytest.raises(WeightsError, match="there is no network.*local file"):
        create_model("e3", weights="imagenet")
    assert time.perf_counter() - t < 5


def test_imagenet_offline_hub_error_is_wrapped(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    real = timm.create_model

    def fake(name, pretrained=False, **kw):
        if pretrained:
            raise OSError("We have no connection or you passed local_files_only")
        return real(name, pretrained=False, **kw)

    monkeypatch.setattr(timm, "create_model", fake)
    with pytest.raises(WeightsError, match="could not fetch ImageNet weights.*local file"):
        create_model("resnet50", weights="imagenet")


def test_imagenet_for_tiny_is_refused():
    with pytest.raises(WeightsError, match="tiny variant .* has no ImageNet weights"):
        create_model("vit", tiny=True, weights="imagenet")


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: get_spec("efficientnet"),
            "unknown backbone 'efficientnet'; valid backbones are e3, e4, vit, swin, resnet50, inception_v3",
        ),
        (lambda: create_model("e5", tiny=True), "valid backbones are e3, e4"),
        (
            lambda: create_model("inception_v3", img_size=64),
            "too small for backbone 'inception_v3'",
        ),
    ],
    ids=["get_spec", "create_model", "too-small"],
)
def test_bad_names_and_sizes(call, match):
    with pytest.raises(InputError, match=match):
        call()
