"""The compose stack's alerts, as docs/monitoring.md sets them up: a check that
tests/e2e/test_compose_stack.py runs on its one stack, after its deployments are registered.

The webhook URL goes into the env file and `docker compose run --rm prefect-setup` applies it
(the documented command). A receiver on the stack's network stands in for Slack: a run of a
taxi deployment that fails reaches it, and the alert's link to the run opens the run's page of
the UI from the host (the server's PREFECT_UI_URL). The clients' own logs link to the same UI.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from pathlib import Path

import docker
import httpx

from .dockerutil import api, deployment, flow_containers, run, run_deployment, stack_auth

UI = "http://localhost:4200"  # published on the host's loopback (docker-compose.yml)
RECEIVER_PORT = 8000
ALERT_SECONDS = 120  # the server's trigger and action services work in the background
# What a browser asks for when it opens a link: the server answers the UI's app for a page's
# path only to a navigation (without, 404).
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
# A webhook target: one line of JSON per POST on stdout, its path included.
RECEIVER = f"""
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        print(json.dumps({{"path": self.path, **json.loads(body or b"{{}}")}}), flush=True)
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
HTTPServer(("0.0.0.0", {RECEIVER_PORT}), Handler).serve_forever()
"""


def _set_in_env_file(path: Path, name: str, value: str) -> None:
    lines = path.read_text().splitlines()
    assert sum(line.startswith(f"{name}=") for line in lines) == 1, f"{path} has no {name}= line"
    path.write_text(
        "\n".join(f"{name}={value}" if line.startswith(f"{name}=") else line for line in lines)
        + "\n"
    )


def _received(container) -> list[dict]:
    lines = container.logs(stdout=True, stderr=False).decode(errors="replace").splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def check_alert_reaches_the_webhook(stack: dict, client: docker.DockerClient, project: str):
    env, compose, env_path = stack["env"], stack["compose"], stack["env_path"]
    api_url, auth = env["PREFECT_API_URL"], stack_auth(env)
    network = "taxi-net"
    token = secrets.token_hex(8)
    receiver = client.containers.run(
        f"{env['TAXI_IMAGE']}:stack",
        ["python", "-c", RECEIVER],
        name=f"{project}-alert-receiver",
        network=network,
        detach=True,
        labels={"taxi.stack": project},  # scripts/stack-down.sh removes it with the stack
    )
    failed_ids: list[str] = []
    try:
        hook = f"http://{receiver.name}:{RECEIVER_PORT}/hook?token={token}"
        _set_in_env_file(env_path, "TAXI_ALERT_WEBHOOK_URL", hook)
        # From a shell that sourced the env file again (compose takes a shell's variable over
        # the file's: the test's shell holds the file's earlier values).
        t0 = time.monotonic()
        applied = run(
            [*compose, "run", "--rm", "prefect-setup"], {**env, "TAXI_ALERT_WEBHOOK_URL": hook}, 300
        )
        timings = {"docker compose run --rm prefect-setup": time.monotonic() - t0}
        assert "taxi-flow-run-failed" in applied.stdout + applied.stderr, applied.stdout[-2000:]
        assert token not in applied.stdout + applied.stderr

        # A run of a taxi deployment that fails: an ingest `start` that is no month (a string
        # to the server's schema; the flow's own check fails the run, naming the parameter).
        ingest = deployment(api_url, "taxi-ingest", auth)
        t0 = time.monotonic()
        failed = run_deployment(api_url, ingest["id"], {"start": "no-month"}, auth)
        timings["failing run, trigger -> Failed"] = time.monotonic() - t0
        t0 = time.monotonic()
        failed_ids.append(failed["id"])
        assert failed["state_type"] == "FAILED", failed["state"]

        deadline = time.monotonic() + ALERT_SECONDS
        alerts: list[dict] = []
        while time.monotonic() < deadline and not alerts:
            alerts = [m for m in _received(receiver) if failed["name"] in m.get("subject", "")]
            time.sleep(1)
        assert alerts, f"no alert for run {failed['name']} within {ALERT_SECONDS} s"
        timings["Failed -> alert received"] = time.monotonic() - t0
        alert = alerts[0]
        assert alert["path"] == f"/hook?token={token}"
        assert "taxi-ingest" in alert["subject"] and "Failed" in alert["subject"]
        assert "start must be a month" in alert["body"], alert["body"]
        assert "no-month" not in alert["body"]
        assert "None" not in alert["subject"] + alert["body"], alert
        link = f"{UI}/runs/flow-run/{failed['id']}"
        assert f"The run in the Prefect UI: {link}" in alert["body"], alert["body"]
        # The link opens from the host: the UI's page (the app then reads the run through the
        # API, with the login), and the API knows the run by the link's id.
        page = httpx.get(link, headers=BROWSER, timeout=30, follow_redirects=True)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"], link
        assert api("GET", f"{api_url}/flow_runs/{failed['id']}", auth=auth)["state_type"] == (
            "FAILED"
        )

        # The clients' logs link to the UI the host opens, not to the compose name.
        seed_log = run([*compose, "logs", "--no-log-prefix", "seed"], env, 60).stdout
        assert re.search(rf"{UI}/runs/flow-run/[0-9a-f-]{{36}}", seed_log), seed_log[-2000:]
        assert "prefect-server:4200/runs" not in seed_log
        print("\n" + "\n".join(f"  {k}: {v:.1f} s" for k, v in timings.items()))
    finally:
        receiver.remove(force=True)
        _set_in_env_file(env_path, "TAXI_ALERT_WEBHOOK_URL", "")
        for run_id in failed_ids:
            for container in flow_containers(client, run_id):
                container.remove(force=True)
