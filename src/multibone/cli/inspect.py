"""``multibone inspect IMAGE``: load one radiograph and print what multibone sees.

Prints one JSON object (stdout) describing the image after loading, windowing
and cropping: size, grey-level statistics, the file's photometric
interpretation, format, bit depth and how grey levels were mapped. With
``--png OUT`` it also writes the (cropped) image as an 8-bit PNG, so one can
check by eye that bone is bright and the box is where the lesion is.
No DICOM identifier is printed; ``file`` is the file name only.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from multibone._atomic import atomic_path
from multibone.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", type=Path, help="DICOM, PNG or JPEG file")
    parser.add_argument(
        "--roi",
        metavar="X0,Y0,X1,Y1",
        default=None,
        help="lesion box in original pixels (x = column, y = row, x1/y1 exclusive)",
    )
    parser.add_argument(
        "--margin",
        type=float,
        default=0.0,
        help="fraction of the box size added on each side (default 0)",
    )
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help="also resize the crop to SIZE x SIZE (antialiased), as a backbone sees it",
    )
    parser.add_argument(
        "--png",
        type=Path,
        default=None,
        metavar="OUT",
        help="write the (cropped) image as an 8-bit PNG here",
    )


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from multibone.io import crop_roi, parse_roi, read_radiograph, resize_square, roi_box, to_uint8

    roi = parse_roi(args.roi) if args.roi is not None else None
    if args.png is not None and args.png.suffix.lower() != ".png":
        raise InputError(f"--png {args.png}: the output file name must end in .png")
    rg = read_radiograph(args.image)
    box = roi_box(rg.pixels.shape, roi, args.margin)
    pixels = crop_roi(rg.pixels, roi, args.margin)
    if args.size is not None:
        pixels = resize_square(pixels, args.size)
    info = {
        "file": rg.source,
        "format": rg.format,
        "photometric": rg.photometric,
        "bits": rg.bits,
        "voi": rg.voi,
        "transfer_syntax": rg.transfer_syntax,
        "original_height": rg.shape[0],
        "original_width": rg.shape[1],
        "box": list(box),
        "height": int(pixels.shape[0]),
        "width": int(pixels.shape[1]),
        "dtype": str(pixels.dtype),
        "min": round(float(pixels.min()), 6),
        "max": round(float(pixels.max()), 6),
        "mean": round(float(pixels.mean()), 6),
        "std": round(float(pixels.std()), 6),
        "p01": round(float(np.percentile(pixels, 1)), 6),
        "p99": round(float(np.percentile(pixels, 99)), 6),
        "png": None,
    }
    if args.png is not None:
        with atomic_path(args.png, suffix=".png") as tmp:
            Image.fromarray(to_uint8(pixels)).save(tmp, format="PNG")
        info["png"] = str(args.png)
    print(json.dumps(info))
    return 0
