"""deploy/seaweedfs/expose.py, the SeaweedFS image's launcher: weed on the loopback, only its S3
port forwarded. A real weed mini behind it; that other containers reach nothing else is
tests/e2e/stack_ports.py's check on the compose stack."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys

import boto3
import pytest

import devstack
from tests.paths import ROOT

EXPOSE = str(ROOT / "deploy" / "seaweedfs" / "expose.py")
KEYS = {"AWS_ACCESS_KEY_ID": "expose-admin", "AWS_SECRET_ACCESS_KEY": "expose-secret-0123456789"}


def test_s3_works_through_the_forwarded_port_and_sigterm_stops_weed(tmp_path):
    listen, s3_port = devstack.free_port(), devstack.free_port()
    ports = {
        "s3.port": s3_port,
        **{
            flag: devstack.free_port()
            for flag in ("master.port", "volume.port", "filer.port", "admin.port")
        },
    }
    weed = [
        devstack.weed_binary(),
        "mini",
        f"-dir={tmp_path / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        *(f"-{flag}={port}" for flag, port in ports.items()),
    ]
    (tmp_path / "data").mkdir()
    log = open(tmp_path / "weed.log", "wb")
    process = subprocess.Popen(
        [sys.executable, EXPOSE, f"{listen}={s3_port}", "--", *weed],
        env={**os.environ, **KEYS},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        devstack.wait_until(lambda: devstack.port_open(s3_port), "weed's S3", 60, process)
        s3 = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{listen}",
            region_name="us-east-1",
            aws_access_key_id=KEYS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=KEYS["AWS_SECRET_ACCESS_KEY"],
        )
        s3.create_bucket(Bucket="exposed")
        # Past boto3's 8 MB threshold: a multipart upload, several requests on one connection.
        body = os.urandom(12 * 1024 * 1024)
        s3.upload_fileobj(io.BytesIO(body), "exposed", "big.bin")
        assert s3.get_object(Bucket="exposed", Key="big.bin")["Body"].read() == body
        with pytest.raises(s3.exceptions.ClientError, match="SignatureDoesNotMatch|AccessDenied"):
            boto3.client(
                "s3",
                endpoint_url=f"http://127.0.0.1:{listen}",
                region_name="us-east-1",
                aws_access_key_id=KEYS["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key="not-the-secret-0123456789",
            ).list_buckets()

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0  # weed's own clean exit, passed on
        assert not devstack.port_open(listen)
    finally:
        if process.poll() is None:
            devstack.stop_process(process.pid)
            process.wait(timeout=30)
        log.close()


def test_bad_arguments_and_a_taken_port_are_named(tmp_path):
    def expose(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, EXPOSE, *args], capture_output=True, text=True, timeout=30
        )

    for args, said in (
        (["9000=8333", "weed"], "no '--' before the command"),
        (["--", "weed"], "give at least one LISTEN=TARGET and a command"),
        (["9000:8333", "--", "weed"], "'9000:8333' is not LISTEN=TARGET"),
    ):
        done = expose(*args)
        assert done.returncode == 1 and said in done.stderr, done.stderr
    with socket.socket() as holder:
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        started = tmp_path / "started"
        done = expose(f"{taken}=1", "--", "touch", str(started))
    assert done.returncode == 1 and f"cannot listen on port {taken}" in done.stderr, done.stderr
    assert not started.exists()  # weed does not start without its ports
