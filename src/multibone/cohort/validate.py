"""Manifest validation: every problem at once, each naming its row, column or patient.

Problem lines have one of two forms::

    row R, column C: message
    patient P: message

``R`` is the row number a spreadsheet shows: the header is row 1 and the first
data row is row 2 (CSV records are counted, so a quoted value spanning several
lines is still one row). Problems about the header itself use row 1.

What is checked (the rules come from ``manifest.schema.json``):

* the header: required columns present, no column twice (``image_path`` is
  required only when the run uses images: ``require_images=False`` for a
  clinical-only run, whose patients may have no image at all);
* each cell: type, range and enumeration (CSV text is coerced first: numbers
  parsed, enumerations matched case-insensitively, empty = missing);
* patient-level columns agree across a patient's rows (a patient in two splits
  is such a disagreement);
* a known site or an explicit ``location`` for every patient with a site;
* each image listed once; the file exists, is not empty and can be read;
* the lesion box: all four corners or none, positive width and height, inside
  the image.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from multibone.cohort.schema import (
    NORMAL,
    cell_message,
    coerce_cell,
    manifest_properties,
    manifest_validator,
    patient_level_columns,
    required_columns,
)
from multibone.cohort.sites import location_for_site, normalise_site, site_problem
from multibone.errors import ImageReadError, InputError

log = logging.getLogger(__name__)

ROI_COLUMNS = ("roi_x0", "roi_y0", "roi_x1", "roi_y1")
IMAGE_PATH = "image_path"
_HEADER_ROW = 1


def needed_columns(*, require_images: bool = True, require_diagnosis: bool = False) -> list[str]:
    """Columns a run needs in the manifest, in schema order.

    The schema's required columns (patient_id, image_path, age, sex), less
    ``image_path`` for a clinical-only run (``require_images=False``, no
    backbones), plus ``diagnosis`` for training and evaluation.
    """
    cols = [c for c in required_columns() if require_images or c != IMAGE_PATH]
    if require_diagnosis:
        cols.append("diagnosis")
    return cols


@dataclass
class ParsedRow:
    """One manifest data row after cell checks.

    ``cells``: known column -> stripped text ("" when empty); ``values``: known
    column -> coerced value, only for non-empty cells that passed the schema;
    ``bad``: columns whose cell broke the schema; ``extra``: unknown columns.
    """

    row: int
    cells: dict[str, str]
    values: dict[str, Any]
    bad: set[str]
    extra: dict[str, str]
    abs_path: str = ""
    size: tuple[int, int] | None = None  # (height, width) in pixels, when read


@dataclass
class ParsedManifest:
    """The result of checking a manifest table (see :func:`check_table`)."""

    source: str
    root: Path
    columns: list[str]
    extra_columns: list[str]
    rows: list[ParsedRow]
    problems: list[str]
    # patient_id -> its rows, in order of first appearance
    patients: dict[str, list[ParsedRow]] = field(default_factory=dict)
    # patient_id -> agreed patient-level values (a column is absent when empty or in conflict)
    patient_values: dict[str, dict[str, Any]] = field(default_factory=dict)


def _encoding_hint(path: Path) -> str:
    """What a non-UTF-8 manifest probably is: UTF-16 (a BOM), binary, or an 8-bit code page."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "; it is UTF-16 text, as 'Unicode Text' exports write"
    if b"\x00" in head:
        return "; it holds NUL bytes, so it is not a text file (a spreadsheet .xlsx renamed .csv?)"
    return "; probably Latin-1 / Windows-1252, as 'CSV (comma delimited)' writes"


