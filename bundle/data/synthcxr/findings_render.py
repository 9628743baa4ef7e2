"""Drawing a finding from its recipe: one primitive per shape, one effect per sign.

A finding's layer is made of its attributes only: the shapes give the pattern and the
extent (the lesion mask), the density turns the pattern into added attenuation (opaque:
tissue or fluid replaces air, white) or removed attenuation (lucent: lung tissue replaced
by air, black), the zone and laterality say where, the size class and severity how big,
and the signs add their effect (walls, air bronchograms, septal lines, absent markings).
Some signs change the anatomy itself before the chest is drawn (an enlarged heart,
hyperinflated lungs, an elevated hemidiaphragm from volume loss): see ``adjust_anatomy``.
Uncertain findings are drawn at half strength, the faint image a radiologist would hedge on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np
from scipy import ndimage

from ...findings import Presence
from .anatomy import SIDE_SIGN, ChestGeometry, PatientAnatomy
from .drawing import Canvas, band, disc_distance, smoothstep, soft
from .recipes import FindingSpec

SEVERITY_SCALE = {None: 1.0, "minimal": 0.55, "mild": 0.75, "moderate": 1.0, "severe": 1.3}
FAINT = 0.5  # strength of an uncertain finding
SIZE_RADIUS = {"small": 0.034, "medium": 0.05, "large": 0.075, "diffuse": 0.1}
# Where each zone lies in a lung: (relative height 0 apex..1 costophrenic angle), (relative lateral 0 medial..1 wall).
ZONE_BOXES = {
    "apex": ((0.0, 0.16), (0.2, 0.85)),
    "upper zone": ((0.14, 0.38), (0.2, 0.85)),
    "mid zone": ((0.38, 0.62), (0.25, 0.85)),
    "lower zone": ((0.6, 0.84), (0.3, 0.85)),
    "base": ((0.8, 1.05), (0.15, 1.0)),
    "perihilar": ((0.3, 0.66), (0.0, 0.42)),
    "periphery": ((0.12, 0.88), (0.72, 1.0)),
}
# Direction of a wedge from the hilum per zone (degrees; 0 = towards the chest wall, positive = down).
WEDGE_DIRECTION = {"upper zone": -55.0, "mid zone": -5.0, "lower zone": 38.0}
# Attenuation per unit pattern: opaque = (share of the lung's air given back, solid tissue added);
# lucent = attenuation removed (the lung tissue itself).
OPAQUE = {
    "round": (0.0, 0.36),
    "linear band": (0.55, 0.05),
    "wedge": (0.85, 0.03),
    "patchy": (0.6, 0.02),
    "meniscus": (0.97, 0.04),
    "pleural line": (0.9, 0.18),
    "enlarged silhouette": (0.0, 0.0),
    "reticular": (0.0, 0.34),
}
PLEURA_DENSITY = 0.12
LUCENT = {"round": 0.16, "patchy": 0.11, "pleural line": 0.26}


@dataclass
class Shape:
    """A drawn primitive: ``pattern`` (what is drawn, [0, 1]) within ``extent`` (the lesion region)."""

    pattern: np.ndarray
    extent: np.ndarray
    centre: tuple[float, float] | None = None
    radius: float | None = None
    outline: np.ndarray | None = None  # a thin tissue line bounding the shape (the visceral pleura)


@dataclass
class FindingLayer:
    """A finding's edit of the normal chest.

    ``density``: attenuation added (negative where lucent); ``markings``: factor on the lung
    markings (1 = unchanged); ``extent``: soft lesion region in [0, 1] (mask = extent > 0.5).
    """

    density: np.ndarray
    markings: np.ndarray
    extent: np.ndarray


def strength(spec: FindingSpec) -> tuple[float, float]:
    """``(scale, amplitude)``: how big (from the severity) and how dense (faint when uncertain)."""
    scale = SEVERITY_SCALE[spec.severity]
    return scale, (FAINT if spec.presence is Presence.UNCERTAIN else 1.0) * (0.85 + 0.15 * scale)


def adjust_anatomy(anatomy: PatientAnatomy, specs: Sequence[FindingSpec]) -> PatientAnatomy:
    """The anatomy as the findings change it: enlarged heart, hyperinflation, volume loss."""
    for spec in specs:
        scale, amplitude = strength(spec)
        change = scale * amplitude
        if "enlarged silhouette" in spec.recipe.shapes:
            anatomy = replace(
                anatomy,
                heart_half_width=anatomy.heart_half_width * (1.0 + 0.42 * change),
                heart_half_height=anatomy.heart_half_height * (1.0 + 0.15 * change),
                heart_shift=anatomy.heart_shift + 0.02 * change,
            )
        if "hyperinflation" in spec.recipe.signs:
            anatomy = replace(
                anatomy,
                right_dome=anatomy.right_dome + 0.06 * change,
                left_dome=anatomy.left_dome + 0.06 * change,
                costophrenic=anatomy.costophrenic + 0.03 * change,
                lung_half_width=anatomy.lung_half_width + 0.01 * change,
                heart_half_width=anatomy.heart_half_width * (1.0 - 0.08 * change),
                lung_air=anatomy.lung_air * (1.0 + 0.1 * change),
            )
        if "volume loss" in spec.recipe.signs:
            lift = 0.03 * change
            if "right" in spec.sides:
                anatomy = replace(anatomy, right_dome=anatomy.right_dome - lift)
            if "left" in spec.sides:
                anatomy = replace(anatomy, left_dome=anatomy.left_dome - lift)
    return anatomy


def render_finding(geometry: ChestGeometry, spec: FindingSpec, rng: np.random.Generator) -> FindingLayer:
    """Draw one present or uncertain finding on the (already adjusted) chest geometry."""
    g, recipe = geometry, spec.recipe
    scale, amplitude = strength(spec)
    density = np.zeros_like(g.u)
    markings = np.ones_like(g.u)
    extent = np.zeros_like(g.u)
    for side in spec.sides or (None,):
        union = Shape(pattern=np.zeros_like(g.u), extent=np.zeros_like(g.u))
        change = np.zeros_like(g.u)  # composed shapes overlap: the strongest one counts, not their sum
        for shape_name in recipe.shapes:
            shape = SHAPE_DRAWERS[shape_name](g, side, spec, scale, rng)
            if recipe.density == "opaque":
                share, solid = OPAQUE[shape_name]
                change = np.maximum(change, shape.pattern * (share * g.air + solid))
            else:
                change = np.minimum(change, -shape.pattern * LUCENT[shape_name] * g.body_profile)
            union = Shape(
                pattern=np.maximum(union.pattern, shape.pattern),
                extent=np.maximum(union.extent, shape.extent),
                centre=shape.centre or union.centre,
                radius=shape.radius or union.radius,
            )
            if shape.outline is not None:
                density += amplitude * PLEURA_DENSITY * shape.outline
        density += amplitude * change
        for sign in recipe.signs:
            sign_density, sign_markings = SIGN_DRAWERS[sign](g, side, union, scale, rng)
            density += amplitude * sign_density
            markings *= sign_markings
        extent = np.maximum(extent, union.extent)
    return FindingLayer(density=density, markings=markings, extent=extent)


# ---- shapes ------------------------------------------------------------------------------
def zone_weight(g: ChestGeometry, side: str, zone: str, grow: float = 0.0, ramp: float = 0.08) -> np.ndarray:
    """Soft indicator of a zone of one lung (``grow`` widens it, in relative units)."""
    (t0, t1), (r0, r1) = ZONE_BOXES[zone]
    height = g.relative_height(g.v)
    lateral = g.relative_lateral(side, g.u, g.v)
    return band(height, t0 - grow, t1 + grow, ramp) * band(lateral, r0 - grow, r1 + grow, ramp) * g.lung(side)


def focal_centre(
    g: ChestGeometry, side: str, zone: str, radius: float, rng: np.random.Generator
) -> tuple[float, float]:
    """A random point of the zone at least about ``radius`` inside the lung (best of a few tries)."""
    (t0, t1), (r0, r1) = ZONE_BOXES[zone]
    best, best_margin = None, -np.inf
    for _ in range(24):
        point = g.point(side, rng.uniform(t0, t1), rng.uniform(r0, r1))
        margin = float(g.lung_margin_at(side, np.float64(point[0]), np.float64(point[1])))
        if margin > 0.8 * radius:
            return point
        if margin > best_margin:
            best, best_margin = point, margin
    return best


def smooth_noise(g: ChestGeometry, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Gaussian random field with unit standard deviation, correlation length ``sigma`` (canonical)."""
    field = ndimage.gaussian_filter(rng.standard_normal(g.u.shape).astype(np.float32), sigma * g.size)
    return field / (field.std() + 1e-6)


