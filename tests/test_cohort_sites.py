"""The site vocabulary (``multibone/cohort/sites.yaml``): every entry maps, real names are read.

Reference for the axial/appendicular split: standard anatomy (Gray's Anatomy;
Terminologia Anatomica), with the one documented exception that the pelvis /
hip bone counts as axial (bone-tumour convention, see the data file's header).
"""

from __future__ import annotations

import csv
import re
from importlib import resources
from pathlib import Path

import pytest
import yaml

from multibone.cohort import load_cohort, validate_manifest
from multibone.cohort.sites import (
    AMBIGUOUS_SITES,
    LATERALITY,
    LOCATIONS,
    SITE_LOCATION,
    location_for_site,
    site_parts,
    site_problem,
    suggest_sites,
)

ROOT = Path(__file__).resolve().parents[1]


def _entries() -> list[tuple[str, str, str]]:
    """(region, location, entry) read straight from the data file, not through sites.py."""
    text = resources.files("multibone.cohort").joinpath("sites.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    return [(r["region"], r["location"], s) for r in data["regions"] for s in r["sites"]]


ENTRIES = _entries()


def test_data_file_is_well_formed():
    assert len(ENTRIES) > 150
    for region, loc, entry in ENTRIES:
        # YAML turns bare yes/no/on/off into booleans and 1.5 into numbers: all must stay text.
        assert isinstance(entry, str) and entry == entry.strip().lower(), (region, entry)
        assert loc in LOCATIONS, region
    names = [e for _, _, e in ENTRIES]
    assert len(names) == len(set(names)), "an entry is listed twice"
    assert not set(names) & set(AMBIGUOUS_SITES), "a word is both known and ambiguous"
    assert not set(names) & LATERALITY
    assert SITE_LOCATION == {e: loc for _, loc, e in ENTRIES}


@pytest.mark.parametrize(("region", "location", "entry"), ENTRIES, ids=[e for _, _, e in ENTRIES])
def test_every_entry_maps_to_its_location(region, location, entry):
    # As written, and as a report writes it: upper case, laterality, "bone"/"joint" words.
    assert location_for_site(entry) == location
    assert location_for_site(f"Left  {entry.upper()} joint") == location
    if f"{entry} bone" not in SITE_LOCATION:  # "hip bone" is not "hip" (see the data file)
        assert location_for_site(f"right {entry} bone") == location
    assert site_parts(entry) == [entry]


@pytest.mark.parametrize(
    "site",
    # Gray's Anatomy: the axial skeleton.
    [
        "skull",
        "mandible",
        "hyoid",
        "cervical spine",
        "T7",
        "L3 vertebra",
        "sacrum",
        "coccyx",
        "rib",
        "sternum",
    ],
)
def test_axial_skeleton_by_anatomy(site):
    assert location_for_site(site) == "axial"


@pytest.mark.parametrize(
    "site",
    # Gray's Anatomy: the appendicular skeleton (limbs and the pectoral girdle).
    [
        "clavicle",
        "scapula",
        "humerus",
        "radius",
        "ulna",
        "scaphoid",
        "metacarpal",
        "phalanx",
        "femur",
        "patella",
        "tibia",
        "fibula",
        "talus",
        "calcaneus",
        "metatarsal",
    ],
)
def test_appendicular_skeleton_by_anatomy(site):
    assert location_for_site(site) == "appendicular"


@pytest.mark.parametrize(
    ("site", "location"),
    [
        # the documented exception: the pelvic girdle counts as axial
        ("hip bone", "axial"),
        ("Left hip bones", "axial"),
        ("os coxae", "axial"),
        ("iliac wing", "axial"),
        ("right acetabulum", "axial"),
        ("sacroiliac joint", "axial"),
        # the large joints take their bones' location; "hip" is the joint, not the hip bone
        ("knee joint", "appendicular"),
        ("Right knee", "appendicular"),
        ("hip", "appendicular"),
        ("left hip joint", "appendicular"),
        ("ankle", "appendicular"),
        ("wrist joint", "appendicular"),
        ("elbow", "appendicular"),
        ("shoulder joint", "appendicular"),
        # spine levels, plurals, punctuation
        ("C1", "axial"),
        ("L4-L5", "axial"),
        ("T12/L1 vertebrae", "axial"),
        ("Ribs", "axial"),
        ("phalanges", "appendicular"),
        ("Metatarsals", "appendicular"),
        ("bilateral feet", "appendicular"),
        ("RIGHT   Distal Femoral Metaphysis", "appendicular"),
        # two sites in one cell: agreeing parts give their location ...
        ("femur and tibia", "appendicular"),
        ("femur/tibia", "appendicular"),
        ("femur, tibia", "appendicular"),
        ("pelvis and sacrum", "axial"),
        # ... disagreeing parts give none (the manifest must say location)
        ("femur and pelvis", ""),
        ("rib, scapula", ""),
        # unknown or ambiguous
        ("", ""),
        ("wing", ""),
        ("head", ""),
        ("chest wall", ""),
        ("left", ""),
    ],
)
def test_real_site_names(site, location):
    assert location_for_site(site) == location


def test_did_you_mean():
    assert suggest_sites("femr") == ["femur"]
    assert "tibia" in suggest_sites("distal tibai")
    assert suggest_sites("xyzzy") == []
    msg = site_problem("Humerous", who="for patient P7")
    assert msg.startswith(
        "unknown site 'Humerous' for patient P7: cannot tell axial from appendicular; give a "
        "location column (axial or appendicular); did you mean: 'humerus'"
    )
    assert "Known sites" in msg and "femur" in msg and "pelvis" in msg and "L1-L5" in msg


def test_problem_sentences():
    assert site_problem("hip bone") == ""
    assert "'head' is ambiguous (skull, or the head of a bone" in site_problem("head")
    assert site_problem("femur and pelvis") == (
        "site 'femur and pelvis' names both axial (pelvis) and appendicular (femur) sites; give "
        "a location column (axial or appendicular) for this patient"
    )


def _manifest(folder: Path, sites: list[str]) -> Path:
    path = folder / "manifest.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["patient_id", "age", "sex", "diagnosis", "site"])
        for i, site in enumerate(sites):
            w.writerow([f"P{i}", 40, "F", "tumor", site])
    return path


def test_manifest_with_real_site_names(tmp_path):
    path = _manifest(tmp_path, ["hip bone", "knee joint", "femur and tibia", "Femr"])
    problems = validate_manifest(path, require_images=False)
    assert len(problems) == 1
    assert problems[0].startswith(
        "row 5, column site: unknown site 'Femr' for patient P3: cannot tell axial from "
        "appendicular; give a location column (axial or appendicular); did you mean: 'femur'"
    )
    path = _manifest(tmp_path, ["hip bone", "knee joint", "femur and tibia"])
    cohort = load_cohort(path, require_images=False, check_images=False)
    assert cohort.patients["location"].tolist() == ["axial", "appendicular", "appendicular"]


def test_vocabulary_ships_as_package_data():
    # Without it a non-editable install has no vocabulary (tomllib is not in Python 3.10).
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    line = re.search(r'^"multibone\.cohort" = \[(.*)\]$', text, re.MULTILINE)
    assert line and '"sites.yaml"' in line.group(1)
