"""A paper-size bundle for measuring speed: the demo bundle with its four tiny backbones
swapped for the paper's full-size ones (random weights), five fold models each.

    python benchmarks/make_fullsize_bundle.py --from runs/demo/bundle --out /tmp/full/bundle

e3_tiny -> EfficientNet-B3, e4_tiny -> EfficientNet-B4, vit_tiny -> ViT-B/16, swin_tiny ->
Swin-B, all at 224 px (registry entries e3, e4, vit, swin). The folders keep the demo's
names, because the demo stacker was fitted on columns with those names; each fold's json
states the real architecture, so the models load as the full-size nets. Weights are
random (seeded): the scores mean nothing, the timings are those of the real networks.
Roughly 4 GB on disk (ViT-B and Swin-B are ~350 MB a fold). Never for patients.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

FULL = {"e3_tiny": "e3", "e4_tiny": "e4", "vit_tiny": "vit", "swin_tiny": "swin"}


def make(src: Path, out: Path, size: int = 224, folds: int | None = None) -> Path:
    from safetensors.torch import save_file

    from multibone.bundle.store import sha256_file
    from multibone.imaging.folds import fold_numbers
    from multibone.imaging.registry import create_backbone, get_spec, timm_kwargs

    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(src, out, ignore=shutil.ignore_patterns("backbones"))
    meta = json.loads((src / "bundle.json").read_text())
    for b in meta["feature_schema"]["backbones"]:
        full = FULL.get(b, b)
        spec = get_spec(full)
        ks = fold_numbers(src / "backbones", b)[: folds or None]
        (out / "backbones" / b).mkdir(parents=True)
        for k in ks:
            fm = json.loads((src / "backbones" / b / f"fold{k}.json").read_text())
            model = create_backbone(full, img_size=size, seed=1000 + k)
            fm.update(arch=spec.timm_name, timm_kwargs=timm_kwargs(spec, img_size=size), tiny=False,
                      kind=spec.kind, cam_layer=spec.cam_layer, img_size=size,
                      note="random weights: a speed-measuring bundle (benchmarks/make_fullsize_bundle.py)")
            state = {n: t.contiguous() for n, t in model.state_dict().items()}
            save_file(state, str(out / "backbones" / b / f"fold{k}.safetensors"))
            (out / "backbones" / b / f"fold{k}.json").write_text(json.dumps(fm, indent=2))
            print(f"{b} fold {k}: {spec.timm_name} ({sum(t.numel() for t in state.values()) / 1e6:.1f} M)",
                  flush=True)
    files = {}
    for p in sorted(out.rglob("*")):
        if p.is_file() and p.name != "bundle.json":
            files[p.relative_to(out).as_posix()] = sha256_file(p)
    meta["files"] = files
    (out / "bundle.json").write_text(json.dumps(meta, indent=2))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="src", type=Path, required=True, help="a demo bundle (4 tiny backbones)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--folds", type=int, default=None, help="keep only the first N folds")
    a = ap.parse_args(argv)
    make(a.src, a.out, a.size, a.folds)
    from multibone.bundle import load_bundle

    load_bundle(a.out)  # verifies every hash and the metadata schema
    print(f"written and verified: {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
