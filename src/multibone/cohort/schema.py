"""The JSON Schemas of the data contract, and the cell rules derived from them.

The files are package data (``multibone/cohort/schemas/``; the repository's
``data_schemas/`` is a link to that folder), so an installed multibone finds them
without the repository.

Everything the validators know about a column comes from the schema: its type,
range, enumeration, aliases, unit, whether it is patient-level, and the sentence
shown when a cell breaks the rule (annotations ``x-message``, ``x-aliases``,
``x-unit``, ``x-patient-level``, ``x-abnormal-above``).
"""

from __future__ import annotations

import copy
import functools
import json
import math
import re
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator

from multibone.errors import InputError

MANIFEST_SCHEMA = "manifest.schema.json"
CASE_SCHEMA = "case.schema.json"

# A plain decimal number; no "nan", "inf", "1_000" or "12 mg/dl" (float() accepts the first three).
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


#: ``diagnosis`` of a normal control: a patient without a lesion (no lesion box). Used by the
#: lesion detector only; never a class of the tumour-vs-infection models.
NORMAL = "normal"


@functools.cache
def _load(name: str) -> str:
    return resources.files("multibone.cohort").joinpath("schemas", name).read_text(encoding="utf-8")


def load_schema(name: str = MANIFEST_SCHEMA) -> dict[str, Any]:
    """Return a fresh copy of a schema shipped with multibone.

    ``name`` is ``"manifest.schema.json"`` (one manifest row) or ``"case.schema.json"``
    (one case's input).
    """
    if name not in (MANIFEST_SCHEMA, CASE_SCHEMA):
        raise InputError(f"unknown schema {name!r}; valid: {MANIFEST_SCHEMA}, {CASE_SCHEMA}")
    return copy.deepcopy(json.loads(_load(name)))


@functools.cache
def _validator(name: str) -> Draft202012Validator:
    schema = json.loads(_load(name))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def manifest_validator() -> Draft202012Validator:
    """Cached validator of one manifest row (the schema is checked once)."""
    return _validator(MANIFEST_SCHEMA)


def case_validator() -> Draft202012Validator:
    """Cached validator of one case dictionary."""
    return _validator(CASE_SCHEMA)


def manifest_properties() -> dict[str, dict[str, Any]]:
    """Column name -> property schema, in schema order."""
    return dict(manifest_validator().schema["properties"])


def required_columns() -> list[str]:
    """Columns every manifest must have (and fill on every row)."""
    return list(manifest_validator().schema["required"])


def patient_level_columns() -> list[str]:
    """Columns that describe the patient and must agree across the patient's rows."""
    return [k for k, p in manifest_properties().items() if p.get("x-patient-level")]


def abnormal_threshold(column: str) -> float:
    """Upper limit of normal for a lab column (``crp`` 10 mg/L, ``esr`` 20 mm/h)."""
    return float(manifest_properties()[column]["x-abnormal-above"])


def _branches(prop: dict[str, Any]) -> list[dict[str, Any]]:
    return [prop, *prop.get("anyOf", []), *prop.get("oneOf", [])]


def _types(prop: dict[str, Any]) -> set[str]:
    out: set[str] = set()
    for b in _branches(prop):
        t = b.get("type")
        if isinstance(t, str):
            out.add(t)
        elif isinstance(t, list):
            out.update(t)
    return out


def enum_values(prop: dict[str, Any]) -> list[Any]:
    """All enumerated values of a property (including those inside ``anyOf``)."""
    out: list[Any] = []
    for b in _branches(prop):
        out.extend(b.get("enum", []))
    return out


def parse_number(text: str) -> float | None:
    """``float`` of a plain decimal number, else ``None`` (rejects nan, inf, units)."""
    t = text.strip()
    if not _NUMBER.fullmatch(t):
        return None
    value = float(t)
    return value if math.isfinite(value) else None


def coerce_cell(prop: dict[str, Any], value: Any) -> Any:
    """Turn a cell (text from CSV, or a value from a form/JSON) into its schema type.

    Numbers are parsed when the property allows a number (whole floats become
    ``int`` for integer-only properties); text is matched case-insensitively to
    the property's enumeration and ``x-aliases`` and returned in canonical
    spelling. Anything that does not fit is returned unchanged, so that the
    schema check reports it.
    """
    if not isinstance(value, str):
        if isinstance(value, float) and value.is_integer() and _types(prop) == {"integer"}:
            return int(value)
        return value
    text = value.strip()
    types = _types(prop)
    if types & {"number", "integer"}:
        num = parse_number(text)
        if num is not None:
            if "number" not in types and num.is_integer():
                return int(num)
            return num
    enums = [e for e in enum_values(prop) if isinstance(e, str)]
    if enums or "x-aliases" in prop:
        key = text.casefold()
        for e in enums:
            if e.casefold() == key:
                return e
        for alias, canon in prop.get("x-aliases", {}).items():
            if alias.casefold() == key:
                return canon
    return text


