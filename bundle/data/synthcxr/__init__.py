"""SynthCXR: procedural chest radiographs with reports, findings and masks, where the truth is known.

The embedded demo data set, the CI benchmark and the unit-test data. Findings are
compositions of shared visual attributes (``recipes.CATEGORY_RECIPES``), so that held-out
categories can be recognised from their description. See ``docs/data.md``.

In memory::

    study = generate_study(seed=7, size=224)
    study.image, study.report, study.findings, study.lesion_mask

On disk: ``write_dataset(out_dir, n=2000, size=224, seed=0, unseen=["mass", "bulla"])``, or
``python scripts/make_demo_data.py --out data/synthcxr``.
"""

from .dataset import GENERATOR_VERSION, StudyPlan, plan_dataset, write_dataset, write_study
from .recipes import CATEGORY_RECIPES, FindingSpec, Recipe
from .reports import CATEGORY_TERMS
from .study import SyntheticStudy, generate_study

__all__ = [
    "CATEGORY_RECIPES",
    "CATEGORY_TERMS",
    "GENERATOR_VERSION",
    "FindingSpec",
    "Recipe",
    "StudyPlan",
    "SyntheticStudy",
    "generate_study",
    "plan_dataset",
    "write_dataset",
    "write_study",
]
