"""Decoded-crop cache: decode each radiograph once, reuse its resized crops.

Decoding a large DICOM (JPEG 2000 especially) costs far more than anything a
small backbone does with the 224 px crop, and training reads every crop once
per epoch. :class:`CropCache` keeps crops in memory (LRU, bounded in MB) and,
given a folder, on disk as ``.npy`` files shared by processes (data-loader
workers, later runs).

A crop's key is (absolute path, file mtime in ns, file size in bytes, box,
output size, margin, cache format version): replacing or editing an image file
changes its mtime or size, so its stale crops are never served. Disk files are
written atomically (temporary file renamed into place), so concurrent writers
and interrupted runs leave no half-written crop.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from multibone._atomic import atomic_path
from multibone.errors import ImageReadError, InputError
from multibone.io.radiograph import read_radiograph
from multibone.io.roi import Roi, crop_roi, normalize_roi, resize_square

log = logging.getLogger(__name__)

# Bump when decoding / cropping / resizing changes what a key maps to, so old
# on-disk crops are not reused.
CACHE_VERSION = 1


def _file_id(path: str | Path) -> tuple[str, int, int]:
    """(absolute path, mtime_ns, size) of an image file."""
    p = Path(path).resolve()
    try:
        st = p.stat()
    except FileNotFoundError as exc:
        raise ImageReadError(f"{path}: file not found; check the path") from exc
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    return str(p), int(st.st_mtime_ns), int(st.st_size)


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
        raise InputError(f"size {size!r}: must be a whole number of pixels >= 1")
    return int(size)


def _check_margin(margin: float) -> float:
    try:
        value = float(margin)
    except (TypeError, ValueError) as exc:
        raise InputError(f"margin {margin!r}: must be a number >= 0") from exc
    if not math.isfinite(value) or value < 0:
        raise InputError(f"margin {margin!r}: must be a finite number >= 0 (a fraction of the box)")
    return value


class CropCache:
    """Memory (and optional disk) cache of resized lesion crops.

    Args:
        directory: folder for ``.npy`` crops (created when needed); None = memory only.
        max_memory_mb: memory budget for cached crops; least recently used crops
            are dropped beyond it. None = unbounded. (A 224 px crop takes 0.2 MB.)

    Attributes:
        decodes: number of image files decoded so far (cache misses).
        memory_hits, disk_hits: crops served from memory / disk.
    """

    def __init__(
        self, directory: Path | str | None = None, *, max_memory_mb: float | None = 2048.0
    ):
        self.directory = Path(directory) if directory is not None else None
        self.max_memory_bytes = None if max_memory_mb is None else int(max_memory_mb * 2**20)
        self._memory: OrderedDict[str, np.ndarray] = OrderedDict()
        self._memory_bytes = 0
        self.decodes = 0
        self.memory_hits = 0
        self.disk_hits = 0

    # ----------------------------------------------------------------- keys

    @staticmethod
    def key(path: str | Path, roi: Sequence[float] | None, size: int, margin: float = 0.0) -> str:
        """Hex digest naming the crop of ``path`` (as the file is now) for these settings."""
        return CropCache._key(
            _file_id(path), normalize_roi(roi), _check_size(size), _check_margin(margin)
        )

    @staticmethod
    def _key(fid: tuple[str, int, int], roi: Roi | None, size: int, margin: float) -> str:
        blob = json.dumps(
            {"v": CACHE_VERSION, "file": fid, "roi": roi, "size": size, "margin": margin},
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()

    # ----------------------------------------------------------------- storage

    def _remember(self, key: str, crop: np.ndarray) -> None:
        if key in self._memory:
            self._memory.move_to_end(key)
            return
        crop.flags.writeable = False
        self._memory[key] = crop
        self._memory_bytes += crop.nbytes
        if self.max_memory_bytes is not None:
            while self._memory_bytes > self.max_memory_bytes and len(self._memory) > 1:
                _, old = self._memory.popitem(last=False)
                self._memory_bytes -= old.nbytes

    def _lookup(self, key: str, size: int) -> np.ndarray | None:
        crop = self._memory.get(key)
        if crop is not None:
            self._memory.move_to_end(key)
            self.memory_hits += 1
            return crop
        if self.directory is None:
            return None
        file = self.directory / f"{key}.npy"
        if not file.exists():
            return None
        try:
            crop = np.load(file, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            log.warning("crop cache: unreadable %s (%s); decoding again", file.name, exc)
            return None
        if crop.shape != (size, size) or crop.dtype != np.float32:
            log.warning(
                "crop cache: %s has shape %s %s; decoding again", file.name, crop.shape, crop.dtype
            )
            return None
        self.disk_hits += 1
        self._remember(key, crop)
        return crop

    def _store(self, key: str, crop: np.ndarray) -> None:
        crop = np.ascontiguousarray(crop, dtype=np.float32)
        if self.directory is not None:
            try:
                with atomic_path(self.directory / f"{key}.npy", suffix=".npy") as tmp:
                    with open(tmp, "wb") as fh:
                        np.save(fh, crop, allow_pickle=False)
            except OSError as exc:  # a full or read-only cache disk must not stop training
                log.warning(
                    "crop cache: cannot write to %s (%s); keeping crops in memory only",
                    self.directory,
                    exc.strerror or exc,
                )
        self._remember(key, crop)

    def clear_memory(self) -> None:
        """Drop the in-memory crops (disk files stay)."""
        self._memory.clear()
        self._memory_bytes = 0

    # ----------------------------------------------------------------- public

    def get(
        self, path: str | Path, roi: Sequence[float] | None, size: int, margin: float = 0.0
    ) -> np.ndarray:
        """One crop, resized: float32 (size, size) in [0, 1], bone bright.

        Args:
            path: image file (DICOM, PNG, JPEG).
            roi: (x0, y0, x1, y1) pixels, x1/y1 exclusive; None (or all NaN) = whole image.
            size: output side in pixels.
            margin: fraction of the box size added on each side.

        Returns:
            A new float32 array (size, size) the caller may modify.

        Raises:
            ImageReadError: unreadable image. InputError: bad box, size or margin.
        """
        return self.load_many([path], [roi], size, margin, progress=False)[0]

    def load_many(
        self,
        paths: Sequence[str | Path],
        rois: Sequence[Sequence[float] | None] | None,
        size: int,
        margin: float = 0.0,
        progress: bool = True,
    ) -> np.ndarray:
        """Many crops at once, each file decoded at most once.

        Args:
            paths: N image files (repeats allowed, e.g. several boxes per image).
            rois: N boxes (or None entries), or None for whole images.
            size: output side in pixels.
            margin: fraction of each box added on each side.
            progress: show a tqdm bar over the files to decode.

        Returns:
            float32 (N, size, size) in [0, 1], in the order of ``paths``.

        Raises:
            ImageReadError naming the file; InputError naming the box; or
            InputError when ``rois`` and ``paths`` differ in length.
        """
        size = _check_size(size)
        paths = list(paths)
        rois = [None] * len(paths) if rois is None else list(rois)
        if len(rois) != len(paths):
            raise InputError(
                f"load_many: {len(paths)} paths but {len(rois)} rois; give one roi "
                "(or None) per path"
            )
        margin = _check_margin(margin)
        out = np.empty((len(paths), size, size), dtype=np.float32)
        # Work out every key first; group misses by file so each file is decoded once.
        todo: dict[str, list[tuple[int, str, Roi | None]]] = {}
        for i, (path, roi) in enumerate(zip(paths, rois, strict=True)):
            box = normalize_roi(roi)
            fid = _file_id(path)
            key = self._key(fid, box, size, margin)
            crop = self._lookup(key, size)
            if crop is not None:
                out[i] = crop
            else:
                todo.setdefault(os.fspath(path), []).append((i, key, box))
        for path, items in tqdm(
            todo.items(), desc="decoding radiographs", unit="file", disable=not progress or not todo
        ):
            pixels = read_radiograph(path).pixels
            self.decodes += 1
            for i, key, box in items:
                crop = self._lookup(key, size)  # the same box twice in one call
                if crop is None:
                    try:
                        crop = resize_square(crop_roi(pixels, box, margin), size)
                    except InputError as exc:
                        raise InputError(f"{path}: {exc}") from exc
                    self._store(key, crop)
                out[i] = crop
        return out
