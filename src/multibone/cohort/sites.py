"""Anatomical site (free text) -> location (``axial`` / ``appendicular``).

Seed 004 uses lesion *position* (appendicular vs axial) as a clinical feature;
manifests usually carry the site as free text ("distal femur", "L4 vertebra",
"left hip bone", "knee joint"). The vocabulary is the data file ``sites.yaml``
next to this module (shipped as package data); its header states the rule and
its source: standard anatomy, except that the pelvis / hip bone counts as axial
(the bone-tumour literature's convention), and how joints and cells naming two
sites are treated.

How a site is read (:func:`site_parts`): lower case; everything that is not a
letter or digit separates words ("femur/tibia", "L4-L5", "femur, tibia");
plural words are made singular when the singular is a vocabulary word (ribs,
vertebrae, phalanges); multi-word entries ("hip bone", "os coxae") are matched
first, longest first; then single words. Words outside the vocabulary, such
as laterality (left, right, bilateral), "bone", "joint" and descriptions
("distal", "metaphysis"), are ignored.

:func:`location_for_site` gives the location when every site found agrees, and
``""`` when none is found or they disagree ("femur and pelvis"): the manifest
must then give ``location``. An explicit ``location`` column always wins.
"""

from __future__ import annotations

import difflib
import functools
import re
from importlib import resources
from typing import Any

import yaml

LOCATIONS = ("axial", "appendicular")
#: Words that say which side, not which bone; ignored (listed for the docs and tests).
LATERALITY = frozenset({"left", "right", "bilateral", "lt", "rt", "l", "r"})

_TOKEN = re.compile(r"[a-z0-9]+")


