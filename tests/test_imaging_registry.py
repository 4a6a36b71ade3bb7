"""Backbone registry: every ``_tiny`` entry runs forward without downloads; full
entries exist in timm with their CAM layers; tiny entries are the same
architectures the old ``tiny=True`` variants were; weights from local files are
remapped; the hub fails fast without a network."""

from __future__ import annotations

import time

import pytest
import timm
import torch

from multibone.errors import InputError, WeightsError
from multibone.imaging import registry
from multibone.imaging.registry import (
    BACKBONES,
    create_backbone,
    get_cam_layer,
    get_spec,
    list_backbones,
    load_weights_file,
)

TINY = list_backbones("*_tiny")
FULL = [n for n in BACKBONES if n not in TINY]


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


@pytest.mark.parametrize("name", TINY)
def test_tiny_forward_shape_and_cam_layer(name):
    model = create_backbone(name, img_size=64, seed=0).eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    feats = {}
    layer = get_cam_layer(model, name)
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


@pytest.mark.parametrize("name", FULL)
def test_full_model_arch_and_cam_layer_exist(name):
    spec = get_spec(name)
    assert spec.timm_name in timm.list_models() and spec.hub_weights and spec.family == name
    # Built on the meta device: checks the architecture and layer path without memory or time.
    with torch.device("meta"):
        model = create_backbone(name, img_size=spec.input_size)
    assert get_cam_layer(model, spec) is not None
    assert model.get_classifier().out_features == 1


def test_every_full_entry_has_a_tiny_twin():
    assert TINY == [
        "e3_tiny",
        "e4_tiny",
        "vit_tiny",
        "swin_tiny",
        "resnet50_tiny",
        "inception_v3_tiny",
    ]
    assert [get_spec(t).family for t in TINY] == FULL
    assert list_backbones("e3*") == ["e3", "e3_tiny"] and list_backbones("nothing*") == []
    for t in TINY:
        spec = get_spec(t)
        assert not spec.hub_weights and spec.input_size == 64 and spec.min_input_size == 16
    with pytest.raises(TypeError):
        get_spec("e4_tiny").kwargs["channel_multiplier"] = 2.0  # specs are read-only


# The timm calls the old ``create_model(family, tiny=True)`` made (registry of commit
# f1dbf8b): a tiny entry must build exactly these, so the same config gives the same scores.
OLD_TINY = {
    "e3_tiny": ("test_efficientnet", {}),
    "e4_tiny": ("test_efficientnet", {"channel_multiplier": 1.25}),
    "vit_tiny": ("test_vit", {"patch_size": 8, "depth": 4, "img_size": 48}),
    "swin_tiny": (
        "swin_tiny_patch4_window7_224",
        {
            "embed_dim": 24,
            "depths": (1, 1, 1, 1),
            "num_heads": (1, 2, 2, 4),
            "window_size": 4,
            "img_size": 48,
        },
    ),
    "resnet50_tiny": ("test_resnet", {}),
    "inception_v3_tiny": ("inception_next_atto", {}),
}


@pytest.mark.parametrize("name", TINY)
def test_tiny_entry_is_the_old_tiny_variant(name):
    arch, kwargs = OLD_TINY[name]
    assert get_spec(name).timm_name == arch
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        old = timm.create_model(arch, pretrained=False, num_classes=1, in_chans=3, **kwargs)
    new = create_backbone(name, img_size=48, seed=3)
    a, b = old.state_dict(), new.state_dict()
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", ["vit_tiny", "swin_tiny"])
def test_transformers_built_at_training_size(name):
    model = create_backbone(name, img_size=48, seed=0).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 48, 48)).shape == (1, 1)


def test_seeded_init_is_reproducible_and_leaves_global_rng_alone():
    before = torch.get_rng_state()
    a = create_backbone("e3_tiny", seed=7).state_dict()
    b = create_backbone("e3_tiny", seed=7).state_dict()
    c = create_backbone("e3_tiny", seed=8).state_dict()
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
    model = create_backbone("resnet50_tiny", weights=path, seed=0)
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
        create_backbone("resnet50_tiny", weights=make(tmp_path))


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
        create_backbone("e3", weights="imagenet")
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
        create_backbone("resnet50", weights="imagenet")


def test_imagenet_for_tiny_is_refused():
    with pytest.raises(
        WeightsError, match="'vit_tiny': this scratch-only entry .* full entry 'vit'"
    ):
        create_backbone("vit_tiny", weights="imagenet")


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: get_spec("efficientnet"),
            "unknown backbone 'efficientnet'; valid backbones are e3, e3_tiny, e4, e4_tiny, "
            "vit, vit_tiny, swin, swin_tiny, resnet50, resnet50_tiny, inception_v3, "
            "inception_v3_tiny",
        ),
        (lambda: create_backbone("e5_tiny"), "valid backbones are e3, e3_tiny, e4"),
        (lambda: create_backbone("e3_tiny", img_size=8), "too small for backbone 'e3_tiny'"),
        (
            lambda: create_backbone("inception_v3", img_size=64),
            "too small for backbone 'inception_v3'",
        ),
    ],
    ids=["get_spec", "create_backbone", "too-small-tiny", "too-small"],
)
def test_bad_names_and_sizes(call, match):
    with pytest.raises(InputError, match=match):
        call()


# --------------------------------------------------------------------------- multibone backbones


def _fake_hub_cache(root, repo_id: str, filename: str = "model.safetensors") -> None:
    """The Hugging Face cache layout: models--<org>--<name>/{refs/main, snapshots/<rev>/<file>}."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / filename).write_bytes(b"weights")


def test_hub_weights_cached_reads_the_local_caches_only(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch"))
    assert not registry.hub_weights_cached(get_spec("e3"))
    hub_id = timm.models.get_pretrained_cfg("efficientnet_b3").hf_hub_id
    _fake_hub_cache(tmp_path / "hf", hub_id)
    assert registry.hub_weights_cached(get_spec("e3"))
    assert not registry.hub_weights_cached(get_spec("e4"))
    assert not registry.hub_weights_cached(get_spec("e3_tiny"))  # scratch-only: never


def test_backbones_command_lists_the_registry(tmp_path, monkeypatch, capsys):
    import json

    from huggingface_hub import constants

    from multibone.cli import main

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch"))
    _fake_hub_cache(tmp_path / "hf", timm.models.get_pretrained_cfg("resnet50").hf_hub_id)
    assert main(["backbones"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "name",
        "timm",
        "architecture",
        "CAM",
        "layer",
        "input",
        "px",
        "weights",
    ]
    rows = {ln.split()[0]: ln.split() for ln in lines[2:]}
    assert list(rows) == list(BACKBONES)
    assert rows["vit_tiny"] == ["vit_tiny", "test_vit", "blocks.3.norm1", "64", "none", "needed"]
    assert (
        rows["resnet50"][1:4] == ["resnet50", "layer4", "224"] and rows["resnet50"][4] == "cached"
    )
    assert rows["e3"][4:] == ["not", "cached"]

    assert main(["backbones", "*_tiny", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in table] == TINY and {r["weights"] for r in table} == {"none needed"}
    assert main(["backbones", "densenet*"]) == 2
    assert "no backbone matches 'densenet*'" in capsys.readouterr().err
