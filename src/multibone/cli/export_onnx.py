"""``multibone export-onnx``: write a bundle's fold models as ONNX graphs, checked against torch."""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Export every fold model of a bundle to ONNX (one graph per model, any batch size) "
        "and check each against PyTorch on test crops: an export whose logits differ by more "
        "than --atol is refused and nothing is written. 'multibone predict' and the dashboard "
        "then score images with ONNX Runtime, which starts without torch and is faster on "
        "CPU. Needs the onnx extra: pip install 'multibone[onnx]'."
    )
    p.epilog = (
        "example: multibone export-onnx --bundle runs/demo/bundle   "
        "(writes runs/demo/bundle-onnx, where predict looks by default)"
    )
    p.add_argument("--bundle", required=True, help="model bundle folder (e.g. runs/demo/bundle)")
    p.add_argument("--out", default=None,
                   help="folder to write (default: BUNDLE-onnx beside the bundle; the bundle "
                        "itself refuses files it does not list, so the export lives beside it)")
    p.add_argument("--atol", type=float, default=1e-4,
                   help="largest logit difference from torch accepted, relative to max(1, |logit|) "
                        "(default 1e-4)")
    p.add_argument("--force", action="store_true", help="replace an existing --out folder")
    p.add_argument("--trust-pickle", action="store_true",
                   help="accept an older bundle that stores pickles (only one you made yourself)")


def run(args: argparse.Namespace) -> int:
    from multibone.bundle import load_bundle
    from multibone.errors import InputError
    from multibone.imaging.onnx_export import export_onnx
    from multibone.imaging.onnx_runtime import default_onnx_dir

    bundle = load_bundle(args.bundle, trust_pickle=args.trust_pickle)
    if not bundle.backbones:
        raise InputError(f"{args.bundle}: this bundle has no image models; nothing to export")
    out = args.out or default_onnx_dir(bundle.path)
    manifest = export_onnx(bundle.path / "backbones", bundle.backbones, out,
                           bundle_hash=bundle.hash, atol=args.atol, force=args.force)
    checks = manifest["check"].values()
    print(json.dumps({"written": str(out), "models": sum(len(ks) for ks in manifest["backbones"].values()),
                      "max_logit_diff": max(c["max_logit_diff"] for c in checks),
                      "max_abs_logit_diff": max(c["max_abs_logit_diff"] for c in checks),
                      "seconds": manifest["seconds"]}))
    return 0
