"""End to end: the user's first day with docker-compose.yml, and CI's deploy path against it.

`bash scripts/make-env.sh` writes the env file (generated secrets, the socket's group), then
`docker compose up` of this docker-compose.yml: the seed one-shot must have uploaded the sample
data, the setup one-shot created the work pool, and the stack-info one-shot printed where to
look. The image is then built, tagged and deployed with the scripts the GitHub workflow calls
(scripts/ci/image-ref.sh, build-image.sh, deploy-image.sh with prefect-prebuilt.yaml: no build
at deploy time), and the stack's own worker runs three training and three inference runs as
containers on the compose network; the test prints the image size and, per phase, where the
time from trigger to Completed went (median of 3). A flow run on the host, in a shell that
sourced the env file, must reach the same S3 server and Prefect API.

Security of the stack: the Prefect API refuses unauthenticated calls (401) and the clients
(worker, one-shots, flow containers, the host) authenticate; the stack refuses placeholder
secrets; the flow containers name the Secret blocks of the flows' bucket-scoped S3 user (neither
its keys nor the root user's are in their configuration); the setup generated the model signing
key into its Secret block and no log, deployment or container shows it; of the S3 server's ports
only S3 and its UI answer on the stack's network, and the uploader's keys write under incoming/
only (stack_ports.py).

Links that open: a training report's "Stored in S3" link, read from the Prefect API, opens
the object in the stack's S3 UI on :9001 once logged in as the root user (SeaweedFS's admin
UI: the object's bytes; MinIO's console: its page).

Where MinIO's image cannot be pulled (CI here), set TAXI_COMPOSE_OVERRIDE to
deploy/seaweedfs/compose.override.yml, the documented SeaweedFS override. Uses the fixed ports
of the compose file (4200, 9000, 9001).
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import time

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError

from tests.env_files import read_env_file

from .dockerutil import (
    BIN,
    REPO,
    api,
    assert_bucket_after_runs,
    breakdown_table,
    clean_env,
    container_logs,
    deployment,
    flow_containers,
    image_size_line,
    keys,
    port_free,
    run,
    run_breakdown,
    run_deployment,
    stack_auth,
    wait_for,
)
from .stack_alerts import check_alert_reaches_the_webhook
from .stack_lifecycle import check_stack_down, check_worker_restart_and_late_runs
from .stack_ports import check_only_s3_answers_on_the_network

pytestmark = pytest.mark.docker

PROJECT = "taxi-e2e-compose"
SEAWEEDFS_OVERRIDE = "deploy/seaweedfs/compose.override.yml"
RUNS = 3  # per deployment, for the medians
COMPOSE_IMAGE = "taxi-duration-compose-e2e"


@pytest.fixture(scope="module")
def compose_stack(docker_client, tmp_path_factory):
    busy = [port for port in (4200, 9000, 9001) if not port_free(port)]
    assert not busy, f"ports {busy} are taken: the compose stack publishes them"
    tmp = tmp_path_factory.mktemp("compose-e2e")
    env_path = tmp / "stack.env"
    made = run(["bash", "scripts/make-env.sh", str(env_path)], clean_env(), 60)
    assert "wrote" in made.stdout
    values = read_env_file(env_path)
    example = read_env_file(REPO / ".env.example")
    # The stack's image under a name of its own (the pool then runs only tags of it), apart from
    # the images test_docker_deployment builds on the same engine.
    env = {
        **clean_env(),
        **values,
        "PREFECT_HOME": str(tmp / "prefect-home"),
        "TAXI_IMAGE": COMPOSE_IMAGE,
    }
    override = os.environ.get("TAXI_COMPOSE_OVERRIDE", "")
    files = ["-f", "docker-compose.yml", *(["-f", override] if override else [])]
    compose = ["docker", "compose", "-p", PROJECT, "--env-file", str(env_path), *files]
    stack: dict = {}
    try:
        t0 = time.monotonic()
        result = subprocess.run(
            [*compose, "up", "-d", "--build", "--pull", "never", "--wait", "--wait-timeout", "600"],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        up_seconds = time.monotonic() - t0
        if result.returncode != 0:
            logs = subprocess.run(
                [*compose, "logs", "--tail", "50"],
                env=env,
                cwd=REPO,
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            pytest.fail(f"compose up failed:\n{result.stderr[-4000:]}\n--- logs:\n{logs[-6000:]}")
        stack = {
            "env": env,
            "env_path": env_path,
            "example": example,
            "compose": compose,
            "override": override,
            "up_seconds": up_seconds,
            "make_env_output": made.stdout + made.stderr,
            "up_output": result.stdout + result.stderr,
            "tmp": tmp,
        }
        yield stack
    finally:
        # Flow containers are not the compose project's (tests that stop early leave some).
        for container in docker_client.containers.list(
            all=True, filters={"label": f"taxi.stack={PROJECT}"}
        ):
            container.remove(force=True)
        subprocess.run(
            [*compose, "down", "--volumes", "--remove-orphans", "--timeout", "20"],
            env=env,
            cwd=REPO,
            capture_output=True,
            timeout=300,
            check=False,
        )
        # Drop the deployed tag but keep its untagged layers as build cache.
        if stack.get("deployed_image") and docker_client.images.list(name=stack["deployed_image"]):
            docker_client.images.remove(stack["deployed_image"], noprune=True)


def _tags_of(docker_client, repository: str) -> set[str]:
    """The tags of `repository` on the engine. An image lists every tag of its ID, and an image
    another test built from the same layers has the same ID: its tags are not this test's."""
    return {
        tag
        for image in docker_client.images.list(name=repository)
        for tag in image.tags
        if tag.rpartition(":")[0] == repository
    }


