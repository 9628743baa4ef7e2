"""Soft (anti-aliased) shapes on coordinate grids, and thick polylines on a supersampled canvas.

Anatomy and findings are drawn analytically in canonical chest coordinates ``(u, v)``:
``u`` runs left to right across the image and ``v`` top to bottom, both from 0 to 1, and the
acquisition's rotation, scale and shift are folded into the grids. A shape is a signed margin
(positive inside, in canonical units) turned into a soft mask over about one pixel, which
needs no blurring and stays sharp at any image size. Thin curved structures (ribs, clavicles,
vessels) are polylines, drawn with PIL's C line rasteriser on a 2x canvas and box-downsampled:
much faster than evaluating hundreds of curves on full grids with numpy.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw

SUPERSAMPLE = 2


def soft(margin: np.ndarray, edge: float) -> np.ndarray:
    """Soft mask in [0, 1] from a signed margin (positive inside), ramping over ``edge`` units."""
    return np.clip(margin / edge + 0.5, 0.0, 1.0)


def smoothstep(x: np.ndarray | float, low: float, high: float) -> np.ndarray:
    """Hermite ramp from 0 at ``low`` to 1 at ``high``."""
    t = np.clip((np.asarray(x) - low) / (high - low), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def band(x: np.ndarray, low: float, high: float, ramp: float) -> np.ndarray:
    """Soft indicator of ``low <= x <= high`` with linear ramps of width ``ramp`` on both sides."""
    return np.clip(np.minimum(x - low, high - x) / ramp + 0.5, 0.0, 1.0)


def disc_distance(u: np.ndarray, v: np.ndarray, centre: tuple[float, float]) -> np.ndarray:
    """Euclidean distance of every grid point to ``centre`` (canonical units)."""
    return np.hypot(u - centre[0], v - centre[1])


class Canvas:
    """A 2x supersampled 8-bit canvas for thick polylines, read back as a float map in [0, 1].

    Polylines are collected and mapped to pixels in one vectorised call when the canvas is read.

    Args:
        size: output side in pixels.
        to_pixels: maps canonical ``(u, v)`` arrays to continuous output pixel coordinates ``(x, y)``.
    """

    def __init__(self, size: int, to_pixels: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]) -> None:
        self.size = size
        self.to_pixels = to_pixels
        self.lines: list[tuple[np.ndarray, float, float]] = []

    def polyline(self, points: Sequence[tuple[float, float]] | np.ndarray, width: float, value: float) -> None:
        """Add a polyline through canonical points, ``width`` in canonical units, ``value`` in [0, 1]."""
        self.lines.append((np.asarray(points, dtype=np.float64).reshape(-1, 2), width, value))

    def read(self) -> np.ndarray:
        """Draw the polylines and box-downsample to ``size`` x ``size``; float32 in [0, 1]."""
        image = Image.new("L", (self.size * SUPERSAMPLE, self.size * SUPERSAMPLE), 0)
        if self.lines:
            draw = ImageDraw.Draw(image)
            points = np.concatenate([line[0] for line in self.lines])
            x, y = self.to_pixels(points[:, 0], points[:, 1])
            # PIL puts integer coordinates at pixel centres; continuous coordinates have them at +0.5.
            xy = np.stack([x, y], axis=1) * SUPERSAMPLE - 0.5
            start = 0
            for line_points, width, value in self.lines:
                stop = start + len(line_points)
                pixel_width = max(1, int(round(width * self.size * SUPERSAMPLE)))
                # no round joints: the curves bend little per vertex, and joints cost a pie slice each in Python
                draw.line(xy[start:stop].ravel().tolist(), fill=int(round(255 * value)), width=pixel_width)
                start = stop
        small = image.resize((self.size, self.size), Image.Resampling.BOX)
        return np.asarray(small, dtype=np.float32) / 255.0
