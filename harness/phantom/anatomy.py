"""Normal chest anatomy on a unit square, for frontal (PA/AP) and lateral projections.

Everything is a smooth numpy mask over normalised coordinates (x right, y down, both 0..1), so
one drawing serves any image size and costs a few dozen vectorised array operations. The
projections differ the way real ones do: AP magnifies the heart and mediastinum, raises the
clavicles and lays the scapulae over the lungs; the lateral view shows the spine posteriorly
and the heart anteriorly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

Array = np.ndarray


def smooth_step(d: Array | float, width: float) -> Array:
    """0 -> 1 across a signed distance d (positive = inside) over `width`."""
    return np.clip(np.asarray(d, dtype=np.float32) / width + 0.5, 0.0, 1.0)


def grid(size: int) -> tuple[Array, Array]:
    c = (np.arange(size, dtype=np.float32) + 0.5) / size
    return np.broadcast_to(c[None, :], (size, size)), np.broadcast_to(c[:, None], (size, size))


def segment_distance(x: Array, y: Array, points: list[tuple[float, float]]) -> Array:
    """Distance from every pixel to a polyline (tubes, lines, leads)."""
    best = np.full(x.shape, np.inf, dtype=np.float32)
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:], strict=True):
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((x - x0) * dx + (y - y0) * dy) / (dx * dx + dy * dy + 1e-12), 0, 1)
        best = np.minimum(best, np.hypot(x - (x0 + t * dx), y - (y0 + t * dy)))
    return best


def smooth_noise(rng: np.random.Generator, size: int, sigma_frac: float) -> Array:
    """Zero-mean, unit-std correlated noise with a correlation length of sigma_frac * size.

    Long correlation lengths are filtered on a coarse grid and upsampled: a wide Gaussian
    kernel at full resolution would dominate the cost of a phantom image.
    """
    sigma = max(sigma_frac * size, 0.5)
    coarse = size if sigma <= 2 else max(int(size * 1.5 / sigma), 4)
    field = gaussian_filter(
        rng.standard_normal((coarse, coarse)).astype(np.float32), sigma * coarse / size, mode="wrap"
    )
    if coarse != size:
        field = np.asarray(Image.fromarray(field).resize((size, size), Image.Resampling.BILINEAR))
    return (field - field.mean()) / (field.std() + 1e-6)


@dataclass
class Frontal:
    """Geometry of one frontal projection; lesions place themselves with these fields."""

    x: Array
    y: Array
    edge: float  # anti-aliasing width (about one pixel)
    ap: bool
    wt: float  # half width of the rib cage at its widest
    y_apex: float
    y_cp: float  # costophrenic angles
    dome: dict[str, float]  # hemidiaphragm dome height per side
    mw: float  # mediastinal half width
    heart_w: float
    heart_c: tuple[float, float]
    heart_hh: float
    hilum: dict[str, tuple[float, float]]

    @staticmethod
    def sign(side: str) -> float:
        """Patient's right is the viewer's left on a frontal film."""
        return -1.0 if side == "right" else 1.0

    def d(self, side: str) -> Array:
        """Distance from the midline towards `side` (negative on the other side)."""
        return self.sign(side) * (self.x - 0.5)

    def lateral_border(self, y: Array | float) -> Array:
        t = np.clip((np.asarray(y) - self.y_apex) / (self.y_cp - self.y_apex), 0, 1)
        return self.wt * (0.72 + 0.28 * np.sqrt(t))

    def diaphragm(self, side: str, d: Array) -> Array:
        d_dome = 0.17
        dome = self.dome[side]
        lateral = dome + (self.y_cp - dome) * ((d - d_dome) / (self.wt - d_dome)) ** 2
        medial = dome + 0.035 * ((d_dome - d) / 0.15) ** 2
        return np.where(d > d_dome, lateral, medial)

    def lung(self, side: str) -> Array:
        d, y, e = self.d(side), self.y, self.edge
        apex = self.y_apex + 2.4 * (d - 0.17) ** 2
        return (
            smooth_step(self.lateral_border(y) - d, e)
            * smooth_step(d - self.mw, e)
            * smooth_step(y - apex, e)
            * smooth_step(self.diaphragm(side, d) - y, e)
        )

    def lateralness(self, side: str) -> Array:
        """0 at the mediastinum, 1 at the chest wall."""
        return np.clip((self.d(side) - self.mw) / (self.lateral_border(self.y) - self.mw), 0, 1.2)

    def height(self, side: str) -> Array:
        """0 at the apex, 1 at the diaphragm under the pixel."""
        dia = self.diaphragm(side, np.maximum(self.d(side), 0))
        return np.clip((self.y - self.y_apex) / (dia - self.y_apex), 0, 1.2)

    def heart(self) -> Array:
        (hx, hy), hw, hh = self.heart_c, self.heart_w / 2, self.heart_hh
        # The lower half is stretched so the heart sits on the diaphragm instead of floating.
        dy = np.where(self.y < hy, (self.y - hy) / hh, (self.y - hy) / (1.7 * hh))
        r = ((self.x - hx) / hw) ** 2 + dy**2
        heart = smooth_step((1 - r) * min(hw, hh), self.edge)
        heart = heart * smooth_step(self.dome["left"] + 0.02 - self.y, 0.02)
        # The right heart border continues up into the mediastinum (SVC).
        svc = smooth_step(hx - 0.5 + 0.2 * hw - np.abs(self.x - hx + 0.2 * hw), self.edge)
        return np.maximum(
            heart,
            svc
            * smooth_step(hy - self.y, 0.03)
            * smooth_step(self.y - 0.25, 0.05)
            * smooth_step(self.mw + 0.015 - np.abs(self.x - 0.5), self.edge),
        )


# Body shape varies over a few discrete values so the static layers (body, bones, lung masks,
# markings) can be cached and reused: that keeps a phantom image at a few milliseconds.
JITTERS = (-0.012, -0.006, 0.0, 0.006, 0.012)
THORAX_HALF_WIDTHS = (0.342, 0.355, 0.368)


def frontal_geometry(
    size: int, *, ap: bool, ctr: float, elevated: str | None, jitter: float, wt: float
) -> Frontal:
    x, y = grid(size)
    dome_level = 0.70 + jitter - (0.035 if ap else 0.0)  # AP films: shallower inspiration
    dome = {"right": dome_level, "left": dome_level + 0.02}
    if elevated:
        dome[elevated] -= 0.075
    mag = 1.12 if ap else 1.0  # AP: the heart is further from the detector and magnified
    heart_w = ctr * 2 * wt * mag
    heart_hh = 0.125 * (heart_w / 0.30) ** 0.5
    hx = 0.5 + (0.64 - 0.5) * heart_w  # two thirds of the heart lies left of the midline
    hy = dome["right"] - 0.55 * heart_hh
    return Frontal(
        x=x,
        y=y,
        edge=1.2 / size,
        ap=ap,
        wt=wt,
        y_apex=0.135 + jitter,
        y_cp=0.80 + jitter,
        dome=dome,
        mw=0.048 * (1.3 if ap else 1.0),
        heart_w=heart_w,
        heart_c=(hx, hy),
        heart_hh=heart_hh,
        hilum={"right": (0.41, 0.43 + jitter), "left": (0.59, 0.42 + jitter)},
    )


def lung_markings(g: Frontal, rng: np.random.Generator) -> Array:
    """Vessels fanning out of the hila, thinning towards the periphery."""
    out = np.zeros(g.x.shape, dtype=np.float32)
    size = g.x.shape[0]
    wobble = smooth_noise(rng, size, 0.05)
    for side in ("right", "left"):
        hx, hy = g.hilum[side]
        r = np.hypot(g.x - hx, g.y - hy)
        theta = np.arctan2(g.y - hy, g.x - hx)
        phase = float(rng.uniform(0, 2 * np.pi))
        streaks = np.abs(np.cos(7.0 * theta + phase + 2.2 * wobble + 9.0 * r)) ** 6
        branches = np.abs(np.cos(13.0 * theta - phase + 1.5 * wobble - 14.0 * r)) ** 10
        out += (0.7 * streaks + 0.4 * branches) * np.exp(-r / 0.16)
        out += 0.35 * np.exp(-((r / 0.045) ** 2))  # hilar vessels
    fine = smooth_noise(rng, size, 0.012)
    return 0.09 * out + 0.012 * fine


def ribs_frontal(g: Frontal) -> Array:
    d = np.abs(g.x - 0.5)
    inside = smooth_step(g.wt + 0.012 - d, g.edge) * smooth_step(d - 0.03, g.edge)
    inside = inside * smooth_step(g.y - (g.y_apex - 0.03), g.edge)
    inside = inside * smooth_step(g.y_cp + 0.02 - g.y, 0.03)
    # Posterior ribs arch upwards from the spine then curve down laterally.
    p = (g.y + 0.3 * d - 1.4 * d**2 - g.y_apex) / 0.064
    frac = p - np.floor(p)
    posterior = np.clip(1 - np.abs(frac - 0.17) / 0.14, 0, 1) ** 0.6
    # Anterior ribs: fainter, sloping down towards the midline.
    q = (g.y + 0.42 * d - g.y_apex) / 0.07
    fq = q - np.floor(q)
    anterior = np.clip(1 - np.abs(fq - 0.5) / 0.12, 0, 1) * smooth_step(d - 0.13, 0.03)
    return inside * (0.11 * posterior + 0.04 * anterior)


def bones_frontal(g: Frontal) -> Array:
    x, y, e = g.x, g.y, g.edge
    out = ribs_frontal(g)
    d = np.abs(x - 0.5)
    # Spine: faint vertebral column with disc spaces, mostly hidden behind the heart.
    discs = 0.75 + 0.25 * np.cos(2 * np.pi * y / 0.052)
    out += 0.035 * smooth_step(0.032 - d, e) * discs * smooth_step(0.8 - y, 0.05)
    # Clavicles: AP projects them higher and flatter, above the apices.
    yc, slope = (0.085, 0.05) if g.ap else (0.145, 0.16)
    for s in (-1, 1):
        pts = [
            (0.5 + s * 0.035, yc + 0.035),
            (0.5 + s * 0.16, yc + 0.035 - slope * 0.13),
            (0.5 + s * 0.30, yc - slope * 0.28 + 0.03),
        ]
        out += 0.2 * smooth_step(0.013 - segment_distance(x, y, pts), e)
    # Scapulae: rotated off the lungs on PA, over the upper lateral lungs on AP.
    for s in (-1, 1):
        inner, outer = (0.25, 0.40) if g.ap else (0.37, 0.47)
        top, bottom = 0.14, 0.46
        t = np.clip((y - top) / (bottom - top), 0, 1)
        med = inner + (outer - inner) * 0.55 * t  # the medial border slopes outwards
        scap = (
            smooth_step(s * (x - 0.5) - med, e)
            * smooth_step(outer - s * (x - 0.5), e)
            * smooth_step(y - top, e)
            * smooth_step(bottom - y, e)
        )
        out += (0.08 if g.ap else 0.05) * scap
        # Humeral heads.
        out += 0.14 * smooth_step(0.055 - np.hypot(x - (0.5 + s * 0.45), y - 0.16), e)
    return out


def body_frontal(g: Frontal) -> Array:
    """Soft tissue: shoulders and chest wall, and the dense core (mediastinum, abdomen)."""
    x, y, e = g.x, g.y, g.edge
    d = np.abs(x - 0.5)
    half = np.where(y < 0.06, 0.10, np.minimum(0.10 + (y - 0.06) * 4.0, 0.485))
    body = smooth_step(half - d, 3 * e) * smooth_step(y + 0.02, e)
    core = smooth_step(g.wt + 0.02 - d, 0.02) * smooth_step(y - 0.05, 0.04)
    mediastinum = smooth_step(g.mw - d, e) + smooth_step(
        0.028 - np.hypot(x - (0.5 + g.mw + 0.006), y - 0.30), e
    )  # aortic knob
    trachea = smooth_step(0.012 - d, e) * smooth_step(0.34 - y, 0.02) * smooth_step(y - 0.03, e)
    # Gastric air bubble under the left hemidiaphragm.
    bubble = smooth_step(0.03 - np.hypot((x - 0.69) / 1.5, y - g.dome["left"] - 0.055), 0.01)
    thickness = 1 - 0.35 * (d / 0.5) ** 2  # the beam crosses less tissue laterally
    return (
        thickness * (0.40 * body + 0.16 * core)
        + 0.04 * np.clip(mediastinum, 0, 1)
        - 0.09 * trachea
        - 0.12 * bubble
    )


@dataclass
class Lateral:
    x: Array
    y: Array
    edge: float
    heart_c: tuple[float, float]
    heart_hw: float
    heart_hh: float

    def diaphragm(self) -> Array:
        # Posterior costophrenic sulcus is the lowest point of the lung on a lateral film.
        xx = np.clip((self.x - 0.42) / 0.34, -1, 1)
        return 0.70 + np.where(xx > 0, 0.12 * xx**2, 0.035 * xx**2)

    def lung(self) -> Array:
        x, y, e = self.x, self.y, self.edge
        anterior = 0.215 + 0.06 * ((y - 0.45) / 0.35) ** 2
        posterior = 0.765 - 0.03 * ((y - 0.5) / 0.4) ** 2
        apex = 0.12 + 3.0 * (x - 0.52) ** 2
        return (
            smooth_step(x - anterior, e)
            * smooth_step(posterior - x, e)
            * smooth_step(y - apex, e)
            * smooth_step(self.diaphragm() - y, e)
        )

    def heart(self) -> Array:
        (hx, hy), hw, hh = self.heart_c, self.heart_hw, self.heart_hh
        dy = np.where(self.y < hy, (self.y - hy) / hh, (self.y - hy) / (2.0 * hh))
        r = ((self.x - hx) / hw) ** 2 + dy**2
        return smooth_step((1 - r) * min(hw, hh), self.edge)


def lateral_geometry(size: int, *, ctr: float, jitter: float) -> Lateral:
    x, y = grid(size)
    hw = 0.13 * (ctr / 0.45)
    return Lateral(
        x=x,
        y=y + jitter,
        edge=1.2 / size,
        heart_c=(0.205 + 0.8 * hw, 0.6),
        heart_hw=hw,
        heart_hh=0.14 * (ctr / 0.45) ** 0.5,
    )


def body_lateral(g: Lateral) -> Array:
    x, y, e = g.x, g.y, g.edge
    neck = smooth_step(0.17 - np.abs(x - 0.58), e) * smooth_step(0.12 - y, 0.04)
    torso = smooth_step(1 - (((x - 0.5) / 0.41) ** 2 + ((y - 0.62) / 0.62) ** 2), 0.04)
    body = np.clip(neck + torso, 0, 1)
    core = smooth_step(1 - (((x - 0.49) / 0.33) ** 2 + ((y - 0.66) / 0.58) ** 2), 0.05)
    # Raised arms project as soft-tissue bands over the upper anterior chest.
    arms = smooth_step(0.06 - segment_distance(x, y, [(0.15, 0.0), (0.45, 0.28)]), 0.03)
    trachea = smooth_step(0.013 - segment_distance(x, y, [(0.52, 0.0), (0.56, 0.36)]), e)
    return 0.40 * body + 0.16 * core + 0.07 * arms - 0.09 * trachea


def bones_lateral(g: Lateral) -> Array:
    x, y, e = g.x, g.y, g.edge
    # Vertebral bodies with disc spaces, and fainter posterior elements behind them.
    slant = 0.06 * (y - 0.5)
    col = smooth_step(0.045 - np.abs(x - 0.815 - slant), e)
    disc = np.clip(np.cos(2 * np.pi * y / 0.055) * 3 + 1.5, 0, 1) * 0.7 + 0.3
    spine = 0.2 * col * disc * smooth_step(y - 0.08, e)
    spine += 0.06 * smooth_step(0.03 - np.abs(x - 0.885 - slant), e) * smooth_step(y - 0.08, e)
    sternum = 0.13 * smooth_step(0.012 - segment_distance(x, y, [(0.205, 0.2), (0.185, 0.56)]), e)
    p = (y - 0.55 * (x - 0.3)) / 0.07
    frac = p - np.floor(p)
    ribs = 0.05 * np.clip(1 - np.abs(frac - 0.5) / 0.15, 0, 1) * smooth_step(x - 0.45, 0.05)
    ribs *= smooth_step(0.8 - x, 0.02) * smooth_step(y - 0.15, 0.02) * smooth_step(0.8 - y, 0.05)
    shoulders = 0.1 * smooth_step(0.06 - np.hypot(x - 0.62, y - 0.12), 0.02)
    torso = smooth_step(1 - (((x - 0.5) / 0.41) ** 2 + ((y - 0.62) / 0.62) ** 2), 0.04)
    return (spine + sternum + ribs) * np.maximum(torso, smooth_step(0.2 - y, 0.05)) + shoulders
