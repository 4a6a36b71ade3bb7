"""The JSON Schemas: shipped copies, validity, shared limits, case validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from multibone.cohort import field_limits, load_schema, validate_case
from multibone.cohort.schema import CASE_SCHEMA, MANIFEST_SCHEMA, coerce_cell, parse_number
from multibone.errors import InputError

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", [MANIFEST_SCHEMA, CASE_SCHEMA])
def test_package_copy_equals_canonical(name):
    canonical = REPO / "data_schemas" / name
    shipped = REPO / "src" / "multibone" / "cohort" / "schemas" / name
    assert shipped.read_bytes() == canonical.read_bytes(), (
        f"copy data_schemas/{name} to src/multibone/cohort/schemas/{name}"
    )
    assert load_schema(name) == json.loads(canonical.read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", [MANIFEST_SCHEMA, CASE_SCHEMA])
def test_schemas_are_valid_draft_2020_12(name):
    schema = load_schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_case_limits_match_manifest():
    manifest = load_schema(MANIFEST_SCHEMA)["properties"]
    case = load_schema(CASE_SCHEMA)["properties"]
    for field in ("age", "sex", "site", "location", "crp", "esr"):
        m, c = dict(manifest[field]), dict(case[field])
        for key in ("x-patient-level", "description", "x-message"):  # wording may differ
            m.pop(key, None)
            c.pop(key, None)
        if "anyOf" in c:  # the case form may send null for a missing lab
            c["anyOf"] = [b for b in c["anyOf"] if b != {"type": "null"}]
        assert c == m, field
    assert case["images"]["items"]["properties"]["view"]["enum"] == manifest["view"]["enum"]


def test_field_limits_for_the_dashboard():
    lim = field_limits()
    assert lim["age"]["minimum"] == 0 and lim["age"]["maximum"] == 120
    assert lim["age"]["unit"] == "years"
    assert lim["sex"]["enum"] == ["F", "M"]
    assert lim["crp"]["unit"] == "mg/L" and lim["crp"]["abnormal_above"] == 10
    assert lim["crp"]["enum"] == ["normal", "abnormal"] and lim["crp"]["maximum"] == 1000
    assert lim["esr"]["unit"] == "mm/h" and lim["esr"]["abnormal_above"] == 20
    assert "images" not in lim


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("12", 12.0),
        (" 4.5 ", 4.5),
        ("1e2", 100.0),
        ("-3", -3.0),
        ("nan", None),
        ("inf", None),
        ("1_000", None),
        ("12 mg/dl", None),
        ("12,5", None),
        ("", None),
    ],
)
def test_parse_number(text, value):
    assert parse_number(text) == value


def test_coerce_cell_follows_schema():
    props = load_schema()["properties"]
    assert coerce_cell(props["age"], "45") == 45.0
    assert coerce_cell(props["roi_x0"], "12.0") == 12 and isinstance(
        coerce_cell(props["roi_x0"], "12.0"), int
    )
    assert coerce_cell(props["roi_x0"], "12.5") == 12.5  # left for the schema to reject
    assert coerce_cell(props["crp"], "Abnormal") == "abnormal"
    assert coerce_cell(props["crp"], "12") == 12.0
    assert coerce_cell(props["diagnosis"], "TUMOUR") == "tumor"
    assert coerce_cell(props["sex"], "Female") == "F"
    assert coerce_cell(props["view"], "LATERAL") == "lateral"


def test_validate_case_normalises():
    out = validate_case(
        {
            "age": "34",
            "sex": "m",
            "crp": "",
            "esr": "abnormal",
            "site": "femur",
            "images": [{"path": "a.png", "roi": ["1", 2, 30.0, 40], "view": "Oblique"}],
        }
    )
    assert out == {
        "age": 34.0,
        "sex": "M",
        "esr": "abnormal",
        "site": "femur",
        "images": [{"path": "a.png", "roi": [1, 2, 30, 40], "view": "oblique"}],
    }


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ({"sex": "F", "images": [{"path": "a"}]}, "case field age: required"),
        (
            {"age": 150, "sex": "F", "images": [{"path": "a"}]},
            "case field age: age must be a number of years from 0 to 120; got 150",
        ),
        ({"age": 30, "sex": "X", "images": [{"path": "a"}]}, "case field sex: sex must be F or M"),
        (
            {"age": 30, "sex": "F", "crp": "12 mg/dl", "images": [{"path": "a"}]},
            "case field crp: CRP must be a number in mg/L",
        ),
        ({"age": 30, "sex": "F", "images": []}, "case field images: images must be a list"),
        ({"age": 30, "sex": "F", "images": [{"roi": [1, 2, 3, 4]}]}, "case field images[0]:"),
        (
            {"age": 30, "sex": "F", "images": [{"path": "a", "roi": [1, 2, 3]}]},
            "case field images[0].roi:",
        ),
        (
            {"age": 30, "sex": "F", "weight": 70, "images": [{"path": "a"}]},
            "case: unknown field weight",
        ),
    ],
)
def test_validate_case_rejects(case, message):
    with pytest.raises(InputError) as info:
        validate_case(case)
    assert message in str(info.value)
