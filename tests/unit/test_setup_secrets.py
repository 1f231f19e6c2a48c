"""Secrets stay out of `ps`: the setup scripts hand them to the programs they start on stdin or
in the environment, never as arguments (which every user of the machine can read in
/proc/<pid>/cmdline), and the quickstart's credential files are private from their creation.

Each external command a script runs goes through a recorder first on PATH that logs its
arguments, then runs the real command. `mc` (MinIO's client, in MinIO's image only) is a
recorder that stands in for it: it logs its arguments and its stdin, and does nothing else."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

import devstack
from tests.env_files import read_env_file
from tests.paths import ROOT

SECRETS = (
    "PREFECT_API_AUTH_STRING",
    "TAXI_S3_ROOT_PASSWORD",
    "AWS_SECRET_ACCESS_KEY",
    "TAXI_S3_UPLOADER_PASSWORD",
)


def _recorders(tmp_path: Path, commands: tuple[str, ...]) -> tuple[dict[str, str], Path]:
    """An environment whose PATH starts with a recorder of each of `commands`; and the log."""
    bin_dir, log = tmp_path / "bin", tmp_path / "argv.log"
    bin_dir.mkdir()
    for name in commands:
        real = shutil.which(name)
        assert real, f"{name} is not installed"
        recorder = bin_dir / name
        recorder.write_text(
            f'#!/bin/sh\nprintf "%s\\n" "{name} $*" >> "{log}"\nexec "{real}" "$@"\n'
        )
        recorder.chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path)}
    return env, log


def test_make_env_generates_its_secrets_off_the_command_line(tmp_path):
    env, log = _recorders(tmp_path, ("python3", "mktemp", "mv", "stat", "dirname"))
    out = tmp_path / "env"
    subprocess.run(
        ["bash", "scripts/make-env.sh", str(out)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    values = read_env_file(out)
    ran = log.read_text()
    assert "python3 - .env.example" in ran  # the recorders saw the script's commands
    for name in SECRETS:
        secret = values[name].partition(":")[2] if ":" in values[name] else values[name]
        assert len(secret) == 40 and secret not in ran, name
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_the_minio_setup_gives_mc_the_secrets_on_stdin(tmp_path):
    env, log = _recorders(tmp_path, ("rm",))
    stdin_log = tmp_path / "stdin.log"
    mc = tmp_path / "bin" / "mc"
    mc.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "mc $*" >> "{log}"\n'
        f'case "$*" in "admin user add"*) cat >> "{stdin_log}" ;; esac\n'
    )
    mc.chmod(0o755)
    secrets = {
        "TAXI_S3_ROOT_USER": "root-7f3a",
        "TAXI_S3_ROOT_PASSWORD": "r0" * 20,
        "AWS_ACCESS_KEY_ID": "taxi-flows",
        "AWS_SECRET_ACCESS_KEY": "f1" * 20,
        "TAXI_S3_UPLOADER_USER": "taxi-uploader",
        "TAXI_S3_UPLOADER_PASSWORD": "u2" * 20,
    }
    done = subprocess.run(
        ["sh", "deploy/minio/setup.sh"],
        cwd=ROOT,
        env={**env, **secrets},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    ran = log.read_text()
    assert "mc admin user add root taxi-flows\n" in ran
    assert "mc admin user add root taxi-uploader\n" in ran
    assert "mc admin policy attach root taxi-uploader-taxi --user taxi-uploader" in ran
    for name in ("TAXI_S3_ROOT_PASSWORD", "AWS_SECRET_ACCESS_KEY", "TAXI_S3_UPLOADER_PASSWORD"):
        assert secrets[name] not in ran + done.stdout + done.stderr, name
    assert stdin_log.read_text().split() == [
        secrets["AWS_SECRET_ACCESS_KEY"],
        secrets["TAXI_S3_UPLOADER_PASSWORD"],
    ]


@pytest.fixture
def no_chmod(monkeypatch):
    """A file made private only by a chmod after its creation fails the test: it was readable
    by others in between."""

    def refuse(*args, **kwargs):
        raise AssertionError("chmod after the file was created")

    monkeypatch.setattr(os, "chmod", refuse)
    monkeypatch.setattr(Path, "chmod", refuse)
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_the_quickstart_credentials_are_private_from_their_creation(tmp_path, no_chmod):
    credentials = devstack._credentials(tmp_path)
    path = tmp_path / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert devstack._credentials(tmp_path) == credentials
    # An existing file with other rights is replaced, not rewritten in place.
    path.unlink()
    path.write_text("{}")
    devstack.write_private(path, "{}")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["credentials.json"]
