"""Reading one radiograph (DICOM, PNG or JPEG) into a grey-scale float image.

Every reader returns a :class:`Radiograph` whose ``pixels`` are float32 of
shape (H, W) in [0, 1] with bone bright (high attenuation = high value), so
everything downstream sees one convention whatever the file was.

DICOM pipeline (PS3.3 C.11, the order matters; see PITFALLS.md):

1. decode the stored values (pydicom; compressed transfer syntaxes through the
   pylibjpeg plugins; an undecodable transfer syntax is refused by name);
2. modality LUT: the Modality LUT Sequence, else Rescale Slope/Intercept
   (``pydicom.pixels.apply_modality_lut``);
3. VOI, first view (index 0) only:

   * a VOI LUT Sequence wins when both it and Window Center/Width are present:
     it is the curve the producer wants shown, the window often only a linear
     approximation of it (and it is pydicom's own preference). Output entries
     are scaled by their bit depth; when the LUT Descriptor claims more bits
     than any entry uses (a known vendor bug: 12-bit data declared 16-bit) the
     depth of the largest entry is used so the image is not nearly black;
   * else Window Center/Width with the VOI LUT Function (LINEAR, LINEAR_EXACT,
     SIGMOID) by the formulas of PS3.3 C.11.2.1.2, mapped straight to [0, 1];
   * else (or with an invalid window width) min-max of the image's own values
     after the modality LUT (a constant image becomes all zeros);

4. MONOCHROME1 is inverted last (``1 - x``), so it is never inverted twice.
   Presentation LUT Shape is not applied on top: for MONOCHROME1 it restates
   the same inversion (PS3.3 C.8.11.6).

Colour DICOM (RGB, YBR_* which pydicom converts to RGB, PALETTE COLOR through
its palette) is made grey with ITU-R BT.601 luma (0.299 R + 0.587 G + 0.114 B),
the weights PIL uses too, and scaled by its bit depth; no VOI applies.
Multi-frame DICOM is refused (which frame is the radiograph is not ours to
guess); export the frame wanted as a single-frame file.

PNG / JPEG (Pillow): the whole file is decoded at once so a truncated file
fails here, not later. EXIF orientation is applied (so boxes drawn on the image
as viewers show it line up). Grey values are divided by the type's maximum
(255 for 8-bit, 65535 for 16-bit PNG); no window is applied, so a 16-bit PNG
holding 12-bit values looks dark but keeps its grey levels. Colour is made grey
as above; alpha is dropped.

No identifying DICOM element (patient name, ids, dates, institution...) is
ever read, logged or returned: only the image-pixel and VOI elements (and
BurnedInAnnotation, to warn when the pixels themselves may show such text) are
touched, and :attr:`Radiograph.source` is the file name alone.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from multibone.errors import ImageReadError

log = logging.getLogger(__name__)

#: Largest image (rows x columns) accepted, checked from the header before any
#: pixel is decoded. Real radiographs are 5-20 megapixels; a float32 copy of
#: 100 MP already takes 400 MB.
MAX_PIXELS = 100_000_000

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*")
_DICOM_SUFFIXES = {".dcm", ".dicom", ".dic", ""}
_LUMA = np.array([0.299, 0.587, 0.114])


@dataclass
class Radiograph:
    """One loaded radiograph.

    Attributes:
        pixels: float32 array of shape (H, W), values in [0, 1], bone bright.
        format: ``"dicom"``, ``"png"`` or ``"jpeg"``.
        photometric: the file's colour model as stored, in DICOM terms
            (``"MONOCHROME1"``, ``"MONOCHROME2"``, ``"RGB"``, ``"YBR_FULL_422"``,
            ``"PALETTE COLOR"``...); ``pixels`` are grey whatever it says.
        bits: bits per stored sample (DICOM Bits Stored; 8 or 16 for PNG; 8 for JPEG).
        source: the file name (no folder), safe to show.
        voi: how grey levels were mapped to [0, 1]: ``"voi_lut"``, ``"window"``,
            ``"minmax"`` (DICOM grey), ``"bit_depth"`` (colour DICOM, PNG, JPEG).
        transfer_syntax: DICOM transfer syntax name (``""`` for PNG/JPEG).
        burned_in_annotation: the DICOM says ``BurnedInAnnotation = YES`` (text such as
            a name or date drawn into the pixels); loading also logs a warning naming
            the file, for every such image.
    """

    pixels: np.ndarray
    format: str
    photometric: str
    bits: int
    source: str
    voi: str = ""
    transfer_syntax: str = ""
    burned_in_annotation: bool = False

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])


# --------------------------------------------------------------------------- sniffing


def _check_file(path: Path) -> bytes:
    """Return the first 132 bytes of ``path``; raise ImageReadError if it cannot be read."""
    if not path.exists():
        raise ImageReadError(
            f"{path}: file not found; check the path (relative paths are "
            "resolved from the manifest's folder)"
        )
    if path.is_dir():
        raise ImageReadError(f"{path}: is a folder, not an image file")
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    if not head:
        raise ImageReadError(f"{path}: file is empty (0 bytes); re-export or re-copy the image")
    return head


def _sniff(path: Path, head: bytes) -> str:
    """Guess the format from the file's first bytes (never trusting the extension alone)."""
    if head.startswith(_PNG_MAGIC):
        return "png"
    if head.startswith(_JPEG_MAGIC):
        return "jpeg"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(_TIFF_MAGICS):
        raise ImageReadError(
            f"{path}: is a TIFF file; multibone reads DICOM, PNG and JPEG: "
            "convert it to PNG (16-bit to keep all grey levels)"
        )
    if path.suffix.lower() in _DICOM_SUFFIXES:
        return "dicom-raw"  # maybe a DICOM data set without the 128-byte preamble
    raise ImageReadError(
        f"{path}: not a DICOM, PNG or JPEG file (unrecognised first bytes); "
        "multibone reads DICOM (.dcm), PNG and JPEG"
    )


