"""A real MONAI Label server running the bundle's app (bundle/apps/monailabel) on 127.0.0.1, for integration tests.

``scripts/setup_monailabel.sh`` builds the server's own environment once (minutes; cheap when
done). ``running_monailabel_server`` runs that script, starts ``python -m monailabel.main
start_server`` on a free loopback port with the given bundle folder and config overrides, waits
until ``/info/`` answers and yields a ``MonaiLabelServer``; on exit it stops the server and the
training processes it started (terminate, then kill) and reaps it. Nothing else is contacted:
model hubs are switched off and the server's sessions live in the test's folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2

from llm_server import LOG_TAIL_CHARS, _free_loopback_port

REPO_ROOT = Path(__file__).resolve().parents[1]
SETUP_SCRIPT = REPO_ROOT / "scripts" / "setup_monailabel.sh"
APP_DIR = REPO_ROOT / "bundle" / "apps" / "monailabel"
DEFAULT_ENV_DIR = Path(os.environ.get("MEDFILIP_MONAILABEL_ENV", REPO_ROOT / ".monailabel-env"))


@dataclass(frozen=True)
class MonaiLabelServer:
    """A running server: ``base_url`` is MONAI Label's REST root (``/info/``, ``/datastore/``, ``/infer/``, ``/train/``)."""

    base_url: str
    studies: Path
    log_path: Path
    process: subprocess.Popen

    def log_tail(self) -> str:
        """The end of the server's log (training requests log there too)."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-LOG_TAIL_CHARS:]


def setup_monailabel(env_dir: Path = DEFAULT_ENV_DIR) -> Path:
    """Run ``scripts/setup_monailabel.sh`` for ``env_dir``; return the environment's python."""
    try:
        printed = subprocess.run(["bash", str(SETUP_SCRIPT)], env={**os.environ, "MEDFILIP_MONAILABEL_ENV": str(env_dir)},
                                 capture_output=True, text=True, check=True).stdout
    except subprocess.CalledProcessError as failed:
        raise RuntimeError(f"{SETUP_SCRIPT.name} failed (exit {failed.returncode}) for {env_dir}; its output ends "
                           f"with:\n{(failed.stdout + failed.stderr)[-LOG_TAIL_CHARS:]}") from None
    return Path(printed.strip().splitlines()[-1])


def _wait_until_ready(server: MonaiLabelServer, deadline_s: float) -> None:
    """Poll ``/info/`` until it answers 200 (the app is loaded); raise with the server's log otherwise."""
    deadline = time.monotonic() + deadline_s
    with httpx2.Client(trust_env=False, timeout=5.0) as client:  # no proxy may see loopback traffic
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(f"the MONAI Label server exited with code {server.process.returncode} before it "
                                   f"was ready; its log ({server.log_path}) ends with:\n{server.log_tail()}")
            try:
                if client.get(f"{server.base_url}/info/").status_code == 200:
                    return
            except httpx2.TransportError:
                pass  # not listening yet
            time.sleep(0.5)
    raise RuntimeError(f"the MONAI Label server did not answer {server.base_url}/info/ within {deadline_s:.0f} s; "
                       f"its log ({server.log_path}) ends with:\n{server.log_tail()}")


def _stop_group(process: subprocess.Popen, grace_s: float = 15.0) -> None:
    """Stop the server and the training process it may have started (one process group)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=grace_s)
            break
        except subprocess.TimeoutExpired:
            continue
    process.wait()


@contextmanager
def running_monailabel_server(
    bundle_root: Path,
    studies: Path,
    log_dir: Path,
    configs: Sequence[str] = (),
    env_dir: Path = DEFAULT_ENV_DIR,
    ready_timeout_s: float = 300.0,
) -> Iterator[MonaiLabelServer]:
    """Set up (if needed) and run the app on 127.0.0.1 over ``bundle_root``; stop it on exit, whatever happened."""
    python = setup_monailabel(env_dir)
    port = _free_loopback_port()
    log_path = Path(log_dir) / f"monailabel-{port}.log"
    command = [str(python), "-m", "monailabel.main", "start_server", "--app", str(APP_DIR), "--studies", str(studies),
               "--host", "127.0.0.1", "--port", str(port), "--conf", "bundle_root", str(bundle_root)]
    if configs:
        command += ["--conf", "configs", ",".join(configs)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
           "DO_NOT_TRACK": "true", "MONAI_LABEL_SESSION_PATH": str(Path(log_dir) / "sessions")}
    with log_path.open("wb") as log:
        # a session of its own: training runs in a child process, stopped with the server's group
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                   start_new_session=True)
    server = MonaiLabelServer(f"http://127.0.0.1:{port}", studies, log_path, process)
    try:
        _wait_until_ready(server, ready_timeout_s)
        yield server
    finally:
        _stop_group(process)
