"""The test session's S3 server (SeaweedFS) and Prefect server, one of each per session.

With tests in parallel (pytest-xdist) a session is several processes: the controller and its
workers. The session's own process (pytest itself, or the controller) picks the servers'
directory, ports and credentials; the workers receive them from it. A server starts when the
first test that needs it runs, in whichever process that is (a file lock keeps the others
waiting for it), and the session's own process stops both at its end. So a run of unit tests
starts no server, and a parallel run starts each server once.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import devstack


@dataclass(frozen=True)
class SessionServers:
    work: str
    s3_port: int
    prefect_port: int
    access_key: str
    secret_key: str

    @classmethod
    def new(cls) -> SessionServers:
        return cls(
            work=tempfile.mkdtemp(prefix="taxi-tests-"),
            s3_port=devstack.free_port(),
            prefect_port=devstack.free_port(),
            access_key="test-" + secrets.token_hex(4),
            secret_key=secrets.token_urlsafe(24),
        )

    def as_dict(self) -> dict[str, str | int]:
        """What a worker needs to rebuild this object (xdist sends it with the worker's input)."""
        return asdict(self)

    @property
    def s3_url(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def prefect_api_url(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}/api"

    def environment(self, process: str) -> dict[str, str]:
        """The settings that point a test process at these servers; `process` names the
        process, which keeps a Prefect client directory of its own."""
        return {
            "AWS_ENDPOINT_URL": self.s3_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            "PREFECT_API_URL": self.prefect_api_url,
            "PREFECT_HOME": str(Path(self.work) / f"prefect-client-{process}"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            # As the flow containers (deploy/work_pool.py): flows of the tests that set up the
            # zombie automation keep their runs alive.
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30",
        }

    def s3(self) -> str:
        """The S3 server's endpoint URL, once it is up (started here if no process has yet)."""
        self._ensure("s3", self._start_s3)
        return self.s3_url

    def prefect(self) -> str:
        """The Prefect server's API URL, once it is up (started here if no process has yet)."""
        self._ensure("prefect", self._start_prefect)
        return self.prefect_api_url

    def stop(self) -> None:
        """Stop the servers any process of the session started."""
        for name in ("s3", "prefect"):
            pid_file = self._pid_file(name)
            if pid_file.exists():
                devstack.stop_process(int(pid_file.read_text()))
                pid_file.unlink()
        for server in _STARTED_HERE:  # reap what this process started
            server.process.wait(timeout=5)
        _STARTED_HERE.clear()

    def _start_s3(self) -> devstack.Server:
        data = Path(self.work) / "s3"
        return devstack.start_s3_server(data, self.access_key, self.secret_key, self.s3_port)

    def _start_prefect(self) -> devstack.Server:
        return devstack.start_prefect_server(Path(self.work) / "prefect-server", self.prefect_port)

    def _pid_file(self, name: str) -> Path:
        return Path(self.work) / f"{name}.pid"

    def _ensure(self, name: str, start: Callable[[], devstack.Server]) -> None:
        with _locked(Path(self.work) / f"{name}.lock"):
            if self._pid_file(name).exists():
                return
            server = start()
            _STARTED_HERE.append(server)
            self._pid_file(name).write_text(str(server.process.pid))


_STARTED_HERE: list[devstack.Server] = []


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def process_name() -> str:
    """The xdist worker's id ("gw0", ...), or "main" for the session's own process."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")
