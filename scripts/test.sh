#!/usr/bin/env bash
# Set everything up (virtual environment, pinned packages) and run the whole test suite.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$MEDFILIP_ROOT"
bash scripts/setup_chromium.sh  # the tests screenshot every HTML page with headless Chromium
python -m pytest -q tests "$@"
