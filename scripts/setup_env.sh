#!/usr/bin/env bash
# Create the virtual environment if it is missing and install the pinned dependencies.
# Idempotent and cheap when nothing changed: it reinstalls only when requirements*.txt or
# constraints.txt differ from what was installed. Source it to get the offline settings too:
# sourcing leaves the caller's shell options (set -o, shopt) as they were, and a failed install
# returns an error from `source` instead of closing the caller's shell.
MEDFILIP_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MEDFILIP_VENV="${MEDFILIP_VENV:-$MEDFILIP_ROOT/.venv}"
# Every pip call, including build-isolated sdist builds, must see the torch/torchvision pin.
export PIP_CONSTRAINT="$MEDFILIP_ROOT/constraints.txt"

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
    # Sourced: the install runs as its own bash process, so that its strict error handling stays there.
    MEDFILIP_VENV="$MEDFILIP_VENV" "$BASH" "${BASH_SOURCE[0]}" || return
    # Offline by default: no model hub, no telemetry. The bundle never downloads at run time.
    export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true
    export PYTHONPATH="$MEDFILIP_ROOT${PYTHONPATH:+:$PYTHONPATH}"
    export PATH="$MEDFILIP_VENV/bin:$PATH"
    return 0
fi

set -euo pipefail
if [ ! -x "$MEDFILIP_VENV/bin/python" ]; then
    echo "[setup] creating $MEDFILIP_VENV"
    python3 -m venv "$MEDFILIP_VENV"
fi
stamp="$MEDFILIP_VENV/.medfilip-requirements"
wanted="$(cat "$MEDFILIP_ROOT"/requirements.txt "$MEDFILIP_ROOT"/requirements-dev.txt "$MEDFILIP_ROOT"/constraints.txt | sha256sum)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
    echo "[setup] installing pinned dependencies (a few minutes on a fresh machine)"
    "$MEDFILIP_VENV/bin/pip" install --quiet --no-compile -c "$PIP_CONSTRAINT" \
        -r "$MEDFILIP_ROOT/requirements.txt" -r "$MEDFILIP_ROOT/requirements-dev.txt" 2>&1 \
        | grep -v "^WARNING: Location .* is ignored" || true
    # Byte-compiled once here: where PYTHONDONTWRITEBYTECODE is set, as on these machines, nothing is
    # cached later and every process would compile the ~6,000 modules it imports (importing torch,
    # monai, open_clip and mlflow: 24.7 s instead of 11.4 s). compileall on every core rather than pip's
    # own step, which compiles one file at a time: 41 s instead of about 2 min of a 205 s install on 2 cores.
    # A few files written for newer Pythons do not compile (pip skips them silently too); nothing imports them.
    site_packages="$("$MEDFILIP_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" \
        && "$MEDFILIP_VENV/bin/python" -m compileall -q -j 0 "$site_packages" >/dev/null 2>&1 || true
    "$MEDFILIP_VENV/bin/python" -c "import torch, torchvision, open_clip, monai, ignite, mlflow" \
        || { echo "[setup] the installed environment does not import; see the pip output above" >&2; exit 1; }
    echo "$wanted" > "$stamp"
fi
