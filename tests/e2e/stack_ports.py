"""What of the stack's S3 server a container on its network can reach: a check that
tests/e2e/test_compose_stack.py runs on its one stack.

Every port the S3 service's container listens on (read from its /proc/net/tcp, any address) is
tried from one short-lived container on taxi-net, the way a flow container (or anything else a
deployment runs there) would. Only S3 (:9000) and the S3 UI (:9001) may answer: with the
SeaweedFS override, weed's filer, master and volume server (no credentials, bucket objects
readable and writable through the filer) must stay on the container's loopback. S3 must still
work there, for the flows' keys and for the uploader's, which may write under incoming/ only.
"""

from __future__ import annotations

import json

import docker

NETWORK = "taxi-net"
S3_PORT, UI_PORT = 9000, 9001
# weed mini's filer, master and volume server (docker-compose's SeaweedFS override).
WEED_INNER_PORTS = {8888, 9333, 9340}
# Runs in the project image on the stack's network; the keys come in its environment.
PROBE = """
import json, os, socket
import boto3
from botocore.exceptions import ClientError

def answer(port):
    try:
        sock = socket.create_connection(("minio", port), timeout=3)
    except ConnectionRefusedError:
        return "refused"
    except OSError as error:
        return f"no connection ({type(error).__name__})"
    with sock:
        sock.settimeout(3)
        sock.sendall(b"GET /?prefix=data/ HTTP/1.0\\r\\nHost: minio\\r\\n\\r\\n")
        try:
            said = sock.recv(64)
        except OSError as error:
            return f"no answer ({type(error).__name__})"
    if said.startswith(b"HTTP/"):
        return said.split(b"\\r\\n")[0].decode(errors="replace")
    return f"answered {len(said)} bytes, not HTTP (gRPC?)" if said else "closed"

def code(call):
    try:
        call()
        return "allowed"
    except ClientError as error:
        return error.response["Error"]["Code"]

def s3(prefix):
    return boto3.client("s3", endpoint_url="http://minio:9000",
                        aws_access_key_id=os.environ[prefix + "KEY"],
                        aws_secret_access_key=os.environ[prefix + "SECRET"])

bucket = os.environ["TAXI_BUCKET"]
flows, uploader = s3("FLOWS_"), s3("UPLOADER_")
listed = flows.list_objects_v2(Bucket=bucket, Prefix="data/").get("Contents", [])
key = "incoming/port-probe/probe.csv"
result = {
    "ports": {port: answer(int(port)) for port in os.environ["PORTS"].split(",")},
    "flows_data_keys": len(listed),
    "uploader": {
        "put incoming/": code(lambda: uploader.put_object(Bucket=bucket, Key=key, Body=b"x")),
        "get data/": code(lambda: uploader.get_object(Bucket=bucket, Key=listed[0]["Key"])),
        "put models/": code(lambda: uploader.put_object(Bucket=bucket, Key="models/x", Body=b"x")),
        "list": code(lambda: uploader.list_objects_v2(Bucket=bucket, Prefix="incoming/")),
    },
}
flows.delete_object(Bucket=bucket, Key=key)  # not for the hourly runs of later tests
print(json.dumps(result))
"""


def listening_ports(container) -> set[int]:
    """The TCP ports `container` listens on, any address (its network namespace's sockets)."""
    code, output = container.exec_run(["cat", "/proc/net/tcp", "/proc/net/tcp6"])
    assert code == 0, output
    ports = set()
    for line in output.decode().splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[3] == "0A":  # TCP_LISTEN
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def check_only_s3_answers_on_the_network(
    stack: dict, client: docker.DockerClient, project: str, seaweedfs: bool
) -> None:
    env = stack["env"]
    [server] = client.containers.list(
        filters={
            "label": [f"com.docker.compose.project={project}", "com.docker.compose.service=minio"]
        }
    )
    ports = listening_ports(server)
    assert {S3_PORT, UI_PORT} <= ports, ports
    if seaweedfs:
        # They run (S3 needs them), so an answer below would be theirs.
        assert WEED_INNER_PORTS <= ports, ports
    output = client.containers.run(
        f"{env['TAXI_IMAGE']}:stack",
        ["python", "-c", PROBE],
        network=NETWORK,
        environment={
            "PORTS": ",".join(map(str, sorted(ports))),
            "TAXI_BUCKET": env["TAXI_BUCKET"],
            "AWS_DEFAULT_REGION": env["AWS_DEFAULT_REGION"],
            "FLOWS_KEY": env["AWS_ACCESS_KEY_ID"],
            "FLOWS_SECRET": env["AWS_SECRET_ACCESS_KEY"],
            "UPLOADER_KEY": env["TAXI_S3_UPLOADER_USER"],
            "UPLOADER_SECRET": env["TAXI_S3_UPLOADER_PASSWORD"],
        },
        labels={"taxi.stack": project},  # scripts/stack-down.sh removes it with the stack
        remove=True,
    )
    result = json.loads(output.decode().strip().splitlines()[-1])
    answered = {int(port): said for port, said in result["ports"].items() if said != "refused"}
    print(f"\n  ports of the S3 container as taxi-net sees them: {answered}, others refused")
    # Nothing but S3, which refuses an unsigned request, and the UI, which sends it to its login
    # (MinIO's console serves its app, which then asks for the login).
    assert set(answered) == {S3_PORT, UI_PORT}, result["ports"]
    assert " 403 " in answered[S3_PORT], answered
    login = {"302", "303", "307", "401"} | (set() if seaweedfs else {"200"})
    assert answered[UI_PORT].split()[1] in login, answered
    assert result["flows_data_keys"] >= 3, result
    assert result["uploader"] == {
        "put incoming/": "allowed",
        "get data/": "AccessDenied",
        "put models/": "AccessDenied",
        "list": "AccessDenied",
    }, result["uploader"]
