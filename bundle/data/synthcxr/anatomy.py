"""The normal chest: a patient's anatomy, one acquisition of it, and the rendered radiograph.

Everything is drawn as an attenuation map (0 = air, about 1 = the soft tissue of the
mediastinum, more where bone overlaps) in canonical coordinates (see ``drawing``), then
exposed like a radiograph: ``1 - exp(-k * attenuation)``, windowed, gamma-corrected, with
quantum noise and detector blur. Displayed as a PA film: the patient's right lung is on the
image's left.

The lung field is bounded by four analytic walls per side (mediastinum, lateral chest wall,
hemidiaphragm dome, apical cap) and the cardiac ellipse; the minimum of their signed margins
is both the lung mask and an approximate distance to the pleura, which the findings use to
place pleural lines and zones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import ndimage

from .drawing import Canvas, disc_distance, smoothstep, soft

# PA display: the patient's right side is on the image's left.
SIDE_SIGN = {"right": -1.0, "left": 1.0}
SIDES = ("right", "left")

DOME_PEAK = 0.16  # distance of a hemidiaphragm's highest point from the midline
APEX_CENTRE = 0.145  # distance of a lung apex from the midline
APEX_CURVATURE = 4.5
LATERAL_WALL_TOP = 0.21  # half-width of the thorax at the level of the apices
NECK_HALF_WIDTH = 0.13
VESSEL_DENSITY = 0.14
REFERENCE_DENSITY = 1.45  # attenuation shown as white at the default window


@dataclass(frozen=True)
class PatientAnatomy:
    """One synthetic patient's body, in canonical units (the image is 1 x 1); shared by their studies."""

    body_half_width: float
    body_thickness: float
    lung_half_width: float
    lung_apex: float
    costophrenic: float
    right_dome: float
    left_dome: float
    heart_half_width: float
    heart_half_height: float
    heart_shift: float
    heart_top: float
    heart_tilt_deg: float
    mediastinum_half_width: float
    aortic_knob: float
    lung_air: float
    rib_start: float
    rib_spacing: float
    breast_shadow: float
    stomach_bubble: float
    vessel_seed: int


def sample_anatomy(rng: np.random.Generator) -> PatientAnatomy:
    """A random normal adult chest."""
    right_dome = rng.uniform(0.60, 0.645)
    return PatientAnatomy(
        body_half_width=rng.uniform(0.43, 0.49),
        body_thickness=rng.uniform(0.85, 1.15),
        lung_half_width=rng.uniform(0.335, 0.375),
        lung_apex=rng.uniform(0.105, 0.14),
        costophrenic=rng.uniform(0.735, 0.78),
        right_dome=right_dome,
        left_dome=right_dome + rng.uniform(0.01, 0.035),
        heart_half_width=rng.uniform(0.135, 0.16),
        heart_half_height=rng.uniform(0.11, 0.13),
        heart_shift=rng.uniform(0.03, 0.05),
        heart_top=rng.uniform(0.43, 0.47),
        heart_tilt_deg=rng.uniform(30.0, 42.0),
        mediastinum_half_width=rng.uniform(0.055, 0.07),
        aortic_knob=rng.uniform(0.015, 0.03),
        lung_air=rng.uniform(0.64, 0.74),
        rib_start=rng.uniform(0.085, 0.105),
        rib_spacing=rng.uniform(0.056, 0.064),
        breast_shadow=rng.uniform(0.06, 0.14) if rng.random() < 0.4 else 0.0,
        stomach_bubble=rng.uniform(0.15, 0.3) if rng.random() < 0.7 else 0.0,
        vessel_seed=int(rng.integers(0, 2**31 - 1)),
    )


@dataclass(frozen=True)
class Acquisition:
    """How one study was taken: positioning (rotation, scale, shift), inspiration and exposure."""

    rotation_deg: float
    scale: float
    shift_u: float
    shift_v: float
    inspiration: float
    exposure: float
    gamma: float
    contrast: float
    brightness: float
    noise: float
    blur_px: float


def sample_acquisition(rng: np.random.Generator) -> Acquisition:
    """A random, diagnostic-quality PA acquisition."""
    return Acquisition(
        rotation_deg=rng.uniform(-4.0, 4.0),
        scale=rng.uniform(0.9, 1.04),
        shift_u=rng.uniform(-0.03, 0.03),
        shift_v=rng.uniform(-0.025, 0.03),
        inspiration=rng.uniform(-0.02, 0.02),
        exposure=rng.uniform(0.7, 1.2),
        gamma=rng.uniform(0.8, 1.2),
        contrast=rng.uniform(0.9, 1.12),
        brightness=rng.uniform(-0.04, 0.04),
        noise=rng.uniform(0.008, 0.025),
        blur_px=rng.uniform(0.35, 0.8),
    )


