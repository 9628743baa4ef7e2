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
    pip="$MEDFILIP_VENV/bin/pip"
    requirements=(-r "$MEDFILIP_ROOT/requirements.txt" -r "$MEDFILIP_ROOT/requirements-dev.txt")
    quiet_pip() { "$pip" "$@" 2>&1 | { grep -v "^WARNING: Location .* is ignored" || true; }; }
    # A pip setting as pip sees it: its PIP_* variable, else the configured global value.
    pip_setting() {
        local variable="PIP_$(echo "$1" | tr 'a-z-' 'A-Z_')"
        if [ -n "${!variable:-}" ]; then echo "${!variable}"; else "$pip" config get "global.$1" 2>/dev/null || true; fi
    }
    # uv installs the same pinned set as pip about four times faster on a fresh machine (downloads and
    # unpacks in parallel: 30 s instead of 140 s on 2 cores, torch's CUDA libraries being most of the
    # 5.6 GB). It does not read pip's configuration, so it gets the package sources pip is configured
    # with, and it weighs every index as pip does (unsafe-best-match) so that it picks the versions pip
    # would. pip stays the fallback where uv cannot be installed or fails.
    uv_sources=(--index-strategy unsafe-best-match)
    for url in $(pip_setting index-url); do uv_sources+=(--index-url "$url"); done
    for url in $(pip_setting extra-index-url); do uv_sources+=(--extra-index-url "$url"); done
    for url in $(pip_setting find-links); do uv_sources+=(--find-links "$url"); done
    if ! { quiet_pip install --quiet -c "$PIP_CONSTRAINT" uv \
           && "$MEDFILIP_VENV/bin/uv" pip install --quiet --python "$MEDFILIP_VENV/bin/python" \
                  "${uv_sources[@]}" -c "$PIP_CONSTRAINT" "${requirements[@]}"; }; then
        echo "[setup] uv could not install the environment; installing with pip"
        quiet_pip install --quiet --no-compile -c "$PIP_CONSTRAINT" "${requirements[@]}" || true
    fi
    # Byte-compiled once here: where PYTHONDONTWRITEBYTECODE is set, as on these machines, nothing is
    # cached later and every process would compile the ~6,000 modules it imports (importing torch,
    # monai, open_clip and mlflow: 24.7 s instead of 11.4 s). Compiled by importing what the bundle's
    # processes import, with bytecode writing on, in two processes (the bundle's torch stack; the CLI's
    # fire, mlflow and the test tools): 45 s, where compileall over all 21,600 files of the environment
    # took 70-84 s on 2 cores at the same hour, and start-up is as fast after either. A module left out
    # is compiled when a process imports it, as without this step. bundle/ gets its own __pycache__
    # (git ignores it).
    # Both processes are also the install's check: what they import outside bundle/ must import.
    env -u PYTHONDONTWRITEBYTECODE PYTHONPATH="$MEDFILIP_ROOT" "$MEDFILIP_VENV/bin/python" - <<'PYTHON' >/dev/null &
import importlib
import pkgutil
import warnings

warnings.simplefilter("ignore")
import torch, torchvision, open_clip, monai, ignite  # noqa: E401,F401  (the install's check)
import bundle  # noqa: E402

for module in pkgutil.walk_packages(bundle.__path__, "bundle.", onerror=lambda name: None):
    try:  # a module whose optional dependency is missing (MONAI Label's app) is simply left out
        importlib.import_module(module.name)
    except Exception:
        pass
import monai.bundle  # noqa: E402,F401  (the CLI every run goes through)
PYTHON
    importing_bundle=$!
    broken=0  # this file is sourced: a value left in the caller's shell must not count
    env -u PYTHONDONTWRITEBYTECODE "$MEDFILIP_VENV/bin/python" -W ignore -c \
        "import fire, mlflow, mlflow.tracking, pandas, sklearn.metrics, scipy.stats, matplotlib.pyplot, pytest, xdist" \
        >/dev/null || broken=1
    wait "$importing_bundle" || broken=1
    [ "$broken" = 0 ] || { echo "[setup] the installed environment does not import; see the output above" >&2; exit 1; }
    echo "$wanted" > "$stamp"
fi
