"""One phantom radiograph: anatomy + findings + exposure, as an 8-bit grayscale array."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.ndimage import gaussian_filter

from harness.phantom.anatomy import (
    JITTERS,
    THORAX_HALF_WIDTHS,
    Array,
    body_frontal,
    body_lateral,
    bones_frontal,
    bones_lateral,
    frontal_geometry,
    grid,
    lateral_geometry,
    lung_markings,
    smooth_noise,
)
from harness.phantom.attributes import Findings
from harness.phantom.lesions import (
    frontal_devices,
    frontal_fill,
    frontal_pneumothorax,
    lateral_devices,
    lateral_fill,
)

VIEWS = ("PA", "AP", "LATERAL", "LL")
AIR_CONTRAST = 0.40  # how much darker aerated lung is than the soft-tissue core
MARKING_VARIANTS = 4


def _frozen(a: Array) -> Array:
    a = np.ascontiguousarray(a, dtype=np.float32)
    a.setflags(write=False)  # cached layers are shared between images
    return a


@lru_cache(maxsize=256)
def _frontal_static(
    size: int, ap: bool, jitter: float, wt: float, elevated: str | None
) -> tuple[Array, Array]:
    g = frontal_geometry(size, ap=ap, ctr=0.45, elevated=elevated, jitter=jitter, wt=wt)
    lungs = np.clip(g.lung("right") + g.lung("left"), 0, 1)
    return _frozen(body_frontal(g) + bones_frontal(g)), _frozen(lungs)


@lru_cache(maxsize=256)
def _frontal_markings(size: int, jitter: float, variant: int) -> Array:
    """Vessels depend only on where the hila are, so a few textures serve every film."""
    g = frontal_geometry(size, ap=False, ctr=0.45, elevated=None, jitter=jitter, wt=0.355)
    return _frozen(lung_markings(g, np.random.default_rng(variant)))


@lru_cache(maxsize=64)
def _lateral_static(size: int, jitter: float) -> tuple[Array, Array]:
    g = lateral_geometry(size, ctr=0.45, jitter=jitter)
    return _frozen(body_lateral(g) + bones_lateral(g)), _frozen(g.lung())


@lru_cache(maxsize=256)
def _lateral_markings(size: int, jitter: float, variant: int) -> Array:
    g = lateral_geometry(size, ctr=0.45, jitter=jitter)
    rng = np.random.default_rng(variant)
    r = np.hypot(g.x - 0.52, g.y - 0.43)
    theta = np.arctan2(g.y - 0.43, g.x - 0.52)
    wobble = smooth_noise(rng, size, 0.05)
    vessels = np.abs(np.cos(9 * theta + 2 * wobble + 8 * r)) ** 6 * np.exp(-r / 0.14)
    return _frozen(0.06 * vessels + 0.01 * smooth_noise(rng, size, 0.012))


def _shape(rng: np.random.Generator) -> tuple[float, float, int]:
    return (
        JITTERS[int(rng.integers(len(JITTERS)))],
        THORAX_HALF_WIDTHS[int(rng.integers(len(THORAX_HALF_WIDTHS)))],
        int(rng.integers(MARKING_VARIANTS)),
    )


def _frontal(size: int, view: str, f: Findings, female: bool, rng: np.random.Generator) -> Array:
    jitter, wt, variant = _shape(rng)
    ap = view == "AP"
    key = (size, ap, jitter, wt, f.elevated_diaphragm)
    static, lungs = _frontal_static(*key)
    g = frontal_geometry(
        size, ap=ap, ctr=f.ctr, elevated=f.elevated_diaphragm, jitter=jitter, wt=wt
    )
    heart = g.heart()
    lungs = lungs * (1 - heart)
    fill = frontal_fill(g, f, rng)
    ptx, pleural_line = frontal_pneumothorax(g, f)
    aerated = lungs * (1 - fill)
    img = static + 0.05 * heart - AIR_CONTRAST * aerated - 0.05 * ptx * lungs
    img += (
        _frontal_markings(size, jitter, variant) * aerated * (1 - ptx) + 0.14 * pleural_line * lungs
    )
    if female:  # breast soft tissue over the lower lungs
        img += _breasts(size)
    return img + frontal_devices(g, f)


@lru_cache(maxsize=16)
def _breasts(size: int) -> Array:
    x, y = grid(size)
    out = sum(
        0.06 * np.exp(-(((x - 0.5 - s * 0.24) / 0.13) ** 2 + ((y - 0.68) / 0.09) ** 2))
        for s in (-1, 1)
    )
    return _frozen(out)


def _lateral(size: int, f: Findings, rng: np.random.Generator) -> Array:
    jitter, _, variant = _shape(rng)
    static, lung = _lateral_static(size, jitter)
    g = lateral_geometry(size, ctr=f.ctr, jitter=jitter)
    heart = g.heart()
    aerated = lung * (1 - heart) * (1 - lateral_fill(g, f, rng))
    img = static + 0.05 * heart - AIR_CONTRAST * 0.85 * aerated
    img += _lateral_markings(size, jitter, variant) * aerated
    return img + lateral_devices(g, f)


def render(
    f: Findings, view: str, size: int, *, female: bool, hard: float, rng: np.random.Generator
) -> Array:
    """uint8 (size, size). `hard` in [0, 1]: lower contrast, more noise, overlying tissue."""
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; expected one of {VIEWS}")
    if view in ("PA", "AP"):
        img = _frontal(size, view, f, female, rng)
    else:
        img = _lateral(size, f, rng)
        if view == "LL":  # phantom convention: LL is recorded facing the other way
            img = img[:, ::-1]
    # Exposure: a little scatter blur, quantum noise, contrast and gamma per film.
    img = gaussian_filter(img, sigma=max(size / 256, 0.4))
    noise_sd = 0.018 * (1 + 3.0 * hard)
    img = img + noise_sd * rng.standard_normal(img.shape).astype(np.float32)
    if hard > 0:
        x, _ = grid(size)
        habitus = 0.12 * hard * (0.6 + 0.4 * smooth_noise(rng, size, 0.15))
        img = img + habitus * (1 - np.abs(x - 0.5))  # overlying soft tissue
        mid = float(np.median(img))
        img = mid + (img - mid) * (1 - 0.55 * hard)
    contrast = float(rng.uniform(0.9, 1.1))
    gamma = float(rng.uniform(0.85, 1.15))
    img = np.clip(0.02 + contrast * img, 0, 1) ** gamma
    return np.round(img * 255).astype(np.uint8)
