"""Writing and verified loading of model bundles (see the package docstring)."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from multibone import __version__
from multibone._atomic import atomic_dir
from multibone.bundle.metadata import validate_metadata, warn_on_version_mismatch
from multibone.errors import BundleError
from multibone.io.modelfile import PICKLE_SUFFIXES, SUFFIX, dump_model, load_model, load_pickle

#: 2: bundle.json checked against bundle.schema.json and records library versions.
#: 3: no pickles: fitted objects are ``.skops`` files loaded against an allow-list
#: (:mod:`multibone.io.modelfile`); a bundle holding a pickle is refused unless trusted.
BUNDLE_FORMAT_VERSION = 3
MANIFEST = "bundle.json"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def save_bundle(
    target: str | Path,
    meta: Mapping[str, Any],
    *,
    objects: Mapping[str, Any] | None = None,
    files: Mapping[str, str | Path] | None = None,
    force: bool = False,
) -> Path:
    """Write a bundle folder atomically.

    Parameters
    ----------
    target : folder to create; refused if it exists unless ``force``.
    meta : the description made by :func:`~multibone.bundle.build_metadata`.
        ``format_version``, ``multibone_version`` and ``files`` are added here, and
        the whole is checked against ``bundle.schema.json`` before it is written.
    objects : relative path -> fitted object, written with skops (names end in ``.skops``,
        e.g. ``stacker.skops``; its types must be in
        :data:`multibone.io.modelfile.TRUSTED_TYPES`).
    files : relative path in the bundle -> existing file or folder to copy in. Pickles
        (``*.joblib``, ``*.pkl``, ``*.pickle``) are refused: a bundle holds none.
    """
    target = Path(target)
    for rel in objects or {}:
        if not rel.endswith(SUFFIX):
            raise BundleError(f"bundle part {rel!r}: fitted objects are saved as {SUFFIX} files")
    for rel, src in (files or {}).items():
        _refuse_pickles(rel, Path(src))
    with atomic_dir(target, force=force) as tmp:
        for rel, src in (files or {}).items():
            dst = tmp / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            src = Path(src)
            if src.is_dir():
                shutil.copytree(src, dst)
            elif src.is_file():
                shutil.copy2(src, dst)
            else:
                raise BundleError(f"cannot add {src} to the bundle: no such file or folder")
        for rel, obj in (objects or {}).items():
            dst = tmp / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            dump_model(obj, dst)
        hashes = {
            p.relative_to(tmp).as_posix(): sha256_file(p)
            for p in sorted(tmp.rglob("*"))
            if p.is_file()
        }
        full = dict(meta)
        full["format_version"] = BUNDLE_FORMAT_VERSION
        full["multibone_version"] = __version__
        full["files"] = hashes
        text = json.dumps(full, indent=2, sort_keys=False, default=_json_default)
        # checked as JSON types (numpy scalars become numbers), exactly as a loader sees it
        validate_metadata(json.loads(text), where=f"{target / MANIFEST}")
        (tmp / MANIFEST).write_text(text)
    return target


def _json_default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _refuse_pickles(rel: str, src: Path) -> None:
    found = [src] if src.is_file() else sorted(src.rglob("*")) if src.is_dir() else []
    for p in found:
        if p.suffix in PICKLE_SUFFIXES:
            raise BundleError(
                f"cannot add {p} to the bundle (as {rel}): it is a pickle, which runs code when "
                f"loaded; save fitted objects with multibone.io.modelfile.dump_model ({SUFFIX})"
            )


def pickled_files(meta: Mapping[str, Any]) -> list[str]:
    """The files of a bundle's manifest that are pickles (format 2 and earlier)."""
    return sorted(rel for rel in meta.get("files") or {} if Path(rel).suffix in PICKLE_SUFFIXES)