def _too_big(path: Path, height: int, width: int) -> ImageReadError:
    return ImageReadError(
        f"{path}: image is {height} x {width} = {height * width:,} pixels, more than "
        f"MAX_PIXELS = {MAX_PIXELS:,}; downsample it before use"
    )


# --------------------------------------------------------------------------- DICOM


def _dcmread(path: Path, *, raw: bool, header_only: bool) -> Any:
    """Read a DICOM data set; pixel data are deferred (read on first use)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    kwargs: dict[str, Any] = {"stop_before_pixels": True} if header_only else {"defer_size": "2 MB"}
    try:
        if not raw:
            return pydicom.dcmread(path, **kwargs)
        ds = pydicom.dcmread(path, force=True, **kwargs)
    except InvalidDicomError as exc:
        raise ImageReadError(f"{path}: not a valid DICOM file ({exc})") from exc
    except Exception as exc:  # pydicom raises many types on a damaged file
        what = "could not be read as a raw DICOM data set" if raw else "damaged DICOM file"
        raise ImageReadError(f"{path}: {what} ({type(exc).__name__}: {exc})") from exc
    # A file without the 'DICM' preamble is accepted only if it really holds an
    # image data set; force=True otherwise "reads" any text or binary file.
    try:
        ok = int(ds.get("Rows", 0) or 0) > 0 and int(ds.get("Columns", 0) or 0) > 0
    except Exception:
        ok = False
    if not ok and ("SOPClassUID" in ds or "Modality" in ds):
        # a legacy data set without preamble / file meta that pydicom does read (force=True)
        raise ImageReadError(
            f"{path}: a DICOM data set without preamble (modality "
            f"{ds.get('Modality', 'unknown') or 'unknown'}) that holds no image (no rows/columns); "
            "multibone reads radiographs: export the image itself"
        )
    if not ok:
        raise ImageReadError(
            f"{path}: not a DICOM file (no 'DICM' marker at byte 128 and no image "
            "rows/columns in it); check that the file is a radiograph export, not a "
            "text, report or renamed file"
        )
    if not getattr(ds, "file_meta", None) or "TransferSyntaxUID" not in ds.file_meta:
        # Preamble-less (ACR-NEMA style) files: record the encoding pydicom
        # found, so pixel decoding knows the byte layout.
        from pydicom.dataset import FileMetaDataset
        from pydicom.uid import (
            ExplicitVRBigEndian,
            ExplicitVRLittleEndian,
            ImplicitVRLittleEndian,
        )

        implicit, little = ds.original_encoding
        if implicit:
            uid = ImplicitVRLittleEndian
        else:
            uid = ExplicitVRLittleEndian if little else ExplicitVRBigEndian
        if not getattr(ds, "file_meta", None):
            ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = uid
    return ds


def _tsyntax(ds: Any) -> Any:
    return ds.file_meta.get("TransferSyntaxUID") if getattr(ds, "file_meta", None) else None


def _dicom_frames(ds: Any) -> int:
    try:
        return int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        return 1


def _dicom_size(path: Path, ds: Any) -> tuple[int, int]:
    try:
        return int(ds.Rows), int(ds.Columns)
    except (AttributeError, TypeError, ValueError) as exc:
        raise ImageReadError(
            f"{path}: DICOM file has no image size (Rows/Columns missing); it holds no "
            "radiograph (a report or presentation state?)"
        ) from exc


def _window(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """Window Center/Width to [0, 1] by PS3.3 C.11.2.1.2 (LINEAR) and C.11.2.1.3.

    Args:
        values: modality-LUT output values (any shape, float64).
        center, width: Window Center and Window Width.
        function: VOI LUT Function: LINEAR, LINEAR_EXACT or SIGMOID.

    Returns:
        float64 array of the same shape in [0, 1].
    """
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "LINEAR":
        center, width = center - 0.5, width - 1.0
    if width <= 0:
        # LINEAR with width 1 is a pure threshold at the centre.
        return (values > center).astype(np.float64)
    return np.clip((values - center) / width + 0.5, 0.0, 1.0)


def _voi_lut(ds: Any, values: np.ndarray) -> np.ndarray:
    """First VOI LUT of ``ds`` applied to modality values, scaled to [0, 1].

    pydicom decodes the LUT table (US/OW, endianness); the indexing is done
    here on int64 so inputs far outside the table cannot wrap around in the
    LUT's uint16 type: inputs below the first mapped value take the first
    entry, above the last take the last (PS3.3 C.11.2.1.1).
    """
    import pydicom.pixels as px

    desc = ds.VOILUTSequence[0].LUTDescriptor
    n, first, nominal = int(desc[0]) or 2**16, int(desc[1]), int(desc[2])
    table = px.apply_voi(np.arange(first, first + n, dtype=np.int64), ds, index=0)
    table = table.astype(np.float64)
    top = int(table.max()) if table.size else 0
    # Vendor bug: 12-bit entries under a 16-bit descriptor; scale by what is used.
    bits = min(nominal, max(8, top.bit_length()))
    idx = np.clip(np.rint(values).astype(np.int64) - first, 0, n - 1)
    return np.clip(table[idx] / float(2**bits - 1), 0.0, 1.0)


def _apply_voi(path: Path, ds: Any, values: np.ndarray) -> tuple[np.ndarray, str]:
    """VOI step: modality values -> [0, 1]. Returns (float64 array, method name)."""
    if ds.get("VOILUTSequence"):
        try:
            return _voi_lut(ds, values), "voi_lut"
        except Exception as exc:  # malformed LUT: fall through to window / min-max
            log.warning(
                "%s: VOI LUT Sequence unusable (%s); using window or min-max",
                path.name,
                type(exc).__name__,
            )
    if "WindowCenter" in ds and "WindowWidth" in ds:
        try:
            wc, ww = ds.WindowCenter, ds.WindowWidth
            center = float(wc[0] if ds["WindowCenter"].VM > 1 else wc)
            width = float(ww[0] if ds["WindowWidth"].VM > 1 else ww)
            function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper().strip()
        except (TypeError, ValueError, IndexError):
            center = width = float("nan")
            function = "LINEAR"
        valid = (
            math.isfinite(center)
            and math.isfinite(width)
            and function in {"LINEAR", "LINEAR_EXACT", "SIGMOID"}
            and (width >= 1 if function == "LINEAR" else width > 0)
        )
        if valid:
            return _window(values, center, width, function), "window"
        log.warning(
            "%s: invalid window (width %s, function %s); using min-max", path.name, width, function
        )
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros_like(values, dtype=np.float64), "minmax"
    return (values - lo) / (hi - lo), "minmax"


def _read_dicom(path: Path, raw: bool) -> Radiograph:
    import pydicom.pixels as px

    ds = _dcmread(path, raw=raw, header_only=False)
    ts = _tsyntax(ds)
    ts_name = getattr(ts, "name", str(ts or "unknown"))
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise ImageReadError(
            f"{path}: DICOM file has no pixel data (it may be truncated, or a non-image "
            "object such as a report); export the radiograph itself"
        )
    frames = _dicom_frames(ds)
    if frames > 1:
        raise ImageReadError(
            f"{path}: multi-frame DICOM ({frames} frames); multibone reads one radiograph "
            "per file: export the frame you want as a single-frame DICOM (e.g. in your "
            "PACS viewer, or with pydicom: ds.pixel_array[i]) or as a 16-bit PNG"
        )
    height, width = _dicom_size(path, ds)
    if height * width > MAX_PIXELS:
        raise _too_big(path, height, width)
    if ts is not None:
        from pydicom.pixels import get_decoder

        try:
            decoder = get_decoder(ts)
            available = decoder.is_available
            missing = "; ".join(decoder.missing_dependencies)
        except Exception:  # NotImplementedError for a syntax pydicom cannot decode at all
            available, missing = False, "pydicom has no decoder for it"
        if not available:
            raise ImageReadError(
                f"{path}: transfer syntax '{ts_name}' ({ts}) cannot be decoded here "
                f"({missing}); convert the file to an uncompressed or JPEG 2000 DICOM"
            )
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2") or "MONOCHROME2")
    photometric = photometric.strip().upper()
    try:
        bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 16)
    except (TypeError, ValueError):
        bits = 16
    try:
        arr = ds.pixel_array
    except Exception as exc:  # decoders raise many types on damaged data
        raise ImageReadError(
            f"{path}: pixel data could not be decoded ({ts_name}; {type(exc).__name__}: "
            f"{exc}); the file may be truncated or damaged"
        ) from exc

    if photometric in {"MONOCHROME1", "MONOCHROME2"}:
        if arr.ndim != 2:
            raise ImageReadError(f"{path}: expected a 2-D grey image, got shape {arr.shape}")
        try:
            values = px.apply_modality_lut(arr, ds)
        except Exception as exc:
            raise ImageReadError(
                f"{path}: modality LUT / rescale could not be applied ({type(exc).__name__}: {exc})"
            ) from exc
        values = np.asarray(values, dtype=np.float64)
        grey, voi = _apply_voi(path, ds, values)
        if photometric == "MONOCHROME1":
            grey = 1.0 - grey  # last step: low values are bright in MONOCHROME1
    else:
        grey, voi = _colour_dicom_to_grey(path, ds, arr, photometric, bits), "bit_depth"
    pixels = np.clip(grey, 0.0, 1.0).astype(np.float32)
    log.debug(
        "%s: DICOM %s, %s, %d bits, %dx%d, VOI %s",
        path.name,
        ts_name,
        photometric,
        bits,
        height,
        width,
        voi,
    )
    burned_in = str(ds.get("BurnedInAnnotation", "") or "").strip().upper() == "YES"
    if burned_in:
        message = (
            f"{path.name}: BurnedInAnnotation = YES: the pixels may show identifying text "
            "(name, id, date); it appears in crops, overlays and reports made from this image"
        )
        log.warning(message)
    return Radiograph(
        pixels, "dicom", photometric, bits, path.name, voi, ts_name, burned_in_annotation=burned_in
    )


def _colour_dicom_to_grey(
    path: Path, ds: Any, arr: np.ndarray, photometric: str, bits: int
) -> np.ndarray:
    import pydicom.pixels as px

    if photometric == "PALETTE COLOR":
        try:
            rgb = px.apply_color_lut(arr, ds)
        except Exception as exc:
            raise ImageReadError(
                f"{path}: PALETTE COLOR image whose palette cannot be applied "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        top = float(np.iinfo(rgb.dtype).max) if rgb.dtype.kind in "ui" else 1.0
    elif photometric in {
        "RGB",
        "YBR_FULL",
        "YBR_FULL_422",
        "YBR_ICT",
        "YBR_RCT",
        "YBR_PARTIAL_420",
    }:
        rgb = arr  # pydicom converts YBR_* to RGB on decoding
        top = float(2**bits - 1)
    else:
        raise ImageReadError(
            f"{path}: photometric interpretation '{photometric}' is not supported; "
            "use MONOCHROME1/2, RGB, YBR or PALETTE COLOR"
        )
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ImageReadError(f"{path}: expected a (H, W, 3) colour image, got shape {rgb.shape}")
    return (rgb.astype(np.float64) @ _LUMA) / top


# --------------------------------------------------------------------------- PNG / JPEG


def _open_pil(path: Path) -> Any:
    from PIL import Image

    try:
        # Our own MAX_PIXELS check is the one that counts; Pillow's bomb warning
        # would only repeat it less clearly.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise ImageReadError(
            f"{path}: image is larger than MAX_PIXELS = {MAX_PIXELS:,}; downsample it before use"
        ) from exc
    except Exception as exc:
        raise ImageReadError(
            f"{path}: PNG/JPEG header cannot be read ({type(exc).__name__}: {exc}); the file "
            "is damaged or not an image"
        ) from exc
    if im.format not in {"PNG", "JPEG", "MPO"}:
        im.close()
        raise ImageReadError(
            f"{path}: unsupported image format {im.format}; use DICOM, PNG or JPEG"
        )
    return im


def _exif_swaps(im: Any) -> bool:
    """True when EXIF orientation rotates by 90 degrees (width and height swap)."""
    try:
        return im.getexif().get(0x0112, 1) in (5, 6, 7, 8)
    except Exception:
        return False


def _read_pil(path: Path, fmt: str) -> Radiograph:
    from PIL import ImageOps

    im = _open_pil(path)
    with im:
        width, height = im.size
        if height * width > MAX_PIXELS:
            raise _too_big(path, height, width)
        try:
            im.load()  # decode everything now: a truncated file fails here
        except Exception as exc:
            raise ImageReadError(
                f"{path}: {fmt.upper()} pixel data cannot be decoded ({type(exc).__name__}: "
                f"{exc}); the file is truncated or damaged, re-export it"
            ) from exc
        try:
            im2 = ImageOps.exif_transpose(im)
        except Exception:  # a malformed EXIF block should not lose the image
            im2 = im
        mode = im2.mode
        if mode in {"I;16", "I;16B", "I;16L", "I;16N"}:
            grey, bits, photometric = (
                np.asarray(im2).astype(np.float64) / 65535.0,
                16,
                "MONOCHROME2",
            )
        elif mode == "I":
            grey, bits, photometric = (
                np.asarray(im2).astype(np.float64) / 65535.0,
                16,
                "MONOCHROME2",
            )
        elif mode == "L":
            grey, bits, photometric = np.asarray(im2).astype(np.float64) / 255.0, 8, "MONOCHROME2"
        elif mode == "1":
            grey, bits, photometric = np.asarray(im2).astype(np.float64), 1, "MONOCHROME2"
        elif mode == "LA":
            grey, bits, photometric = (
                np.asarray(im2)[..., 0].astype(np.float64) / 255.0,
                8,
                "MONOCHROME2",
            )
        else:
            photometric = {
                "P": "PALETTE COLOR",
                "PA": "PALETTE COLOR",
                "CMYK": "CMYK",
                "YCbCr": "RGB",
            }.get(mode, "RGB")
            rgb = np.asarray(im2.convert("RGB")).astype(np.float64)
            grey, bits = (rgb @ _LUMA) / 255.0, 8
        if im2 is not im:
            im2.close()
    pixels = np.clip(grey, 0.0, 1.0).astype(np.float32)
    log.debug("%s: %s %s %d bits %dx%d", path.name, fmt, mode, bits, *pixels.shape)
    return Radiograph(pixels, fmt, photometric, bits, path.name, "bit_depth", "")


# --------------------------------------------------------------------------- public


def read_radiograph(path: str | Path) -> Radiograph:
    """Load a DICOM, PNG or JPEG radiograph as grey float32 in [0, 1], bone bright.

    The format is recognised from the file's first bytes. See the module
    docstring for the DICOM steps (modality LUT, VOI, MONOCHROME1 inversion).

    Args:
        path: the image file.

    Returns:
        A :class:`Radiograph`; ``pixels`` is float32 (H, W) in [0, 1].

    Raises:
        ImageReadError: missing, empty, truncated, non-image or unsupported file
            (multi-frame DICOM, undecodable transfer syntax, more than
            :data:`MAX_PIXELS` pixels); the message names the file and the fix.
    """
    path = Path(path)
    head = _check_file(path)
    kind = _sniff(path, head)
    if kind in {"dicom", "dicom-raw"}:
        return _read_dicom(path, raw=kind == "dicom-raw")
    return _read_pil(path, kind)


def read_image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) in pixels from the file header, without decoding pixels.

    Matches ``read_radiograph(path).pixels.shape`` (EXIF rotation included).

    Raises:
        ImageReadError: as :func:`read_radiograph` for an unreadable header.
    """
    path = Path(path)
    head = _check_file(path)
    kind = _sniff(path, head)
    if kind in {"dicom", "dicom-raw"}:
        ds = _dcmread(path, raw=kind == "dicom-raw", header_only=True)
        return _dicom_size(path, ds)
    im = _open_pil(path)
    with im:
        width, height = im.size
        if _exif_swaps(im):
            width, height = height, width
    return int(height), int(width)
