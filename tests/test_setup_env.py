"""scripts/setup_env.sh in a real bash: sourcing leaves the caller's shell as it was; running it fails hard."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "setup_env.sh"
REQUIREMENT_FILES = ("requirements.txt", "requirements-dev.txt", "constraints.txt")
# The caller's options as bash prints them to restore them. Into a file, not "$(...)": a command
# substitution runs without errexit, so it would not show set -e.
SNAPSHOT = 'snapshot() { set +o > "$1"; shopt -p >> "$1"; }'


def executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def fake_venv(tmp_path: Path, installed: bool) -> Path:
    """A venv the script takes as up to date (its stamp matches), or one whose install does not import.

    No pip ever reaches the network: the fake pip does nothing."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    executable(venv / "bin/python", "#!/bin/sh\nexit 1\n")
    executable(venv / "bin/pip", "#!/bin/sh\nexit 0\n")
    if installed:
        digest = hashlib.sha256(b"".join((REPO / name).read_bytes() for name in REQUIREMENT_FILES)).hexdigest()
        (venv / ".medfilip-requirements").write_text(f"{digest}  -\n")  # what `sha256sum` of stdin prints
    return venv


def bash(script: str, cwd: Path, venv: Path, path_prefix: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "MEDFILIP_VENV": str(venv), "PATH": path_prefix + os.environ["PATH"]}
    return subprocess.run(["bash", "--norc", "--noprofile", "-c", f"{SNAPSHOT}\n{script}"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("caller_options", ["", "set -o noclobber; shopt -s nullglob"])
def test_sourcing_keeps_the_callers_shell_options_and_sets_the_environment(tmp_path, caller_options):
    venv = fake_venv(tmp_path, installed=True)
    result = bash(f"""{caller_options}
        snapshot before.txt
        source {SCRIPT}; status=$?
        snapshot after.txt
        diff before.txt after.txt && echo "options unchanged"
        false
        echo "still running after a failing command, source status $status"
        echo "HF_HUB_OFFLINE=$HF_HUB_OFFLINE first PATH entry=${{PATH%%:*}} PYTHONPATH=${{PYTHONPATH%%:*}}"
    """, tmp_path, venv)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "options unchanged" in result.stdout, result.stdout
    assert "still running after a failing command, source status 0" in result.stdout
    assert f"HF_HUB_OFFLINE=1 first PATH entry={venv}/bin PYTHONPATH={REPO}" in result.stdout
    assert "[setup]" not in result.stdout + result.stderr  # up to date: nothing is installed


def test_a_failed_install_returns_from_source_instead_of_closing_the_shell(tmp_path):
    venv = fake_venv(tmp_path, installed=False)
    result = bash(f"""
        snapshot before.txt
        source {SCRIPT}; echo "source status $?"
        snapshot after.txt
        diff before.txt after.txt && echo "options unchanged"
    """, tmp_path, venv)
    assert "the installed environment does not import" in result.stderr
    assert "source status 1" in result.stdout and "options unchanged" in result.stdout, result.stdout
    assert not (venv / ".medfilip-requirements").exists()


def test_running_it_stops_at_the_first_error(tmp_path):
    """Executed, the script keeps `set -euo pipefail`: a failing `python3 -m venv` ends it with that status."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    executable(fake_bin / "python3", "#!/bin/sh\necho 'no venv module' >&2\nexit 3\n")
    result = bash(f"bash {SCRIPT}", tmp_path, tmp_path / "missing-venv", path_prefix=f"{fake_bin}:")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "no venv module" in result.stderr and "installing" not in result.stdout