@functools.cache
def _vocabulary() -> dict[str, Any]:
    text = resources.files("multibone.cohort").joinpath("sites.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    sites: dict[str, str] = {}
    regions: list[tuple[str, str, list[str]]] = []
    for reg in data["regions"]:
        loc = reg["location"]
        if loc not in LOCATIONS:
            raise ValueError(f"sites.yaml: region {reg['region']!r}: bad location {loc!r}")
        names = [" ".join(str(s).lower().split()) for s in reg["sites"]]
        for name in names:
            if sites.get(name, loc) != loc:
                raise ValueError(f"sites.yaml: {name!r} is listed as both axial and appendicular")
            sites[name] = loc
        regions.append((str(reg["region"]), loc, names))
    ambiguous = {str(k).lower(): str(v) for k, v in (data.get("ambiguous") or {}).items()}
    return {"sites": sites, "regions": regions, "ambiguous": ambiguous}


#: site entry (lower case word or phrase) -> "axial" | "appendicular", from ``sites.yaml``.
SITE_LOCATION: dict[str, str] = dict(_vocabulary()["sites"])
#: (region, location, entries) in file order, e.g. ("pelvis (...)", "axial", ["pelvis", ...]).
SITE_REGIONS: list[tuple[str, str, list[str]]] = list(_vocabulary()["regions"])
#: words deliberately left out of the vocabulary -> what to write instead.
AMBIGUOUS_SITES: dict[str, str] = dict(_vocabulary()["ambiguous"])

_KNOWN_WORDS = frozenset(w for name in [*SITE_LOCATION, *AMBIGUOUS_SITES] for w in name.split())
_MAX_WORDS = max(len(name.split()) for name in [*SITE_LOCATION, *AMBIGUOUS_SITES])


def normalise_site(site: str) -> str:
    """Lower-case a site and collapse runs of white space ("Distal  Femur" -> "distal femur")."""
    return " ".join(str(site).split()).lower()


def _singular(word: str) -> str:
    """The vocabulary word a plural stands for ("ribs" -> "rib"), else ``word`` unchanged."""
    if word in _KNOWN_WORDS:
        return word
    for suffix, repl in (("ies", "y"), ("ges", "x"), ("ae", "a"), ("es", ""), ("s", "")):
        if word.endswith(suffix) and word[: -len(suffix)] + repl in _KNOWN_WORDS:
            return word[: -len(suffix)] + repl
    return word


def _words(site: str) -> list[str]:
    return [_singular(w) for w in _TOKEN.findall(str(site).lower())]


def site_parts(site: str, table: dict[str, str] | None = None) -> list[str]:
    """Vocabulary entries found in a free-text site, in order.

    >>> site_parts("Left hip bone and L4-L5 vertebrae")
    ['hip bone', 'l4', 'l5', 'vertebra']
    """
    table = SITE_LOCATION if table is None else table
    words = _words(site)
    found: list[str] = []
    i = 0
    while i < len(words):
        for n in range(min(_MAX_WORDS, len(words) - i), 0, -1):
            phrase = " ".join(words[i : i + n])
            if phrase in table:
                found.append(phrase)
                i += n
                break
        else:
            i += 1
    return found


def site_locations(site: str) -> dict[str, str]:
    """Each vocabulary entry found in ``site`` -> its location (empty when none is known)."""
    return {p: SITE_LOCATION[p] for p in site_parts(site)}


def location_for_site(site: str) -> str:
    """Location of a free-text site, or ``""`` when unknown or ambiguous.

    All entries found must agree ("femur and tibia" -> appendicular); entries
    of both locations ("femur and pelvis") give ``""``, as does a site with no
    known entry.

    >>> location_for_site("Distal femur"), location_for_site("L4 vertebra")
    ('appendicular', 'axial')
    >>> location_for_site("hip bone"), location_for_site("knee joint")
    ('axial', 'appendicular')
    """
    found = set(site_locations(site).values())
    return found.pop() if len(found) == 1 else ""


def suggest_sites(site: str, n: int = 3) -> list[str]:
    """Close vocabulary entries for a misspelt site ("femr" -> ["femur", ...])."""
    names = list(SITE_LOCATION)
    out: list[str] = []
    for query in [normalise_site(site), *_words(site)]:
        if len(query) < 3:
            continue
        for m in difflib.get_close_matches(query, names, n=n, cutoff=0.75):
            if m not in out:
                out.append(m)
    return out[:n]


def known_sites_text(per_region: int = 6) -> str:
    """A short list of the vocabulary by region, for messages (the full list is ``sites.yaml``)."""
    parts = []
    for region, loc, names in SITE_REGIONS:
        shown = [n for n in names if not re.fullmatch(r"[a-z]\d+", n)][:per_region]
        more = ", ..." if len(names) > len(shown) else ""
        parts.append(f"{region.split(' (')[0]} [{loc}]: {', '.join(shown)}{more}")
    return "; ".join(parts) + " (spine levels C1-C7, T1-T12, L1-L5, S1-S5 too)"


def site_problem(site: str, who: str = "") -> str:
    """Why ``site`` gives no location (``""`` when it does): the sentence for messages.

    ``who`` (e.g. ``"for patient P2"``) follows the quoted site. Unknown sites get a did-you-mean and the known sites; sites naming both
    locations name the parts; ambiguous words say what to write instead.
    """
    if location_for_site(site):
        return ""
    parts = site_locations(site)
    if parts:
        by_loc = {loc: ", ".join(p for p, v in parts.items() if v == loc) for loc in LOCATIONS}
        return (
            f"site {site!r}{' ' + who if who else ''} names both axial ({by_loc['axial']}) and appendicular "
            f"({by_loc['appendicular']}) sites; give a location column (axial or appendicular) "
            "for this patient"
        )
    msg = (
        f"unknown site {site!r}{' ' + who if who else ''}: cannot tell axial from appendicular; "
        "give a location column (axial or appendicular)"
    )
    amb = site_parts(site, AMBIGUOUS_SITES)
    close = suggest_sites(site)
    if amb:
        msg += f", or name the bone: {amb[0]!r} is ambiguous ({AMBIGUOUS_SITES[amb[0]]})"
    elif close:
        msg += "; did you mean: " + " or ".join(repr(c) for c in close)
    return f"{msg}. Known sites (full list in multibone/cohort/sites.yaml): {known_sites_text()}"
