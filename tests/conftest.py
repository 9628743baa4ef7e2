"""Shared test settings: offline, no telemetry, the repo on sys.path, and paths to shared data."""

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
REALDATA = REPO_ROOT.parent / "shared" / "realdata"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


# The test files that take longest (measured with --durations; each trains through the real CLI or
# runs a server), longest first. scripts/test.sh runs the files on two pytest-xdist workers in
# collection order (--dist loadfile --no-loadscope-reorder): starting with these keeps the two workers
# busy until the end instead of leaving the longest file alone on one worker for the last minutes.
LONGEST_FILES = (
    "test_compare_methods.py", "test_segmentation_covid.py", "test_finetune.py", "test_llm_server.py",
    "test_segmentation.py", "test_bundle_e2e.py", "test_audit_report.py", "test_monailabel.py",
    "test_collections_mimic.py", "test_collections_eval.py",
)  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: index for index, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def realdata() -> Path:
    if not REALDATA.is_dir():
        pytest.fail(f"the shared real-data kit is missing at {REALDATA}; clone the repo next to shared/")
    return REALDATA
