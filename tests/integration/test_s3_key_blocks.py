"""The flows take the S3 keys from the Secret blocks the work pool's containers name, so the keys
are not in a container's configuration. A fresh process as a flow container is one: the keys
only in the blocks, on the real Prefect API and S3 server."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

from prefect.blocks.system import Secret

from taxi.layout import data_key
from taxi.settings import S3_KEY_BLOCK_ENVS
from tests.paths import DATA, ROOT


def test_a_flow_without_the_keys_in_its_environment_loads_them_from_their_blocks(
    prefect_api, bucket_env
):
    env = {name: value for name, value in os.environ.items() if name not in S3_KEY_BLOCK_ENVS}
    for variable, block_variable in S3_KEY_BLOCK_ENVS.items():
        block = f"test-{variable.lower().replace('_', '-')}-{secrets.token_hex(4)}"
        Secret(value=os.environ[variable]).save(block)
        env[block_variable] = block
    env["TAXI_TLC_BASE_URL"] = str(DATA)
    command = [sys.executable, "-m", "flows.ingest", "--color", "green"]
    ingest = subprocess.run(
        [*command, "--start", "2021-01", "--end", "2021-01"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ingest.returncode == 0, ingest.stderr[-3000:]
    assert bucket_env.exists(data_key("green", (2021, 1)))
    output = ingest.stdout + ingest.stderr
    assert not [os.environ[name] for name in S3_KEY_BLOCK_ENVS if os.environ[name] in output]
