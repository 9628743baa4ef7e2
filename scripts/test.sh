#!/usr/bin/env bash
# Set everything up (virtual environment, pinned packages) and run the whole test suite.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$MEDFILIP_ROOT"
bash scripts/setup_chromium.sh  # the tests screenshot every HTML page with headless Chromium
# GPT-IE's integration test talks to a real llama.cpp server in its own environment (first build: minutes)
bash scripts/setup_llm_server.sh >/dev/null
# MONAI Label's integration test runs a real server in its own environment (first build: minutes)
bash scripts/setup_monailabel.sh >/dev/null
python -m pytest -q --durations=20 tests "$@"
