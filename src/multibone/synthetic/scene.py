"""Radiograph-like synthetic images with one lesion inside a known box.

Physics, loosely: every structure contributes a projected attenuation (a line
integral ``L``, dimensionless); the detector shows ``1 - exp(-k L)``, so bone is
bright, soft tissue grey and air dark. Long bones are hollow cylinders (their
cortex is bright at the edges, as on real films), vertebrae blocky
super-ellipses with end-plates and pedicles, flat bones (pelvis-like) a large
wing with a rim and a foramen. Trabecular bone is band-pass noise elongated
along the bone. Everything is vectorised numpy on the whole image or on the
lesion's patch; there is no per-pixel Python loop.

The lesion and the label
------------------------
Each patient has one latent *evidence* score ``s``: ``N(+mu/2, 1)`` for a
tumour, ``N(-mu/2, 1)`` for an infection, ``mu`` set by ``difficulty``
(:func:`evidence_separation`). The appearance is a smooth function of
``t = sigmoid(1.7 s)``, the *tumour-likeness*:

* towards tumour (``t`` near 1): sharp, narrow zone of transition, sclerotic
  rim, and depending on the tumour pattern family, chondroid rings-and-arcs or
  osteoid matrix, sunburst spicules, or soap-bubble septa;
* towards infection (``t`` near 0): wide, ill-defined transition, permeative
  (moth-eaten) lysis, cortical breach, lamellated periosteal reaction (long
  bones), sequestrum, soft-tissue swelling or paravertebral abscess.

Both pattern families are drawn for every lesion: the tumour family from the
patient's tumour entity (an infection gets one drawn from the tumour entity
mix), the infection family from its subtype (a tumour gets tuberculous or
pyogenic at the infection mix). So family, size, position, anatomy noise and
centre carry no label information; only ``s`` does, and a perfect observer of
``s`` reaches ``AUC = Phi(mu / sqrt(2))`` (the *evidence ceiling*). What an image
model sees is further blurred by noise, texture and the crop. ``s`` is drawn
from its own random stream, independent of the clinical table given the label;
the anatomy follows the patient's site (as on real films, where an image model
can also tell a vertebra from a femur).

Centres: ``A`` reference; ``B`` higher contrast and twice the noise (seed 002
reports higher contrast in external images); ``C`` paediatric (slimmer bones,
open growth plates, slightly lower contrast).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage, special

from multibone.errors import InputError

#: Difficulty 0 -> 1 moves the class means of the evidence score from
#: MU_EASY apart to MU_HARD apart (linear in between).
MU_EASY = 3.3
MU_HARD = 0.2
EVIDENCE_SLOPE = 1.7

TUMOUR_FAMILY_OF_ENTITY: dict[str, str] = {
    "osteochondroma": "geographic",
    "enchondroma": "matrix",
    "non-ossifying fibroma": "geographic",
    "simple bone cyst": "geographic",
    "fibrous dysplasia": "geographic",
    "osteoid osteoma": "geographic",
    "aneurysmal bone cyst": "expansile",
    "giant cell tumour of bone": "expansile",
    "osteoblastoma": "matrix",
    "atypical cartilaginous tumour": "matrix",
    "osteosarcoma": "sunburst",
    "chondrosarcoma": "matrix",
    "ewing sarcoma": "sunburst",
    "myeloma": "geographic",
}
INFECTION_FAMILY_OF_SUBTYPE = {"tuberculosis": "tuberculous", "osteomyelitis": "pyogenic"}

#: Site -> (template, bone width scale, number of parallel bones).
SITE_ANATOMY: dict[str, tuple[str, float, int]] = {
    "femur": ("long", 1.0, 1),
    "tibia": ("long", 0.9, 1),
    "humerus": ("long", 0.8, 1),
    "fibula": ("long", 0.5, 2),  # beside a tibia
    "radius": ("long", 0.5, 2),  # beside an ulna
    "ulna": ("long", 0.5, 2),
    "hand": ("long", 0.75, 3),  # metacarpals, magnified
    "foot": ("long", 0.75, 3),  # metatarsals, magnified
    "spine": ("vertebra", 1.0, 1),
    "pelvis": ("flat", 1.0, 1),
    "sacrum": ("flat", 0.9, 1),
    "rib": ("flat", 0.8, 1),
    "skull": ("flat", 0.8, 1),
}

VIEWS = ("AP", "lateral", "oblique")
_HEIGHTS = (304, 320, 336, 352, 368, 384)
_WIDTHS = (256, 272, 288, 304, 320, 336)

# Centre -> (contrast gain about mid-grey, offset, noise SD, blur sigma px).
_CENTER_LOOK = {
    "A": (1.0, 0.0, 0.012, 0.7),
    "B": (1.25, 0.02, 0.026, 0.6),
    "C": (0.9, 0.03, 0.010, 0.8),
}


def evidence_separation(difficulty: float) -> float:
    """Distance between the class means of the evidence score (in SD units).

    ``difficulty`` in [0, 1]; 0 -> :data:`MU_EASY`, 1 -> :data:`MU_HARD`.
    """
    d = float(difficulty)
    if not 0.0 <= d <= 1.0 or math.isnan(d):
        raise InputError(f"difficulty must be a number from 0 to 1, got {difficulty!r}")
    return MU_EASY * (1.0 - d) + MU_HARD * d


def evidence_ceiling_auc(difficulty: float) -> float:
    """AUC of a perfect observer of the latent evidence: ``Phi(mu / sqrt 2)``."""
    mu = evidence_separation(difficulty)
    return float(0.5 * (1.0 + math.erf(mu / 2.0)))


@dataclass(frozen=True)
class LesionAppearance:
    """What one patient's lesion looks like (shared by all of the patient's views).

    Attributes:
        evidence: latent score ``s`` (float; > 0 leans tumour).
        tumour_likeness: ``t = sigmoid(1.7 s)`` in (0, 1).
        tumour_family: geographic | matrix | sunburst | expansile.
        infection_family: pyogenic | tuberculous.
        size: lesion radius as a fraction of the available room (0.55-0.95).
        aspect: length / width along the bone (1.0-2.2).
        along: position along the bone, fraction of the image height (-0.22-0.22).
        across: offset across the medulla, fraction of its half-width (-0.3-0.3).
        lysis: depth of bone loss inside the lesion (0.35-0.75).
        sequestrum: whether a dense fragment sits in the cavity.
        lobes: 4 harmonic amplitudes and 4 phases of the lobulated outline.
    """

    evidence: float
    tumour_likeness: float
    tumour_family: str
    infection_family: str
    size: float
    aspect: float
    along: float
    across: float
    lysis: float
    sequestrum: bool
    lobes: tuple[float, ...]


def draw_lesion(
    rng: np.random.Generator,
    diagnosis: str,
    subtype: str,
    difficulty: float,
) -> LesionAppearance:
    """Draw a patient's lesion appearance.

    Args:
        rng: the patient's own generator (nothing else reads it).
        diagnosis: ``tumor`` or ``infection``.
        subtype: the entity text of the clinical table (picks the pattern family).
        difficulty: in [0, 1]; see :func:`evidence_separation`.
    """
    if diagnosis not in ("tumor", "infection"):
        raise InputError(f"diagnosis must be tumor or infection, got {diagnosis!r}")
    mu = evidence_separation(difficulty)
    s = float(rng.normal(mu / 2 if diagnosis == "tumor" else -mu / 2, 1.0))
    t = float(special.expit(EVIDENCE_SLOPE * s))
    # Families carry no label information: the "other" family is drawn at its class mix.
    fam_t = list(TUMOUR_FAMILY_OF_ENTITY.values())
    if diagnosis == "tumor":
        tumour_family = TUMOUR_FAMILY_OF_ENTITY.get(subtype, "geographic")
        infection_family = "tuberculous" if rng.random() < 0.69 else "pyogenic"
    else:
        tumour_family = _draw_tumour_family(rng) if fam_t else "geographic"
        infection_family = INFECTION_FAMILY_OF_SUBTYPE.get(subtype, "pyogenic")
    p_seq = (1.0 - t) * (0.85 if infection_family == "pyogenic" else 0.35)
    lobes = tuple(rng.uniform(0.0, 0.12, 4)) + tuple(rng.uniform(0, 2 * np.pi, 4))
    return LesionAppearance(
        evidence=s,
        tumour_likeness=t,
        tumour_family=tumour_family,
        infection_family=infection_family,
        size=float(rng.uniform(0.55, 0.95)),
        aspect=float(rng.uniform(1.0, 2.2)),
        along=float(rng.uniform(-0.22, 0.22)),
        across=float(rng.uniform(-0.3, 0.3)),
        lysis=float(rng.uniform(0.35, 0.75)),
        sequestrum=bool(rng.random() < p_seq),
        lobes=tuple(float(x) for x in lobes),
    )


def _draw_tumour_family(rng: np.random.Generator) -> str:
    # Family mix of the whole tumour class (WHO groups x entity shares).
    from multibone.synthetic.clinical import TUMOUR_ENTITIES, class_targets

    groups = class_targets()["tumor"]["groups"]
    fam: dict[str, float] = {}
    for g, ents in TUMOUR_ENTITIES.items():
        for e, p in ents.items():
            f = TUMOUR_FAMILY_OF_ENTITY[e]
            fam[f] = fam.get(f, 0.0) + groups[g] * p  # type: ignore[index]
    keys = sorted(fam)
    p = np.array([fam[k] for k in keys])
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def feature_strengths(lesion: LesionAppearance) -> dict[str, float]:
    """Strength in [0, 1] of each radiological sign, from tumour-likeness and family.

    Keys: ``edge_px`` (zone of transition width in px, 0.8-7), ``rim``, ``matrix``,
    ``osteoid``, ``sunburst``, ``septa`` (tumour-leaning), ``permeative``,
    ``breach``, ``lamellated``, ``swelling`` (infection-leaning).
    """
    t = lesion.tumour_likeness
    i = 1.0 - t
    tf, inf = lesion.tumour_family, lesion.infection_family
    return {
        "edge_px": 7.0 - 6.2 * t,
        "rim": t * {"geographic": 1.0, "matrix": 0.45, "sunburst": 0.1, "expansile": 0.5}[tf],
        "matrix": t * (1.0 if tf == "matrix" else 0.0),
        "osteoid": t * (1.0 if tf == "sunburst" else 0.0),
        "sunburst": t * (1.0 if tf == "sunburst" else 0.0),
        "septa": t * (1.0 if tf == "expansile" else 0.0),
        "permeative": i * (1.0 if inf == "pyogenic" else 0.75),
        "breach": i,
        "lamellated": i * (1.0 if inf == "pyogenic" else 0.35),
        "swelling": i * (1.0 if inf == "tuberculous" else 0.6),
    }


# --------------------------------------------------------------------------- noise


def _band_filter(h: int, w: int, period: float, stretch: float) -> np.ndarray:
    """Log-Gaussian radial band-pass around 1/period; ``stretch`` > 1 elongates along y."""
    fy = np.fft.fftfreq(h)[:, None] * stretch
    fx = np.fft.fftfreq(w)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    g = np.exp(-(np.log(f * period) ** 2) / (2 * 0.45**2))
    g[0, 0] = 0.0
    # Scale is irrelevant: fields are normalised to unit SD afterwards.
    return g.astype(np.complex64)


def band_noise(
    rng: np.random.Generator, shape: tuple[int, int], period: float, stretch: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Two independent stationary Gaussian fields (float32, unit SD) with features ~period px.

    One inverse FFT of band-passed complex white noise gives both (real and
    imaginary part). The fields are periodic (they wrap around the edges).
    """
    h, w = shape
    g = _band_filter(h, w, float(period), float(stretch))
    spec = rng.standard_normal((h, 2 * w), dtype=np.float32).view(np.complex64)
    field = np.fft.ifft2(spec * g)
    re = field.real.astype(np.float32)
    im = field.imag.astype(np.float32)
    re /= re.std() + 1e-8
    im /= im.std() + 1e-8
    return re, im