def cell_message(column: str, prop: dict[str, Any] | None, raw: Any) -> str:
    """The sentence for a bad cell: the schema's ``x-message`` plus what was found."""
    rule = (prop or {}).get("x-message") or f"{column} does not fit the data contract"
    return f"{rule}; got {raw!r}"


def field_limits(name: str = CASE_SCHEMA) -> dict[str, dict[str, Any]]:
    """Limits of each scalar field, for forms (the dashboard) and help texts.

    Returns ``{field: {"type", "minimum", "maximum", "enum", "unit", "description"}}``
    (keys present only where the schema says them), read from the case schema
    by default. Example: ``field_limits()["age"] == {"type": "number", "minimum": 0,
    "maximum": 120, "unit": "years", ...}``.
    """
    props = load_schema(name)["properties"]
    out: dict[str, dict[str, Any]] = {}
    for field, prop in props.items():
        if prop.get("type") in ("array", "object"):
            continue
        entry: dict[str, Any] = {}
        types = sorted(_types(prop) - {"null"})
        if types:
            entry["type"] = types[0] if len(types) == 1 else types
        for b in _branches(prop):
            for key in ("minimum", "maximum"):
                if key in b:
                    entry[key] = b[key]
        enums = enum_values(prop)
        if enums:
            entry["enum"] = enums
        if "x-unit" in prop:
            entry["unit"] = prop["x-unit"]
        if "x-abnormal-above" in prop:
            entry["abnormal_above"] = prop["x-abnormal-above"]
        if "description" in prop:
            entry["description"] = prop["description"]
        out[field] = entry
    return out


def validate_case(case: dict[str, Any], *, require_images: bool = True) -> dict[str, Any]:
    """Check one case's input against ``case.schema.json``; return it normalised.

    ``case`` is a mapping like ``{"age": 34, "sex": "f", "site": "Distal femur",
    "crp": "12.5", "esr": None, "images": [{"path": "a.dcm", "roi": [10, 20, 90, 120]}]}``.
    Numbers given as text are parsed, enumerations put in canonical spelling,
    empty text and ``None`` labs become absent. ``require_images=False`` (a
    bundle without backbones): ``images`` may be absent or empty. Raises
    :class:`InputError` listing every bad field as ``case field F: message``.
    """
    if not isinstance(case, dict):
        raise InputError(f"case: expected a mapping of fields, got {type(case).__name__}")
    validator = case_validator()
    props = validator.schema["properties"]
    out: dict[str, Any] = {}
    for key, value in case.items():
        if value is None or (isinstance(value, str) and not value.strip()):
            continue  # empty = missing
        if isinstance(value, float) and math.isnan(value):
            continue
        prop = props.get(key)
        if prop is None or key == "images":
            out[key] = value
            continue
        out[key] = coerce_cell(prop, value)
    if isinstance(out.get("images"), list):
        item_props = props["images"]["items"]["properties"]
        images = []
        for im in out["images"]:
            if isinstance(im, dict):
                im = {k: v for k, v in im.items() if v is not None or k == "roi"}
                if "view" in im:
                    im["view"] = coerce_cell(item_props["view"], im["view"])
                if isinstance(im.get("roi"), (list, tuple)):
                    im["roi"] = [coerce_cell({"type": "integer"}, v) for v in im["roi"]]
            images.append(im)
        out["images"] = images
    problems: list[str] = []
    no_images = not require_images and not out.get("images")
    if no_images:
        out.pop("images", None)
    for err in sorted(validator.iter_errors(out), key=lambda e: list(map(str, e.absolute_path))):
        path = list(err.absolute_path)
        if err.validator == "required" and not path:
            missing = [r for r in validator.schema["required"] if r not in out]
            for m in [r for r in missing if not (no_images and r == "images")]:
                line = f"case field {m}: required; {props[m].get('x-message', 'give a value')}"
                if line not in problems:
                    problems.append(line)
            continue
        if err.validator == "additionalProperties" and not path:
            extra = sorted(set(out) - set(props))
            problems.append(
                f"case: unknown field{'s' if len(extra) > 1 else ''} {', '.join(extra)}; "
                f"valid fields are {', '.join(props)}"
            )
            continue
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
        top = path[0] if path else ""
        if len(path) == 1 and top in props:
            msg = cell_message(str(top), props[top], case.get(top, out.get(top)))
        else:
            msg = err.message
        line = f"case field {where or 'case'}: {msg}"
        if line not in problems:
            problems.append(line)
    if problems:
        raise InputError("\n".join(problems))
    return out
