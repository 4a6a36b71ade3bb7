"""Anatomical site (free text) -> location (``axial`` / ``appendicular``).

Seed 004 uses lesion *position* (appendicular vs axial) as a clinical feature;
manifests usually carry the site as free text ("distal femur", "L4 vertebra").
:data:`SITE_LOCATION` maps single site words to a location and
:func:`location_for_site` finds them inside a longer phrase.

Convention (decided here, documented in DESIGN.md's data contract):

* limbs and the shoulder girdle are **appendicular**: femur, tibia, fibula,
  patella, humerus, radius, ulna, hand and foot bones, clavicle, scapula
  (anatomically the pectoral girdle belongs to the appendicular skeleton);
* spine, sacrum, coccyx, skull/jaw, ribs, sternum and the **pelvis** (ilium,
  ischium, pubis, acetabulum) are **axial**. Anatomy puts the hip bones in the
  appendicular skeleton, but bone-tumour literature (and seed 002's "spine and
  pelvis" weak spot) groups the pelvis with the axial skeleton: overlapping
  anatomy, deep lesions, other surgery. We follow the clinical convention.

Ambiguous words ("hip", "shoulder joint", "chest", "trunk") are deliberately absent:
a manifest using them must give ``location`` directly. An explicit
``location`` column always wins over this map.
"""

from __future__ import annotations

import re

_APPENDICULAR = (
    # lower limb
    "femur", "femoral", "tibia", "tibial", "fibula", "fibular", "patella", "knee", "thigh",
    "leg", "ankle", "foot", "feet", "tarsal", "tarsus", "talus", "calcaneus", "calcaneal",
    "navicular", "cuboid", "cuneiform", "metatarsal", "metatarsus", "toe", "hallux",
    # upper limb and shoulder girdle
    "humerus", "humeral", "radius", "radial", "ulna", "ulnar", "forearm", "elbow", "arm",
    "wrist", "hand", "carpal", "carpus", "scaphoid", "lunate", "metacarpal", "metacarpus",
    "finger", "thumb", "phalanx", "phalanges", "phalangeal", "clavicle", "clavicular",
    "scapula", "scapular",
    # generic
    "limb", "extremity", "extremities", "appendicular",
)

_AXIAL = (
    # spine
    "spine", "spinal", "vertebra", "vertebrae", "vertebral", "cervical", "thoracic", "lumbar",
    "sacrum", "sacral", "coccyx", "coccygeal", "dens", "atlas", "axis",
    # pelvis (clinical convention, see module docstring)
    "pelvis", "pelvic", "ilium", "iliac", "ischium", "ischial", "pubis", "pubic",
    "acetabulum", "acetabular", "sacroiliac",
    # skull, thorax
    "skull", "cranium", "cranial", "calvaria", "mandible", "mandibular", "maxilla", "jaw",
    "rib", "ribs", "costal", "sternum", "sternal",
    "axial",
)

#: site word (lower case) -> "axial" | "appendicular".
SITE_LOCATION: dict[str, str] = {
    **{w: "appendicular" for w in _APPENDICULAR},
    **{w: "axial" for w in _AXIAL},
}

_WORD = re.compile(r"[a-z]+")


def normalise_site(site: str) -> str:
    """Lower-case a site and collapse runs of white space ("Distal  Femur" -> "distal femur")."""
    return " ".join(str(site).split()).lower()


def location_for_site(site: str) -> str:
    """Location of a free-text site, or ``""`` when unknown or ambiguous.

    The whole (normalised) site is looked up first, then each word in it
    (plural ``s`` dropped as a fallback). Words that map to both locations
    ("femur and pelvis") give ``""``: the manifest must then say ``location``.

    >>> location_for_site("Distal femur"), location_for_site("L4 vertebra")
    ('appendicular', 'axial')
    """
    s = normalise_site(site)
    if not s:
        return ""
    if s in SITE_LOCATION:
        return SITE_LOCATION[s]
    found = set()
    for word in _WORD.findall(s):
        loc = SITE_LOCATION.get(word) or (
            SITE_LOCATION.get(word[:-1]) if word.endswith("s") else None
        )
        if loc:
            found.add(loc)
    return found.pop() if len(found) == 1 else ""
