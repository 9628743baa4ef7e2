"""Run ``scripts/extract_findings.py`` in a real subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CLI = Path(__file__).resolve().parents[1] / "scripts" / "extract_findings.py"


def run_cli(*args: object, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The CLI's exit status and output (text); ``env`` adds to this process's environment."""
    return subprocess.run(
        [sys.executable, str(CLI), *map(str, args)], env={**os.environ, **(env or {})}, cwd=cwd,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def llm_args(server, reports: Path, out: Path) -> list[object]:
    """Arguments for the llm backend against a fake server (no progress bar, fast retries)."""
    return ["--backend", "llm", "--base-url", server.base_url, "--model", "fake-model", "--input", reports,
            "--output", out, "--no-progress", "--backoff", "0.01"]  # fmt: skip