def read_manifest_csv(path: str | Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Read a CSV manifest as text: ``(header, [(row_number, cells), ...])``.

    Rows are numbered as in a spreadsheet (header = 1). The file must be UTF-8
    (a byte-order mark, as Excel writes, is fine). Raises :class:`InputError`
    when the file is missing or not CSV text.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: manifest not found")
    if p.is_dir():
        raise InputError(f"{p}: is a folder; give the manifest CSV file inside it")
    try:
        with open(p, newline="", encoding="utf-8-sig") as fh:
            records = list(csv.reader(fh))
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{p}: not UTF-8 text (bad byte at offset {exc.start}{_encoding_hint(p)}); save the "
            "manifest as 'CSV UTF-8 (comma delimited)'"
        ) from exc
    except csv.Error as exc:
        raise InputError(f"{p}: not a readable CSV file: {exc}") from exc
    if not records:
        return [], []
    header = records[0]
    rows = [(i + 1, cells) for i, cells in enumerate(records) if i > 0]
    return header, rows


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN from pandas
        return ""
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return ""
    except ImportError:  # pragma: no cover - pandas is a dependency
        pass
    return str(value)


def dataframe_records(df: Any) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """A DataFrame as ``(header, [(row_number, cells)])``, numbered as if written to CSV."""
    header = [str(c) for c in df.columns]
    rows = [
        (i + 2, [_cell_text(v) for v in values])
        for i, values in enumerate(df.itertuples(index=False, name=None))
    ]
    return header, rows


def _fmt_rows(rows: list[int]) -> str:
    return ", ".join(str(r) for r in rows)


def _image_check(path: Path, decode: bool) -> tuple[str | None, tuple[int, int] | None]:
    """(problem or None, (height, width) or None) for one image file."""
    if not path.exists():
        return f"file not found: {path} (image paths are relative to the manifest's folder)", None
    if not path.is_file():
        return f"{path} is a folder, not an image file", None
    if path.stat().st_size == 0:
        return f"file is empty (0 bytes): {path}", None
    # Imported here: cohort must load without the imaging stack, and io imports heavier things.
    from multibone.io import read_image_size, read_radiograph

    try:
        if decode:
            shape = read_radiograph(path).pixels.shape
            h, w = int(shape[0]), int(shape[1])
        else:
            h, w = read_image_size(path)
    except ImageReadError as exc:
        return f"cannot read the image: {exc}", None
    except Exception as exc:  # any decoder failure is this file's problem, not the run's
        log.debug("reading %s failed", path.name, exc_info=True)
        return f"cannot read the image {path.name} ({type(exc).__name__}: {exc})", None
    return None, (int(h), int(w))


