"""Findings drawn onto the anatomy of `anatomy.py`.

Most findings are a "fill" in [0, 1]: the fraction of air a lung pixel loses (fluid,
consolidation, collapse). Pneumothorax is the opposite: a region WITHOUT lung markings bounded
by a thin pleural line. Devices are bright additive lines.
"""

from __future__ import annotations

import numpy as np

from harness.phantom.anatomy import (
    Array,
    Frontal,
    Lateral,
    segment_distance,
    smooth_noise,
    smooth_step,
)
from harness.phantom.attributes import Findings

EFFUSION_HEIGHT = {"small": 0.05, "moderate": 0.13, "large": 0.25}
PNEUMOTHORAX_GAP = {"small": 0.16, "large": 0.34}
ZONE_HEIGHT = {"upper": 0.25, "middle": 0.5, "lower": 0.76}


def _sides(value: str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return ("left", "right") if value == "bilateral" else (value,)


def _point(g: Frontal, side: str, lat: float, height: float) -> tuple[float, float]:
    """Pixel position (x, y) of a lung-relative position (0..1 medial->lateral, apex->base)."""
    y = g.y_apex + height * (g.dome[side] - g.y_apex)
    border = float(g.lateral_border(y))
    return 0.5 + g.sign(side) * (g.mw + lat * (border - g.mw)), y


def _patchy(rng: np.random.Generator, size: int) -> Array:
    return np.clip(0.72 + 0.4 * smooth_noise(rng, size, 0.03), 0, 1)


def frontal_fill(g: Frontal, f: Findings, rng: np.random.Generator) -> Array:
    size = g.x.shape[0]
    fill = np.zeros(g.x.shape, dtype=np.float32)
    for side in _sides(f.effusion):
        h = EFFUSION_HEIGHT[f.effusion_size or "small"]
        lat = np.clip(g.lateralness(side), 0, 1)
        # Meniscus: fluid climbs the lateral chest wall, blunting the costophrenic angle.
        surface = g.y_cp - h * (0.3 + 0.7 * lat**2) - (0.5 * h if h > 0.1 else 0.0)
        fill = np.maximum(fill, smooth_step(g.y - surface, 0.02) * (g.d(side) > 0))
    if f.consolidation:
        side = f.consolidation
        height = g.height(side)
        if f.consolidation_lobe == "upper":  # bounded below by the horizontal fissure
            region = smooth_step(0.47 - height, g.edge * 3) * smooth_step(height - 0.05, 0.05)
        else:
            region = smooth_step(height - 0.55, 0.06)
        fill = np.maximum(fill, 0.9 * region * (g.d(side) > 0) * _patchy(rng, size))
    if f.pneumonia:
        blobs = np.zeros_like(fill)
        for _ in range(int(rng.integers(3, 6))):
            cx, cy = _point(
                g, f.pneumonia, float(rng.uniform(0.25, 0.85)), float(rng.uniform(0.45, 0.9))
            )
            r = float(rng.uniform(0.03, 0.055))
            blobs += np.exp(-((g.x - cx) ** 2 + (g.y - cy) ** 2) / (2 * r * r))
        fill = np.maximum(fill, 0.8 * np.clip(blobs, 0, 1) * _patchy(rng, size))
    if f.edema:
        amp = 0.4 if f.edema == "mild" else 0.7
        haze = np.zeros_like(fill)
        for hx, hy in g.hilum.values():
            haze += np.exp(-((g.x - hx) ** 2 + (g.y - hy) ** 2) / (2 * 0.1**2))
        haze = np.clip(haze + 0.25, 0, 1)  # bat-wing perihilar haze on an interstitial veil
        fill = np.maximum(
            fill, amp * haze * np.clip(0.8 + 0.3 * smooth_noise(rng, size, 0.02), 0, 1)
        )
    if f.atelectasis:
        a = _point(g, f.atelectasis, 0.2, 0.8)
        b = _point(g, f.atelectasis, 0.8, 0.74)
        fill = np.maximum(
            fill, 0.85 * smooth_step(0.011 - segment_distance(g.x, g.y, [a, b]), g.edge)
        )
    if f.lesion:
        cx, cy = _point(g, f.lesion, 0.55, ZONE_HEIGHT[f.lesion_zone or "middle"])
        r = 0.032
        fill = np.maximum(fill, 0.95 * smooth_step(r - np.hypot(g.x - cx, g.y - cy), g.edge))
    return np.clip(fill, 0, 1)


def frontal_pneumothorax(g: Frontal, f: Findings) -> tuple[Array, Array]:
    """(region without markings, pleural line)."""
    zero = np.zeros(g.x.shape, dtype=np.float32)
    if not f.pneumothorax:
        return zero, zero
    side = f.pneumothorax
    gap = PNEUMOTHORAX_GAP[f.pneumothorax_size or "small"]
    lat, height = g.lateralness(side), g.height(side)
    boundary = 1 - gap * (1.2 - 0.6 * np.clip(height, 0, 1))  # widest at the apex
    width = max(float(g.wt - g.mw), 0.1)
    valid = (g.d(side) > 0) * smooth_step(0.9 - height, 0.05)
    region = smooth_step(lat - boundary, g.edge / width) * valid
    line = np.exp(-((((lat - boundary) * width) / (0.9 * g.edge)) ** 2)) * valid
    return region, line


def frontal_devices(g: Frontal, f: Findings) -> Array:
    out = np.zeros(g.x.shape, dtype=np.float32)
    x, y, e = g.x, g.y, g.edge
    thin = max(0.0045, 0.8 * e)
    if "endotracheal tube" in f.devices:
        for dx in (-0.008, 0.008):
            out += 0.3 * smooth_step(
                thin - segment_distance(x, y, [(0.5 + dx, 0.0), (0.5 + dx, 0.28)]), e
            )
    if "central venous catheter" in f.devices:
        pts = [(0.38, 0.0), (0.425, 0.12), (0.455, 0.22), (0.465, 0.37)]
        out += 0.32 * smooth_step(thin - segment_distance(x, y, pts), e)
    if "pacemaker" in f.devices:
        box = smooth_step(0.035 - np.abs(x - 0.77), e) * smooth_step(0.022 - np.abs(y - 0.15), e)
        lead = [(0.75, 0.16), (0.6, 0.22), (0.52, 0.33), (0.55, 0.5), (0.6, 0.6)]
        out += 0.6 * box + 0.28 * smooth_step(thin - segment_distance(x, y, lead), e)
    return out


def lateral_fill(g: Lateral, f: Findings, rng: np.random.Generator) -> Array:
    size = g.x.shape[0]
    fill = np.zeros(g.x.shape, dtype=np.float32)
    if f.effusion:
        h = EFFUSION_HEIGHT[f.effusion_size or "small"] * (1.2 if f.effusion == "bilateral" else 1)
        post = np.clip((g.x - 0.42) / 0.34, 0, 1)
        surface = g.diaphragm() - h * (0.2 + 0.8 * post**2)
        fill = np.maximum(fill, smooth_step(g.y - surface, 0.02))
    blobs: list[tuple[float, float, float, float]] = []  # x, y, radius, density
    if f.consolidation:
        cx, cy = (0.42, 0.3) if f.consolidation_lobe == "upper" else (0.62, 0.6)
        blobs.append((cx, cy, 0.09, 0.85))
    if f.pneumonia:
        for _ in range(3):
            blobs.append(
                (float(rng.uniform(0.45, 0.68)), float(rng.uniform(0.45, 0.68)), 0.045, 0.75)
            )
    if f.edema:
        blobs.append((0.52, 0.43, 0.12, 0.4 if f.edema == "mild" else 0.7))
    for cx, cy, r, dens in blobs:
        blob = np.exp(-((g.x - cx) ** 2 + (g.y - cy) ** 2) / (2 * r * r))
        fill = np.maximum(fill, dens * blob * _patchy(rng, size))
    if f.atelectasis:
        fill = np.maximum(
            fill,
            0.8
            * smooth_step(0.01 - segment_distance(g.x, g.y, [(0.35, 0.66), (0.62, 0.62)]), g.edge),
        )
    if f.lesion:
        cy = {"upper": 0.3, "middle": 0.45, "lower": 0.6}[f.lesion_zone or "middle"]
        fill = np.maximum(fill, 0.95 * smooth_step(0.03 - np.hypot(g.x - 0.5, g.y - cy), g.edge))
    return np.clip(fill, 0, 1)


def lateral_devices(g: Lateral, f: Findings) -> Array:
    out = np.zeros(g.x.shape, dtype=np.float32)
    x, y, e = g.x, g.y, g.edge
    thin = max(0.0045, 0.8 * e)
    if "endotracheal tube" in f.devices:
        out += 0.3 * smooth_step(thin - segment_distance(x, y, [(0.51, 0.0), (0.545, 0.28)]), e)
    if "central venous catheter" in f.devices:
        out += 0.3 * smooth_step(
            thin - segment_distance(x, y, [(0.6, 0.0), (0.5, 0.18), (0.45, 0.36)]), e
        )
    if "pacemaker" in f.devices:
        out += (
            0.6 * smooth_step(0.03 - np.abs(x - 0.2), e) * smooth_step(0.02 - np.abs(y - 0.16), e)
        )
        out += 0.28 * smooth_step(
            thin - segment_distance(x, y, [(0.2, 0.16), (0.35, 0.3), (0.32, 0.6)]), e
        )
    return out
