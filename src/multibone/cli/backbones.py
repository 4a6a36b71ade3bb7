"""``multibone backbones``: list the backbone registry as a table.

One row per registry entry: the name to put in ``imaging.backbones``, the timm
architecture it builds, the layer Score-CAM / Grad-CAM hooks, the default input
size, and whether ImageNet weights are already on this machine (the Hugging Face
/ torch hub caches; nothing is downloaded). ``_tiny`` entries are trained from
scratch, so they need no weights.
"""

from __future__ import annotations

import argparse
import json

EPILOG = """\
Each name is what a run config lists under imaging.backbones, and what the run's
outputs call that backbone (score columns, weights/<name>/ folders, the bundle,
the dashboard). Full entries (e3, e4, vit, swin: the seed-004 recipe) are for a
GPU; their _tiny twins are the same families with few parameters, for a CPU
(configs/demo.yaml). Weights column: "cached" = ImageNet weights found locally
(imaging.weights: imagenet works offline with HF_HUB_OFFLINE=1); "not cached" =
they come from the timm hub on first use, or give a local file in
imaging.weights; "none needed" = a scratch-only _tiny entry (weights: none).

examples:
  multibone backbones                  all entries
  multibone backbones '*_tiny'         the CPU entries only
  multibone backbones e3 --json        one entry, machine-readable
"""

COLUMNS = ("name", "timm architecture", "CAM layer", "input px", "weights")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument(
        "pattern",
        nargs="?",
        default="*",
        help="shell-style name pattern, e.g. '*_tiny' or 'vit*' (default: all)",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")


def rows(pattern: str = "*") -> list[dict[str, object]]:
    """One dict per registry entry matching ``pattern``: the table's columns plus ``description``."""
    from multibone.imaging.registry import get_spec, hub_weights_cached, list_backbones

    out = []
    for name in list_backbones(pattern):
        spec = get_spec(name)
        if not spec.hub_weights:
            weights = "none needed"
        else:
            weights = "cached" if hub_weights_cached(spec) else "not cached"
        out.append(
            {
                "name": name,
                "timm architecture": spec.timm_name,
                "CAM layer": spec.cam_layer,
                "input px": spec.input_size,
                "weights": weights,
                "description": spec.description,
            }
        )
    return out


def format_table(table: list[dict[str, object]]) -> str:
    """Fixed-width text table of :func:`rows` (columns :data:`COLUMNS`)."""
    cells = [list(COLUMNS)] + [[str(r[c]) for c in COLUMNS] for r in table]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from multibone.errors import InputError

    table = rows(args.pattern)
    if not table:
        raise InputError(
            f"no backbone matches {args.pattern!r}; run 'multibone backbones' to see them all"
        )
    print(json.dumps(table, indent=2) if args.json else format_table(table))
    return 0