def draw_round(
    g: ChestGeometry, side: str | None, spec: FindingSpec, scale: float, rng: np.random.Generator
) -> Shape:
    """A round lesion: spherical profile when opaque (lobulated when solid), flat lucency when lucent."""
    radius = SIZE_RADIUS[spec.recipe.size] * scale * (0.5 if "calcified" in spec.recipe.signs else 1.0)
    centre = focal_centre(g, side, spec.zone, radius, rng)
    angle = np.arctan2(g.v - centre[1], g.u - centre[0])
    # solid lesions are lobulated; air-filled spaces and calcifications keep a round wall
    smooth = spec.recipe.density == "lucent" or "calcified" in spec.recipe.signs
    lobulation = 0.0 if smooth else (0.12 if spec.recipe.size == "large" else 0.05)
    phase3, phase5 = rng.uniform(0.0, 2 * math.pi), rng.uniform(0.0, 2 * math.pi)
    local = radius * (1.0 + lobulation * (np.sin(3 * angle + phase3) + 0.5 * np.sin(5 * angle + phase5)))
    distance = disc_distance(g.u, g.v, centre)
    inside = soft(local - distance, g.edge)
    if spec.recipe.density == "opaque":
        pattern = np.sqrt(np.clip(1.0 - (distance / local) ** 2, 0.0, 1.0)) * inside
    else:
        pattern = inside * g.lung(side)
    return Shape(pattern=pattern, extent=inside, centre=centre, radius=radius)


