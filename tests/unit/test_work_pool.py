"""deploy/work_pool.py's job template without a server: what goes into every flow container's
environment. (On a real server, and as the worker merges it: tests/integration/test_work_pool.py.)"""

from __future__ import annotations

import pytest

from deploy.work_pool import base_job_template

SEAWEEDFS = "http://localhost:9001/api/files/download?path=/buckets/{bucket}/{key}"


def _env_default(template: dict) -> dict[str, str]:
    return template["variables"]["properties"]["env"]["default"]


def test_the_link_template_is_a_default_of_every_flow_containers_environment():
    env = _env_default(base_job_template("taxi-duration", "taxi-net", SEAWEEDFS))
    # The S3 keys' block names, not the keys (nor references the worker would resolve into the
    # container's configuration): the flows load them at start.
    assert env == {
        "TAXI_AWS_ACCESS_KEY_ID_BLOCK": "taxi-aws-access-key-id",
        "TAXI_AWS_SECRET_ACCESS_KEY_BLOCK": "taxi-aws-secret-access-key",
        "DO_NOT_TRACK": "1",
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30",
        "TAXI_OBJECT_URL_TEMPLATE": SEAWEEDFS,
    }
    # None or blank: no links (plain s3:// URIs), only the blocks' names and no telemetry.
    for unset in (None, "", "  "):
        assert set(_env_default(base_job_template("taxi-duration", "taxi-net", unset))) == {
            "TAXI_AWS_ACCESS_KEY_ID_BLOCK",
            "TAXI_AWS_SECRET_ACCESS_KEY_BLOCK",
            "DO_NOT_TRACK",
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY",
        }


@pytest.mark.parametrize(
    "bad", ["ftp://x/{key}", "http://x/{bucket}", "http://x/{key}/{folder}", "http://x/{key"]
)
def test_a_malformed_link_template_is_refused_as_the_flows_would_refuse_it(bad):
    with pytest.raises(ValueError, match="TAXI_OBJECT_URL_TEMPLATE must be an http") as error:
        base_job_template("taxi-duration", "taxi-net", bad)
    assert bad not in str(error.value)
