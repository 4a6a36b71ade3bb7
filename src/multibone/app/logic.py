"""Streamlit-free helpers of the dashboard: finding the bundle, reading uploads, checking boxes.

Nothing here models anything: predictions, explanations and reports come from
:mod:`multibone.pipeline`. These helpers only turn what a person typed or uploaded
into the inputs that pipeline expects, so that tests can call them without Streamlit.

Privacy rule kept here: an uploaded file's name and its DICOM header never leave this
module. Images are labelled by position ("image 1 (DICOM)") and error messages have
the temporary file's path replaced by that label.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import math
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from multibone.errors import MultiboneError

ENV_BUNDLE = "MULTIBONE_BUNDLE"

#: Longest side, in pixels, of the images the page shows (the model sees full resolution).
DISPLAY_MAX_SIDE = 1024
PREVIEW_MAX_SIDE = 384

FORMAT_NAMES = {"dicom": "DICOM", "png": "PNG", "jpeg": "JPEG"}


# --------------------------------------------------------------------------- bundle location


@dataclass(frozen=True)
class BundleLocation:
    """Where the dashboard looks for a bundle, and why there.

    ``path`` is None only when nothing was asked for and the default demo bundle does not
    exist; ``source`` says in words where the path came from.
    """

    path: Path | None
    source: str
    exists: bool


def bundle_argument(argv: Sequence[str] | None = None) -> str:
    """The ``--bundle B`` the app was started with, or "".

    ``multibone dashboard --bundle B`` runs ``streamlit run <app> -- --bundle B``; Streamlit
    hands what follows ``--`` to the script as ``sys.argv[1:]``. Other arguments are ignored.
    """
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--bundle", default="")
    known, _ = parser.parse_known_args(list(argv))
    return known.bundle


def locate_bundle(
    typed: str | None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    default_run: Path = Path("runs/demo"),
    argument: str | None = None,
) -> BundleLocation:
    """Choose the bundle folder: a path typed in the sidebar, else the ``--bundle`` argument
    (see :func:`bundle_argument`), else ``$MULTIBONE_BUNDLE``, else ``<default_run>/bundle``
    relative to ``cwd`` (the demo bundle).

    Relative paths are taken relative to ``cwd`` (default: the current directory).
    """
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else Path(cwd)
    typed = (typed or "").strip()
    argument = (argument or "").strip()
    if typed:
        path, source = Path(typed).expanduser(), "the path typed in the sidebar"
    elif argument:
        path, source = Path(argument).expanduser(), "the --bundle argument"
    elif env.get(ENV_BUNDLE, "").strip():
        path, source = Path(env[ENV_BUNDLE].strip()).expanduser(), f"${ENV_BUNDLE}"
    else:
        path, source = Path(default_run) / "bundle", "the demo bundle"
    if not path.is_absolute():
        path = cwd / path
    return BundleLocation(path=path, source=source, exists=(path / "bundle.json").is_file())


def manifest_sha256(bundle_path: Path) -> str:
    """SHA-256 of a bundle's ``bundle.json`` (the cache key of a loaded bundle)."""
    return hashlib.sha256((Path(bundle_path) / "bundle.json").read_bytes()).hexdigest()


# --------------------------------------------------------------------------- torch threads

ENV_THREADS = "MULTIBONE_TORCH_THREADS"


