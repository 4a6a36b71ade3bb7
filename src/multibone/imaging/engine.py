"""Which engine scores a bundle's images: torch eager or ONNX Runtime.

``engine``:

* ``"torch"``: :class:`~multibone.imaging.ImageScorer` (always available);
* ``"onnx"``: :class:`~multibone.imaging.onnx_runtime.OnnxScorer` on an export made
  by ``multibone export-onnx``; an error when it is missing, stale or ONNX Runtime is
  not installed;
* ``"auto"`` (default): ONNX when an export of this very bundle exists (``onnx_dir``,
  default ``<bundle>-onnx``) and ONNX Runtime is installed, torch otherwise. ONNX
  is the default there because it measured faster at start-up and per case
  (benchmarks/RESULTS.md, "Speed where people wait"); both agree to 1e-4 in logits.

``threads``: CPU threads for inference (torch intra-op, or ONNX Runtime intra-op);
None = :func:`default_threads`, half the CPUs this process may use (1 on a 2-core box),
at most 8. Torch's own default (one per core) was at times several times slower on a
2-core machine busy with other jobs, at times faster for big batches
(benchmarks/RESULTS.md, "Speed where people wait"); half the cores never oversubscribes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from multibone.errors import InputError

__all__ = ["ENGINES", "default_threads", "make_scorer"]

ENGINES = ("auto", "torch", "onnx")

log = logging.getLogger(__name__)


def default_threads() -> int:
    """Half the CPUs this process may use, at least 1, at most 8."""
    import os

    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    return max(1, min(8, n // 2))


def make_scorer(
    weights_dir: str | Path,
    backbones: Sequence[str],
    *,
    bundle_path: str | Path,
    bundle_hash: str,
    engine: str = "auto",
    onnx_dir: str | Path | None = None,
    threads: int | None = None,
):
    """An object with ``score(crops)``, ``crop_margin``, ``aggregation``, ``folds(b)``, ``engine``."""
    from multibone.imaging.onnx_runtime import (
        OnnxScorer,
        default_onnx_dir,
        onnxruntime_available,
        read_onnx_manifest,
    )

    if engine not in ENGINES:
        raise InputError(f"engine {engine!r} unknown; choose one of {', '.join(ENGINES)}")
    if threads is not None and int(threads) < 1:
        raise InputError(f"threads must be 1 or more, got {threads}")
    threads = int(threads) if threads is not None else default_threads()
    onnx_dir = Path(onnx_dir) if onnx_dir else default_onnx_dir(bundle_path)
    use_onnx = engine == "onnx"
    if engine == "auto" and onnx_dir.is_dir() and onnxruntime_available():
        try:
            read_onnx_manifest(onnx_dir, bundle_hash)
            use_onnx = True
        except Exception as exc:  # a stale or damaged export: say so, fall back to torch
            log.warning("not using the ONNX export: %s", exc)
    if use_onnx:
        return OnnxScorer.from_dir(onnx_dir, backbones, bundle_hash=bundle_hash,
                                   torch_weights=Path(weights_dir), threads=threads)
    import torch

    from multibone.imaging.scorer import ImageScorer

    torch.set_num_threads(threads)
    return ImageScorer.from_dir(weights_dir, backbones)
