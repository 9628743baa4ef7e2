#!/usr/bin/env bash
# Set up the MONAI Label server's own environment (.monailabel-env): monailabel 0.8.5 with the
# bundle's torch/torchvision pair and what the segmentation network imports, pinned whole in
# bundle/apps/monailabel/requirements.txt. Never .venv: monailabel downgrades numpy to 1.26 and
# jsonschema to 3.2 (through pydicom-seg and dicomweb-client), which the bundle's pins exclude.
# Idempotent and cheap when done: it reinstalls only when the pins change. Every wheel (about
# 3.5 GB, most of it torch's CUDA libraries) is kept in ~/.cache/medfilip/monailabel, so a fresh
# clone installs from there without the network; the first build downloads them (minutes), and a
# change of pins only the wheels the cache does not hold.
# sam2, which monailabel requires, is an sdist whose build would pull a CUDA torch into an
# isolated build environment: it is built here against the environment's own torch, without
# its CUDA extension (SAM2_BUILD_CUDA=0; the app never runs SAM2).
# Prints the environment's python on stdout (progress goes to stderr). Start the server with
# (see docs/monailabel.md):
#   "$MEDFILIP_MONAILABEL_ENV/bin/monailabel" start_server --app bundle/apps/monailabel \
#       --studies STUDIES_DIR --host 127.0.0.1 --port 8000
set -euo pipefail
MEDFILIP_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MEDFILIP_MONAILABEL_ENV="${MEDFILIP_MONAILABEL_ENV:-$MEDFILIP_ROOT/.monailabel-env}"
REQUIREMENTS="$MEDFILIP_ROOT/bundle/apps/monailabel/requirements.txt"
SAM2_PIN="$(grep '^sam2==' "$REQUIREMENTS")"
# setup_env.sh exports PIP_CONSTRAINT with the bundle's pins (numpy 2, jsonschema 4); they are
# not this environment's, and the requirements above are complete.
unset PIP_CONSTRAINT

say() { echo "[setup-monailabel] $*" >&2; }
# pip's output on stderr, less the warnings about this machine's missing local index folders.
pip_to_stderr() { "$@" 2>&1 | { grep -v "^WARNING: Location .* is ignored" || true; } >&2; }

if [ ! -x "$MEDFILIP_MONAILABEL_ENV/bin/python" ]; then
    say "creating $MEDFILIP_MONAILABEL_ENV"
    python3 -m venv "$MEDFILIP_MONAILABEL_ENV"
fi
pip=("$MEDFILIP_MONAILABEL_ENV/bin/pip")
python_tag="$("$MEDFILIP_MONAILABEL_ENV/bin/python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
wanted="$(cat "$REQUIREMENTS" <(echo "$python_tag") | sha256sum)"
# One folder per Python version: a change of pins fetches only the wheels it does not hold yet.
wheel_dir="${XDG_CACHE_HOME:-$HOME/.cache}/medfilip/monailabel/wheels-$python_tag"
stamp="$MEDFILIP_MONAILABEL_ENV/.medfilip-monailabel-pins"
# The pins (name==version) of REQUIREMENTS with no wheel in wheel_dir, one a line.
missing_pins() {
    "$MEDFILIP_MONAILABEL_ENV/bin/python" - "$REQUIREMENTS" "$wheel_dir" <<'PYTHON'
import pathlib, re, sys

def key(name: str, version: str) -> str:  # how a wheel's file name spells a project and version
    return f"{re.sub(r'[-_.]+', '_', name).lower()}-{version.lower()}"

held = {key(*path.name.split("-")[:2]) for path in pathlib.Path(sys.argv[2]).glob("*.whl")}
for line in pathlib.Path(sys.argv[1]).read_text().splitlines():
    if line and not line.startswith("#") and key(*line.split("==")) not in held:
        print(line)
PYTHON
}
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
    mkdir -p "$wheel_dir"
    to_fetch="$(missing_pins | grep -v '^sam2==' || true)"
    if [ -n "$to_fetch" ]; then
        say "fetching $(echo "$to_fetch" | wc -l) pinned wheel(s) into $wheel_dir (all of them: about 3.5 GB, minutes)"
        # --no-deps: the requirements are the whole set; --no-cache-dir: the wheel folder is the cache.
        pip_to_stderr nice -n 10 "${pip[@]}" wheel --quiet --no-cache-dir --no-deps --wheel-dir "$wheel_dir" \
            -r <(echo "$to_fetch") \
            || { say "fetching the pinned wheels failed; see the pip output above"; exit 1; }
    fi
    if missing_pins | grep -q '^sam2=='; then
        say "building $SAM2_PIN without CUDA against the environment's torch"
        pip_to_stderr "${pip[@]}" install --quiet --no-index --find-links "$wheel_dir" \
            "$(grep '^torch==' "$REQUIREMENTS")" "$(grep '^setuptools==' "$REQUIREMENTS")" \
            || { say "installing torch to build sam2 failed; see the pip output above"; exit 1; }
        pip_to_stderr env SAM2_BUILD_CUDA=0 nice -n 10 "${pip[@]}" wheel --quiet --no-cache-dir --no-deps \
            --no-build-isolation --wheel-dir "$wheel_dir" "$SAM2_PIN" \
            || { say "building $SAM2_PIN failed; see the pip output above"; exit 1; }
    fi
    say "installing the MONAI Label environment into $MEDFILIP_MONAILABEL_ENV from $wheel_dir (a few minutes)"
    # --no-index: only the cached wheels, which also proves that the pinned set is complete.
    pip_to_stderr nice -n 10 "${pip[@]}" install --quiet --no-index --find-links "$wheel_dir" -r "$REQUIREMENTS" \
        || { say "installing the MONAI Label environment failed; see the pip output above"; exit 1; }
    "$MEDFILIP_MONAILABEL_ENV/bin/python" -c "import monailabel, monai, open_clip, torch" \
        || { say "the MONAI Label environment does not import; delete $MEDFILIP_MONAILABEL_ENV and run this script again"; exit 1; }
    # torch, torchvision, triton and the CUDA libraries come from the same wheels as the bundle's
    # .venv: hard-linking the identical files frees ~5 GB (the environment shrinks from 8.2 GB to
    # ~3 GB) on a disk CI shares. Safe under later installs: pip replaces files, it never writes
    # into them. Skipped when .venv is missing or on another file system (hardlink links nothing).
    bundle_venv="${MEDFILIP_VENV:-$MEDFILIP_ROOT/.venv}"
    if [ -x "$bundle_venv/bin/python" ] && command -v hardlink >/dev/null; then
        shared_dirs=()
        for env_python in "$MEDFILIP_MONAILABEL_ENV/bin/python" "$bundle_venv/bin/python"; do
            site="$("$env_python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
            for package in torch torchvision triton nvidia; do
                if [ -d "$site/$package" ]; then shared_dirs+=("$site/$package"); fi
            done
        done
        say "hard-linking the files it shares with $bundle_venv"
        hardlink --quiet --content "${shared_dirs[@]}"
    fi
    echo "$wanted" > "$stamp"
fi
echo "$MEDFILIP_MONAILABEL_ENV/bin/python"
