"""Export a bundle's fold models to ONNX, checked against torch (``multibone export-onnx``).

Each fold model is exported with a dynamic batch axis (opset 17, TorchScript
exporter), then run with ONNX Runtime on check images beside torch eager; an
export whose logits differ from torch by more than ``atol`` (default 1e-4) is
refused and nothing is written. The folder layout is described in
:mod:`multibone.imaging.onnx_runtime`.
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from multibone.errors import BundleError, MultiboneError
from multibone.imaging.onnx_runtime import ONNX_FORMAT, ONNX_HINT, _normalise, _resize, _sha256

__all__ = ["OPSET", "export_onnx"]

OPSET = 17


def _check_images(n: int, seed: int = 0) -> list[np.ndarray]:
    """Smooth random grey crops of assorted sizes (a radiograph-like input, not noise)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        h, w = 40 + 17 * i, 56 + 11 * i
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        img = 0.5 + 0.3 * np.sin(6 * xx + i) * np.cos(5 * yy) + 0.05 * rng.standard_normal((h, w))
        out.append(np.clip(img, 0, 1).astype(np.float32))
    return out


def _export_embedding(model, x: np.ndarray, path: Path, atol: float, what: str) -> None:
    """Export ``forward_head(forward_features(x), pre_logits=True)`` (what
    :func:`multibone.imaging.ood.embed` computes) and check it against torch."""
    import onnxruntime as ort
    import torch

    class _Embed(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, xb):
            f = self.m.forward_head(self.m.forward_features(xb), pre_logits=True)
            return f.reshape(f.shape[0], -1)

    wrapper = _Embed(model).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper, (torch.from_numpy(x[:1]),), str(path), input_names=["input"],
            output_names=["features"], dynamic_axes={"input": {0: "n"}, "features": {0: "n"}},
            opset_version=OPSET, dynamo=False, external_data=False,
        )
    with torch.inference_mode():
        ref = wrapper(torch.from_numpy(x)).float().numpy()
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    diff = float(np.max(np.abs(got - ref) / np.maximum(1.0, np.abs(ref))))
    if not diff <= atol:
        raise MultiboneError(f"{what}: ONNX pooled features differ from torch by {diff:.2e}; not exported")


def export_onnx(
    weights_dir: str | Path,
    backbones: Sequence[str],
    out: str | Path,
    *,
    bundle_hash: str,
    check_crops: Sequence[np.ndarray] | None = None,
    atol: float = 1e-4,
    force: bool = False,
) -> dict:
    """Export every fold model of ``backbones`` under ``weights_dir`` to ``out``; return onnx.json.

    ``check_crops``: grey crops in [0, 1] scored by both engines (default: 4 synthetic
    crops). Raises :class:`MultiboneError` when a model's ONNX logits differ from torch
    by more than ``atol * max(1, |logit|)``; ``out`` is written atomically (all or nothing).
    """
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BundleError(f"ONNX Runtime is not installed; {ONNX_HINT}") from exc
    import torch

    from multibone._atomic import atomic_dir
    from multibone.imaging.folds import fold_numbers, load_fold

    weights_dir = Path(weights_dir)
    crops = list(check_crops) if check_crops is not None else _check_images(4)
    manifest: dict = {"format": ONNX_FORMAT, "bundle_hash": bundle_hash, "opset": OPSET,
                      "torch": torch.__version__, "onnxruntime": ort.__version__,
                      "backbones": {}, "files": {}, "check": {}, "embed": {}}
    t0 = time.perf_counter()
    with atomic_dir(out, force=force) as tmp:
        for b in backbones:
            (tmp / b).mkdir()
            ks = fold_numbers(weights_dir, b)
            manifest["backbones"][b] = ks
            worst = worst_abs = 0.0
            for k in ks:
                model, meta = load_fold(weights_dir, b, k)
                size = int(meta["img_size"])
                onnx_path = tmp / b / f"fold{k}.onnx"
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # exporter deprecation/tracer chatter
                    torch.onnx.export(
                        model, (torch.zeros(1, 3, size, size),), str(onnx_path),
                        input_names=["input"], output_names=["logit"],
                        dynamic_axes={"input": {0: "n"}, "logit": {0: "n"}},
                        opset_version=OPSET, dynamo=False, external_data=False,
                    )
                shutil.copyfile(weights_dir / b / f"fold{k}.json", tmp / b / f"fold{k}.json")
                x = _normalise(_resize(crops, size), meta["norm_mean"], meta["norm_std"])
                with torch.inference_mode():
                    ref = model(torch.from_numpy(x)).float().numpy().reshape(-1)
                sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
                got = np.asarray(sess.run(None, {"input": x})[0]).reshape(-1)
                # Tolerance atol for |logit| <= 1, relative beyond: float32 logits of -300 (a
                # confident model on an odd check image) differ by 1e-4 between two torch
                # batch sizes already, so an absolute bound there would test rounding only.
                scaled = np.abs(got - ref) / np.maximum(1.0, np.abs(ref))
                diff = float(np.max(scaled))
                if not diff <= atol:
                    raise MultiboneError(
                        f"{b} fold {k}: ONNX logits differ from torch by {diff:.2e} (relative to "
                        f"max(1, |logit|); > {atol:g}); not exported; use the torch engine"
                    )
                worst = max(worst, diff)
                worst_abs = max(worst_abs, float(np.max(np.abs(got - ref))))
                if k == ks[0]:  # the first fold's pooled features, for the unlike-training check
                    _export_embedding(model, x, tmp / b / f"fold{k}.embed.onnx", atol, f"{b} fold {k}")
                    manifest["embed"][b] = k
                    manifest["files"][f"{b}/fold{k}.embed.onnx"] = _sha256(tmp / b / f"fold{k}.embed.onnx")
                for name in (f"fold{k}.onnx", f"fold{k}.json"):
                    manifest["files"][f"{b}/{name}"] = _sha256(tmp / b / name)
            manifest["check"][b] = {"images": len(crops), "max_logit_diff": worst,
                                   "max_abs_logit_diff": worst_abs, "atol": atol}
        manifest["seconds"] = round(time.perf_counter() - t0, 2)
        (tmp / "onnx.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return manifest