S3_UI = "http://localhost:9001"  # as the links name it (the port is published on 127.0.0.1)


def _s3_ui_session(override: str, env: dict[str, str]) -> httpx.Client:
    """A browser's session of the stack's S3 UI, logged in as the root user."""
    client = httpx.Client(base_url=S3_UI, timeout=30)
    user, password = env["TAXI_S3_ROOT_USER"], env["TAXI_S3_ROOT_PASSWORD"]
    if override == SEAWEEDFS_OVERRIDE:
        # SeaweedFS's admin UI: a form with a CSRF token; the session is a cookie.
        form = client.get("/login")
        token = re.search(r'name="csrf_token"\s+value="([^"]+)"', form.text)
        assert token, form.text[:2000]
        login = {"csrf_token": token.group(1), "username": user, "password": password}
        done = client.post("/login", data=login, follow_redirects=False)
        assert done.status_code == 303 and done.headers["location"] == "/admin", done.headers
    else:
        # MinIO's console: its login API sets the session cookie.
        done = client.post("/api/v1/login", json={"accessKey": user, "secretKey": password})
        assert done.status_code in (200, 204), done.text[:2000]
    return client


def _stored_in_s3_links(api_url: str, run_id: str, auth: tuple[str, str]) -> list[tuple[str, str]]:
    """(URI, link) of each object of the "Stored in S3" section of a training run's report,
    as the Prefect UI reads it from the API."""
    [report] = api(
        "POST",
        f"{api_url}/artifacts/filter",
        json={
            "artifacts": {
                "flow_run_id": {"any_": [run_id]},
                "key": {"any_": ["taxi-training-report"]},
            }
        },
        auth=auth,
    )
    section = report["data"].split("\n## Stored in S3\n", 1)[1]
    assert "`" not in section, section  # plain URIs as the links' text: no literal backticks
    return re.findall(r"\[(s3://[^\]]+)\]\((http[^)\s]+)\)", section)


