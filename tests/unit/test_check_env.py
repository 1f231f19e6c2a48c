"""The compose stack's settings: placeholder secrets refused (deploy/check_env.py), the values
scripts/make-env.sh writes accepted, and the unsigned opt-out's spelling."""

from __future__ import annotations

import json
import subprocess

import pytest

from deploy.check_env import problems
from taxi.settings import Settings
from tests.env_files import env_file_values
from tests.paths import ROOT


def test_the_example_file_is_refused_for_each_of_its_secrets():
    found = problems(Settings.from_env(env_file_values((ROOT / ".env.example").read_text())))
    assert found == [
        "the password in PREFECT_API_AUTH_STRING is still the placeholder of .env.example",
        "TAXI_S3_ROOT_PASSWORD is still the placeholder of .env.example",
        "AWS_SECRET_ACCESS_KEY is still the placeholder of .env.example",
        "TAXI_S3_UPLOADER_PASSWORD is still the placeholder of .env.example",
    ]


def test_the_generated_env_file_passes(tmp_path):
    subprocess.run(
        ["bash", "scripts/make-env.sh", str(tmp_path / "env")],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    values = env_file_values((tmp_path / "env").read_text())
    assert problems(Settings.from_env(values)) == []
    example = env_file_values((ROOT / ".env.example").read_text())
    for name in (
        "PREFECT_API_AUTH_STRING",
        "TAXI_S3_ROOT_PASSWORD",
        "AWS_SECRET_ACCESS_KEY",
        "TAXI_S3_UPLOADER_PASSWORD",
    ):
        assert values[name] != example[name] and len(values[name]) >= 40, name
    assert values["AWS_ACCESS_KEY_ID"] != values["TAXI_S3_ROOT_USER"]


GOOD = {
    "PREFECT_API_AUTH_STRING": "taxi:" + "p" * 20,
    "TAXI_S3_ROOT_USER": "admin-7f3a",
    "TAXI_S3_ROOT_PASSWORD": "r" * 20,
    "AWS_ACCESS_KEY_ID": "flows",
    "AWS_SECRET_ACCESS_KEY": "f" * 20,
}


@pytest.mark.parametrize(
    ("changed", "problem"),
    [
        ({"PREFECT_API_AUTH_STRING": ""}, "the password in PREFECT_API_AUTH_STRING is not set"),
        (
            {"PREFECT_API_AUTH_STRING": "no-colon-" + "x" * 20},
            "PREFECT_API_AUTH_STRING must be USER:PASSWORD",
        ),
        (
            {"PREFECT_API_AUTH_STRING": "taxi:short"},
            "the password in PREFECT_API_AUTH_STRING is shorter than 16 characters",
        ),
        ({"TAXI_S3_ROOT_USER": ""}, "TAXI_S3_ROOT_USER is not set"),
        (
            {"TAXI_S3_ROOT_PASSWORD": "CHANGE-ME-please-0123456789"},
            "TAXI_S3_ROOT_PASSWORD is still the placeholder of .env.example",
        ),
        ({"AWS_SECRET_ACCESS_KEY": " "}, "AWS_SECRET_ACCESS_KEY is not set"),
        (
            {"AWS_ACCESS_KEY_ID": "admin-7f3a"},
            "AWS_ACCESS_KEY_ID (the flows' S3 user) must not be the root user TAXI_S3_ROOT_USER",
        ),
        (
            {"AWS_SECRET_ACCESS_KEY": "r" * 20},
            "AWS_SECRET_ACCESS_KEY must differ from TAXI_S3_ROOT_PASSWORD",
        ),
        # The uploader: optional, but both keys and a secret of its own.
        (
            {"TAXI_S3_UPLOADER_PASSWORD": "u" * 20},
            "TAXI_S3_UPLOADER_USER is not set (set both TAXI_S3_UPLOADER_USER and"
            " TAXI_S3_UPLOADER_PASSWORD, or neither)",
        ),
        ({"TAXI_S3_UPLOADER_USER": "uploader"}, "TAXI_S3_UPLOADER_PASSWORD is not set"),
        (
            {"TAXI_S3_UPLOADER_USER": "flows", "TAXI_S3_UPLOADER_PASSWORD": "u" * 20},
            "TAXI_S3_UPLOADER_USER must differ from TAXI_S3_ROOT_USER and AWS_ACCESS_KEY_ID",
        ),
        (
            {"TAXI_S3_UPLOADER_USER": "uploader", "TAXI_S3_UPLOADER_PASSWORD": "f" * 20},
            "TAXI_S3_UPLOADER_PASSWORD must differ from TAXI_S3_ROOT_PASSWORD and"
            " AWS_SECRET_ACCESS_KEY",
        ),
    ],
)
def test_each_bad_secret_is_named_and_its_value_never_is(changed, problem):
    found = problems(Settings.from_env({**GOOD, **changed}))
    assert found == [problem]
    for value in changed.values():
        if value.strip():
            assert value not in problem


def test_check_env_exits_with_a_configuration_error_naming_the_fix(tmp_path):
    example = env_file_values((ROOT / ".env.example").read_text())
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-m", "deploy.check_env"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **example},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 78
    assert (
        "refusing to start the stack" in result.stderr
        and "bash scripts/make-env.sh" in result.stderr
    )
    assert example["TAXI_S3_ROOT_PASSWORD"] not in result.stderr


@pytest.mark.parametrize(
    ("raw", "allowed"), [("1", True), ("true", True), ("0", False), ("no", False), ("", False)]
)
def test_the_unsigned_opt_out_spelling(raw, allowed):
    assert Settings.from_env({"TAXI_ALLOW_UNSIGNED": raw}).allow_unsigned is allowed


def test_a_misspelt_opt_out_is_an_error_naming_the_variable():
    with pytest.raises(ValueError, match="TAXI_ALLOW_UNSIGNED must be 1 or 0"):
        Settings.from_env({"TAXI_ALLOW_UNSIGNED": "maybe"})


def test_the_quickstart_keeps_one_signing_key_per_checkout(tmp_path):
    import devstack

    first = devstack._credentials(tmp_path)
    assert len(first["signing_key"]) == 43 and devstack._credentials(tmp_path) == first
    assert (tmp_path / "credentials.json").stat().st_mode & 0o777 == 0o600
    # A checkout from before signing was required: its S3 credentials stay, a key is added.
    old = {"access_key": "taxi-0123", "secret_key": "s" * 32}
    (tmp_path / "credentials.json").write_text(json.dumps(old))
    upgraded = devstack._credentials(tmp_path)
    assert (
        upgraded == {**old, "signing_key": upgraded["signing_key"]}
        and len(upgraded["signing_key"]) == 43
    )
