"""``multibone detect``: lesion boxes on one radiograph, printed as JSON.

    multibone detect --weights runs/r1/detection --image knee.dcm
    multibone detect --bundle runs/r1/bundle --image knee.png

``--weights``: a ``train-detector`` output folder (its K fold models, merged), or
one ``weights/fold<k>.safetensors``. ``--bundle``: a bundle carrying a detector in
``detection/``. Boxes are ``[x0, y0, x1, y1]`` pixels of the original image, best first.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", type=Path, help="detector run folder or fold weights file")
    src.add_argument("--bundle", type=Path, help="model bundle with a detector")
    parser.add_argument("--image", required=True, type=Path, help="radiograph (DICOM, PNG, JPEG)")
    parser.add_argument(
        "--min-score",
        type=float,
        default=None,
        help="show boxes scoring at least this (default: the run's detection.box_thresh)",
    )


def run(args: argparse.Namespace) -> int:
    from multibone.detection.inference import detect
    from multibone.detection.run import load_detectors
    from multibone.errors import InputError
    from multibone.io import read_radiograph

    if args.bundle is not None:
        if not args.bundle.is_dir():
            raise InputError(f"{args.bundle}: bundle folder not found")
        place = args.bundle / "detection"
        if not place.is_dir():
            raise InputError(
                f"{args.bundle}: this bundle carries no detector (no detection/ folder); "
                "give --weights with a train-detector run instead"
            )
        from multibone.bundle import load_bundle

        load_bundle(args.bundle)  # every file's hash checked (a changed weights file is refused)
    else:
        place = args.weights
    models, config = load_detectors(place)
    pixels = read_radiograph(args.image).pixels
    boxes, scores = detect(models, pixels, config)
    floor = config.box_thresh if args.min_score is None else args.min_score
    found = [
        {"box": [round(float(v), 1) for v in b], "score": round(float(s), 4)}
        for b, s in zip(boxes, scores, strict=True)
        if s >= floor
    ]
    print(
        json.dumps(
            {
                "image": args.image.name,
                "height": int(pixels.shape[0]),
                "width": int(pixels.shape[1]),
                "detector": config.detector,
                "n_models": len(models),
                "boxes": found,
            }
        )
    )
    return 0