def draw_wedge(
    g: ChestGeometry, side: str | None, spec: FindingSpec, scale: float, rng: np.random.Generator
) -> Shape:
    """A wedge with its apex towards the hilum and its base on the pleura (lobar/segmental)."""
    hilum = g.hilum(side)
    heading = math.radians(WEDGE_DIRECTION[spec.zone] + rng.uniform(-10.0, 10.0))
    half_angle = math.radians(11.0 + 15.0 * scale)
    du = SIDE_SIGN[side] * (g.u - hilum[0])
    dv = g.v - hilum[1]
    off_axis = np.abs(np.angle(np.exp(1j * (np.arctan2(dv, du) - heading))))
    distance = np.hypot(du, dv)
    ragged = 0.5 * smooth_noise(g, rng, 0.012)
    inside = np.clip((half_angle - off_axis) / math.radians(12.0) + 0.5 + ragged, 0.0, 1.0)
    inside = inside * smoothstep(distance, 0.04, 0.12) * g.lung(side)
    # airspace disease has ill-defined margins except along the pleura
    pattern = ndimage.gaussian_filter(inside, 0.008 * g.size) * g.lung(side)
    return Shape(pattern=pattern, extent=(inside > 0.5).astype(np.float32))


def draw_patchy(
    g: ChestGeometry, side: str | None, spec: FindingSpec, scale: float, rng: np.random.Generator
) -> Shape:
    """Confluent patches: a thresholded random field within the zone (the whole lung when diffuse)."""
    diffuse = spec.recipe.size == "diffuse"
    if diffuse:
        weight = zone_weight(g, side, spec.zone, grow=0.05 + 0.12 * scale, ramp=0.25)
        field = 0.6 * smooth_noise(g, rng, 0.03) + 2.2 * weight
    else:
        radius = 0.05 + 0.05 * scale
        centre = focal_centre(g, side, spec.zone, radius, rng)
        weight = np.exp(-((disc_distance(g.u, g.v, centre) / radius) ** 2)) * g.lung(side)
        field = 0.8 * smooth_noise(g, rng, 0.03) + 2.2 * weight
    threshold = 2.4 - 1.1 * scale
    pattern = smoothstep(field, threshold - 0.3, threshold + 0.9) * g.lung(side)
    extent = ndimage.gaussian_filter(pattern, 0.02 * g.size) > 0.2
    return Shape(pattern=pattern, extent=extent.astype(np.float32) * g.lung(side))


def draw_meniscus(
    g: ChestGeometry, side: str | None, spec: FindingSpec, scale: float, rng: np.random.Generator
) -> Shape:
    """Fluid at the base, its surface rising towards the chest wall (a meniscus)."""
    depth = 0.36 * scale**1.4
    lateral = np.clip(g.relative_lateral(side, g.u, g.v), 0.0, 1.0)
    surface = 1.0 - depth * (0.75 + 0.5 * lateral**2)
    pattern = smoothstep(g.relative_height(g.v) - surface, -0.02, 0.04) * g.lung(side)
    return Shape(pattern=pattern, extent=pattern)