def torch_threads(env: Mapping[str, str] | None = None, cpus: int | None = None) -> int | None:
    """Threads torch should use for one case, or None to leave torch's default alone.

    ``$MULTIBONE_TORCH_THREADS`` wins; an explicit ``$OMP_NUM_THREADS`` is respected (None);
    otherwise half the CPUs, 1 to 4. Why: a case is a handful of small forward passes, and
    torch's default (every core) makes OpenMP threads spin against other processes; on a
    busy 2-core machine that measured 10-15x slower than one thread (RESULTS_dashboard.md).
    """
    env = os.environ if env is None else env
    given = env.get(ENV_THREADS, "").strip()
    if given:
        try:
            return max(1, int(given))
        except ValueError:
            raise MultiboneError(
                f"${ENV_THREADS}={given!r} is not a whole number of threads; unset it or give e.g. 2"
            ) from None
    if env.get("OMP_NUM_THREADS", "").strip():
        return None
    cpus = cpus if cpus is not None else (os.cpu_count() or 1)
    return max(1, min(4, cpus // 2))


# --------------------------------------------------------------------------- uploads

_MAGIC_SUFFIX = (
    (b"\x89PNG\r\n\x1a\n", ".png"),
    (b"\xff\xd8\xff", ".jpg"),
)
_KNOWN_SUFFIXES = {".dcm", ".dicom", ".png", ".jpg", ".jpeg"}


def guess_suffix(data: bytes, name: str = "") -> str:
    """A file suffix for the reader: from the bytes' magic number, else the upload's name.

    DICOM files often have no extension; their "DICM" marker sits at byte 128.
    """
    if data[128:132] == b"DICM":
        return ".dcm"
    for magic, suffix in _MAGIC_SUFFIX:
        if data.startswith(magic):
            return suffix
    suffix = Path(name).suffix.lower()
    if suffix in _KNOWN_SUFFIXES or not suffix:  # no suffix: maybe a DICOM without preamble
        return suffix
    return ".bin"


@dataclass
class DecodedImage:
    """One readable upload.

    pixels: float32 (H, W) in [0, 1], bone bright (what the model sees);
    display: uint8 (h, w) window of ``pixels`` downscaled to at most DISPLAY_MAX_SIDE;
    format: "DICOM" | "PNG" | "JPEG"; height/width in original pixels.
    """

    pixels: np.ndarray
    display: np.ndarray
    format: str
    height: int
    width: int


@dataclass
class Upload:
    """An upload as the page handles it: bytes' SHA-1 (the widget key stem), a display
    label, and either a decoded image or an error message (never both)."""

    sha1: str
    key: str
    label: str
    image: DecodedImage | None
    error: str | None


def decode_image_bytes(data: bytes, name: str, label: str) -> DecodedImage:
    """Decode one uploaded radiograph with :func:`multibone.io.read_radiograph`.

    The bytes go to a private temporary file (the reader wants a path; it also checks
    the pixel count from the header before decoding). Raises ``MultiboneError`` with the
    temporary path replaced by ``label`` so no file name reaches the page.
    """
    from multibone.io import read_radiograph, to_uint8

    if not data:
        raise MultiboneError(f"{label}: the file is empty")
    suffix = guess_suffix(data, name)
    with tempfile.TemporaryDirectory(prefix="multibone-upload-") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(data)
        try:
            rad = read_radiograph(path)
        except MultiboneError as exc:
            raise MultiboneError(_scrub(str(exc), path, label)) from None
        except Exception as exc:  # a reader bug must not take the page down
            raise MultiboneError(
                f"{label}: could not be read as a radiograph ({type(exc).__name__}); "
                "upload a DICOM, PNG or JPEG file"
            ) from None
    pixels = np.asarray(rad.pixels, dtype=np.float32)
    height, width = pixels.shape[:2]
    return DecodedImage(
        pixels=pixels,
        display=downscale(to_uint8(pixels), DISPLAY_MAX_SIDE),
        format=FORMAT_NAMES.get(str(rad.format).lower(), str(rad.format).upper()),
        height=int(height),
        width=int(width),
    )


def _scrub(message: str, path: Path, label: str) -> str:
    for text in (str(path), str(path.parent), path.name):
        message = message.replace(text, label)
    return message


def read_uploads(
    sources: Sequence[tuple[str, bytes]], cache: dict[str, DecodedImage | str]
) -> list[Upload]:
    """Turn ``(name, bytes)`` pairs into :class:`Upload`s labelled "image 1 (DICOM)", ...

    ``cache`` maps a content SHA-1 to a decoded image or an error text so reruns of the
    page do not decode again; entries for files no longer present are dropped.
    """
    uploads: list[Upload] = []
    seen: dict[str, int] = {}
    for i, (name, data) in enumerate(sources, start=1):
        sha1 = hashlib.sha1(data).hexdigest()
        n = seen.get(sha1, 0)
        seen[sha1] = n + 1
        if sha1 not in cache:
            try:
                cache[sha1] = decode_image_bytes(data, name, "this file")
            except MultiboneError as exc:
                cache[sha1] = str(exc)
        item = cache[sha1]
        if isinstance(item, DecodedImage):
            uploads.append(
                Upload(sha1, f"{sha1[:12]}_{n}", f"image {i} ({item.format})", item, None)
            )
        else:
            uploads.append(
                Upload(
                    sha1,
                    f"{sha1[:12]}_{n}",
                    f"image {i}",
                    None,
                    item.replace("this file", f"image {i}"),
                )
            )
    for stale in set(cache) - set(seen):
        del cache[stale]
    return uploads


def downscale(img: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale a uint8 image (H, W) or (H, W, 3) so its longest side is <= max_side."""
    from PIL import Image

    h, w = img.shape[:2]
    if max(h, w) <= max_side:
        return img
    pil = Image.fromarray(img)
    pil.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return np.asarray(pil)


# --------------------------------------------------------------------------- lesion box

BOX_FIELDS = ("x0", "y0", "x1", "y1")


def box_errors(box: Mapping[str, float | None], height: int, width: int) -> dict[str, str]:
    """Check a lesion box typed as x0, y0, x1, y1 (pixels; x1/y1 exclusive) against an
    image of ``height`` x ``width``. Returns field -> message ("box" for the whole box)."""
    errors: dict[str, str] = {}
    limits = {"x0": width, "x1": width, "y0": height, "y1": height}
    for k in BOX_FIELDS:
        v = box.get(k)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            errors[k] = f"{k} is empty: type a pixel coordinate from 0 to {limits[k]}"
        elif v != int(v):
            errors[k] = f"{k} = {v} is not a whole number of pixels"
        elif not 0 <= v <= limits[k]:
            errors[k] = f"{k} = {v:g} is outside the image (0 to {limits[k]} px)"
    if not errors:
        if box["x1"] <= box["x0"]:
            errors["box"] = (
                f"the box is empty: x1 ({box['x1']:g}) must be larger than x0 ({box['x0']:g})"
            )
        elif box["y1"] <= box["y0"]:
            errors["box"] = (
                f"the box is empty: y1 ({box['y1']:g}) must be larger than y0 ({box['y0']:g})"
            )
    return errors


def box_tuple(box: Mapping[str, float | None]) -> tuple[int, int, int, int]:
    """The box as ints (x0, y0, x1, y1); call only after :func:`box_errors` found none."""
    return tuple(int(box[k]) for k in BOX_FIELDS)  # type: ignore[return-value]


def outline_box(image: DecodedImage, box: tuple[int, int, int, int]) -> np.ndarray:
    """RGB uint8 copy of ``image.display`` with the lesion box drawn in orange."""
    from PIL import Image, ImageDraw

    scale = image.display.shape[1] / image.width
    rgb = Image.fromarray(image.display).convert("RGB")
    x0, y0, x1, y1 = (v * scale for v in box)
    width = max(2, round(max(rgb.size) / 200))
    ImageDraw.Draw(rgb).rectangle(
        [x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=(255, 140, 0), width=width
    )
    return np.asarray(rgb)


def crop_preview(image: DecodedImage, box: tuple[int, int, int, int]) -> np.ndarray:
    """uint8 view of the crop the models will see (multibone.io.crop_roi, no margin)."""
    from multibone.io import crop_roi, to_uint8

    return downscale(to_uint8(crop_roi(image.pixels, box)), PREVIEW_MAX_SIDE)


# --------------------------------------------------------------------------- clinical form

LAB_MODES = ("unknown", "value", "normal", "abnormal")


def lab_value(mode: str, number: float | None) -> float | str | None:
    """A lab as the case wants it: a number, "normal", "abnormal" or None (unknown)."""
    if mode == "value":
        return None if number is None else float(number)
    if mode in ("normal", "abnormal"):
        return mode
    return None


def lab_empty_error(name: str, unit: str, mode: str, number: float | None) -> str | None:
    """The message for a lab whose 'value' mode was chosen but no number typed."""
    if mode == "value" and number is None:
        return f"{name} is empty: type the value in {unit}, or choose unknown, normal or abnormal"
    return None


def png_bytes(img: np.ndarray) -> bytes:
    """Encode a uint8 image as PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def input_fingerprint(*parts: object) -> str:
    """A short hash of everything a result depends on, to tell a stale result."""
    return hashlib.sha1(repr(parts).encode()).hexdigest()


# --------------------------------------------------------------------------- demo case


@dataclass
class DemoCase:
    """One patient of a synthetic cohort: image bytes (with an internal name that is never
    shown), lesion boxes, and the clinical fields as the form holds them."""

    images: list[tuple[str, bytes]]
    boxes: list[tuple[int, int, int, int] | None]
    fields: dict[str, object]


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def demo_case_from_manifest(manifest: Path, index: int = 0, splits: Path | None = None) -> DemoCase:
    """Take the ``index``-th (cyclically) held-out patient of a synthetic cohort manifest.

    Held out: ``split`` test/external in the run's ``splits`` CSV (or the manifest), else
    patients outside the largest centre. Patients with a DICOM image come first (so the
    DICOM path is exercised).
    """
    import pandas as pd

    manifest = Path(manifest)
    df = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    if df.empty:
        raise MultiboneError(f"{manifest}: no rows; cannot pick a demo case")
    if splits is not None and Path(splits).is_file():
        sp = pd.read_csv(splits, dtype=str, keep_default_na=False)[["patient_id", "split"]]
        df = df.drop(columns=["split"], errors="ignore").merge(sp, on="patient_id", how="left")
    pats = list(dict.fromkeys(df["patient_id"]))
    held_out = set(pats)
    if "split" in df and df["split"].isin(["dev"]).all():
        pass  # every patient was trained on: any will do
    elif "split" in df and df["split"].isin(["test", "external"]).any():
        held_out = set(df.loc[df["split"].isin(["test", "external"]), "patient_id"])
    elif "center" in df and df["center"].nunique() > 1:
        main_centre = df.groupby("center")["patient_id"].nunique().idxmax()
        held_out = set(df.loc[df["center"] != main_centre, "patient_id"])
    is_dicom = df["image_path"].str.lower().str.endswith((".dcm", ".dicom"))
    with_dicom = set(df.loc[is_dicom, "patient_id"])
    ranked = sorted(pats, key=lambda p: (p not in held_out, p not in with_dicom))
    ranked = [p for p in ranked if p in held_out] or ranked
    pid = ranked[index % len(ranked)]
    rows = df[df["patient_id"] == pid]
    images, boxes = [], []
    for _, row in rows.iterrows():
        path = manifest.parent / row["image_path"]
        images.append((f"demo{Path(row['image_path']).suffix}", path.read_bytes()))
        coords = [_cell(row.get(f"roi_{k}")) for k in BOX_FIELDS]
        boxes.append(tuple(int(float(c)) for c in coords) if all(coords) else None)
    first = rows.iloc[0]

    def lab(raw: str) -> tuple[str, float | None]:
        raw = raw.lower()
        if raw in ("normal", "abnormal"):
            return raw, None
        try:
            return "value", float(raw)
        except ValueError:
            return "unknown", None

    crp_mode, crp_num = lab(_cell(first.get("crp")))
    esr_mode, esr_num = lab(_cell(first.get("esr")))
    age = _cell(first.get("age"))
    fields = {
        "age": float(age) if age else None,
        "sex": _cell(first.get("sex")).upper() or None,
        "site": _cell(first.get("site")).lower(),
        "location": _cell(first.get("location")).lower(),
        "crp_mode": crp_mode,
        "crp": crp_num,
        "esr_mode": esr_mode,
        "esr": esr_num,
    }
    return DemoCase(images=images, boxes=boxes, fields=fields)


def find_demo_manifest(bundle_path: Path | None) -> Path | None:
    """The synthetic cohort the demo run made next to its bundle (RUN/cohort/manifest.csv)."""
    if bundle_path is None:
        return None
    candidate = Path(bundle_path).parent / "cohort" / "manifest.csv"
    return candidate if candidate.is_file() else None


def find_run_splits(bundle_path: Path | None) -> Path | None:
    """The run's splits.csv next to its bundle (RUN/splits.csv), if any."""
    if bundle_path is None:
        return None
    candidate = Path(bundle_path).parent / "splits.csv"
    return candidate if candidate.is_file() else None


def make_demo_manifest(seed: int = 7) -> Path:
    """A tiny synthetic cohort in a temporary folder, for when no demo run is next to the bundle."""
    from multibone.synthetic import make_synthetic_cohort

    out = Path(tempfile.mkdtemp(prefix="multibone-demo-case-"))
    return Path(make_synthetic_cohort(out / "cohort", n_patients=12, seed=seed, progress=False))
