"""multibone.io.CropCache: decode once, memory + disk reuse, invalidation on file change."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

import multibone.io.cache as cache_mod
from multibone.errors import ImageReadError, InputError
from multibone.io import CropCache, crop_roi, read_radiograph, resize_square


def write_png(path, seed: int, shape=(80, 64)):
    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random(shape) * 65535).astype(np.uint16)).save(path)
    return path


@pytest.fixture
def counted(monkeypatch):
    """Count calls of read_radiograph made by the cache."""
    calls: list[str] = []

    def counting(path):
        calls.append(os.fspath(path))
        return read_radiograph(path)

    monkeypatch.setattr(cache_mod, "read_radiograph", counting)
    return calls


def expected_crop(path, roi, size, margin=0.0):
    return resize_square(crop_roi(read_radiograph(path).pixels, roi, margin), size)


def test_second_get_does_not_decode_again(tmp_path, counted):
    path = write_png(tmp_path / "a.png", 0)
    cache = CropCache()
    first = cache.get(path, (5, 6, 40, 50), 16, margin=0.1)
    second = cache.get(path, (5, 6, 40, 50), 16, margin=0.1)
    assert len(counted) == 1 and cache.decodes == 1 and cache.memory_hits == 1
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, expected_crop(path, (5, 6, 40, 50), 16, 0.1))
    first[...] = 7  # callers get their own copy
    assert cache.get(path, (5, 6, 40, 50), 16, margin=0.1).max() <= 1.0
    cache.get(path, (5, 6, 40, 50), 24, margin=0.1)  # other size: other crop
    assert len(counted) == 2


def test_disk_cache_serves_a_new_process(tmp_path, counted):
    path = write_png(tmp_path / "a.png", 1)
    crops = tmp_path / "crops"
    a = CropCache(crops).get(path, None, 20)
    assert len(list(crops.glob("*.npy"))) == 1
    assert not [p for p in crops.iterdir() if not p.name.endswith(".npy")]  # no temp left
    fresh = CropCache(crops)
    b = fresh.get(path, None, 20)
    assert len(counted) == 1 and fresh.disk_hits == 1
    np.testing.assert_array_equal(a, b)


def test_changed_file_invalidates(tmp_path, counted):
    path = write_png(tmp_path / "a.png", 2)
    crops = tmp_path / "crops"
    cache = CropCache(crops)
    old = cache.get(path, None, 16)
    st = os.stat(path)
    write_png(path, 3)  # same name, new content
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # mtime moves even on coarse clocks
    new = cache.get(path, None, 16)
    assert len(counted) == 2
    assert not np.array_equal(old, new)
    np.testing.assert_array_equal(new, expected_crop(path, None, 16))
    assert CropCache.key(path, None, 16) != CropCache._key(
        (str(path.resolve()), st.st_mtime_ns, st.st_size), None, 16, 0.0
    )


def test_load_many_decodes_each_file_once(tmp_path, counted):
    a = write_png(tmp_path / "a.png", 4)
    b = write_png(tmp_path / "b.png", 5, shape=(50, 90))
    paths = [a, b, a, a]
    rois = [(0, 0, 30, 30), None, (10, 10, 60, 70), (0, 0, 30, 30)]
    cache = CropCache()
    out = cache.load_many(paths, rois, 12, margin=0.2, progress=False)
    assert out.shape == (4, 12, 12) and out.dtype == np.float32
    assert sorted(counted) == sorted([os.fspath(a), os.fspath(b)])
    for i, (p, r) in enumerate(zip(paths, rois, strict=True)):
        np.testing.assert_array_equal(out[i], expected_crop(p, r, 12, 0.2))
    again = cache.load_many(paths, rois, 12, margin=0.2, progress=False)
    assert len(counted) == 2
    np.testing.assert_array_equal(out, again)


def test_corrupt_disk_entry_is_rebuilt(tmp_path, counted):
    path = write_png(tmp_path / "a.png", 6)
    crops = tmp_path / "crops"
    good = CropCache(crops).get(path, None, 8)
    (npy,) = crops.glob("*.npy")
    npy.write_bytes(b"garbage")
    again = CropCache(crops).get(path, None, 8)
    assert len(counted) == 2
    np.testing.assert_array_equal(good, again)


def test_memory_budget_evicts_oldest(tmp_path):
    path = write_png(tmp_path / "a.png", 7)
    cache = CropCache(max_memory_mb=2 * 32 * 32 * 4 / 2**20)  # room for two 32 px crops
    for x in range(4):
        cache.get(path, (x, 0, x + 20, 20), 32)
    assert len(cache._memory) == 2


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (
            lambda c, p: c.load_many([p, p], [None], 8, progress=False),
            InputError,
            r"2 paths but 1 rois",
        ),
        (
            lambda c, p: c.get(p, (0, 0, 0, 5), 8),
            InputError,
            r"roi \(0, 0, 0, 5\): zero or negative area",
        ),
        (
            lambda c, p: c.get(p, (500, 500, 600, 600), 8),
            InputError,
            r"a\.png: roi .*outside the image",
        ),
        (lambda c, p: c.get(p, None, 0), InputError, r"size 0"),
        (lambda c, p: c.get(p, None, 8, margin=-1), InputError, r"margin -1"),
        (
            lambda c, p: c.get(p.with_name("gone.png"), None, 8),
            ImageReadError,
            r"gone\.png: file not found",
        ),
    ],
)
def test_cache_bad_input(tmp_path, call, exc, match):
    path = write_png(tmp_path / "a.png", 8)
    with pytest.raises(exc, match=match):
        call(CropCache(tmp_path / "crops"), path)


def test_cache_pickles_for_data_loader_workers(tmp_path):
    import pickle

    path = write_png(tmp_path / "a.png", 9)
    cache = CropCache(tmp_path / "crops")
    crop = cache.get(path, None, 8)
    clone = pickle.loads(pickle.dumps(cache))
    np.testing.assert_array_equal(clone.get(path, None, 8), crop)
    assert clone.decodes == 1 and clone.memory_hits == 1  # carried its memory along
