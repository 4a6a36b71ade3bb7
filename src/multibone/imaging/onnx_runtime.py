"""Scoring crops with ONNX Runtime instead of torch (``multibone export-onnx`` writes the files).

An ONNX export of a bundle is a folder beside it (default ``<bundle>-onnx``)::

    onnx.json                      format, bundle_hash, backbones, files (SHA-256), check
    <backbone>/fold<k>.onnx        one graph per fold model: (N, 3, S, S) -> (N, 1) logits
    <backbone>/fold<k>.json        the fold model's metadata (size, normalisation, ...)

It is not part of the bundle (a bundle refuses unknown files); ``onnx.json`` names the
SHA-256 of the ``bundle.json`` it was exported from, so an export of another bundle,
or of an older version of this one, is never used.

This module imports neither torch nor timm: with an export, ``multibone predict``
starts without them (several seconds less on a small machine). Crops are resized with
:func:`multibone.io.resize_square` and normalised exactly as
:func:`multibone.imaging.data.normalise` does, so both engines see the same input.
:class:`OnnxScorer` has the scoring part of :class:`~multibone.imaging.ImageScorer`'s
interface; :meth:`OnnxScorer.folds` (CAMs need gradients) loads the torch models on
first use.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from multibone.errors import BundleError, InputError

__all__ = [
    "ONNX_FORMAT",
    "ONNX_HINT",
    "OnnxScorer",
    "default_onnx_dir",
    "onnxruntime_available",
    "read_onnx_manifest",
]

#: Version of the ``onnx.json`` layout.
ONNX_FORMAT = 1

ONNX_HINT = "install ONNX Runtime with: pip install 'multibone[onnx]'"


def default_onnx_dir(bundle_path: str | Path) -> Path:
    """Where ``multibone export-onnx`` writes by default and ``predict`` looks: ``<bundle>-onnx``."""
    p = Path(bundle_path)
    return p.with_name(p.name + "-onnx")


def onnxruntime_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_onnx_manifest(onnx_dir: str | Path, bundle_hash: str | None = None) -> dict:
    """``onnx.json`` of an export, checked: format, bundle hash (when given), files present.

    Raises :class:`BundleError` naming the file and what is wrong. File hashes are
    checked when the sessions are built (:meth:`OnnxScorer.from_dir`).
    """
    onnx_dir = Path(onnx_dir)
    manifest = onnx_dir / "onnx.json"
    if not manifest.is_file():
        raise BundleError(f"{manifest}: missing; make the export with 'multibone export-onnx'")
    try:
        meta = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BundleError(f"{manifest}: unreadable ({exc}); export again") from exc
    if meta.get("format") != ONNX_FORMAT:
        raise BundleError(f"{manifest}: unknown format {meta.get('format')!r}; export again")
    if bundle_hash is not None and meta.get("bundle_hash") != bundle_hash:
        raise BundleError(
            f"{manifest}: exported from another bundle (or an older version of this one); "
            "run 'multibone export-onnx' again"
        )
    for rel in meta.get("files", {}):
        if not (onnx_dir / rel).is_file():
            raise BundleError(f"{onnx_dir / rel}: listed in onnx.json but missing; export again")
    return meta


def _check_crop(crop: object, i: int) -> np.ndarray:
    a = np.asarray(crop)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise InputError(f"image {i}: expected a grey crop of shape (H, W), got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.floating):
        raise InputError(f"image {i}: expected float pixels in [0, 1], got dtype {a.dtype}")
    if not np.isfinite(a).all():
        raise InputError(f"image {i}: pixels contain NaN or infinity")
    lo, hi = float(a.min()), float(a.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise InputError(f"image {i}: pixels span [{lo:.3g}, {hi:.3g}], expected [0, 1]")
    return a.astype(np.float32, copy=False)


def _resize(crops: Sequence[np.ndarray], size: int) -> np.ndarray:
    from multibone.io import resize_square

    out = np.empty((len(crops), size, size), dtype=np.float32)
    for i, c in enumerate(crops):
        a = _check_crop(c, i)
        out[i] = a if a.shape == (size, size) else resize_square(a, size)
    return out


def _normalise(x: np.ndarray, mean, std) -> np.ndarray:
    """(N, S, S) grey -> (N, 3, S, S) float32, as :func:`multibone.imaging.data.normalise`."""
    m = np.broadcast_to(np.asarray(mean, dtype=np.float32).reshape(-1), (3,)).reshape(1, 3, 1, 1)
    s = np.broadcast_to(np.asarray(std, dtype=np.float32).reshape(-1), (3,)).reshape(1, 3, 1, 1)
    x3 = np.broadcast_to(x[:, None], (x.shape[0], 3, x.shape[1], x.shape[2]))
    return np.ascontiguousarray((x3 - m) / s, dtype=np.float32)


class OnnxScorer:
    """Mean-of-fold-models logits with ONNX Runtime; same ``score`` contract as ImageScorer.

    Build with :meth:`from_dir`. ``threads``: ONNX Runtime intra-op threads (0 = its
    default, one per core). ``torch_weights``: the bundle's ``backbones`` folder, for
    :meth:`folds` (CAMs).
    """

    engine = "onnx"

    def __init__(self, sessions: dict[str, list[tuple[object, dict]]], *,
                 torch_weights: Path | None = None, batch_size: int = 64):
        if not sessions:
            raise InputError("OnnxScorer needs at least one backbone")
        self._sessions = sessions
        self._torch_weights = torch_weights
        self._torch = None
        self._embed: dict[str, tuple[object, dict]] = {}
        self.batch_size = int(batch_size)

    @classmethod
    def from_dir(cls, onnx_dir: str | Path, backbones: Sequence[str], *, bundle_hash: str | None,
                 torch_weights: Path | None = None, threads: int = 0,
                 batch_size: int = 64) -> OnnxScorer:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BundleError(f"ONNX Runtime is not installed; {ONNX_HINT}") from exc
        onnx_dir = Path(onnx_dir)
        manifest = read_onnx_manifest(onnx_dir, bundle_hash)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        # Idle ORT threads spin by default: on a machine shared with other jobs that burns
        # the cores the work needs (2 threads measured 15x slower per case on 2 busy cores).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sessions: dict[str, list[tuple[object, dict]]] = {}
        for b in backbones:
            folds = manifest.get("backbones", {}).get(b)
            if not folds:
                raise BundleError(f"{onnx_dir}: the export has no models of backbone {b!r}; export again")
            sessions[b] = []
            for k in folds:
                rel = f"{b}/fold{k}.onnx"
                path = onnx_dir / rel
                meta_path = onnx_dir / b / f"fold{k}.json"
                for f, r in ((path, rel), (meta_path, f"{b}/fold{k}.json")):
                    if _sha256(f) != manifest["files"].get(r):
                        raise BundleError(f"{f}: SHA-256 does not match onnx.json; export again")
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
                sess = ort.InferenceSession(str(path), sess_options=opts,
                                            providers=["CPUExecutionProvider"])
                sessions[b].append((sess, meta))
        embed: dict[str, tuple[object, dict]] = {}
        for b, k in (manifest.get("embed") or {}).items():
            rel = f"{b}/fold{k}.embed.onnx"
            if b in sessions:
                if _sha256(onnx_dir / rel) != manifest["files"].get(rel):
                    raise BundleError(f"{onnx_dir / rel}: SHA-256 does not match onnx.json; export again")
                meta = json.loads((onnx_dir / b / f"fold{k}.json").read_text(encoding="utf-8"))
                embed[b] = (ort.InferenceSession(str(onnx_dir / rel), sess_options=opts,
                                                 providers=["CPUExecutionProvider"]), meta)
        scorer = cls(sessions, torch_weights=torch_weights, batch_size=batch_size)
        scorer._embed = embed
        return scorer

    def embeds(self, backbones: Sequence[str]) -> bool:
        """True when the export holds the pooled-feature graph of every one of ``backbones``."""
        return all(b in self._embed for b in backbones)

    def embed(self, crops: Sequence[np.ndarray], backbones: Sequence[str]) -> dict[str, np.ndarray]:
        """``{backbone: (N, D) float64}`` pooled features of the first fold model, as
        :func:`multibone.imaging.ood.embed` computes them with torch."""
        out = {}
        for b in backbones:
            sess, meta = self._embed[b]
            x = _resize(crops, int(meta["img_size"]))
            feats = [np.asarray(sess.run(None, {"input": _normalise(x[s : s + self.batch_size],
                                                                     meta["norm_mean"], meta["norm_std"])})[0])
                     for s in range(0, len(crops), self.batch_size)]
            out[b] = (np.concatenate(feats) if feats else np.zeros((0, 0))).astype(np.float64)
        return out

    @property
    def backbones(self) -> list[str]:
        return list(self._sessions)

    def meta(self, backbone: str) -> dict:
        try:
            return self._sessions[backbone][0][1]
        except KeyError:
            raise InputError(f"backbone {backbone!r} not loaded; loaded: {', '.join(self._sessions)}") from None

    @property
    def crop_margin(self) -> float:
        return float(self.meta(self.backbones[0])["crop_margin"])

    @property
    def aggregation(self) -> str:
        return str(self.meta(self.backbones[0])["aggregation"])

    def score(self, pixels_list: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """``{backbone: float32 (N,) logits}``, the mean over the backbone's fold models."""
        out: dict[str, np.ndarray] = {}
        resized: dict[int, np.ndarray] = {}
        n = len(pixels_list)
        for b, folds in self._sessions.items():
            total = np.zeros(n, dtype=np.float64)
            for sess, meta in folds:
                size = int(meta["img_size"])
                if size not in resized:
                    resized[size] = _resize(pixels_list, size)
                x = resized[size]
                logits = []
                for s in range(0, n, self.batch_size):
                    xb = _normalise(x[s : s + self.batch_size], meta["norm_mean"], meta["norm_std"])
                    logits.append(np.asarray(sess.run(None, {"input": xb})[0], dtype=np.float32).reshape(-1))
                if logits:
                    total += np.concatenate(logits)
            out[b] = (total / len(folds)).astype(np.float32)
        return out

    def folds(self, backbone: str):
        """Torch fold models of ``backbone`` (for CAMs), loaded from the bundle on first use."""
        if self._torch is None:
            if self._torch_weights is None:
                raise InputError("this ONNX scorer was built without the bundle's torch weights")
            from multibone.imaging.scorer import ImageScorer

            self._torch = ImageScorer.from_dir(self._torch_weights, self.backbones)
        return self._torch.folds(backbone)

