"""scripts/devstack.py starts the real servers the tests and the quickstart use."""

from __future__ import annotations

import socket

import boto3

import devstack


def test_the_s3_server_starts_on_other_ports_when_one_is_taken_meanwhile(tmp_path, monkeypatch):
    # Another process takes one of the ports between free_port() and weed's start, as parallel
    # test sessions do.
    found, taken, calls = devstack.free_port, [], []

    def free_port_then_taken() -> int:
        port = found()
        calls.append(port)
        if len(calls) == 5:  # the volume server's HTTP port (weed finds others for gRPC)
            holder = socket.socket()
            holder.bind(("127.0.0.1", port))
            holder.listen()
            taken.append(holder)
        return port

    monkeypatch.setattr(devstack, "free_port", free_port_then_taken)
    server = devstack.start_s3_server(tmp_path / "s3", "test-admin-key", "test-admin-secret-key")
    try:
        log = (tmp_path / "s3.log").read_text()
        assert "Port allocation failed" in log or "address already in use" in log
        s3 = boto3.client(
            "s3",
            endpoint_url=server.url,
            region_name="us-east-1",
            aws_access_key_id="test-admin-key",
            aws_secret_access_key="test-admin-secret-key",
        )
        s3.create_bucket(Bucket="started")
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["started"]
    finally:
        devstack.stop_process(server.process.pid)
        taken[0].close()