def test_make_env_writes_generated_secrets_and_the_socket_group(compose_stack):
    values, example = read_env_file(compose_stack["env_path"]), compose_stack["example"]
    assert stat.S_IMODE(compose_stack["env_path"].stat().st_mode) == 0o600
    for name in ("TAXI_S3_ROOT_PASSWORD", "AWS_SECRET_ACCESS_KEY"):
        assert len(values[name]) == 40 and values[name] != example[name], name
    assert values["TAXI_S3_ROOT_PASSWORD"] != values["AWS_SECRET_ACCESS_KEY"]
    user, password = stack_auth(values)
    assert (
        user == "taxi"
        and len(password) == 40
        and values["PREFECT_API_AUTH_STRING"] != example["PREFECT_API_AUTH_STRING"]
    )
    # The signing key is generated by the setup into its Secret block, not written here.
    assert (
        values["TAXI_SETUP_SIGNING_KEY"] == ""
        and values["TAXI_SIGNING_KEY_BLOCK"] == "taxi-signing-key"
    )
    assert values["DOCKER_GID"] == str(os.stat("/var/run/docker.sock").st_gid)
    # The host's endpoint and the containers' are separate settings.
    assert values["AWS_ENDPOINT_URL"] == "http://localhost:9000"
    assert values["TAXI_FLOW_S3_ENDPOINT"] == "http://minio:9000"
    # Never overwrites an existing file.
    again = subprocess.run(
        ["bash", "scripts/make-env.sh", str(compose_stack["env_path"])],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert again.returncode != 0 and "exists" in again.stderr
    assert read_env_file(compose_stack["env_path"]) == values


def test_stack_prints_where_to_look_and_serves_it(compose_stack):
    env, compose = compose_stack["env"], compose_stack["compose"]
    for service in ("check-env", "s3-setup", "seed", "prefect-setup", "stack-info"):
        ps = run(
            [*compose, "ps", "--all", "--format", "{{.Service}} {{.State}} {{.ExitCode}}", service],
            env,
            60,
        )
        assert ps.stdout.split() == [service, "exited", "0"], ps.stdout
    info = run([*compose, "logs", "--no-log-prefix", "stack-info"], env, 60).stdout
    assert "Prefect UI:  http://localhost:4200" in info, info
    assert "S3 API:      http://localhost:9000" in info, info
    assert "http://localhost:9001" in info, info
    assert "the UI with PREFECT_API_AUTH_STRING" in info, info
    assert httpx.get("http://127.0.0.1:4200/", timeout=10).status_code == 200
    console = httpx.get("http://127.0.0.1:9001/", timeout=10)
    if compose_stack["override"] == SEAWEEDFS_OVERRIDE:
        # SeaweedFS's admin UI, behind the S3 credentials as a login.
        assert "SeaweedFS admin UI" in info
        assert console.status_code == 307 and console.headers["location"].endswith("/login")
    else:
        assert "MinIO console" in info
        assert console.status_code == 200


# What compose and `prefect deploy` print when the project's own files leave a variable unset
# or use an obsolete attribute.
PROJECT_FILE_WARNINGS = (
    "variable is not set",
    "obsolete",
    "not found in provided values",
)


def test_the_documented_path_prints_no_warning_of_the_projects_files(compose_stack, docker_client):
    env, env_path, tmp = compose_stack["env"], compose_stack["env_path"], compose_stack["tmp"]
    outputs = {
        "make-env.sh": compose_stack["make_env_output"],
        "docker compose up": compose_stack["up_output"],
    }
    for files in ([], ["-f", "docker-compose.yml", "-f", SEAWEEDFS_OVERRIDE]):
        config = run(
            ["docker", "compose", "--env-file", str(env_path), *files, "config", "-q"], env, 60
        )
        outputs[f"docker compose {' '.join(files)} config"] = config.stdout + config.stderr
    # The walk-through's deploy, in a shell that sourced the env file (the image under the
    # test's name, which the stack's pool runs; the base image and wheelhouse CI builds with).
    build = {
        name: os.environ[name]
        for name in ("PYTHON_IMAGE", "TAXI_PIP_NO_INDEX")
        if os.environ.get(name)
    }
    before = _tags_of(docker_client, COMPOSE_IMAGE)
    deployed = run(
        [
            "bash",
            "-c",
            'set -a; . "$1"; set +a; export TAXI_IMAGE="$2"; exec "$3" --no-prompt deploy --all',
            "_",
            str(env_path),
            COMPOSE_IMAGE,
            str(BIN / "prefect"),
        ],
        {**clean_env(), **build, "PREFECT_HOME": str(tmp / "walk-through-prefect-home")},
        1200,
    )
    outputs["prefect deploy --all"] = deployed.stdout + deployed.stderr
    for tag in _tags_of(docker_client, COMPOSE_IMAGE) - before:
        docker_client.images.remove(tag, noprune=True)
    assert "taxi-training" in deployed.stdout, deployed.stdout[-3000:]
    for command, output in outputs.items():
        for line in output.splitlines():
            assert not any(warning in line for warning in PROJECT_FILE_WARNINGS), (command, line)


def test_the_prefect_api_refuses_unauthenticated_calls_and_answers_the_clients(compose_stack):
    env = compose_stack["env"]
    api_url = env["PREFECT_API_URL"]
    user, password = stack_auth(env)
    secrets_filter = f"{api_url}/block_documents/filter"
    body = {
        "include_secrets": True,
        "block_documents": {"name": {"any_": ["taxi-aws-secret-access-key"]}},
    }
    # Reading the Secret blocks (with their values), registering a deployment, the work pools:
    # 401 without the auth string or with a wrong one.
    for auth in (None, (user, "wrong-" + password), ("admin", password)):
        for method, url, payload in (
            ("POST", secrets_filter, body),
            (
                "POST",
                f"{api_url}/deployments/",
                {"name": "x", "flow_id": "00000000-0000-0000-0000-000000000000"},
            ),
            ("POST", f"{api_url}/work_pools/filter", {}),
        ):
            refused = httpx.request(method, url, json=payload, auth=auth, timeout=10)
            assert refused.status_code == 401, (method, url, refused.status_code)
            assert password not in refused.text and "taxi-aws" not in refused.text
    # Health stays open for the healthchecks.
    assert httpx.get(f"{api_url}/health", timeout=10).status_code == 200
    # An authenticated client works: the setup's blocks are there (read through the API with
    # the same auth string every client of the stack uses).
    found = api(
        "POST",
        secrets_filter,
        json={"block_documents": {"name": {"any_": ["taxi-aws-access-key-id"]}}},
        auth=(user, password),
    )
    assert [block["name"] for block in found] == ["taxi-aws-access-key-id"]
    # The Prefect CLI on the host, in a shell that sourced the env file, authenticates too.
    pools = run(
        [
            "bash",
            "-c",
            'set -a; . "$1"; set +a; exec "$2" work-pool inspect "$TAXI_WORK_POOL"',
            "_",
            str(compose_stack["env_path"]),
            str(BIN / "prefect"),
        ],
        {**clean_env(), "PREFECT_HOME": str(compose_stack["tmp"] / "cli-prefect-home")},
        120,
    )
    assert env["TAXI_WORK_POOL"] in pools.stdout, pools.stdout[-2000:]


def test_only_s3_and_its_ui_answer_on_the_stack_network(compose_stack, docker_client):
    seaweedfs = compose_stack["override"] == SEAWEEDFS_OVERRIDE
    check_only_s3_answers_on_the_network(compose_stack, docker_client, PROJECT, seaweedfs)


def test_the_stack_refuses_placeholder_and_missing_secrets(compose_stack):
    env, compose, example = compose_stack["env"], compose_stack["compose"], compose_stack["example"]
    # .env.example's values: the check-env one-shot refuses them, naming each variable ...
    placeholders = {
        name: example[name]
        for name in ("PREFECT_API_AUTH_STRING", "TAXI_S3_ROOT_PASSWORD", "AWS_SECRET_ACCESS_KEY")
    }
    refused = subprocess.run(
        [*compose, "run", "--rm", "--no-deps", "check-env"],
        env={**env, **placeholders},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = refused.stdout + refused.stderr
    assert refused.returncode == 78, (refused.returncode, output[-2000:])
    for name in placeholders:
        assert f"{name} is still the placeholder of .env.example" in output, output[-2000:]
    assert example["TAXI_S3_ROOT_PASSWORD"] not in output
    # ... and the servers (and so everything else) start only after it succeeded.
    config = json.loads(run([*compose, "config", "--format", "json"], env, 60).stdout)
    for service in ("prefect-server", "minio"):
        assert (
            config["services"][service]["depends_on"]["check-env"]["condition"]
            == "service_completed_successfully"
        )
    # An empty auth string: compose itself refuses the file.
    empty = subprocess.run(
        [*compose, "config", "--quiet"],
        env={**env, "PREFECT_API_AUTH_STRING": ""},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert empty.returncode != 0 and "set PREFECT_API_AUTH_STRING in .env" in empty.stderr, (
        empty.stderr
    )


def test_worker_with_the_wrong_docker_group_stops_and_names_the_right_one(compose_stack):
    env, compose = compose_stack["env"], compose_stack["compose"]
    gid = os.stat("/var/run/docker.sock").st_gid
    wrong = {**env, "DOCKER_GID": str(gid + 4242)}
    result = subprocess.run(
        [*compose, "run", "--rm", "--no-deps", "worker"],
        env=wrong,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 78, (
        result.returncode,
        result.stdout[-2000:],
        result.stderr[-2000:],
    )
    assert f"set DOCKER_GID={gid} in .env" in result.stdout + result.stderr


def test_ci_scripts_deploy_to_the_stack_and_its_worker_runs_them(compose_stack, docker_client):
    env, compose, tmp = compose_stack["env"], compose_stack["compose"], compose_stack["tmp"]
    api_url, bucket = env["PREFECT_API_URL"], env["TAXI_BUCKET"]
    auth = stack_auth(env)
    timings = {"docker compose up --wait": compose_stack["up_seconds"]}

    def s3_as(key_id: str, secret: str):
        return boto3.client(
            "s3",
            endpoint_url="http://127.0.0.1:9000",
            region_name=env["AWS_DEFAULT_REGION"],
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
        )

    # The flows' keys: a user scoped to the project's bucket (s3-setup made the bucket as root).
    s3 = s3_as(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])
    with pytest.raises(ClientError) as denied:
        s3.create_bucket(Bucket="not-the-project-bucket")
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    root = s3_as(env["TAXI_S3_ROOT_USER"], env["TAXI_S3_ROOT_PASSWORD"])
    assert bucket in [b["Name"] for b in root.list_buckets()["Buckets"]]
    data = keys(s3, bucket, "data/")
    for month in ("01", "02", "03"):
        assert f"data/green/green_tripdata_2021-{month}.parquet" in data, data
        assert f"data/green/green_tripdata_2021-{month}.parquet.manifest.json" in data, data
    pool = env["TAXI_WORK_POOL"]
    wait_for(
        lambda: any(
            w["status"] == "ONLINE"
            for w in api("POST", f"{api_url}/work_pools/{pool}/workers/filter", json={}, auth=auth)
        ),
        60,
        "an online worker in the pool",
    )

    # The workflow's steps: tag, build, deploy the built image without building again.
    ci_env = dict(env)
    for name in ("PYTHON_IMAGE", "TAXI_PIP_NO_INDEX"):
        if os.environ.get(name):
            ci_env[name] = os.environ[name]
    image = run(["bash", "scripts/ci/image-ref.sh"], ci_env, 30).stdout.strip()
    assert image.startswith(f"{COMPOSE_IMAGE}:") and len(image.rsplit(":", 1)[1]) == 40, image
    t0 = time.monotonic()
    run(["bash", "scripts/ci/build-image.sh", image], ci_env, 1200)
    compose_stack["deployed_image"] = image  # later tests run it too; the fixture removes it
    timings["build-image.sh (warm cache)"] = time.monotonic() - t0

    # A build at deploy time would tag a new image of this name. (Only this name: other
    # builds on a shared engine come and go meanwhile.)
    images_before = _tags_of(docker_client, COMPOSE_IMAGE)
    t0 = time.monotonic()
    deployed = run(["bash", "scripts/ci/deploy-image.sh", image], ci_env, 600)
    timings["deploy-image.sh"] = time.monotonic() - t0
    assert _tags_of(docker_client, COMPOSE_IMAGE) == images_before, "the deploy built an image"
    assert env["AWS_SECRET_ACCESS_KEY"] not in deployed.stdout + deployed.stderr
    training, inference = (
        deployment(api_url, "taxi-training", auth),
        deployment(api_url, "taxi-inference", auth),
    )
    for dep in (training, inference):
        assert dep["job_variables"]["image"] == image
        assert dep["job_variables"]["env"]["AWS_ENDPOINT_URL"] == "http://minio:9000"
        assert dep["job_variables"]["env"]["TAXI_SIGNING_KEY_BLOCK"] == "taxi-signing-key"
        # The deploying shell's (.env's) link template, if any, would replace the pool's.
        assert "TAXI_OBJECT_URL_TEMPLATE" not in dep["job_variables"]["env"]
    config = json.loads(run([*compose, "config", "--format", "json"], env, 60).stdout)
    links = config["services"]["prefect-setup"]["environment"]["TAXI_OBJECT_URL_TEMPLATE"]

    # Inference runs 2 and 3 get a fresh file each in a folder of incoming/ of their own (the
    # only prefixes the job takes), put there after run 1, so that every inference run predicts
    # one sample file (run 1 predicts the one the seed put in incoming/).
    sample = s3.get_object(Bucket=bucket, Key="incoming/green_tripdata_2021-03.parquet")[
        "Body"
    ].read()
    plan = [("training", training, None, None)] * RUNS + [("inference", inference, None, None)]
    for i in range(2, RUNS + 1):
        folder = f"incoming/run{i}/"
        upload = folder + "green_tripdata_2021-03.parquet"
        plan.append(("inference", inference, {"prefix": folder}, upload))
    breakdowns: dict[str, list] = {"training": [], "inference": []}
    run_ids, container_output = [], []
    try:
        for label, dep, parameters, upload in plan:
            if upload:
                s3.put_object(Bucket=bucket, Key=upload, Body=sample)
            flow_run = run_deployment(api_url, dep["id"], parameters, auth)
            run_ids.append(flow_run["id"])
            assert flow_run["state_type"] == "COMPLETED", (
                f"{label} ended {flow_run['state_type']}: {flow_run['state']}\n"
                f"--- container logs:\n{container_logs(flow_containers(docker_client, flow_run['id']))}\n"
                f"--- worker logs:\n{run([*compose, 'logs', '--tail', '60', 'worker'], env, 60).stdout}"
            )
            breakdowns[label].append(run_breakdown(api_url, docker_client, flow_run, auth))
            [container] = flow_containers(docker_client, flow_run["id"])
            flow_env = dict(item.partition("=")[::2] for item in container.attrs["Config"]["Env"])
            # The flows' scoped S3 user reached them through its Secret blocks' names: neither
            # its keys nor the root user's are in the container's configuration. The worker
            # forwarded the API's auth string, with which the run reported Completed.
            assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & flow_env.keys(), flow_env
            for secret in (env["AWS_SECRET_ACCESS_KEY"], env["TAXI_S3_ROOT_PASSWORD"]):
                assert secret not in " ".join(container.attrs["Config"]["Env"])
            assert flow_env["PREFECT_API_AUTH_STRING"] == env["PREFECT_API_AUTH_STRING"]
            # The stack's S3 UI, from the pool (prefect-setup), not the deploying shell.
            assert flow_env["TAXI_OBJECT_URL_TEMPLATE"] == links
            container_output.append(container.logs().decode(errors="replace"))
    finally:
        for run_id in run_ids:
            for container in flow_containers(docker_client, run_id):
                container.remove(force=True)

    # A report's link opens the object in the stack's S3 UI, for the operator logged in there.
    stored = _stored_in_s3_links(api_url, run_ids[0], auth)
    assert len(stored) == 3 and stored[0][0].endswith("/manifest.json"), stored
    uri, link = stored[0]
    assert link.startswith(f"{S3_UI}/"), link
    _, _, key = uri.removeprefix("s3://").partition("/")
    browser = _s3_ui_session(compose_stack["override"], env)
    try:
        opened = browser.get(link, follow_redirects=True)
    finally:
        browser.close()
    assert opened.status_code == 200, (link, opened.status_code, opened.text[:500])
    if compose_stack["override"] == SEAWEEDFS_OVERRIDE:
        # The admin UI's download: the object's bytes, and nothing without the login.
        assert opened.content == s3.get_object(Bucket=bucket, Key=key)["Body"].read(), link
        assert httpx.get(link, timeout=30).status_code == 401
    else:
        # MinIO's console serves its app for the object's path, which shows the object.
        assert "text/html" in opened.headers["content-type"], opened.headers

    # The host side of the env file: a shell that sourced it reaches S3 on localhost and the
    # stack's Prefect API, and a local run loads the signing key from the stack's block.
    host_run = run(
        [
            "bash",
            "-c",
            'set -a; . "$1"; set +a; exec "$2" -m flows.inference "$3"',
            "_",
            str(compose_stack["env_path"]),
            str(BIN / "python"),
            f"s3://{bucket}/data/green/green_tripdata_2021-03.parquet",
        ],
        {**clean_env(), "PREFECT_HOME": str(tmp / "host-prefect-home")},
        600,
    )
    assert f"s3://{bucket}/predictions/" in host_run.stdout + host_run.stderr, host_run.stdout[
        -2000:
    ]

    assert_bucket_after_runs(s3, bucket)
    # Every model version is signed (assert_bucket_after_runs) with the key the setup generated
    # into the Secret block; the key is in no log, deployment or container environment.
    [key_block] = api(
        "POST",
        f"{api_url}/block_documents/filter",
        auth=auth,
        json={"include_secrets": True, "block_documents": {"name": {"any_": ["taxi-signing-key"]}}},
    )
    signing_key = key_block["data"]["value"]
    assert len(signing_key) == 43
    setup_log = run([*compose, "logs", "--no-log-prefix", "prefect-setup"], env, 60).stdout
    assert "generated a new key into the Secret block 'taxi-signing-key'" in setup_log, setup_log
    stack_logs = run([*compose, "logs", "--no-log-prefix"], env, 120).stdout
    deployments = json.dumps(
        [
            deployment(api_url, name, auth)
            for name in ("taxi-training", "taxi-inference", "taxi-ingest")
        ]
    )
    for text in (
        stack_logs,
        deployments,
        deployed.stdout + deployed.stderr,
        host_run.stdout + host_run.stderr,
        *container_output,
    ):
        assert signing_key not in text
    for i in range(2, RUNS + 1):
        done = keys(s3, bucket, f"processed/incoming/run{i}/")
        assert done == [f"processed/incoming/run{i}/green_tripdata_2021-03.parquet.json"], done
    print("\n" + image_size_line(docker_client, image))
    print("\n".join(f"  {k}: {v:.1f} s" for k, v in timings.items()))
    for label, runs in breakdowns.items():
        print(breakdown_table(label, runs))


def test_a_failed_run_alerts_the_webhook_with_a_link_the_host_opens(compose_stack, docker_client):
    check_alert_reaches_the_webhook(compose_stack, docker_client, PROJECT)


def test_the_worker_comes_back_after_a_crash_and_runs_the_late_runs(compose_stack, docker_client):
    check_worker_restart_and_late_runs(compose_stack, docker_client, PROJECT)


def test_stack_down_removes_the_stack_and_its_flow_containers(compose_stack, docker_client):
    # Last: the stack is gone after it.
    check_stack_down(compose_stack, docker_client, PROJECT, f"{COMPOSE_IMAGE}:stack")
