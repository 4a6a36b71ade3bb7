"""Radiograph loading throughput: uncached decode vs memory / disk crop cache.

Usage::

    python benchmarks/bench_io.py [--n 12] [--repeats 5] [--size 224]

Builds a temporary set of files per kind (copies of the pydicom-data CR
radiographs RG1/RG3, uncompressed and JPEG 2000, plus synthetic 16-bit PNG and
8-bit JPEG of radiograph size), then times ``CropCache.load_many`` of one
lesion box per file:

* ``uncached``: fresh cache (every file decoded, windowed, cropped, resized);
* ``memory``: the same cache again (crops served from memory);
* ``disk``: a new cache over a filled crop folder (a new process / epoch).

Each figure is the median of ``--repeats`` runs; printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from multibone.io import CropCache, read_radiograph


def _copies(src: Path, folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True)
    out = []
    for i in range(n):
        dst = folder / f"{i:03d}{src.suffix}"
        shutil.copyfile(src, dst)
        out.append(dst)
    return out


def _synthetic(folder: Path, n: int, kind: str, rng: np.random.Generator) -> list[Path]:
    folder.mkdir(parents=True)
    h, w = 2048, 1660  # a typical CR/DX plate size
    yy, xx = np.mgrid[0:h, 0:w]
    base = 0.3 + 0.4 * np.exp(-(((xx - w / 2) / (w / 6)) ** 2))  # a bright "bone" band
    out = []
    for i in range(n):
        img = np.clip(base + rng.normal(0, 0.05, (h, w)), 0, 1)
        if kind == "png16":
            path = folder / f"{i:03d}.png"
            Image.fromarray((img * 65535).astype(np.uint16)).save(path, compress_level=6)
        else:
            path = folder / f"{i:03d}.jpg"
            Image.fromarray((img * 255).astype(np.uint8)).save(path, quality=90)
        out.append(path)
    return out


def _time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=12, help="files per kind")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--size", type=int, default=224)
    args = ap.parse_args()

    from pydicom.data import get_testdata_file

    rng = np.random.default_rng(0)
    work = Path(tempfile.mkdtemp(prefix="bench_io_"))
    try:
        kinds: dict[str, list[Path]] = {}
        for name in ["RG3_UNCR.dcm", "RG3_J2KR.dcm", "RG1_J2KI.dcm"]:
            src = get_testdata_file(name)
            if src is None:
                print(f"skip {name}: pydicom-data not installed")
                continue
            kinds[name.removesuffix(".dcm")] = _copies(Path(src), work / name, args.n)
        kinds["png16"] = _synthetic(work / "png16", args.n, "png16", rng)
        kinds["jpeg8"] = _synthetic(work / "jpeg8", args.n, "jpeg8", rng)

        print(
            f"machine: {platform.machine()} {platform.processor() or ''}, "
            f"python {platform.python_version()}; {args.n} files per kind, "
            f"crop -> {args.size} px, median of {args.repeats} runs\n"
        )
        print(
            "| files | image (H x W) | file MB | decode+crop, uncached (ms/file) | "
            "memory cache (ms/crop) | disk cache (ms/crop) | speed-up disk vs uncached |"
        )
        print("|---|---|---|---|---|---|---|")
        for kind, paths in kinds.items():
            h, w = read_radiograph(paths[0]).pixels.shape
            rois = [(w * 0.3, h * 0.4, w * 0.6, h * 0.7)] * len(paths)
            mb = paths[0].stat().st_size / 2**20

            def uncached(paths=paths, rois=rois):
                CropCache().load_many(paths, rois, args.size, margin=0.1, progress=False)

            warm = CropCache()
            warm.load_many(paths, rois, args.size, margin=0.1, progress=False)

            def memory(paths=paths, rois=rois, warm=warm):
                warm.load_many(paths, rois, args.size, margin=0.1, progress=False)

            disk_dir = work / f"crops_{kind}"
            CropCache(disk_dir).load_many(paths, rois, args.size, margin=0.1, progress=False)

            def disk(paths=paths, rois=rois, disk_dir=disk_dir):
                c = CropCache(disk_dir)
                c.load_many(paths, rois, args.size, margin=0.1, progress=False)
                assert c.decodes == 0

            n = len(paths)
            t_un = _time(uncached, args.repeats) / n * 1e3
            t_mem = _time(memory, args.repeats) / n * 1e3
            t_disk = _time(disk, args.repeats) / n * 1e3
            print(
                f"| {kind} | {h} x {w} | {mb:.1f} | {t_un:.1f} | {t_mem:.3f} | {t_disk:.3f} | "
                f"{t_un / t_disk:.0f}x |"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