def draw_pleural_line(
    g: ChestGeometry, side: str | None, spec: FindingSpec, scale: float, rng: np.random.Generator
) -> Shape:
    """A crescent along the pleura of the apex or the lateral wall, bounded by a thin pleural line.

    Lucent: the pleural space filled with air (pneumothorax), opaque: thickened pleura.
    """
    height = g.relative_height(g.v)
    if spec.zone == "apex":
        along = 1.0 - smoothstep(height, 0.2, 0.55)
    else:
        along = smoothstep(height, 0.0, 0.25) * (1.0 - smoothstep(height, 0.6, 0.85))
    if spec.recipe.density == "lucent":
        width = 0.09 * scale**1.5
    else:
        width = 0.016 + 0.02 * scale
    local = width * along
    distance = g.pleural_margin_at(side, g.u, g.v)
    lung = g.lung(side)
    inside = soft(local - distance, g.edge) * (along > 0.05) * lung
    line = soft(g.edge - np.abs(distance - local), g.edge) * smoothstep(along, 0.05, 0.3) * lung
    return Shape(pattern=inside, extent=inside, outline=line)


def draw_enlarged_silhouette(
    g: ChestGeometry, side: str | None, spec: FindingSpec, scale: float, rng: np.random.Generator
) -> Shape:
    """The heart above the domes; its enlargement is an anatomy change (``adjust_anatomy``)."""
    above_domes = soft(max(g.dome_top.values()) + 0.03 - g.v, g.edge)
    return Shape(pattern=np.zeros_like(g.u), extent=g.heart * above_domes)


def draw_reticular(
    g: ChestGeometry, side: str | None, spec: FindingSpec, scale: float, rng: np.random.Generator
) -> Shape:
    """A fine net of lines: zero crossings of band-passed noise, within the zone."""
    white = rng.standard_normal(g.u.shape).astype(np.float32)
    net = ndimage.gaussian_filter(white, 0.006 * g.size) - ndimage.gaussian_filter(white, 0.014 * g.size)
    lines = np.clip(1.0 - np.abs(net) / (0.35 * net.std() + 1e-6), 0.0, 1.0)
    weight = zone_weight(g, side, spec.zone, grow=0.1 * scale, ramp=0.2)
    return Shape(pattern=lines * weight * (0.4 + 0.6 * scale), extent=(weight > 0.35).astype(np.float32))


def draw_linear_band(
    g: ChestGeometry, side: str | None, spec: FindingSpec, scale: float, rng: np.random.Generator
) -> Shape:
    """Plate-like bands (a few, medium) or many short strands (diffuse), roughly horizontal."""
    strands = spec.recipe.size == "diffuse"
    count = int(round(4 + 8 * scale)) if strands else int(round(1 + 1.6 * scale))
    pattern = np.zeros_like(g.u)
    for _ in range(count):
        length = (0.03 + 0.03 * scale) if strands else (0.07 + 0.08 * scale)
        thickness = 0.006 if strands else (0.009 + 0.007 * scale)
        centre = focal_centre(g, side, spec.zone, 0.01, rng)
        tilt = math.radians(rng.uniform(-70.0, 70.0) if strands else rng.uniform(-18.0, 18.0))
        cos, sin = math.cos(tilt), math.sin(tilt)
        du, dv = g.u - centre[0], g.v - centre[1]
        along = cos * du + sin * dv
        across = -sin * du + cos * dv
        segment = soft(thickness / 2 - np.abs(across), 3 * g.edge) * soft(length / 2 - np.abs(along), 6 * g.edge)
        pattern = np.maximum(pattern, segment)
    pattern *= g.lung(side)
    extent = ndimage.gaussian_filter(pattern, 0.01 * g.size) > 0.1 if strands else pattern > 0.5
    return Shape(pattern=pattern, extent=extent.astype(np.float32))


ShapeDrawer = Callable[[ChestGeometry, str | None, FindingSpec, float, np.random.Generator], Shape]
SHAPE_DRAWERS: dict[str, ShapeDrawer] = {
    "round": draw_round,
    "linear band": draw_linear_band,
    "wedge": draw_wedge,
    "patchy": draw_patchy,
    "meniscus": draw_meniscus,
    "pleural line": draw_pleural_line,
    "enlarged silhouette": draw_enlarged_silhouette,
    "reticular": draw_reticular,
}