class ChestGeometry:
    """Canonical coordinate grids of one study and the analytic walls of its chest.

    Args:
        anatomy: the patient (after any finding's anatomy change, e.g. an enlarged heart).
        acquisition: positioning of this study.
        size: image side in pixels.

    Attributes ``u``, ``v`` are ``[size, size]`` float32 canonical coordinates of each pixel
    centre; the wall functions take any arrays (or scalars) of canonical coordinates.
    """

    def __init__(self, anatomy: PatientAnatomy, acquisition: Acquisition, size: int) -> None:
        self.anatomy = anatomy
        self.acquisition = acquisition
        self.size = size
        self.edge = 1.0 / (size * acquisition.scale)  # one pixel in canonical units
        angle = np.deg2rad(acquisition.rotation_deg)
        self._cos, self._sin = float(np.cos(angle)), float(np.sin(angle))
        pixels = (np.arange(size, dtype=np.float32) + 0.5) / size
        x, y = np.meshgrid(pixels, pixels)
        x = (x - 0.5 - acquisition.shift_u) / acquisition.scale
        y = (y - 0.5 - acquisition.shift_v) / acquisition.scale
        self.u = (0.5 + self._cos * x + self._sin * y).astype(np.float32)
        self.v = (0.5 - self._sin * x + self._cos * y).astype(np.float32)
        self.costophrenic = anatomy.costophrenic + acquisition.inspiration
        self.dome_top = {
            "right": anatomy.right_dome + acquisition.inspiration,
            "left": anatomy.left_dome + acquisition.inspiration,
        }

    def to_pixels(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Canonical coordinates to continuous pixel coordinates (pixel ``j`` spans ``[j, j+1)``)."""
        du, dv = np.asarray(u) - 0.5, np.asarray(v) - 0.5
        scale = self.acquisition.scale
        x = 0.5 + self.acquisition.shift_u + scale * (self._cos * du - self._sin * dv)
        y = 0.5 + self.acquisition.shift_v + scale * (self._sin * du + self._cos * dv)
        return x * self.size, y * self.size

    # ---- the walls of the lung field, any arrays of canonical coordinates -------------
    def lateral(self, side: str, u: np.ndarray) -> np.ndarray:
        """Distance from the midline towards the side's chest wall (negative on the other side)."""
        return SIDE_SIGN[side] * (u - 0.5)

    def lateral_wall(self, v: np.ndarray) -> np.ndarray:
        a = self.anatomy
        height = np.clip((self.costophrenic - v) / (self.costophrenic - a.lung_apex), 0.0, None)
        return a.lung_half_width - (a.lung_half_width - LATERAL_WALL_TOP) * height**2

    def medial_wall(self, side: str, v: np.ndarray) -> np.ndarray:
        a = self.anatomy
        if side == "right":  # superior vena cava, a little wider above the heart
            return a.mediastinum_half_width + 0.008 * smoothstep(v, 0.25, 0.4)
        # aortic knob, then the pulmonary trunk down to the heart
        knob = a.aortic_knob * np.exp(-(((v - 0.29) / 0.035) ** 2))
        return a.mediastinum_half_width + np.maximum(knob, 0.018 * smoothstep(v, 0.3, 0.42))

    def dome(self, side: str, s: np.ndarray) -> np.ndarray:
        """The hemidiaphragm: a parabola from its dome down to the costophrenic angle."""
        top = self.dome_top[side]
        curvature = (self.costophrenic - top) / (self.anatomy.lung_half_width - DOME_PEAK) ** 2
        return top + curvature * (s - DOME_PEAK) ** 2

    def apex_cap(self, s: np.ndarray) -> np.ndarray:
        return self.anatomy.lung_apex + APEX_CURVATURE * (s - APEX_CENTRE) ** 2

    def heart_margin(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Signed margin of the cardiac ellipse (positive inside)."""
        a = self.anatomy
        cos, sin = math.cos(math.radians(a.heart_tilt_deg)), math.sin(math.radians(a.heart_tilt_deg))
        du = u - (0.5 + a.heart_shift)
        dv = v - (a.heart_top + a.heart_half_height)
        along = cos * du + sin * dv
        across = -sin * du + cos * dv
        radius = np.sqrt((along / a.heart_half_width) ** 2 + (across / a.heart_half_height) ** 2)
        return (1.0 - radius) * min(a.heart_half_width, a.heart_half_height)

    def lung_margin_at(
        self, side: str, u: np.ndarray, v: np.ndarray, heart_margin: np.ndarray | None = None
    ) -> np.ndarray:
        """Signed margin of the side's lung field (positive inside, about the distance to its border)."""
        s = self.lateral(side, u)
        return np.minimum.reduce(
            [
                s - self.medial_wall(side, v),
                self.lateral_wall(v) - s,
                self.dome(side, s) - v,
                v - self.apex_cap(s),
                -(self.heart_margin(u, v) if heart_margin is None else heart_margin),
            ]
        )

    def pleural_margin_at(self, side: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Distance inward from the chest wall and apex only (for pleural lines along the periphery)."""
        s = self.lateral(side, u)
        return np.minimum(self.lateral_wall(v) - s, v - self.apex_cap(s))

    def relative_height(self, v: np.ndarray) -> np.ndarray:
        """0 at the apices, 1 at the costophrenic angles."""
        return (v - self.anatomy.lung_apex) / (self.costophrenic - self.anatomy.lung_apex)

    def relative_lateral(self, side: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """0 at the mediastinum, 1 at the chest wall."""
        s = self.lateral(side, u)
        medial = self.medial_wall(side, v)
        return (s - medial) / (self.lateral_wall(v) - medial)

    def point(self, side: str, height: float, lateral: float) -> tuple[float, float]:
        """Canonical ``(u, v)`` of relative height/lateral position in the side's lung."""
        v = self.anatomy.lung_apex + height * (self.costophrenic - self.anatomy.lung_apex)
        medial = float(self.medial_wall(side, v))
        s = medial + lateral * (float(self.lateral_wall(v)) - medial)
        return 0.5 + SIDE_SIGN[side] * s, v

    def hilum(self, side: str) -> tuple[float, float]:
        height = 0.5 if side == "right" else 0.46  # the left hilum sits a little higher
        return self.point(side, height, 0.12)

    # ---- grids -------------------------------------------------------------------------
    @cached_property
    def _heart_margin(self) -> np.ndarray:
        return self.heart_margin(self.u, self.v)

    @cached_property
    def heart(self) -> np.ndarray:
        return soft(self._heart_margin, self.edge)

    @cached_property
    def _lung_margins(self) -> dict[str, np.ndarray]:
        return {side: self.lung_margin_at(side, self.u, self.v, self._heart_margin) for side in SIDES}

    def lung(self, side: str) -> np.ndarray:
        """Soft mask of the side's lung field."""
        return self._lungs[side]

    @cached_property
    def _lungs(self) -> dict[str, np.ndarray]:
        return {side: soft(self._lung_margins[side], self.edge) for side in SIDES}

    @cached_property
    def lungs(self) -> np.ndarray:
        return self._lungs["right"] + self._lungs["left"]

    @cached_property
    def body_profile(self) -> np.ndarray:
        """Soft-tissue thickness across the body, 1 at the midline, 0 outside the body."""
        a = self.anatomy
        s = np.abs(self.u - 0.5)
        half_width = NECK_HALF_WIDTH + (a.body_half_width - NECK_HALF_WIDTH) * smoothstep(self.v, -0.02, 0.2)
        x = s / half_width
        shoulders = self.v - (0.0 + 1.1 * np.clip(s - NECK_HALF_WIDTH, 0.0, None) ** 2)
        inside = soft(np.minimum(half_width - s, np.maximum(shoulders, NECK_HALF_WIDTH - s)), 2 * self.edge)
        return np.sqrt(np.clip(1.0 - x * x, 0.0, 1.0)) * inside

    @cached_property
    def air(self) -> np.ndarray:
        """Attenuation removed by the air in the lungs; an opacity gives some of it back."""
        margins = np.maximum(self._lung_margins["right"], self._lung_margins["left"])
        depth = np.sqrt(np.clip(margins / 0.05, 0.0, 1.0))
        # soft tissue over the apices and the posterior recesses behind the domes
        height = self.relative_height(self.v)
        overlap = 1.0 - 0.3 * (1.0 - smoothstep(height, 0.0, 0.22)) - 0.25 * smoothstep(height, 0.62, 1.05)
        air = self.anatomy.lung_air * self.anatomy.body_thickness * (0.45 + 0.55 * depth) * overlap
        return air * self.body_profile * self.lungs

    def lung_mask(self) -> np.ndarray:
        """uint8 lung-field labels: 0 background, 1 the patient's right lung, 2 the left lung."""
        mask = np.zeros((self.size, self.size), dtype=np.uint8)
        mask[self._lungs["right"] > 0.5] = 1
        mask[self._lungs["left"] > 0.5] = 2
        return mask


@dataclass
class NormalChest:
    """The normal radiograph's attenuation, split so that findings can edit it.

    ``density`` is everything but the lung markings; ``vessels`` is the markings map in [0, 1]
    (scaled by ``VESSEL_DENSITY`` and by each finding's markings factor when composed).
    """

    density: np.ndarray
    vessels: np.ndarray


def render_normal(geometry: ChestGeometry) -> NormalChest:
    """Draw body, lungs, heart, mediastinum, spine, ribs, clavicles, hila and lung markings."""
    g, a = geometry, geometry.anatomy
    u, v, edge = g.u, g.v, g.edge
    body = g.body_profile
    density = a.body_thickness * body - g.air
    density += 0.03 * g.heart * body
    density += _spine(g)
    not_lung = 1.0 - g.lungs
    density -= 0.13 * not_lung * _airways(g)
    for side in SIDES:
        density += 0.14 * np.exp(-(disc_distance(u, v, g.hilum(side)) / 0.045) ** 2) * g.lung(side)
    if a.stomach_bubble:
        centre = (0.5 + SIDE_SIGN["left"] * 0.17, g.dome_top["left"] + 0.065)
        bubble = np.hypot((u - centre[0]) / 0.055, (v - centre[1]) / 0.032)
        density -= a.stomach_bubble * soft((1.0 - bubble) * 0.032, 2 * edge)
    if a.breast_shadow:
        for side in SIDES:
            centre = (0.5 + SIDE_SIGN[side] * 0.26, g.costophrenic - 0.09)
            fades_upwards = smoothstep(v, centre[1] - 0.15, centre[1] + 0.03)
            density += a.breast_shadow * soft(0.17 - disc_distance(u, v, centre), 3 * edge) * fades_upwards * body
    ribs, clavicles = _bones(g)
    density += (0.13 * ribs + 0.22 * clavicles) * (0.6 + 0.4 * body)
    rng = np.random.default_rng(a.vessel_seed)
    texture = ndimage.gaussian_filter(rng.standard_normal(density.shape).astype(np.float32), 1.5 * g.size / 224)
    density += 0.022 * texture / (texture.std() + 1e-6) * g.lungs
    vessels = ndimage.gaussian_filter(_vessel_tree(g, rng), 0.6 * g.size / 224) * g.lungs
    return NormalChest(density=density.astype(np.float32), vessels=vessels.astype(np.float32))


def _spine(g: ChestGeometry) -> np.ndarray:
    column = soft(0.03 - np.abs(g.u - 0.5), 3 * g.edge)
    phase = ((g.v - 0.02) / 0.052) % 1.0
    discs = np.exp(-((np.minimum(phase, 1.0 - phase) / 0.09) ** 2))
    return 0.1 * column * (1.0 - 0.35 * discs)


def _airways(g: ChestGeometry) -> np.ndarray:
    """Trachea and main bronchi (air, darker than the mediastinum around them)."""
    carina = (0.5, 0.33)
    canvas = Canvas(g.size, g.to_pixels)
    canvas.polyline([(0.5, -0.1), carina], 0.032, 1.0)
    for side in SIDES:
        canvas.polyline([carina, (0.5 + SIDE_SIGN[side] * 0.075, 0.40)], 0.022, 1.0)
    return canvas.read()


def _bones(g: ChestGeometry) -> tuple[np.ndarray, np.ndarray]:
    """Posterior and anterior ribs (cortical rims brighter than the marrow) and the clavicles."""
    a = g.anatomy
    ribs = Canvas(g.size, g.to_pixels)
    anterior = Canvas(g.size, g.to_pixels)
    clavicles = Canvas(g.size, g.to_pixels)
    s = np.linspace(0.03, a.lung_half_width + 0.03, 24)
    for side in SIDES:
        sign = SIDE_SIGN[side]
        for k in range(10):
            row = a.rib_start + k * a.rib_spacing
            rib_v = row - 0.25 * s + (1.75 + 0.08 * k) * s**2
            inside = s <= g.lateral_wall(rib_v) + 0.025
            points = np.stack([0.5 + sign * s[inside], rib_v[inside]], axis=1)
            width = 0.019 + 0.0007 * k
            ribs.polyline(points, width, 1.0)
            ribs.polyline(points, 0.5 * width, 0.6)
        for k in range(7):
            start_v = a.rib_start + 0.07 + k * a.rib_spacing * 1.05
            start_s = float(g.lateral_wall(start_v)) + 0.02
            rib_s = np.linspace(start_s, 0.1, 8)
            points = np.stack([0.5 + sign * rib_s, start_v + 0.4 * (start_s - rib_s)], axis=1)
            anterior.polyline(points, 0.026, 0.5)
        clavicle_s = np.linspace(0.04, 0.33, 12)
        clavicle_v = 0.17 - 0.30 * clavicle_s + 0.2 * clavicle_s**2 + 0.012 * np.sin(clavicle_s * 16.0)
        clavicles.polyline(np.stack([0.5 + sign * clavicle_s, clavicle_v], axis=1), 0.022, 1.0)
        clavicles.polyline(np.stack([0.5 + sign * clavicle_s, clavicle_v], axis=1), 0.011, 0.7)
    return ribs.read() + 0.8 * anterior.read(), clavicles.read()


def _vessel_tree(g: ChestGeometry, rng: np.random.Generator) -> np.ndarray:
    """Pulmonary vessels branching from each hilum, fixed per patient (``rng`` seeded by the anatomy).

    Six trunks per lung, each branching in two at every one of four levels; a level is drawn
    for all branches at once (vectorised), its width and brightness shrinking level by level.
    """
    starts, directions, lengths, signs = [], [], [], []
    for side in SIDES:
        hilum = g.hilum(side)
        for angle in (-80.0, -50.0, -22.0, 8.0, 38.0, 68.0):
            direction = math.radians(angle + rng.uniform(-8.0, 8.0))
            starts.append(hilum)
            directions.append(direction)
            lengths.append(0.27 * _reach(g, side, hilum, direction))
            signs.append(SIDE_SIGN[side])
    start, direction = np.array(starts), np.array(directions)
    length, sign = np.array(lengths), np.array(signs)
    canvas = Canvas(g.size, g.to_pixels)
    width, value = 0.008, 1.0
    for level in range(5):
        bent = direction + rng.uniform(-0.25, 0.25, direction.shape)
        middle = start + 0.5 * length[:, None] * np.stack([sign * np.cos(bent), np.sin(bent)], axis=1)
        end = middle + 0.5 * length[:, None] * np.stack([sign * np.cos(direction), np.sin(direction)], axis=1)
        for points in np.stack([start, middle, end], axis=1):
            canvas.polyline(points, width, value)
        turns = np.radians(rng.uniform(16.0, 32.0, (len(direction), 2))) * np.array([-1.0, 1.0])
        direction = (direction[:, None] + turns).ravel()
        length = (length[:, None] * rng.uniform(0.62, 0.8, (len(length), 2))).ravel()
        start, sign = np.repeat(end, 2, axis=0), np.repeat(sign, 2)
        width, value = width * 0.72, value * 0.8
    return canvas.read()


def _reach(g: ChestGeometry, side: str, start: tuple[float, float], direction: float) -> float:
    """How far the lung extends from ``start`` along ``direction`` (0 = lateral, positive = down)."""
    steps = np.linspace(0.0, 0.6, 61)
    u = start[0] + SIDE_SIGN[side] * math.cos(direction) * steps
    v = start[1] + math.sin(direction) * steps
    outside = np.flatnonzero(g.lung_margin_at(side, u, v)[5:] < 0)
    return float(steps[5 + outside[0]]) if outside.size else 0.6


def expose(density: np.ndarray, acquisition: Acquisition, rng: np.random.Generator) -> np.ndarray:
    """Attenuation to a displayed radiograph in [0, 1] (bright = dense): exposure, window, noise, blur."""
    k = acquisition.exposure
    image = (1.0 - np.exp(-k * np.clip(density, 0.0, None))) / (1.0 - math.exp(-k * REFERENCE_DENSITY))
    image = np.clip(image, 0.0, 1.0) ** acquisition.gamma
    image = (image - 0.5) * acquisition.contrast + 0.5 + acquisition.brightness
    # noise per pixel as a 224-pixel detector would give it, averaged down in smaller images
    noise = acquisition.noise * min(1.0, image.shape[0] / 224.0)
    image += noise * np.sqrt(np.clip(image, 0.0, 1.0) + 0.05) * rng.standard_normal(image.shape).astype(np.float32)
    image = ndimage.gaussian_filter(image, acquisition.blur_px * image.shape[0] / 224.0)
    return np.clip(image, 0.0, 1.0).astype(np.float32)