def check_table(
    header: list[str],
    records: Iterable[tuple[int, list[str]]],
    *,
    root: Path,
    source: str = "manifest",
    check_images: bool = True,
    decode_images: bool = True,
    require_diagnosis: bool = False,
    require_images: bool = True,
    progress: bool = True,
) -> ParsedManifest:
    """Check a manifest table; collect every problem (never raises for content).

    ``header``: column names as written; ``records``: ``(row_number, cells)``
    with spreadsheet row numbers; ``root``: the folder image paths are relative
    to. ``check_images`` opens every image (``decode_images``: decode the
    pixels fully, catching truncated files and DICOM without pixel data; else
    only the header is read for the size). ``require_diagnosis``: every patient
    needs ``diagnosis`` (training and evaluation). ``require_images=False``
    (a clinical-only run): the ``image_path`` column may be absent or its cells
    empty; rows without an image describe the patient only.
    """
    props = manifest_properties()
    validator = manifest_validator()
    required = needed_columns(require_images=require_images)
    problems: list[tuple[int, int, str]] = []  # (row, column order, text), sorted at the end
    order = {c: i for i, c in enumerate(props)}

    def add(row: int, col: str | None, text: str, tail: int = 0) -> None:
        problems.append((row, order.get(col or "", len(order)) + tail, text))

    # ---- header -------------------------------------------------------------
    colmap: list[str | None] = []
    seen: dict[str, int] = {}
    for i, name in enumerate(header):
        raw = name.strip()
        canon = raw.lower() if raw.lower() in props else raw
        if not canon:
            colmap.append(None)
            continue
        if canon in seen:
            add(
                _HEADER_ROW,
                canon,
                f"row 1, column {canon}: the header has this column twice (columns "
                f"{seen[canon] + 1} and {i + 1}); keep one",
            )
            colmap.append(None)
            continue
        seen[canon] = i
        colmap.append(canon)
    columns = [c for c in colmap if c and c in props]
    extra_columns = [c for c in colmap if c and c not in props]

    if not header:
        add(
            _HEADER_ROW,
            None,
            "row 1: the manifest is empty; its first row must name the columns, at least "
            + ", ".join(required),
        )
    elif len(header) == 1 and ";" in header[0]:
        add(
            _HEADER_ROW,
            None,
            f"row 1: the header is one column {header[0]!r}: the file looks separated by ';'. "
            "Save it as comma-separated CSV",
        )
    else:
        needed = ", ".join(needed_columns(require_images=require_images))
        found = ", ".join(c for c in colmap if c) or "(none)"
        for col in required:
            if col not in columns:
                hint = (
                    "; a run without backbones needs no images (multibone validate --clinical-only)"
                    if col == IMAGE_PATH
                    else ""
                )
                add(
                    _HEADER_ROW,
                    col,
                    f"row 1, column {col}: required column is missing from the header; add a "
                    f"column named {col} ({props[col].get('x-message', '')}). This run needs "
                    f"{needed}; columns found: {found}{hint}",
                )
        if require_diagnosis and "diagnosis" not in columns:
            add(
                _HEADER_ROW,
                "diagnosis",
                "row 1, column diagnosis: required for training and evaluation but missing "
                "from the header; give tumor or infection for every patient",
            )

    # ---- cells ----------------------------------------------------------------
    rows: list[ParsedRow] = []
    n_header = len(header)
    for rownum, cells in records:
        if not any(c.strip() for c in cells):
            continue  # blank line or a row of empty cells (spreadsheets export these)
        if len(cells) > n_header and any(c.strip() for c in cells[n_header:]):
            add(
                rownum,
                None,
                f"row {rownum}: {len(cells)} values but the header names {n_header} columns; "
                "a value containing a comma must be quoted",
                tail=-len(order),
            )
        cells = list(cells[:n_header]) + [""] * max(0, n_header - len(cells))
        texts: dict[str, str] = {}
        extra: dict[str, str] = {}
        for name, cell in zip(colmap, cells, strict=True):
            if name is None:
                continue
            if name in props:
                texts[name] = cell.strip()
            else:
                extra[name] = cell
        instance = {c: coerce_cell(props[c], t) for c, t in texts.items() if t}
        bad: set[str] = set()
        for err in validator.iter_errors(instance):
            if err.validator == "required" and not err.absolute_path:
                for col in required:
                    if col in columns and col not in instance and col not in bad:
                        bad.add(col)
                        add(
                            rownum,
                            col,
                            f"row {rownum}, column {col}: required value is empty; "
                            f"{props[col].get('x-message', '')}",
                        )
                continue
            col = str(err.absolute_path[0]) if err.absolute_path else None
            if col is None or col in bad:
                continue
            bad.add(col)
            add(
                rownum,
                col,
                f"row {rownum}, column {col}: {cell_message(col, props.get(col), texts.get(col, ''))}",
            )
        values = {c: v for c, v in instance.items() if c not in bad}
        if "site" in values:
            values["site"] = normalise_site(values["site"])
        rows.append(ParsedRow(rownum, texts, values, bad, extra))

    # ---- patients: group and check agreement -----------------------------------
    patients: dict[str, list[ParsedRow]] = {}
    for r in rows:
        pid = r.values.get("patient_id")
        if pid is not None:
            patients.setdefault(str(pid), []).append(r)

    patient_values: dict[str, dict[str, Any]] = {}
    level_cols = [c for c in patient_level_columns() if c in columns]
    for pid, prow in patients.items():
        agreed: dict[str, Any] = {}
        for col in level_cols:
            entries = [
                (r.row, r.values.get(col), r.cells.get(col, "")) for r in prow if col not in r.bad
            ]
            if not entries:
                continue
            distinct: dict[Any, tuple[str, list[int]]] = {}
            for rownum, value, raw in entries:
                key = value.casefold() if isinstance(value, str) else value
                distinct.setdefault(key, (raw, []))[1].append(rownum)
            if len(distinct) > 1:
                all_rows = sorted(rn for _, rns in distinct.values() for rn in rns)
                if len(all_rows) > len(distinct):
                    shown = " vs ".join(
                        f"{raw!r} on row{'s' if len(rns) > 1 else ''} {_fmt_rows(rns)}"
                        for raw, rns in distinct.values()
                    )
                else:
                    shown = " vs ".join(repr(raw) for raw, _ in distinct.values())
                why = (
                    "a patient must sit in one split only, or the split leaks"
                    if col == "split"
                    else "every image row of a patient must repeat the same value"
                )
                add(
                    all_rows[0],
                    col,
                    f"patient {pid}: column {col} disagrees across rows {_fmt_rows(all_rows)} "
                    f"({shown}); {why}",
                    tail=len(order),
                )
                continue
            value = entries[0][1]
            if value is not None:
                agreed[col] = value
        patient_values[pid] = agreed

        first = prow[0].row
        # A site in conflict across rows is reported above; only an agreed site is mapped.
        if "site" in agreed and "location" not in agreed and not location_for_site(agreed["site"]):
            location_bad = any("location" in r.bad for r in prow)
            if not location_bad:
                site_row = next(r for r in prow if r.values.get("site"))
                problem = site_problem(site_row.cells["site"], who=f"for patient {pid}")
                add(site_row.row, "site", f"row {site_row.row}, column site: {problem}")
        if require_diagnosis and "diagnosis" in columns and "diagnosis" not in agreed:
            reported = any("diagnosis" in r.bad for r in prow) or any(
                r.values.get("diagnosis") for r in prow
            )
            if not reported:
                add(
                    first,
                    "diagnosis",
                    f"row {first}, column diagnosis: empty for patient {pid}; training and "
                    "evaluation need tumor or infection for every patient",
                )
        if agreed.get("diagnosis") == NORMAL:
            for r in prow:
                given = [c for c in ROI_COLUMNS if c in r.values]
                if given and not any(c in r.bad for c in ROI_COLUMNS):
                    add(
                        r.row,
                        given[0],
                        f"row {r.row}: a normal control (diagnosis normal) must have no lesion "
                        f"box; leave roi_x0..roi_y1 empty (patient {pid})",
                    )
                    r.bad.add(given[0])  # no second message about the same box

    # ---- images: duplicates, files, lesion boxes -------------------------------
    seen_paths: dict[str, int] = {}
    to_read: list[ParsedRow] = []
    for r in rows:
        rel = r.values.get("image_path")
        if rel is None:
            continue
        full = Path(rel).expanduser()
        full = full if full.is_absolute() else root / full
        r.abs_path = os.path.abspath(full)
        key = os.path.normcase(r.abs_path)
        if key in seen_paths:
            add(
                r.row,
                "image_path",
                f"row {r.row}, column image_path: {rel!r} is listed twice (first on row "
                f"{seen_paths[key]}); each image must appear on one row only",
            )
            continue
        seen_paths[key] = r.row
        to_read.append(r)

    roi_ok: dict[int, tuple[int, int, int, int]] = {}
    for r in rows:
        if any(c in r.bad for c in ROI_COLUMNS):
            continue
        given = [c for c in ROI_COLUMNS if c in r.values]
        if not given:
            continue
        if IMAGE_PATH not in r.values and not require_images:
            # Clinical-only row: a box points at no image. (With images an empty path is reported.)
            add(
                r.row,
                given[0],
                f"row {r.row}, column {given[0]}: a lesion box on a row without an image; "
                "give the image_path or leave the roi_ columns empty",
            )
            continue
        if len(given) < 4:
            missing = [c for c in ROI_COLUMNS if c not in r.values]
            add(
                r.row,
                missing[0],
                f"row {r.row}, column {missing[0]}: lesion box partly given ({', '.join(given)} "
                f"set; {', '.join(missing)} empty); give all four roi_ corners in pixels, or "
                "leave all four empty to use the whole image",
            )
            continue
        x0, y0, x1, y1 = (int(r.values[c]) for c in ROI_COLUMNS)
        ok = True
        if x1 <= x0:
            add(
                r.row,
                "roi_x1",
                f"row {r.row}, column roi_x1: roi_x1 ({x1}) must be greater than roi_x0 ({x0}); "
                "the box has zero or negative width (x0, y0 are the top-left corner, x1, y1 the "
                "bottom-right, exclusive)",
            )
            ok = False
        if y1 <= y0:
            add(
                r.row,
                "roi_y1",
                f"row {r.row}, column roi_y1: roi_y1 ({y1}) must be greater than roi_y0 ({y0}); "
                "the box has zero or negative height (x0, y0 are the top-left corner, x1, y1 the "
                "bottom-right, exclusive)",
            )
            ok = False
        if ok:
            roi_ok[r.row] = (x0, y0, x1, y1)

    if check_images and to_read:
        bar = tqdm(
            to_read,
            desc="checking images",
            unit="image",
            disable=None if progress else True,
            leave=False,
        )
        for r in bar:
            problem, size = _image_check(Path(r.abs_path), decode_images)
            if problem:
                add(r.row, "image_path", f"row {r.row}, column image_path: {problem}")
                continue
            r.size = size
            box = roi_ok.get(r.row)
            if box is None or size is None:
                continue
            h, w = size
            x0, y0, x1, y1 = box
            if x1 > w:
                add(
                    r.row,
                    "roi_x1",
                    f"row {r.row}, column roi_x1: the lesion box reaches x = {x1} but the image is "
                    f"{w} px wide ({w} x {h} px, width x height); boxes are in original pixel "
                    "coordinates",
                )
            if y1 > h:
                add(
                    r.row,
                    "roi_y1",
                    f"row {r.row}, column roi_y1: the lesion box reaches y = {y1} but the image is "
                    f"{h} px high ({w} x {h} px, width x height); boxes are in original pixel "
                    "coordinates",
                )

    if header and not rows and not any(row == _HEADER_ROW for row, _, _ in problems):
        add(2, None, "row 2: the manifest has a header but no data rows")

    problems.sort(key=lambda p: (p[0], p[1]))
    return ParsedManifest(
        source=source,
        root=root,
        columns=columns,
        extra_columns=extra_columns,
        rows=rows,
        problems=[p[2] for p in problems],
        patients=patients,
        patient_values=patient_values,
    )