def verify_bundle(path: str | Path) -> dict:
    """Check a bundle's manifest and every file's SHA-256; return the manifest.

    Raises :class:`BundleError` naming the first offending file. Nothing is
    unpickled here.
    """
    root = Path(path)
    stranded = root.with_name(f".{root.name}.old")
    if not root.is_dir() and stranded.is_dir():
        raise BundleError(
            f"{root}: missing, but {stranded.name} beside it holds the previous bundle (a write "
            "of a new one was interrupted); the next write there restores it, or rename it back"
        )
    if not root.is_dir():
        raise BundleError(f"{root}: no bundle folder here (build one with 'multibone demo' or 'multibone stack')")
    manifest = root / MANIFEST
    if not manifest.is_file():
        raise BundleError(f"{manifest}: missing; this folder is not a multibone bundle")
    try:
        meta = json.loads(manifest.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{manifest}: not valid JSON ({exc}); the bundle is damaged") from exc
    version = meta.get("format_version")
    if not isinstance(version, int):
        raise BundleError(f"{manifest}: no integer format_version; the bundle is damaged")
    if version > BUNDLE_FORMAT_VERSION:
        raise BundleError(
            f"{manifest}: format version {version} is newer than this multibone understands "
            f"({BUNDLE_FORMAT_VERSION}); upgrade multibone to load it"
        )
    validate_metadata(meta, where=str(manifest))
    files = meta.get("files")
    if not isinstance(files, dict) or not files:
        raise BundleError(f"{manifest}: lists no files; the bundle is damaged")
    for rel, expected in files.items():
        p = root / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            raise BundleError(f"{manifest}: file entry {rel!r} points outside the bundle")
        if not p.is_file():
            raise BundleError(f"{p}: listed in bundle.json but missing; the bundle is incomplete")
        if sha256_file(p) != expected:
            raise BundleError(
                f"{p}: SHA-256 does not match bundle.json (tampered or truncated); refusing to load"
            )
    listed = set(files)
    for p in root.rglob("*"):
        if p.is_file() and p.name != MANIFEST:
            rel = p.relative_to(root).as_posix()
            if rel not in listed:
                raise BundleError(f"{p}: not listed in bundle.json; refusing a bundle with unknown files")
    return meta


@dataclass
class Bundle:
    """A verified bundle. Heavy parts (stacker, backbones) load lazily, after verification."""

    path: Path
    meta: dict
    hash: str
    trust_pickle: bool = False
    _loaders: dict[str, Callable[[], Any]] = field(default_factory=dict, repr=False)

    @property
    def positive_class(self) -> str:
        return self.meta["positive_class"]

    @property
    def negative_class(self) -> str:
        return self.meta["negative_class"]

    @property
    def backbones(self) -> list[str]:
        return list(self.meta.get("backbones", []))

    @property
    def thresholds(self) -> dict:
        return dict(self.meta.get("thresholds", {}))

    @property
    def training_data(self) -> dict:
        return dict(self.meta.get("training_data", {}))

    @property
    def version(self) -> str:
        """Format, maker and identity: the first 12 hex digits of bundle.json's SHA-256
        (any change to any file, even a swapped stacker with its hash updated, changes it)."""
        return (
            f"bundle format {self.meta['format_version']}, multibone {self.meta['multibone_version']}, "
            f"id {self.hash[:12]}"
        )

    @property
    def evaluation_dir(self) -> Path | None:
        d = self.path / "evaluation"
        return d if d.is_dir() else None

    @cached_property
    def family_comparison(self):
        import pandas as pd

        p = self.path / "family_comparison.csv"
        return pd.read_csv(p) if p.is_file() else None

    def load_object(self, rel: str) -> Any:
        """Load a fitted object of this (already verified) bundle.

        ``rel`` may name the part with either suffix (``stacker.skops`` or, for a bundle
        of format 2 loaded with ``trust_pickle``, ``stacker.joblib``); whichever the
        bundle holds is loaded. A ``.skops`` file is checked against the allow-list
        (:func:`multibone.io.modelfile.load_model`); a pickle is loaded only when the
        bundle was opened with ``trust_pickle=True``.
        """
        files = self.meta["files"]
        stem = rel.rsplit(".", 1)[0]
        candidates = [rel] + [stem + s for s in (SUFFIX, *PICKLE_SUFFIXES) if stem + s != rel]
        found = next((c for c in candidates if c in files), None)
        if found is None:
            raise BundleError(f"{self.path / rel}: not part of this bundle")
        if Path(found).suffix in PICKLE_SUFFIXES:
            if not self.trust_pickle:
                raise BundleError(_pickle_refusal(self.path, [found]))
            return load_pickle(self.path / found)
        return load_model(self.path / found)


def _pickle_refusal(root: Path, pickles: list[str]) -> str:
    return (
        f"{root}: this bundle stores {', '.join(pickles)} as pickle, which can run any code "
        "when loaded, so multibone refuses it. Retrain to get a safe bundle (format "
        f"{BUNDLE_FORMAT_VERSION}: 'multibone run' / 'multibone demo'), or, only if you made "
        "this bundle yourself and nobody else could have changed it, pass --trust-pickle"
    )


def load_bundle(path: str | Path, *, trust_pickle: bool = False) -> Bundle:
    """Verify every file's hash, then return a :class:`Bundle` (nothing loaded yet).

    A bundle holding pickles (format 2 and earlier: ``stacker.joblib``) is refused
    with :class:`BundleError` unless ``trust_pickle`` (the CLI's ``--trust-pickle``).
    Warns (:class:`~multibone.bundle.BundleVersionWarning`) for each library that
    saved part of the bundle under another major.minor version than the one installed.
    """
    root = Path(path)
    meta = verify_bundle(root)
    pickles = pickled_files(meta)
    if pickles and not trust_pickle:
        raise BundleError(_pickle_refusal(root, pickles))
    warn_on_version_mismatch(meta, where=str(root))
    return Bundle(
        path=root.resolve(), meta=meta, hash=sha256_file(root / MANIFEST), trust_pickle=trust_pickle
    )
