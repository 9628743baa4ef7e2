"""A real llama.cpp server (llama-cpp-python) with Gemma 3 270M on 127.0.0.1, for integration tests.

``scripts/setup_llm_server.sh`` builds the server's own environment once (minutes; cheap when
done). ``running_llama_server`` runs that script, starts ``python -m llama_cpp.server`` on a
free loopback port with ``--chat_format gemma``, waits until ``/v1/models`` answers and yields a
``LlamaServer``; on exit it stops the server (terminate, then kill) and reaps it. Usage::

    from tests.llm_server import llama_server  # noqa: F401  (session-scoped pytest fixture)

    def test_x(llama_server):
        client = openai.OpenAI(base_url=llama_server.base_url, api_key="unused")

Facts about this server (accepted ``response_format`` values, errors, speed) are in docs/llm.md.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SETUP_SCRIPT = REPO_ROOT / "scripts" / "setup_llm_server.sh"
DEFAULT_ENV_DIR = Path(os.environ.get("MEDFILIP_LLM_ENV", REPO_ROOT / ".llm-server-env"))
LOG_HEAD_CHARS, LOG_TAIL_CHARS = 1500, 4000
MODEL_ALIAS = "gemma-3-270m-q4_k_m"  # the id /v1/models lists (else the model's file path)


@dataclass(frozen=True)
class LlamaServer:
    """A running server: ``base_url`` ends in ``/v1`` (what the OpenAI client takes)."""

    base_url: str
    model: str
    model_path: Path
    log_path: Path
    process: subprocess.Popen

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def log_tail(self) -> str:
        """The end of the server's log: its last requests, or the crash."""
        return self.log_text()[-LOG_TAIL_CHARS:]

    def log_excerpt(self) -> str:
        """The log's start and end: a bad argument is reported first (then the usage text), a crash last."""
        text = self.log_text()
        if len(text) <= LOG_HEAD_CHARS + LOG_TAIL_CHARS:
            return text
        return f"{text[:LOG_HEAD_CHARS]}\n[...]\n{text[-LOG_TAIL_CHARS:]}"


def setup_llm_server(env_dir: Path = DEFAULT_ENV_DIR) -> Path:
    """Run ``scripts/setup_llm_server.sh`` for ``env_dir``; return the verified model path."""
    done = subprocess.run(
        ["bash", str(SETUP_SCRIPT)],
        env={**os.environ, "MEDFILIP_LLM_ENV": str(env_dir)},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{SETUP_SCRIPT.name} failed (exit {done.returncode}) for {env_dir}; its output ends with:\n"
            f"{(done.stdout + done.stderr)[-LOG_TAIL_CHARS:]}"
        )
    return Path(done.stdout.strip().splitlines()[-1])


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_ready(server: LlamaServer, deadline_s: float) -> None:
    """Poll ``/v1/models`` until it answers 200; raise with the server's log otherwise."""
    deadline = time.monotonic() + deadline_s
    # trust_env=False: a proxy from the environment must never see (or swallow) loopback traffic.
    with httpx2.Client(trust_env=False, timeout=5.0) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(
                    f"the llama.cpp server exited with code {server.process.returncode} before it was ready; "
                    f"its log ({server.log_path}):\n{server.log_excerpt()}"
                )
            try:
                if client.get(f"{server.base_url}/models").status_code == 200:
                    return
            except httpx2.TransportError:
                pass  # not listening yet
            time.sleep(0.25)
    raise RuntimeError(
        f"the llama.cpp server did not answer {server.base_url}/models within {deadline_s:.0f} s; "
        f"its log ({server.log_path}):\n{server.log_excerpt()}"
    )


def _stop(process: subprocess.Popen, grace_s: float = 10.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def running_llama_server(
    log_dir: Path,
    env_dir: Path = DEFAULT_ENV_DIR,
    n_ctx: int = 2048,
    threads: int = 2,
    ready_timeout_s: float = 120.0,
) -> Iterator[LlamaServer]:
    """Set up (if needed) and run the server on 127.0.0.1; stop it on exit, whatever happened.

    ``n_ctx`` bounds the context (and so memory and prompt time); ``threads`` is used for
    generation and prompt processing alike.
    """
    model_path = setup_llm_server(env_dir)
    port = _free_loopback_port()
    log_path = Path(log_dir) / f"llama-server-{port}.log"
    command = [
        str(env_dir / "bin" / "python"), "-m", "llama_cpp.server",
        "--model", str(model_path), "--model_alias", MODEL_ALIAS, "--chat_format", "gemma",
        "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", str(n_ctx), "--n_threads", str(threads), "--n_threads_batch", str(threads),
    ]  # fmt: skip
    # Passive OpenMP waits: with llama.cpp's default spinning, 2 threads on 2 shared cores now and
    # then took 20-40 s instead of 0.6 s for a 16-token reply (docs/llm.md).
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    server = LlamaServer(f"http://127.0.0.1:{port}/v1", MODEL_ALIAS, model_path, log_path, process)
    try:
        _wait_until_ready(server, ready_timeout_s)
        yield server
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    with running_llama_server(tmp_path_factory.mktemp("llama-server")) as server:
        yield server