def check_manifest(
    path: str | Path,
    *,
    check_images: bool = True,
    decode_images: bool = True,
    require_diagnosis: bool = False,
    require_images: bool = True,
    progress: bool = True,
) -> ParsedManifest:
    """Read and check a manifest CSV; image paths are relative to its folder.

    Options as :func:`check_table`.
    """
    p = Path(path)
    header, records = read_manifest_csv(p)
    return check_table(
        header,
        records,
        root=p.resolve().parent,
        source=str(p),
        check_images=check_images,
        decode_images=decode_images,
        require_diagnosis=require_diagnosis,
        require_images=require_images,
        progress=progress,
    )


def validate_manifest(
    path: str | Path,
    *,
    check_images: bool = True,
    decode_images: bool = True,
    require_diagnosis: bool = False,
    require_images: bool = True,
) -> list[str]:
    """Every problem of a manifest CSV, as one line each (empty list: valid).

    Lines read ``row R, column C: message`` (R: spreadsheet row number, header =
    row 1, first data row = row 2) or ``patient P: message``.

    ``check_images``: open every image (missing, empty, unreadable files and
    lesion boxes outside the image are problems). ``decode_images`` (default
    True): decode the pixels fully, which also catches truncated files and
    DICOM without pixel data; False reads headers only (faster on big cohorts).
    ``require_diagnosis``: every patient needs a diagnosis (training data).
    ``require_images=False``: a clinical-only run (no backbones); ``image_path``
    may be absent or empty (see :func:`needed_columns`).

    Raises :class:`InputError` only when the file itself cannot be read as CSV.
    """
    return check_manifest(
        path,
        check_images=check_images,
        decode_images=decode_images,
        require_diagnosis=require_diagnosis,
        require_images=require_images,
    ).problems
