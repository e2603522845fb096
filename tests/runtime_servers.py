"""Real servers for the runtime tests: gunicorn as deployed, on free loopback ports"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# Variables of the deploy that must not leak from the developer's shell into a test server.
RUNTIME_VARIABLES = (
    "HOST",
    "PORT",
    "WEB_CONCURRENCY",
    "PROMETHEUS_MULTIPROC_DIR",
    "METRICS_ENABLED",
    "METRICS_TOKEN",
    "METRICS_PORT",
    "RATE_LIMIT",
    "RATE_LIMIT_STORAGE_URL",
    "TRUSTED_PROXY_COUNT",
    "FORWARDED_ALLOW_IPS",
    "GUNICORN_CMD_ARGS",
    "LOG_FORMAT",
    "LOG_LEVEL",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, headers=None, timeout=5):
    """(status, headers, body) of a GET, error statuses included."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def wait_until_serving(url, process, log_path, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = Path(log_path).read_text()
            raise AssertionError(f"server exited ({process.returncode}):\n{log}")
        try:
            if get(url, timeout=1)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    log = Path(log_path).read_text()
    raise AssertionError(f"server not serving {url} after {seconds}s:\n{log}")


def server_env(env):
    """`env` over this environment less the deploy's variables, the venv first on PATH."""
    environ = {k: v for k, v in os.environ.items() if k not in RUNTIME_VARIABLES}
    environ.update({"HOST": "127.0.0.1", "PORT": str(free_port())}, **env)
    environ["PATH"] = f"{BIN}{os.pathsep}{environ.get('PATH', '')}"
    return environ


@contextlib.contextmanager
def serve(command, env, log_path, cwd=ROOT):
    """Run the server `command` with server_env(env); yields (url, process) once it serves."""
    environ = server_env(env)
    url = f"http://{environ['HOST']}:{environ['PORT']}"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, cwd=cwd, env=environ, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_until_serving(f"{url}/healthz", process, log_path)
        yield url, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def gunicorn(env, log_path):
    """`gunicorn wsgi:app` from the project root, as deployed."""
    return serve([str(BIN / "gunicorn"), "wsgi:app"], env, log_path)