# ---- signs: (added density, markings factor) -----------------------------------------------
Layer = tuple[np.ndarray, np.ndarray]
SignDrawer = Callable[[ChestGeometry, str | None, Shape, float, np.random.Generator], Layer]


def sign_wall(thickness: float, density: float) -> SignDrawer:
    """A ring around a round lucency; ``thickness`` relative to the radius (at least 1.5 pixels)."""

    def draw(g: ChestGeometry, side: str | None, shape: Shape, scale: float, rng: np.random.Generator) -> Layer:
        width = max(thickness * shape.radius, 1.5 * g.edge)
        ring = soft(width / 2 - np.abs(disc_distance(g.u, g.v, shape.centre) - shape.radius - width / 2), g.edge)
        return density * ring, np.ones_like(g.u)

    return draw


def sign_calcified(
    g: ChestGeometry, side: str | None, shape: Shape, scale: float, rng: np.random.Generator
) -> Layer:
    """Calcium: a round lesion much denser than soft tissue."""
    return 0.55 * shape.pattern, np.ones_like(g.u)


def sign_absent_markings(
    g: ChestGeometry, side: str | None, shape: Shape, scale: float, rng: np.random.Generator
) -> Layer:
    """No vessels inside the lesion (air without lung tissue)."""
    return np.zeros_like(g.u), 1.0 - 0.95 * shape.pattern


def sign_blunted_angle(
    g: ChestGeometry, side: str | None, shape: Shape, scale: float, rng: np.random.Generator
) -> Layer:
    """Fluid filling the costophrenic angle, even when the effusion is tiny."""
    angle = smoothstep(g.relative_height(g.v), 0.86, 0.97) * smoothstep(g.relative_lateral(side, g.u, g.v), 0.72, 0.95)
    return 0.9 * g.air * angle * g.lung(side) * (1.0 - shape.pattern), np.ones_like(g.u)


def sign_air_bronchograms(
    g: ChestGeometry, side: str | None, shape: Shape, scale: float, rng: np.random.Generator
) -> Layer:
    """Air-filled bronchi crossing the opacity: dark branching lines inside it."""
    canvas = Canvas(g.size, g.to_pixels)
    hilum = g.hilum(side)
    for _ in range(6):
        heading = rng.uniform(-1.3, 1.3)
        points = [hilum]
        for _ in range(6):
            heading += rng.uniform(-0.12, 0.12)
            last = points[-1]
            points.append((last[0] + SIDE_SIGN[side] * 0.04 * np.cos(heading), last[1] + 0.04 * np.sin(heading)))
        canvas.polyline(np.array(points), 0.005, 1.0)
    return -0.35 * g.air * canvas.read() * shape.pattern, np.ones_like(g.u)


def sign_septal_lines(
    g: ChestGeometry, side: str | None, shape: Shape, scale: float, rng: np.random.Generator
) -> Layer:
    """Kerley B lines: short horizontal lines reaching the lateral pleura of the lower zones."""
    canvas = Canvas(g.size, g.to_pixels)
    for _ in range(int(round(3 + 4 * scale))):
        height = rng.uniform(0.6, 0.92)
        u, v = g.point(side, height, 1.0)
        inner = g.point(side, height, 0.85)
        canvas.polyline(np.array([(u, v), inner]), 0.004, 1.0)
    return 0.2 * canvas.read() * g.lung(side), np.ones_like(g.u)


def sign_via_anatomy(
    g: ChestGeometry, side: str | None, shape: Shape, scale: float, rng: np.random.Generator
) -> Layer:
    """Signs drawn by ``adjust_anatomy`` (hyperinflation, volume loss)."""
    return np.zeros_like(g.u), np.ones_like(g.u)


SIGN_DRAWERS: dict[str, SignDrawer] = {
    "blunted costophrenic angle": sign_blunted_angle,
    "absent lung markings": sign_absent_markings,
    "air bronchograms": sign_air_bronchograms,
    "volume loss": sign_via_anatomy,
    "septal lines": sign_septal_lines,
    "hyperinflation": sign_via_anatomy,
    "thick wall": sign_wall(0.45, 0.3),
    "thin wall": sign_wall(0.0, 0.22),
    "calcified": sign_calcified,
}
