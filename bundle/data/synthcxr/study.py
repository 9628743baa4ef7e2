"""One synthetic study: a patient's chest, its findings drawn on it, its report and its ground truth.

Every random choice comes from a generator seeded by the study's seed and a fixed purpose
(acquisition, sampling, drawing, noise, report), so a study is the same whatever else is
generated, and the same patient and acquisition can be drawn with and without a finding:
the difference is the finding alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ...findings import Finding
from .anatomy import (
    VESSEL_DENSITY,
    Acquisition,
    ChestGeometry,
    PatientAnatomy,
    expose,
    render_normal,
    sample_acquisition,
    sample_anatomy,
)
from .findings_render import adjust_anatomy, render_finding
from .recipes import CATEGORY_RECIPES, FindingSpec
from .reports import write_report
from .sampling import sample_findings

Seed = int | Sequence[int]
ACQUISITION, SAMPLING, DRAWING, NOISE, REPORT = range(5)


def seeded_rng(seed: Seed, purpose: int) -> np.random.Generator:
    """An independent generator for one purpose of one seed (``seed`` may be a tuple, e.g. (run, patient, study))."""
    entropy = [int(s) for s in np.atleast_1d(seed)]
    return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(purpose,)))


def patient_anatomy(patient_seed: Seed) -> PatientAnatomy:
    """The anatomy of the patient with this seed (the same for all of their studies)."""
    return sample_anatomy(seeded_rng(patient_seed, 0))


@dataclass
class SyntheticStudy:
    """A generated study.

    Attributes:
        image: ``[H, W]`` uint8 radiograph, PA display (the patient's left on the image's right).
        lung_mask: ``[H, W]`` uint8, 0 background, 1 right lung field, 2 left lung field.
        lesion_mask: ``[H, W]`` uint8, 0 background, ``k`` = the ``k``-th finding of ``findings``
            (1-based); the drawn findings come first, so every ``k`` is a present or uncertain one.
        report: the free-text report.
        findings: ground truth, ``bundle.findings.Finding`` records (drawn, then negated as absent).
        specs: the drawn findings as rendered.
    """

    image: np.ndarray
    lung_mask: np.ndarray
    lesion_mask: np.ndarray
    report: str
    findings: list[Finding]
    specs: list[FindingSpec]
    anatomy: PatientAnatomy
    acquisition: Acquisition


def render_chest(
    anatomy: PatientAnatomy,
    acquisition: Acquisition,
    specs: Sequence[FindingSpec],
    size: int,
    drawing_rng: np.random.Generator,
    noise_rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw a chest with its findings: ``(image uint8, lung mask uint8, lesion mask uint8)``."""
    geometry = ChestGeometry(adjust_anatomy(anatomy, specs), acquisition, size)
    normal = render_normal(geometry)
    density = normal.density.copy()
    markings = np.ones_like(density)
    extents = []
    for spec in specs:
        layer = render_finding(geometry, spec, drawing_rng)
        density += layer.density
        markings *= layer.markings
        extents.append(layer.extent > 0.5)
    image = expose(density + VESSEL_DENSITY * normal.vessels * markings, acquisition, noise_rng)
    lesion_mask = np.zeros((size, size), dtype=np.uint8)
    # large regions first, so that a small lesion inside a large one keeps its own label
    for index in sorted(range(len(extents)), key=lambda i: -int(extents[i].sum())):
        lesion_mask[extents[index]] = index + 1
    image8 = np.round(image * 255.0).astype(np.uint8)
    return image8, geometry.lung_mask(), lesion_mask


def generate_study(
    seed: Seed,
    size: int = 224,
    specs: Sequence[FindingSpec] | None = None,
    patient_seed: Seed | None = None,
    categories: Sequence[str] | None = None,
    negatable: Sequence[str] | None = None,
    normal_fraction: float = 0.25,
    follow_up: bool = False,
) -> SyntheticStudy:
    """Generate one study in memory.

    Args:
        seed: the study's seed (an int or a tuple of ints).
        size: image side in pixels.
        specs: the findings to draw; sampled from ``categories`` when None.
        patient_seed: the patient's seed (default: ``seed``); studies of one patient share the anatomy.
        categories: categories that may be sampled (default: all).
        negatable: categories the report may deny (default: ``categories``).
        normal_fraction: share of sampled studies without findings.
        follow_up: whether the patient has an earlier study (report comparison line).
    """
    if size < 32:
        raise ValueError(f"SynthCXR images need at least 32 pixels a side to show anatomy, got size={size}")
    categories = list(CATEGORY_RECIPES if categories is None else categories)
    anatomy = patient_anatomy(seed if patient_seed is None else patient_seed)
    acquisition = sample_acquisition(seeded_rng(seed, ACQUISITION))
    if specs is None:
        specs = sample_findings(seeded_rng(seed, SAMPLING), categories, normal_fraction)
    specs = list(specs)
    image, lung_mask, lesion_mask = render_chest(
        anatomy, acquisition, specs, size, seeded_rng(seed, DRAWING), seeded_rng(seed, NOISE)
    )
    report, findings = write_report(
        specs, seeded_rng(seed, REPORT), categories if negatable is None else negatable, follow_up
    )
    return SyntheticStudy(image, lung_mask, lesion_mask, report, findings, specs, anatomy, acquisition)
