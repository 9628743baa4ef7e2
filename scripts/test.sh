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
# Two workers, one test file each at a time (module fixtures are built once): much of a test's time is
# a CLI process starting up or a server answering, so two files interleave well on 2 cores.
python -m pytest -q -n 2 --dist loadfile --durations=20 tests "$@"