#: Texture kinds of the bank: name -> (period px, stretch along y).
_TEXTURES = {
    "trabecular": (5.0, 2.2),
    "trabecular_iso": (5.0, 1.0),
    "fine": (4.5, 1.0),
    "mid": (11.0, 1.0),
}
_BANK_SIZE = 512
_BANK_FIELDS = 6


@functools.lru_cache(maxsize=1)
def _texture_bank() -> dict[str, np.ndarray]:
    """Fixed bank of noise tiles (kind -> float32 (6, 512, 512)), the same in every process.

    Drawing a fresh FFT field for every image costs more than the rest of the
    rendering; random crops (offset and flips drawn from the view's generator)
    of a fixed bank are as good for textures and keep rendering fast.
    """
    rng = np.random.default_rng(np.random.SeedSequence(20240607))
    bank = {}
    for name, (period, stretch) in _TEXTURES.items():
        fields = []
        for _ in range(_BANK_FIELDS // 2):
            fields.extend(band_noise(rng, (_BANK_SIZE, _BANK_SIZE), period, stretch))
        arr = np.stack(fields)
        arr.setflags(write=False)
        bank[name] = arr
    return bank


def texture(rng: np.random.Generator, kind: str, shape: tuple[int, int]) -> np.ndarray:
    """A read-only float32 texture (unit SD) of ``shape`` (each side <= 512) from the bank."""
    h, w = shape
    tiles = _texture_bank()[kind]
    k = int(rng.integers(tiles.shape[0]))
    oy = int(rng.integers(_BANK_SIZE - h + 1))
    ox = int(rng.integers(_BANK_SIZE - w + 1))
    out = tiles[k, oy : oy + h, ox : ox + w]
    if rng.random() < 0.5:
        out = out[:, ::-1]
    if kind != "trabecular" and rng.random() < 0.5:  # the stretched kind keeps its orientation
        out = out[::-1, :]
    return out


def _sig(x: np.ndarray | float) -> np.ndarray:
    return 0.5 + 0.5 * np.tanh(0.5 * np.asarray(x, dtype=np.float32))


def _root(x: np.ndarray) -> np.ndarray:
    return np.sqrt(np.maximum(x, 0.0))


# --------------------------------------------------------------------------- scene


@dataclass
class _Scene:
    soft: np.ndarray  # projected soft tissue (H, W) float32
    bone: np.ndarray  # projected bone (H, W) float32
    cx: float  # lesion centre, px
    cy: float
    angle: float  # lesion long axis: angle from image vertical, radians
    a: float  # lesion half-length along the axis, px
    b: float  # lesion half-width across, px
    outside: np.ndarray | None  # long bones: signed distance outside the cortex, px
    bone_mask: np.ndarray  # 0..1, where bone is


@dataclass(frozen=True)
class RenderedView:
    """One synthetic radiograph.

    Attributes:
        pixels: float32 (H, W) in [0, 1], bone bright; H in 304..384, W in 256..336.
        roi: lesion box (x0, y0, x1, y1) in px, x1/y1 exclusive, inside the image;
            None for a normal control (no lesion drawn).
    """

    pixels: np.ndarray
    roi: tuple[int, int, int, int] | None


def _long_bone(
    rng: np.random.Generator,
    h: int,
    w: int,
    lesion: LesionAppearance,
    strengths: dict[str, float],
    width_scale: float,
    n_bones: int,
    view: str,
    paediatric: bool,
    yy: np.ndarray,
    xx: np.ndarray,
    tex: np.ndarray,
    companion: float = 1.0,
) -> _Scene:
    theta = rng.uniform(-0.18, 0.18) + {"AP": 0.0, "lateral": 0.08, "oblique": -0.06}[view]
    s, c = math.sin(theta), math.cos(theta)
    ws = (
        width_scale
        * (0.8 if paediatric else 1.0)
        * {"AP": 1.0, "lateral": 0.92, "oblique": 0.96}[view]
    )
    r0 = w * rng.uniform(0.115, 0.14) * ws
    gap = r0 * rng.uniform(0.35, 0.7)
    # Centres across the image of the parallel bones; the lesion is in bone 0.
    offsets = [0.0]
    radii = [r0]
    for k in range(1, n_bones):
        rk = r0 * (companion if (n_bones == 2 and k == 1) else rng.uniform(0.85, 1.1))
        offsets.append(offsets[-1] + radii[-1] + gap + rk)
        radii.append(rk)
    shift = -(offsets[-1]) / 2.0 if n_bones > 1 else 0.0
    if n_bones == 2 and rng.random() < 0.5:
        offsets = [-o for o in offsets]
        shift = -shift
    cx0 = w / 2 + rng.uniform(-0.06, 0.06) * w + shift
    cy0 = h / 2
    dx = xx - cx0
    dy = yy - cy0
    u = dx * s + dy * c  # along the bone (down), px
    v = dx * c - dy * s  # across, px
    # Metaphyseal flare towards one end of the image.
    end = 1.0 if rng.random() < 0.5 else -1.0
    flare = rng.uniform(0.3, 0.7)
    ramp = _sig((end * u - 0.3 * h) / (0.05 * h))
    cort_frac = rng.uniform(0.2, 0.3)
    lu = lesion.along * h
    bone = np.zeros((h, w), np.float32)
    outside = None
    for k, (off, rk) in enumerate(zip(offsets, radii, strict=True)):
        vk = v - off
        rr = rk * (1.0 + flare * ramp)
        ct = rr * cort_frac * (1.0 - 0.6 * ramp)
        ri = rr - ct
        vv = vk * vk
        outer = _root(rr * rr - vv)
        inner = _root(ri * ri - vv)
        cortex = 3.2 * (outer - inner) / r0
        medulla = 2.0 * inner / r0 * 0.24 * (1.0 + 0.4 * tex)
        bone += cortex + medulla
        if k == 0:
            outside = np.abs(vk) - rr
            r_les_room = float(r0 * (1 - cort_frac))
    # Soft tissue around all bones (the limb), swelling near the lesion.
    half_span = (max(offsets) - min(offsets)) / 2.0 + max(radii)
    mid = (max(offsets) + min(offsets)) / 2.0
    rs = half_span + r0 * rng.uniform(1.0, 1.6)
    swell = strengths["swelling"] * rng.uniform(0.25, 0.45)
    b_room = r_les_room
    b = b_room * lesion.size
    a = min(b * lesion.aspect, 0.16 * h)
    rs_u = rs * (1.0 + swell * np.exp(-(((u - lu) / (2.5 * a)) ** 2)))
    soft = 2.0 * _root(rs_u * rs_u - (v - mid) ** 2) / r0 * 0.11
    # Open growth plate: a thin wavy lucent band across the metaphysis.
    if paediatric:
        phys = end * 0.3 * h + 4.0 * np.sin(v / (0.4 * r0))
        bone *= 1.0 - 0.55 * np.exp(-(((u - phys) / 1.6) ** 2))
    across = lesion.across * (b_room - b)
    lx = cx0 + lu * s + across * c
    ly = cy0 + lu * c - across * s
    mask = _sig(-outside / 1.0)
    return _Scene(soft, bone, lx, ly, theta, a, b, outside, mask)


def _vertebra(
    rng: np.random.Generator,
    h: int,
    w: int,
    lesion: LesionAppearance,
    strengths: dict[str, float],
    view: str,
    paediatric: bool,
    yy: np.ndarray,
    xx: np.ndarray,
    tex: np.ndarray,
) -> _Scene:
    theta = rng.uniform(-0.1, 0.1)
    s, c = math.sin(theta), math.cos(theta)
    bw = w * rng.uniform(0.2, 0.25) * (0.8 if paediatric else 1.0)
    hb = 2 * bw * rng.uniform(0.55, 0.68)
    gap = hb * rng.uniform(0.25, 0.35)
    period = hb + gap
    cx0 = w / 2 + rng.uniform(-0.05, 0.05) * w
    cy0 = h / 2
    dx = xx - cx0
    dy = yy - cy0
    u = dx * s + dy * c
    v = dx * c - dy * s
    k = np.round(u / period)
    du = u - k * period
    p = 4.0
    f = ((np.abs(du) / (hb / 2)) ** p + (np.abs(v) / bw) ** p) ** (1.0 / p)
    inside = _sig((1.0 - f) / 0.015)
    shell = np.exp(-(((1.0 - f) / 0.06) ** 2)) * inside
    bone = (0.75 * inside * (1.0 + 0.25 * tex) + 0.6 * shell).astype(np.float32)
    if view == "AP":
        # Pedicles: oval rings at the upper lateral corners of each body.
        for side in (-1.0, 1.0):
            pr = np.sqrt(
                ((du + 0.15 * hb) / (0.22 * hb)) ** 2 + ((v - side * 0.6 * bw) / (0.15 * bw)) ** 2
            )
            bone += 0.3 * np.exp(-(((pr - 1.0) / 0.18) ** 2))
        sp = np.sqrt(((du - 0.1 * hb) / (0.28 * hb)) ** 2 + (v / (0.07 * bw)) ** 2)
        bone += 0.3 * np.exp(-(((sp - 1.0) / 0.35) ** 2))
    else:
        side = 1.0 if rng.random() < 0.5 else -1.0
        post = _sig((side * v - 1.05 * bw) / 2.0) * _sig((1.6 * bw - side * v) / 2.0)
        bone += 0.35 * post * (0.6 + 0.4 * np.cos(2 * np.pi * u / period)) * (1.0 + 0.3 * tex)
    # Lesion inside the vertebral body nearest the image centre; towards infection it
    # moves to the end-plate (spondylodiscitis crosses the disc; tumours spare it).
    i = 1.0 - lesion.tumour_likeness
    a = 0.5 * hb * (0.55 + 0.35 * lesion.size)
    b = bw * (0.45 + 0.35 * lesion.size)
    lu = (lesion.along * 0.4 * hb) + (1.0 if lesion.lobes[4] > np.pi else -1.0) * i * 0.2 * hb
    lv = lesion.across * 0.8 * (bw - b)
    lx = cx0 + lu * s + lv * c
    ly = cy0 + lu * c - lv * s
    torso = 0.55 + 0.2 * np.cos(np.clip(v / w, -0.5, 0.5) * np.pi)
    para = 0.18 * np.exp(-(((np.abs(v) - 1.45 * bw) / (0.35 * bw)) ** 2))
    abscess = (
        strengths["swelling"]
        * rng.uniform(0.35, 0.6)
        * np.exp(-(((u - lu) / (1.6 * hb)) ** 2))
        * np.exp(-(((np.abs(v) - 1.15 * bw) / (0.4 * bw)) ** 2))
    )
    soft = (torso + para + abscess).astype(np.float32)
    return _Scene(soft, bone, lx, ly, theta, a, b, None, inside)


def _flat(
    rng: np.random.Generator,
    h: int,
    w: int,
    lesion: LesionAppearance,
    strengths: dict[str, float],
    width_scale: float,
    view: str,
    yy: np.ndarray,
    xx: np.ndarray,
    tex: np.ndarray,
) -> _Scene:
    ang = rng.uniform(-0.4, 0.4)
    s, c = math.sin(ang), math.cos(ang)
    ex, ey = w * rng.uniform(0.42, 0.55) * width_scale, h * rng.uniform(0.4, 0.5) * width_scale
    ox, oy = w * rng.uniform(0.4, 0.6), h * rng.uniform(0.22, 0.32)
    dx, dy = xx - ox, yy - oy
    p_ = (dx * c + dy * s) / ex
    q_ = (-dx * s + dy * c) / ey
    f = np.sqrt(p_ * p_ + q_ * q_)
    inside = _sig((1.0 - f) / 0.012)
    rim = np.exp(-(((1.0 - f) / 0.035) ** 2))
    arc = np.exp(-(((np.sqrt((p_ + 0.25) ** 2 + (q_ - 0.1) ** 2) - 0.95) / 0.012) ** 2)) * inside
    bone = 0.6 * inside * (1.0 + 0.35 * tex) + 0.7 * rim + 0.35 * arc
    # A foramen-like ring of bone below the wing.
    fx, fy = w * rng.uniform(0.5, 0.7), h * rng.uniform(0.8, 0.9)
    fr = np.sqrt(((xx - fx) / (0.15 * w)) ** 2 + ((yy - fy) / (0.09 * h)) ** 2)
    bone = (bone + 0.8 * np.exp(-(((fr - 1.0) / 0.22) ** 2))).astype(np.float32)
    # Lesion well inside the wing.
    rad = 0.5 * math.sqrt(0.15 + 0.85 * (lesion.along / 0.44 + 0.5))
    phi = 2 * math.pi * (lesion.across / 0.6 + 0.5)
    pp, qq = rad * math.cos(phi), rad * math.sin(phi)
    lx = ox + (pp * ex) * c - (qq * ey) * s
    ly = oy + (pp * ex) * s + (qq * ey) * c
    base = min(ex, ey) * (0.1 + 0.08 * lesion.size)
    b = base
    a = min(base * (0.6 + 0.5 * lesion.aspect), 0.35 * min(ex, ey))
    d2 = ((xx - lx) ** 2 + (yy - ly) ** 2) / (2.2 * max(a, b)) ** 2
    bulge = strengths["swelling"] * rng.uniform(0.25, 0.45) * np.exp(-d2)
    soft = (0.55 + 0.12 * (yy / h) + bulge).astype(np.float32)
    return _Scene(soft, bone, lx, ly, ang, a, b, None, inside)


def _paint_lesion(
    rng: np.random.Generator,
    scene: _Scene,
    lesion: LesionAppearance,
    st: dict[str, float],
) -> tuple[int, int, int, int]:
    """Draw the lesion into ``scene.bone`` (in place); return its box (x0, y0, x1, y1)."""
    h, w = scene.bone.shape
    a, b = scene.a, scene.b
    # Aggressive lesions breach the cortex: wider across.
    b_eff = b * (1.0 + 0.45 * st["breach"])
    s, c = math.sin(scene.angle), math.cos(scene.angle)
    # Lesion box half-extents (outline with lobes, plus a margin for the transition
    # zone and periosteal reaction); the lesion is shifted so the box fits the image.
    r_max = 1.0 + sum(lesion.lobes[:4])
    ha = a * r_max * 1.15 + 3.0
    hb_ = b_eff * r_max * 1.15 + 3.0
    ex = math.sqrt((ha * s) ** 2 + (hb_ * c) ** 2)
    ey = math.sqrt((ha * c) ** 2 + (hb_ * s) ** 2)
    scene.cx = float(np.clip(scene.cx, ex + 1.0, w - ex - 2.0)) if 2 * ex + 3 < w else w / 2
    scene.cy = float(np.clip(scene.cy, ey + 1.0, h - ey - 2.0)) if 2 * ey + 3 < h else h / 2
    ext = 2.1 * max(a, b_eff) + 10.0  # patch half-side: room for spicules and reactions
    x0, x1 = max(0, int(scene.cx - ext)), min(w, int(scene.cx + ext) + 1)
    y0, y1 = max(0, int(scene.cy - ext)), min(h, int(scene.cy + ext) + 1)
    ph, pw = y1 - y0, x1 - x0
    gy, gx = _grid(h, w)
    yy, xx = gy[y0:y1, x0:x1], gx[y0:y1, x0:x1]
    dx, dy = xx - scene.cx, yy - scene.cy
    ua = dx * s + dy * c  # along the lesion axis
    va = dx * c - dy * s
    phi = np.arctan2(va / b_eff, ua / a)
    amps, phases = lesion.lobes[:4], lesion.lobes[4:]
    lob = 1.0 + sum(
        amp * np.cos((k + 2) * phi + ph_)
        for k, (amp, ph_) in enumerate(zip(amps, phases, strict=True))
    )
    q = np.sqrt((ua / a) ** 2 + (va / b_eff) ** 2) / lob
    mean_r = 0.5 * (a + b_eff)
    wq = max(st["edge_px"], 0.6) / mean_r
    m = _sig((1.0 - q) / wq)
    # Fields at a fixed patch grid (FFT size rounded up) then cropped to the patch.
    fine, fine2 = texture(rng, "fine", (ph, pw)), texture(rng, "fine", (ph, pw))
    mid, mid2 = texture(rng, "mid", (ph, pw)), texture(rng, "mid", (ph, pw))

    bone = scene.bone[y0:y1, x0:x1]
    # Lysis: uniform for tumour-like lesions, patchy for infection-like ones.
    patch = 1.0 - 0.3 * st["permeative"] + 0.3 * st["permeative"] * _sig((fine2 + 0.3) / 0.4)
    bone *= 1.0 - lesion.lysis * m * patch
    # Permeative (moth-eaten) holes in a wide, ill-defined zone around the lesion.
    if st["permeative"] > 0.02:
        zone = _sig((1.6 - q) / 0.25)
        holes = _sig((fine - 0.3) / 0.15)
        bone *= 1.0 - 0.9 * st["permeative"] * holes * zone
    # Sclerotic rim just outside a sharp margin.
    if st["rim"] > 0.02:
        ring = np.exp(-(((q - 1.0 - 1.5 * wq) / (3.0 / mean_r)) ** 2))
        # Reactive bone forms in bone, not in a disc space or soft tissue.
        bone += 0.75 * st["rim"] * ring * (0.25 + 0.75 * scene.bone_mask[y0:y1, x0:x1])
    if st["matrix"] > 0.02:  # chondroid rings and arcs: contour lines of a smooth field
        bone += 1.0 * st["matrix"] * np.exp(-((mid / 0.3) ** 2)) * m
    if st["osteoid"] > 0.02:  # fluffy osteoid cloud
        bone += 0.45 * st["osteoid"] * np.maximum(mid2, 0.0) * m
    if st["septa"] > 0.02:  # soap-bubble septa of an expansile lesion
        bone += 0.4 * st["septa"] * np.exp(-((mid2 / 0.15) ** 2)) * m
    if st["sunburst"] > 0.02:  # spicules radiating from the lesion into soft tissue
        ang = np.arctan2(dy, dx)
        rn = np.sqrt(dx * dx + dy * dy) / mean_r
        nspk = int(rng.integers(18, 30))
        spikes = (0.5 + 0.5 * np.cos(nspk * ang + 0.6 * mid)) ** 6
        window = _sig((rn - 0.8) / 0.06) * _sig((2.0 - rn) / 0.12)
        bone += 0.6 * st["sunburst"] * spikes * window * (1.0 - 0.7 * scene.bone_mask[y0:y1, x0:x1])
    if scene.outside is not None and st["lamellated"] > 0.02:
        # Onion-skin layers parallel to the cortex, over the lesion's length.
        d_out = scene.outside[y0:y1, x0:x1]
        per = rng.uniform(2.6, 3.6)
        depth = per * rng.integers(3, 5)
        layers = (0.5 + 0.5 * np.cos(2 * np.pi * d_out / per)) ** 2
        env = (
            np.exp(-((ua / (1.5 * a)) ** 4))
            * _sig((d_out - 0.8) / 0.5)
            * _sig((depth - d_out) / 1.0)
        )
        bone += 0.55 * st["lamellated"] * layers * env
    if lesion.sequestrum:
        rq = np.sqrt(
            ((ua - 0.2 * a * math.cos(lesion.lobes[5])) / (0.3 * a)) ** 2 + (va / (0.26 * b)) ** 2
        )
        rq = rq / (1.0 + 0.25 * fine2 * 0.3)
        bone += 0.9 * _sig((1.0 - rq) / 0.08)
    np.maximum(bone, 0.0, out=bone)

    bx0 = int(np.clip(math.floor(scene.cx - ex), 0, w - 2))
    by0 = int(np.clip(math.floor(scene.cy - ey), 0, h - 2))
    bx1 = int(np.clip(math.ceil(scene.cx + ex) + 1, bx0 + 2, w))
    by1 = int(np.clip(math.ceil(scene.cy + ey) + 1, by0 + 2, h))
    return bx0, by0, bx1, by1


@functools.lru_cache(maxsize=40)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy.setflags(write=False)
    xx.setflags(write=False)
    return yy, xx


def render_view(
    rng: np.random.Generator,
    lesion: LesionAppearance,
    *,
    site: str,
    view: str = "AP",
    center: str = "A",
    paediatric: bool = False,
    normal: bool = False,
) -> RenderedView:
    """Render one radiograph of a patient's lesion.

    Args:
        rng: the view's own generator (texture, geometry jitter, noise).
        lesion: from :func:`draw_lesion` (the same for all views of a patient).
        site: anatomical site (a key of :data:`SITE_ANATOMY`; unknown -> femur-like).
        view: AP, lateral or oblique (changes projection angle and shape).
        center: A, B or C (acquisition look; unknown -> A).
        paediatric: slimmer bones and open growth plates.
        normal: a normal control: the same anatomy, but no lesion and no lesion-related
            soft-tissue swelling; ``lesion`` then only places the (unpainted) lesion site.

    Returns:
        :class:`RenderedView` with float32 pixels (H, W) in [0, 1], bone bright.
    """
    if view not in VIEWS:
        raise InputError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")
    template, wscale, n_bones = SITE_ANATOMY.get(site, SITE_ANATOMY["femur"])
    h = int(rng.choice(_HEIGHTS))
    w = int(rng.choice(_WIDTHS))
    yy, xx = _grid(h, w)
    st = feature_strengths(lesion)
    if normal:
        st = dict.fromkeys(st, 0.0)
    tex = texture(rng, "trabecular" if template != "flat" else "trabecular_iso", (h, w))
    if template == "long":
        # The fibula's companion is the much thicker tibia; radius and ulna are alike.
        companion = 1.9 if site == "fibula" else 1.0
        scene = _long_bone(
            rng, h, w, lesion, st, wscale, n_bones, view, paediatric, yy, xx, tex, companion
        )
    elif template == "vertebra":
        scene = _vertebra(rng, h, w, lesion, st, view, paediatric, yy, xx, tex)
    else:
        scene = _flat(rng, h, w, lesion, st, wscale, view, yy, xx, tex)
    if normal:
        # Paint into a throwaway copy so the generator advances exactly as with a
        # lesion: the normal image is then the same radiograph without the lesion.
        full = feature_strengths(lesion)
        _paint_lesion(rng, replace(scene, bone=scene.bone.copy()), lesion, full)
        roi = None
    else:
        roi = _paint_lesion(rng, scene, lesion, st)

    gain, offset, noise_sd, blur = _CENTER_LOOK.get(center, _CENTER_LOOK["A"])
    total = scene.soft + scene.bone
    img = 1.0 - np.exp(-0.62 * total)
    img = ndimage.gaussian_filter(img, blur, truncate=2.5)
    # Heel effect: a gentle exposure gradient along one axis.
    heel = rng.uniform(-0.04, 0.04)
    img *= 1.0 + heel * (yy / h - 0.5)
    img = 0.04 + 0.9 * img
    img = 0.5 + gain * rng.uniform(0.93, 1.07) * (img - 0.5) + offset + rng.uniform(-0.03, 0.03)
    img += noise_sd * (0.5 + 0.7 * img) * rng.standard_normal((h, w), dtype=np.float32)
    np.clip(img, 0.0, 1.0, out=img)
    return RenderedView(pixels=img.astype(np.float32, copy=False), roi=roi)
